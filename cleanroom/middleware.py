"""Refusals that must happen before anyone reads the request body.

Django reads a body lazily, but CSRF checking of a form POST reads it (and parses a
multipart upload into memory) before the view runs, so a portal page's role check in
the view comes too late. This middleware, placed before ``CsrfViewMiddleware``:

- answers 413 to a body whose declared length is over ``CLEANROOM_MAX_REQUEST_BYTES``
  (problem details under /api/, an error page elsewhere), without reading a byte of it;
- for a portal page marked with ``portal.access.roles``, sends an anonymous visitor to
  sign in and answers another role with 403, again before the body is read.

API views need no help: DRF checks token and permissions before a view reads
``request.data``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

from portal.access import error_page, role_refused


def declared_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


def too_large(request: HttpRequest, limit: int) -> HttpResponseBase:
    detail = (
        f"The request body is larger than the limit of {limit // (1024 * 1024)} MB; "
        "send less at once (split an upload into several)."
    )
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "type": "payload-too-large",
                "title": "Payload too large",
                "detail": detail,
                "errors": [],
            },
            status=413,
            content_type="application/problem+json",
        )
    return error_page(request, 413, "Payload too large", detail)


class RequestGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        limit = settings.CLEANROOM_MAX_REQUEST_BYTES
        if declared_length(request) > limit:
            return too_large(request, limit)
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Any, args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        allowed = getattr(view_func, "allowed_roles", None)
        if allowed is None:
            return None
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if getattr(request.user, "role", None) not in allowed:
            return role_refused(request)
        return None


# Nothing inline: no script (handlers live in static files), no <style> element, no style
# attribute (sizes are classes in site.css; a progress bar's width is an SVG attribute, see
# portal/_progress.html); no framing, no plugins.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Swagger UI and ReDoc come from our own static files (drf-spectacular-sidecar) and start
# from script files; they style themselves inline and ReDoc runs a blob: worker: allowed
# on the API docs pages only. Nothing is fetched from another origin.
API_DOCS_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Content-Security-Policy on every response (Django 5.2 has none built in)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        policy = (
            API_DOCS_POLICY
            if request.path.startswith(("/api/docs/", "/api/redoc/"))
            else CONTENT_SECURITY_POLICY
        )
        response.headers.setdefault("Content-Security-Policy", policy)
        return response
