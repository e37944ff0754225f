"""Refusals a compliance officer would ask about, appended to the audit log.

Which refusals: a wrong password (``accounts.sign_in.refused``, written by the sign-in
service), a refused query (``cleanroom.query.refused``), a refused upload
(``cleanroom.contribution.refused``) and an object or page refused to a signed-in user
(``cleanroom.access.refused``: 403, and 404 for another organization's or a made-up id,
which look the same by design). Lockouts are ``*.locked``.

None holds the password, an uploaded value or the SQL: a query refusal keeps the error's
type and message (which names the construct), an upload refusal only how many rows
failed, an access refusal the method and path.

A signed-in user could flood the log with refusals, so each user (or client address) is
recorded at most ``PER_MINUTE.attempts`` times a minute per action; the first refusal
past that appends one ``cleanroom.refusals.suppressed`` event saying so.

This module is also the DRF exception handler (settings ``EXCEPTION_HANDLER``): it
renders the problem details as before and audits what it refused.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from rest_framework.response import Response

from cleanroom.errors import DomainError, problem_details_handler
from cleanroom.throttling import Limit, client_address, client_tag, throttle_hit

QUERY_REFUSED = "cleanroom.query.refused"
UPLOAD_REFUSED = "cleanroom.contribution.refused"
ACCESS_REFUSED = "cleanroom.access.refused"
SUPPRESSED = "cleanroom.refusals.suppressed"
PER_MINUTE = Limit("refusal:audit", 20, 60)


def refusal_record(
    *,
    request: HttpRequest,
    action: str,
    status: int,
    error_type: str,
    detail: str = "",
    errors: int = 0,
    dataset: str = "",
) -> None:
    """Append one refusal (within the per-minute allowance) in its own transaction."""
    from audit.services import audit_record

    user = (
        request.user if getattr(request, "user", None) and request.user.is_authenticated else None
    )
    who = f"user:{user.pk}" if user is not None else client_tag(client_address(request))
    count = throttle_hit(PER_MINUTE, f"{action}\0{who}")
    if count > PER_MINUTE.attempts:
        if count == PER_MINUTE.attempts + 1:
            audit_record(
                action=SUPPRESSED,
                actor=user,
                subject=who if user is None else "",
                payload={
                    "refused_action": action,
                    "recorded": PER_MINUTE.attempts,
                    "per_seconds": 60,
                },
            )
        return
    payload: dict[str, Any] = {"status": status, "type": error_type}
    if action == ACCESS_REFUSED:
        payload |= {"method": request.method, "path": request.path[:300]}
    elif action == UPLOAD_REFUSED:
        payload |= {"errors": errors}
    else:
        payload |= {"detail": detail[:500]}
    if user is None:
        payload["client"] = who
    audit_record(action=action, actor=user, subject="", dataset=dataset[:100], payload=payload)


def refusal_of_error(
    *, request: HttpRequest, action: str, error: DomainError, dataset: str = ""
) -> None:
    """`refusal_record` for a DomainError a page caught and shows itself."""
    refusal_record(
        request=request,
        action=action,
        status=error.status_code,
        error_type=error.type,
        detail=error.detail,
        errors=len(error.errors),
        dataset=dataset,
    )


def problem_details_audited(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: problem details, and the refusal audited (see module doc)."""
    response = problem_details_handler(exc, context)
    if response is None or not 400 <= response.status_code < 500:
        return response
    request = context.get("request")
    view = context.get("view")
    if request is None or response.status_code in (401, 405, 413, 415, 429):
        # 401: no one to name (a wrong password is audited by the sign-in service);
        # 429: the lockout was audited when it began.
        return response
    body = response.data if isinstance(response.data, dict) else {}
    status = response.status_code
    signed_in = bool(getattr(request, "user", None) and request.user.is_authenticated)
    if status in (403, 404):
        action = ACCESS_REFUSED if signed_in else ""
    else:
        action = getattr(view, "refusal_action", "") if request.method == "POST" else ""
    if action:
        kwargs = context.get("kwargs") or {}
        refusal_record(
            request=request,
            action=action,
            status=status,
            error_type=str(body.get("type", "")),
            detail=str(body.get("detail", "")),
            errors=len(body.get("errors") or []),
            dataset=str(kwargs.get("slug") or _dataset_named(request)),
        )
    return response


def _dataset_named(request: Any) -> str:
    try:
        data = request.data
    except Exception:  # the body itself was what was refused: no dataset then
        return ""
    value = data.get("dataset") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""
