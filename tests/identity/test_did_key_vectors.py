"""The published did:key test vectors (w3c-ccg/did-method-key) resolve to their keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from identity import vc

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + ALPHABET.index(char)
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return bytes(len(text) - len(text.lstrip("1"))) + raw


def b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load(name: str) -> dict:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return json.loads(path.read_text())


def the_key(did: str) -> dict:
    document = vc.did_resolve(did)
    assert document["id"] == did
    methods = document["verificationMethod"]
    assert len(methods) == 1 and methods[0]["controller"] == did
    assert (
        methods[0]["id"] in document["authentication"]
        and methods[0]["id"] in document["assertionMethod"]
    )
    return methods[0]["publicKeyJwk"]


def resolved_key_bytes(jwk: dict) -> bytes:
    """The public key as the vectors write it: raw for Ed25519, compressed point for EC."""
    x = b64u(jwk["x"])
    if jwk["kty"] == "OKP":
        return x
    return bytes([2 + (b64u(jwk["y"])[-1] & 1)]) + x


def expected_key_bytes(method: dict) -> bytes:
    if "publicKeyBase58" in method:
        return b58decode(method["publicKeyBase58"])
    return resolved_key_bytes(method["publicKeyJwk"])


@pytest.mark.parametrize(
    ("filename", "prefix", "curve", "count"),
    [
        ("didkey-ed25519-x25519.json", "did:key:z6Mk", "Ed25519", 5),
        ("didkey-secp256k1.json", "did:key:zQ3s", "secp256k1", 6),
        ("didkey-nist-curves.json", "did:key:zDn", "P-256", 3),
    ],
)
def test_vectors_resolve_to_their_keys(filename, prefix, curve, count):
    vectors = {d: v for d, v in load(filename).items() if d.startswith(prefix)}
    assert len(vectors) == count
    for did, vector in vectors.items():
        jwk = the_key(did)
        assert jwk["crv"] == curve
        method = vector.get("verificationKeyPair") or vector["verificationMethod"]
        assert resolved_key_bytes(jwk) == expected_key_bytes(method), did
        if "publicKeyJwk" in method:
            assert (jwk["x"], jwk.get("y")) == (
                method["publicKeyJwk"]["x"],
                method["publicKeyJwk"].get("y"),
            )


def test_p384_and_p521_are_refused_clearly_not_misresolved():
    vectors = [d for d in load("didkey-nist-curves.json") if not d.startswith("did:key:zDn")]
    assert len(vectors) == 4
    for did in vectors:
        with pytest.raises(vc.BackendError, match="could not resolve"):
            vc.did_resolve(did)
