"""AES-256-GCM for the pool: data keys wrapped by the key-encryption key (KEK).

Every blob is ``nonce (12 bytes) || ciphertext || tag (16 bytes)`` and is bound
to what it is by associated data (e.g. ``contribution:<dataset>:<contributor>``),
so a blob copied onto another row fails to decrypt instead of being misread.
Keys never leave this module in wrapped form only: callers get raw keys only to
encrypt or decrypt immediately.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

from Crypto.Cipher import AES
from django.conf import settings

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class KeyUnavailable(Exception):
    """No configured KEK can unwrap this key (wrong KEK, rotated away, or tampered)."""


def _decode_kek(value: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("CLEANROOM_KEK must be base64 of 32 random bytes.") from exc
    if len(key) != KEY_BYTES:
        raise ValueError("CLEANROOM_KEK must be base64 of 32 random bytes.")
    return key


def kek_id_of(kek: bytes) -> str:
    """A short public fingerprint telling which KEK wrapped a key (not secret material)."""
    return hashlib.sha256(b"cleanroom-kek-id:" + kek).hexdigest()[:16]


def current_kek() -> tuple[str, bytes]:
    kek = _decode_kek(settings.CLEANROOM_KEK)
    return kek_id_of(kek), kek


def known_keks() -> dict[str, bytes]:
    """The current KEK and the previous ones still accepted for unwrapping."""
    keks = [settings.CLEANROOM_KEK, *getattr(settings, "CLEANROOM_KEK_PREVIOUS", [])]
    out: dict[str, bytes] = {}
    for value in keks:
        if value and value.strip():
            key = _decode_kek(value)
            out.setdefault(kek_id_of(key), key)
    return out


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(aad)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return nonce + ciphertext + tag


def decrypt(key: bytes, blob: bytes | memoryview, aad: bytes) -> bytes:
    """Decrypt and authenticate; raises ValueError if the blob or its context was altered."""
    view = memoryview(blob)  # slices without copying multi-megabyte segments
    if len(view) < NONCE_BYTES + TAG_BYTES:
        raise ValueError("ciphertext too short")
    cipher = AES.new(key, AES.MODE_GCM, nonce=bytes(view[:NONCE_BYTES]))
    cipher.update(aad)
    return cipher.decrypt_and_verify(view[NONCE_BYTES:-TAG_BYTES], bytes(view[-TAG_BYTES:]))


def wrap(key: bytes, aad: bytes) -> tuple[str, bytes]:
    """Wrap a data key with the current KEK: (kek_id, wrapped bytes)."""
    kek_id, kek = current_kek()
    return kek_id, encrypt(kek, key, b"wrap:" + aad)


def unwrap(kek_id: str, wrapped: bytes, aad: bytes) -> bytes:
    kek = known_keks().get(kek_id)
    if kek is None:
        raise KeyUnavailable(f"no configured KEK has id {kek_id}")
    try:
        return decrypt(kek, wrapped, b"wrap:" + aad)
    except ValueError as exc:
        raise KeyUnavailable("the wrapped key does not authenticate") from exc
