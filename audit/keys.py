"""The service's Ed25519 audit key: read from settings.CLEANROOM_AUDIT_KEY_FILE, made on first use.

The private key never leaves the file (mode 0600). The public key PEM is what auditors are
given, out of band, to check checkpoints with `python -m audit.verify`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from Crypto.PublicKey import ECC
from django.conf import settings

from audit import chain


def _key_path() -> Path:
    return Path(settings.CLEANROOM_AUDIT_KEY_FILE)


@lru_cache(maxsize=4)
def _load(path: str) -> Any:
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        pem = ECC.generate(curve="ed25519").export_key(format="PEM")
        try:
            # O_EXCL: when two processes start at once, exactly one key is written.
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
    key = ECC.import_key(file.read_text())
    if not key.has_private():
        raise RuntimeError(f"{file} holds no private key")
    return key


def signing_key() -> Any:
    return _load(str(_key_path()))


def public_key() -> Any:
    return signing_key().public_key()


def public_key_pem() -> str:
    return str(public_key().export_key(format="PEM")) + "\n"


def current_key_id() -> str:
    return chain.key_id(public_key())
