"""Demo data of audit for `manage.py seed_demo`: sign a checkpoint over everything the other
demo seeds recorded, and leave the public key where the offline verifier can find it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from audit.keys import public_key_pem
from audit.selectors import log_verify
from audit.services import checkpoint_create


def seed(*, stdout: Any = None) -> list[str]:
    checkpoint = checkpoint_create()
    key_path = Path(settings.VAR_DIR) / "audit_public_key.pem"
    key_path.write_text(public_key_pem())
    report = log_verify()
    if checkpoint is None:
        return ["Audit log: empty, nothing signed yet."]
    export_path = Path(settings.VAR_DIR) / "audit-export.jsonl"
    return [
        f"Audit log: {report.entries} entries, {'verifies' if report.ok else 'DOES NOT VERIFY'}; "
        f"checkpoint {checkpoint.tree_size} signed by key {checkpoint.key_id}.",
        f"  Verify offline: python manage.py audit_export --out {export_path} && "
        f"python -m audit.verify {export_path} --key {key_path}",
    ]
