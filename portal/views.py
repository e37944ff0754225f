"""Portal skeleton: landing page, sign-in and sign-out, error pages.

Errors under /api/ are answered as problem-details JSON, never HTML.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.contrib.auth import login, logout
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from cleanroom.accounts import services as accounts
from cleanroom.throttling import Throttled, client_address

INTRODUCTIONS = {
    "contributor": (
        "You pool your records with others and are paid every time a business queries the pool.",
        "Nobody ever sees your records: businesses only get answers with calibrated noise, "
        "and you can see every query that touched your data, withdraw, export or erase at any time.",
    ),
    "business": (
        "Ask questions in SQL of data that people chose to share, and pay them for each answer.",
        "You get differentially private results with confidence intervals, never a raw record.",
    ),
    "compliance": (
        "Set each dataset's privacy budget, price and rules, and review queries the policy does not approve.",
        "Every query, approval, budget charge, credential check and payout is in a signed, "
        "tamper-evident log you can verify and export.",
    ),
}


def _overview(request: HttpRequest, role: str) -> dict[str, Any]:
    """What a signed-in user sees first: their own numbers, read through the selectors."""
    from cleanroom.datasets.selectors import dataset_list_visible, pool_size
    from cleanroom.queries import selectors as queries

    user: Any = request.user
    datasets = [
        {"dataset": d, "pool": pool_size(dataset=d), "remaining": d.total_epsilon - d.spent_epsilon}
        for d in dataset_list_visible(user=user)
    ]
    context: dict[str, Any] = {"datasets": datasets}
    if role == "business":
        from payouts.selectors import billing_summary

        context["billing"] = billing_summary(organization=user.organization, limit=5)
        context["recent"] = list(queries.query_list(user=user).select_related("dataset")[:5])
    elif role == "compliance":
        context["review"] = list(
            queries.review_queue().select_related("dataset", "organization")[:5]
        )
        context["review_count"] = queries.review_queue().count()
        context["recent"] = list(
            queries.query_list(user=user).select_related("dataset", "organization")[:5]
        )
    return context


def home(request: HttpRequest) -> HttpResponse:
    role = getattr(request.user, "role", None) if request.user.is_authenticated else None
    if role == "contributor":
        return redirect("datasets:dashboard")
    if role in ("business", "compliance"):
        return render(request, "portal/overview.html", {"role": role, **_overview(request, role)})
    return render(request, "portal/home.html", {"introductions": INTRODUCTIONS, "role": role})


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        try:
            user = accounts.sign_in(
                username=request.POST.get("username", ""),
                password=request.POST.get("password", ""),
                client=client_address(request),
                channel="portal",
            )
        except Throttled as refused:
            response = render(request, "portal/sign_in.html", {"error": refused.detail}, status=429)
            response["Retry-After"] = str(refused.retry_after)
            return response
        except accounts.InvalidCredentials as refused:
            error = refused.detail
        else:
            login(request, user)
            target = request.GET.get("next", "")
            return redirect(
                target if target.startswith("/") and not target.startswith("//") else "portal:home"
            )
    return render(request, "portal/sign_in.html", {"error": error}, status=400 if error else 200)


@require_http_methods(["POST"])
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("portal:home")


REDOC_BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
# The one address ReDoc's bundle fetches by itself (its "API docs by Redocly" logo).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    from django.contrib.staticfiles import finders
    from django.templatetags.static import static

    path = finders.find(REDOC_BUNDLE)
    assert isinstance(path, str), REDOC_BUNDLE
    with open(path, "rb") as handle:
        source = handle.read()
    return source.replace(REDOC_LOGO.encode(), static("portal/favicon.svg").encode())


def redoc_bundle(request: HttpRequest) -> HttpResponse:
    """ReDoc's vendored bundle (drf-spectacular-sidecar) with its CDN logo pointed at our
    favicon, so the API reference fetches nothing from another origin."""
    response = HttpResponse(_redoc_bundle(), content_type="application/javascript")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _error(request: HttpRequest, status: int, title: str, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "type": title.lower().replace(" ", "-"),
                "title": title,
                "detail": detail,
                "errors": [],
            },
            status=status,
            content_type="application/problem+json",
        )
    return render(request, "portal/error.html", {"title": title, "detail": detail}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return _error(request, 413, "Payload too large", "The request body is too large.")
    return _error(request, 400, "Bad request", "The request could not be understood.")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 403, "Forbidden", "This page is not available to your role.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404, "Not found", "There is nothing at this address.")


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(request, 500, "Server error", "Something went wrong on our side; it was logged.")
