"""Who may open a portal page, and how a refusal looks: the one decorator every app uses.

A page for given roles redirects anonymous visitors to sign in, answers another
role with a 403 page, and shows a `DomainError` raised by a service as an error
page with the error's status and plain message (the same words the API uses).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

from cleanroom.errors import DomainError
from cleanroom.refusals import ACCESS_REFUSED, refusal_of_error, refusal_record

View = Callable[..., HttpResponseBase]


def error_page(request: HttpRequest, status: int, title: str, detail: str) -> HttpResponseBase:
    return render(request, "portal/error.html", {"title": title, "detail": detail}, status=status)


def role_refused(request: HttpRequest) -> HttpResponseBase:
    """403 for a page of another role, audited as an access refusal."""
    refusal_record(request=request, action=ACCESS_REFUSED, status=403, error_type="forbidden")
    return error_page(request, 403, "Forbidden", "This page is not available to your role.")


def roles(*allowed: str) -> Callable[[View], View]:
    """Signed-in users of these roles only; a DomainError becomes an error page."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if getattr(request.user, "role", None) not in allowed:
                return role_refused(request)
            try:
                return view(request, *args, **kwargs)
            except DomainError as error:
                if error.status_code in (403, 404):
                    refusal_of_error(request=request, action=ACCESS_REFUSED, error=error)
                return error_page(request, error.status_code, error.title, error.detail)

        # Read by cleanroom.middleware: the role is checked before anything reads the body.
        wrapped.allowed_roles = allowed  # type: ignore[attr-defined]
        return wrapped

    return decorate
