"""What this service publishes for the demo SD-JWT VC issuer: its JWT VC Issuer Metadata and its
Token Status List, read from the issuer's state under var/demo-issuer/ (what `cleanroom-issuer
--dir var/demo-issuer` changes, e.g. a revocation, is served at once).

The verifier reads these two documents in-process when a credential points at them (our own
origin), rather than over HTTP to itself: a single-worker server would otherwise wait on itself,
and the strict fetch policy (HTTPS, public addresses) is for other people's servers.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

METADATA_PATH = "/.well-known/jwt-vc-issuer/demo-issuer"
STATUS_LIST_PATH = "/demo-issuer/status-list"
ISSUER_PATH = "/demo-issuer"


def demo_issuer_dir() -> Path:
    return Path(settings.VAR_DIR) / "demo-issuer"


def demo_issuer_url() -> str:
    return settings.CLEANROOM_ORIGIN.rstrip("/") + ISSUER_PATH


def _issuer():  # type: ignore[no-untyped-def]
    from identity.issuer.core import Issuer

    path = demo_issuer_dir() / "issuer.json"
    if not path.exists():
        return None
    issuer = Issuer.load(path)
    return issuer if issuer.url == demo_issuer_url() else None


def metadata() -> bytes | None:
    issuer = _issuer()
    return json.dumps(issuer.metadata()).encode() if issuer is not None else None


def status_list() -> bytes | None:
    issuer = _issuer()
    if issuer is None or issuer.token_status is None:
        return None
    if issuer.token_status.uri != settings.CLEANROOM_ORIGIN.rstrip("/") + STATUS_LIST_PATH:
        return None
    return str(issuer.token_status_list()).encode()


def local_fetch(url: str) -> bytes | None:
    """The body our own service serves at `url`, when it is one of the demo issuer's."""
    origin = settings.CLEANROOM_ORIGIN.rstrip("/")
    if url == origin + METADATA_PATH:
        return metadata()
    if url == origin + STATUS_LIST_PATH:
        return status_list()
    return None
