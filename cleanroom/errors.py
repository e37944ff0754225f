"""One error hierarchy for the whole service, and the one handler that maps it to HTTP.

Services raise a ``DomainError`` subclass with a plain message; the DRF exception
handler turns it (and DRF's own errors) into a problem-details body:
``{"type", "title", "detail", "errors"}``. The portal shows the same ``detail``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A client's request broke a rule: 4xx with a plain message, nothing changed."""

    status_code = 400
    title = "Bad request"
    type = "invalid-request"

    def __init__(self, detail: str, *, errors: list[Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class ValidationFailed(DomainError):
    title = "Validation failed"
    type = "validation-failed"


class NotFound(DomainError):
    status_code = 404
    title = "Not found"
    type = "not-found"


class Forbidden(DomainError):
    status_code = 403
    title = "Forbidden"
    type = "forbidden"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"
    type = "conflict"


class PayloadTooLarge(DomainError):
    status_code = 413
    title = "Payload too large"
    type = "payload-too-large"


class QueryRefused(DomainError):
    title = "Query refused"
    type = "query-refused"


class BudgetExhausted(DomainError):
    title = "Privacy budget exhausted"
    type = "budget-exhausted"


class InsufficientBalance(DomainError):
    # API.md: a refused query answers 400 and spends nothing (not 402).
    status_code = 400
    title = "Insufficient balance"
    type = "insufficient-balance"


class VerificationFailed(DomainError):
    title = "Verification failed"
    type = "verification-failed"


class UntrustedIssuer(VerificationFailed):
    title = "Untrusted issuer"
    type = "untrusted-issuer"


class UnbalancedEntry(DomainError):
    """A ledger entry whose postings do not sum to zero: a programming error, refused."""

    status_code = 409
    title = "Unbalanced ledger entry"
    type = "unbalanced-entry"


def problem(
    status: int, type_: str, title: str, detail: str, errors: list[Any] | None = None
) -> Response:
    return Response(
        {"type": type_, "title": title, "detail": detail, "errors": errors or []},
        status=status,
        content_type="application/problem+json",
    )


def _flatten(data: Any, prefix: str = "") -> list[dict[str, str]]:
    if isinstance(data, dict):
        out: list[dict[str, str]] = []
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(value, "" if key == "non_field_errors" and not prefix else name))
        return out
    if isinstance(data, list):
        out = []
        for item in data:
            out.extend(_flatten(item, prefix))
        return out
    return [{"field": prefix, "message": str(data)}] if prefix else [{"message": str(data)}]


def problem_details_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every client error becomes a problem-details body."""
    if isinstance(exc, DomainError):
        answer = problem(exc.status_code, exc.type, exc.title, exc.detail, exc.errors)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:  # a 429 says when to come back
            answer["Retry-After"] = str(retry_after)
        return answer
    if isinstance(exc, RequestDataTooBig):
        return problem(
            413, PayloadTooLarge.type, PayloadTooLarge.title, "The request body is too large."
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, drf_exceptions.APIException)
    if isinstance(exc, drf_exceptions.ValidationError):
        errors = _flatten(exc.detail)
        detail = (
            "; ".join(
                f"{e['field']}: {e['message']}" if e.get("field") else e["message"] for e in errors
            )
            or "Invalid input."
        )
        return problem(400, "validation-failed", "Validation failed", detail, errors)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    title = {
        401: "Not authenticated",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        415: "Unsupported media type",
        429: "Too many requests",
    }.get(response.status_code, "Bad request")
    out = problem(response.status_code, exc.default_code, title, str(detail))
    for header in ("WWW-Authenticate", "Allow", "Retry-After"):
        if header in response:
            out[header] = response[header]
    return out
