"""REST endpoints of identity under /api/v1/."""

from django.urls import URLPattern, URLResolver, path

from identity import api

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "identity/presentation-requests/",
        api.PresentationRequestCreateApi.as_view(),
        name="identity-presentation-requests",
    ),
    path(
        "identity/presentation-requests/<str:request_id>/",
        api.PresentationRequestDetailApi.as_view(),
        name="identity-presentation-request",
    ),
    path(
        "identity/presentation-requests/<str:request_id>/response/",
        api.PresentationResponseApi.as_view(),
        name="identity-presentation-response",
    ),
    path(
        "identity/trusted-issuers/",
        api.TrustedIssuerListApi.as_view(),
        name="identity-trusted-issuers",
    ),
    path(
        "identity/trusted-issuers/<int:issuer_id>/",
        api.TrustedIssuerDetailApi.as_view(),
        name="identity-trusted-issuer",
    ),
]
