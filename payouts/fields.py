"""Bank details encrypted at rest: AES-256-GCM under a key derived from the KEK.

``EncryptedTextField`` stores ``kek_id (16 ascii) || nonce || ciphertext || tag`` in a
binary column and gives the model a plain ``str`` back. The key is derived from the KEK
that encrypted the value (``sha256("cleanroom-payouts-pii:" || KEK)``), so a rotated KEK
(``CLEANROOM_KEK_PREVIOUS``) still decrypts old rows and new writes use the current one.
The associated data binds a blob to its column (``payouts:<table>.<column>``): a value
copied into another column does not decrypt. The AES-GCM primitives are the pool's
(``cleanroom.datasets.crypto``), imported, not copied. Values are not searchable (every
write has a fresh nonce): nothing filters on them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import models

from cleanroom.datasets.crypto import current_kek, decrypt, encrypt, known_keks

KEK_ID_BYTES = 16


def _key(kek: bytes) -> bytes:
    return hashlib.sha256(b"cleanroom-payouts-pii:" + kek).digest()


def pii_encrypt(value: str, *, aad: str) -> bytes:
    kek_id, kek = current_kek()
    return kek_id.encode("ascii") + encrypt(_key(kek), value.encode("utf-8"), aad.encode())


def pii_decrypt(blob: bytes | memoryview, *, aad: str) -> str:
    """The plaintext; ValueError when no configured KEK fits or the blob was altered."""
    raw = bytes(blob)
    kek = known_keks().get(raw[:KEK_ID_BYTES].decode("ascii", "replace"))
    if kek is None:
        raise ValueError("no configured KEK encrypted this value")
    return decrypt(_key(kek), raw[KEK_ID_BYTES:], aad.encode()).decode("utf-8")


def mask_iban(iban: str) -> str:
    """Only the last four characters: enough for the owner to recognise the account."""
    return f"**** {iban[-4:]}" if iban else ""


class EncryptedTextField(models.BinaryField):
    """A short text (an IBAN, a name) stored encrypted; reads and writes plain ``str``."""

    # What the model attribute holds, for django-stubs (the column holds bytes).
    _pyi_private_set_type: str
    _pyi_private_get_type: str  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def _aad(self) -> str:
        return f"payouts:{self.model._meta.db_table}.{self.column}"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        return pii_decrypt(value, aad=self._aad())

    def to_python(self, value: Any) -> Any:
        return value

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = pii_encrypt(value, aad=self._aad())
        return super().get_db_prep_value(value, connection, prepared)

    def value_to_string(self, obj: Any) -> str:
        return str(self.value_from_object(obj) or "")
