"""The one way every app writes to the audit log."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent


def _actor_fields(actor: Any) -> tuple[str, str]:
    if actor is None:
        return "system", ""
    return str(getattr(actor, "role", "") or "admin"), str(actor.pk)


def audit_record(
    *,
    action: str,
    actor: Any,
    subject: str = "",
    payload: dict[str, Any] | None = None,
    dataset: str = "",
) -> AuditEvent:
    """Append one event in the caller's transaction. `actor` is a User or None (the system).

    `action` is namespaced (`cleanroom.query.released`); `payload` holds no personal data
    and no contributed value.
    """
    role, actor_id = _actor_fields(actor)
    return AuditEvent.objects.create(
        actor_role=role,
        actor_id=actor_id,
        action=action,
        subject=subject,
        dataset=dataset,
        payload=payload or {},
    )
