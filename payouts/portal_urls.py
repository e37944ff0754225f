"""Portal pages of payouts. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver, path

from payouts import portal

app_name = "payouts"
urlpatterns: list[URLPattern | URLResolver] = [
    path("billing/", portal.billing, name="billing"),
    path("earnings/", portal.earnings, name="earnings"),
    path("money/distributions/", portal.distributions, name="distributions"),
    path("money/settlements/", portal.settlements, name="settlements"),
    path("money/payouts/", portal.payouts, name="payouts"),
    path("money/reconciliation/", portal.reconciliation, name="reconciliation"),
]
NAV: list[tuple[tuple[str, ...], str, str]] = [
    (("business",), "Billing", "payouts:billing"),
    (("contributor",), "Earnings", "payouts:earnings"),
    (("compliance",), "Distributions", "payouts:distributions"),
    (("compliance",), "Settlements", "payouts:settlements"),
    (("compliance",), "Payouts", "payouts:payouts"),
]
