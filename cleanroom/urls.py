from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from cleanroom.health import healthz

API_MODULES = [
    "cleanroom.accounts.api_urls",
    "cleanroom.datasets.api_urls",
    "cleanroom.queries.api_urls",
    "identity.api_urls",
    "payouts.api_urls",
    "audit.api_urls",
]
PORTAL_MODULES = [
    "cleanroom.datasets.portal_urls",
    "cleanroom.queries.portal_urls",
    "identity.portal_urls",
    "payouts.portal_urls",
    "audit.portal_urls",
]

api_v1: list[URLPattern | URLResolver] = [path("", include(module)) for module in API_MODULES]
api_v1.append(path("schema/", SpectacularAPIView.as_view(), name="schema"))

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # Served from drf-spectacular-sidecar's static files; the split view serves Swagger UI's
    # start-up script as a file too (no inline script), and ReDoc uses our own page
    # (the stock one fetches Google Fonts).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="portal/redoc.html"),
        name="api-redoc",
    ),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("portal.urls")),
    *[path("", include(module)) for module in PORTAL_MODULES],
]

handler400 = "portal.views.bad_request"
handler403 = "portal.views.forbidden"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
