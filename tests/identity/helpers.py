"""Assertions shared by the identity tests."""

from __future__ import annotations

from typing import Any

from rest_framework.authtoken.models import Token

from audit.models import AuditEvent
from cleanroom.accounts.models import Contributor
from identity.models import ContributorCredential, PresentationRequest


def assert_refused(
    response: Any, code: str, presentation_request: Any, *, status: int = 400
) -> dict[str, Any]:
    """Refused with this reason, audited, and nothing else changed."""
    body = response.json()
    assert response.status_code == status, body
    assert body["verified"] is False
    assert body["detail"]
    presentation_request.refresh_from_db()
    assert presentation_request.status == PresentationRequest.Status.PENDING
    assert presentation_request.contributor is None
    assert presentation_request.answered_at is None
    assert Contributor.objects.count() == 0
    assert Token.objects.count() == 0
    assert ContributorCredential.objects.count() == 0
    event = AuditEvent.objects.filter(action="identity.presentation.refused").latest("pk")
    assert event.payload["reason"] == code, event.payload
    assert event.subject == f"presentation_request:{presentation_request.pk}"
    assert not AuditEvent.objects.filter(action="identity.presentation.accepted").exists()
    return body
