"""REST endpoints of payouts under /api/v1/."""

from django.urls import URLPattern, URLResolver, path

from payouts import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("billing/", api.BillingApi.as_view(), name="billing"),
    path("billing/top-ups/", api.TopUpApi.as_view(), name="billing-top-ups"),
    path("me/earnings/", api.MyEarningsApi.as_view(), name="me-earnings"),
    path(
        "me/payout-destination/", api.PayoutDestinationApi.as_view(), name="me-payout-destination"
    ),
    path("payouts/", api.PayoutsApi.as_view(), name="payouts"),
    path("payouts/distributions/", api.DistributionsApi.as_view(), name="payouts-distributions"),
    path("payouts/settlements/", api.SettlementsApi.as_view(), name="payouts-settlements"),
    path(
        "payouts/settlements/<int:pk>/",
        api.SettlementDetailApi.as_view(),
        name="payouts-settlement-detail",
    ),
    path("payouts/reconciliation/", api.ReconciliationApi.as_view(), name="payouts-reconciliation"),
    path("payouts/webhooks/<slug:provider>/", api.WebhookApi.as_view(), name="payouts-webhook"),
]
