"""Audit test helpers: an isolated signing key, a small log, tampering as an attacker with
database access would (triggers switched off for the statement), export + offline verify."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.db import connection

from audit import keys
from audit.selectors import export_lines
from audit.verify import verify_export


@pytest.fixture(autouse=True)
def audit_key(settings: Any, tmp_path: Any) -> Any:
    settings.CLEANROOM_AUDIT_KEY_FILE = str(tmp_path / "audit_key.pem")
    keys._load.cache_clear()
    yield tmp_path / "audit_key.pem"
    keys._load.cache_clear()


@pytest.fixture
def every_five(settings: Any) -> None:
    settings.CLEANROOM_AUDIT_CHECKPOINT_EVERY = 5


ACTIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("cleanroom.query.submitted", "query:1", "households", {"epsilon": "0.5"}),
    ("cleanroom.query.approved", "query:1", "households", {}),
    (
        "cleanroom.budget.charged",
        "query:1",
        "households",
        {"epsilon": "0.5", "spent_epsilon": "0.5", "total_epsilon": "3"},
    ),
    ("cleanroom.query.released", "query:1", "households", {"rows": 3}),
    ("payouts.query.charged", "query:1", "households", {"amount": "1.500000", "currency": "EUR"}),
    ("payouts.distribution.recorded", "query:1", "households", {"members": 12}),
    ("identity.presentation.refused", "presentation_request:4", "", {"reason": "untrusted_issuer"}),
    ("identity.presentation.accepted", "contributor:3", "", {"types": ["PersonhoodCredential"]}),
]


@pytest.fixture
def make_log() -> Any:
    """`make_log(n, actor=None)` appends n events (each in its own transaction) and returns them."""
    from audit.services import audit_record

    def make(n: int, actor: Any = None) -> list[Any]:
        out = []
        for i in range(n):
            action, subject, dataset, payload = ACTIONS[i % len(ACTIONS)]
            out.append(
                audit_record(
                    action=action,
                    actor=actor,
                    subject=subject,
                    dataset=dataset,
                    payload={**payload, "n": i},
                )
            )
        return out

    return make


def tamper(sql: str, params: Any = ()) -> None:
    """Run SQL with the append-only triggers off, as someone with database access could."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def offline_verify() -> Any:
    """Export the log and run the standalone verifier over it, as an auditor would."""
    data = b"".join(export_lines())
    return verify_export(io.BytesIO(data), keys.public_key_pem().encode())
