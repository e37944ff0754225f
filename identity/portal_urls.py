"""Portal pages of identity. NAV lists (roles, label, url name) for the role-aware navigation."""

from django.urls import URLPattern, URLResolver, path

from identity import portal

app_name = "identity"
urlpatterns: list[URLPattern | URLResolver] = [
    path("join/", portal.join, name="join"),
    path(".well-known/jwt-vc-issuer/demo-issuer", portal.demo_issuer_metadata, name="demo-issuer-metadata"),
    path("demo-issuer/status-list", portal.demo_issuer_status_list, name="demo-issuer-status-list"),
    path("join/<str:request_id>/status/", portal.join_status, name="join-status"),
    path("compliance/trusted-issuers/", portal.trusted_issuers, name="trusted-issuers"),
    path(
        "compliance/trusted-issuers/<int:issuer_id>/remove/",
        portal.trusted_issuer_remove,
        name="trusted-issuer-remove",
    ),
]
NAV: list[tuple[tuple[str, ...], str, str]] = [
    (("compliance",), "Trusted issuers", "identity:trusted-issuers"),
]
