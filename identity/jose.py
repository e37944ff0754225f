"""JOSE for identity: JWS, JWE, JWKs, key DIDs and X.509 chains, over jwcrypto and cryptography.

The one place that touches those libraries, so the rules live in one place too:

- Signatures are checked only with an algorithm from `SIGNING_ALGORITHMS`, and only when the
  key's type and curve are the ones that algorithm needs: `none` and every symmetric (`HS*`)
  algorithm are refused before any key is touched, so an HS256 token "signed" with an issuer's
  public key never reaches a MAC check.
- Encrypted responses (OpenID4VP `direct_post.jwt`) are ECDH-ES with A128GCM or A256GCM only.
- Keys named by a DID are resolved here without a network: `did:jwk` and `did:key` (Ed25519 and
  P-256). Other DID methods are unsupported.
- An X.509 chain (`x5c`) is checked link by link (signature, validity, CA constraints) up to a
  certificate we were told to trust; there is no system trust store involved.

Errors are `JoseError` with a short `code` and a message that quotes no claim value.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

# Asymmetric signature algorithms we accept, each with the key it needs (kty, crv).
SIGNING_ALGORITHMS: dict[str, tuple[str, str]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
    "Ed25519": ("OKP", "Ed25519"),
}
ENCRYPTION_ALGORITHMS = ("ECDH-ES",)
CONTENT_ENCRYPTIONS = ("A128GCM", "A256GCM")
# A JWS or JWE larger than this is not something a wallet or issuer sends us.
MAX_TOKEN_CHARS = 48 * 1024


class JoseError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- base64url and compact JWS ----------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or any(c in text for c in "+/= \n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_json(text: str) -> Any:
    try:
        return json.loads(b64url_decode(text))
    except RecursionError as exc:  # absurdly nested JSON is malformed input, not a crash
        raise ValueError("JSON nested too deeply") from exc


def epoch(value: Any) -> datetime | None:
    """A JWT NumericDate as a datetime, or None when it is not a usable number."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def digest_b64(text: str) -> str:
    """base64url(SHA-256(ASCII text)): SD-JWT disclosure digests and `sd_hash`."""
    return b64url_encode(hashlib.sha256(text.encode("ascii")).digest())


@dataclass(frozen=True)
class Compact:
    """A compact JWS taken apart (nothing verified yet)."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]


def jws_decode(token: Any, what: str) -> Compact:
    """Header and claims of a compact JWS, for structural checks before the signature."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise JoseError("malformed", f"{what} is not a compact JWS of a sensible size")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise JoseError("malformed", f"{what} is not a compact JWS")
    try:
        header = b64url_json(parts[0])
        claims = b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JoseError("malformed", f"{what} is not a well-formed JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("malformed", f"{what} is not a well-formed JWT")
    return Compact(token=token, header=header, claims=claims)


def algorithm_check(header: dict[str, Any], what: str) -> str:
    algorithm = header.get("alg")
    if algorithm not in SIGNING_ALGORITHMS:
        raise JoseError(
            "alg_not_allowed",
            f"{what} is signed with {algorithm!r}, which is not allowed "
            f"(allowed: {', '.join(a for a in SIGNING_ALGORITHMS if a != 'Ed25519')})",
        )
    if "crit" in header:
        raise JoseError("malformed", f"{what} has critical header parameters we do not support")
    return str(algorithm)


@lru_cache(maxsize=4096)
def _key(jwk_json: str) -> jwk.JWK:
    return jwk.JWK.from_json(jwk_json)


def key_load(key: dict[str, Any]) -> jwk.JWK:
    try:
        return _key(json.dumps(key, sort_keys=True))
    except (JWException, ValueError, TypeError) as exc:
        raise JoseError("bad_key", "a key is not a usable JWK") from exc


def public_jwk(key: dict[str, Any]) -> dict[str, Any]:
    """The public members of a JWK (kty, crv, x, y), in a stable order."""
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}.get(str(key.get("kty")))
    if members is None or not all(isinstance(key.get(m), str) for m in members):
        raise JoseError("bad_key", "a key is not an EC or OKP public key")
    return {m: key[m] for m in members}


def thumbprint(key: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


_HASHES: dict[str, hashes.HashAlgorithm] = {
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "ES512": hashes.SHA512(),
}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}


@lru_cache(maxsize=4096)
def _public_key(
    kty: str, crv: str, x: str, y: str
) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    if kty == "OKP" and crv == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(x))
    curve, size = _CURVES[crv]
    x_bytes, y_bytes = b64url_decode(x), b64url_decode(y)
    if len(x_bytes) != size or len(y_bytes) != size:
        raise ValueError("coordinates of the wrong length")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x_bytes, "big"), int.from_bytes(y_bytes, "big"), curve()
    )
    return numbers.public_key()  # checks that the point is on the curve


def jws_verify(compact: Compact, key: dict[str, Any], what: str) -> None:
    """Check a JWS signature with `key` under our algorithm allow-list; raises JoseError.

    The algorithm comes from our allow-list and must match the key's type and curve; the
    signature is then checked by `cryptography` directly (ECDSA over the raw r||s of RFC 7518,
    or Ed25519), which is several times cheaper than building a jwcrypto JWS per check."""
    algorithm = algorithm_check(compact.header, what)
    kty, crv = SIGNING_ALGORITHMS[algorithm]
    if key.get("kty") != kty or key.get("crv") != crv:
        raise JoseError(
            "wrong_key_type",
            f"{what} uses {algorithm}, which its key (a {key.get('kty')} key) cannot make",
        )
    head, payload, signature_b64 = compact.token.split(".")
    signing_input = f"{head}.{payload}".encode("ascii")
    try:
        public = _public_key(kty, crv, str(key.get("x")), str(key.get("y", "")))
        signature = b64url_decode(signature_b64)
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, signing_input)
        else:
            size = _CURVES[crv][1]
            if len(signature) != 2 * size:
                raise InvalidSignature()
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(_HASHES[algorithm]))
    except (InvalidSignature, ValueError, TypeError, UnicodeEncodeError) as exc:
        raise JoseError("bad_signature", f"{what}'s signature does not verify") from exc


def jws_sign(claims: dict[str, Any], key: dict[str, Any], *, header: dict[str, Any]) -> str:
    """A compact JWS of `claims` (JSON) with `key`; `header` must name the algorithm."""
    algorithm_check(header, "a token to sign")
    signer = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
    signer.add_signature(key_load(key), alg=header["alg"], protected=json.dumps(header))
    return str(signer.serialize(compact=True))


def unsigned_jwt(claims: dict[str, Any], *, header: dict[str, Any]) -> str:
    """An unsecured JWT (`alg: none`): only for what the spec says cannot be signed."""
    return (
        b64url_encode(json.dumps({**header, "alg": "none"}).encode())
        + "."
        + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        + "."
    )


# --- keys -------------------------------------------------------------------------------------


def key_generate(*, algorithm: str = "ES256") -> dict[str, Any]:
    """A new private JWK for a signature algorithm (or ECDH-ES on P-256)."""
    if algorithm in ("ES256", "ECDH-ES"):
        key = jwk.JWK.generate(kty="EC", crv="P-256")
    elif algorithm == "ES384":
        key = jwk.JWK.generate(kty="EC", crv="P-384")
    elif algorithm in ("EdDSA", "Ed25519"):
        key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    else:
        raise ValueError(f"cannot make a key for {algorithm}")
    return dict(json.loads(key.export_private()))


def algorithm_for(key: dict[str, Any]) -> str:
    for algorithm, (kty, crv) in SIGNING_ALGORITHMS.items():
        if key.get("kty") == kty and key.get("crv") == crv:
            return algorithm
    raise JoseError("bad_key", "no allowed algorithm signs with this key")


# --- DIDs for keys ----------------------------------------------------------------------------

_MULTICODEC_ED25519 = b"\xed\x01"
_MULTICODEC_P256 = b"\x80\x24"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _BASE58.find(char)
        if index < 0:
            raise ValueError("not base58")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def did_jwk(key: dict[str, Any]) -> str:
    """did:jwk of a key's public part."""
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return "did:jwk:" + b64url_encode(canonical.encode())


@lru_cache(maxsize=4096)
def _did_key_jwk(did: str) -> str:
    method, _, identifier = did.partition(":")[2].partition(":")
    if method == "jwk":
        key = json.loads(b64url_decode(identifier))
        if not isinstance(key, dict) or "d" in key:
            raise ValueError("not a public JWK")
        return json.dumps(public_jwk(key))
    if method == "key" and identifier.startswith("z"):
        raw = _base58_decode(identifier[1:])
        if raw[:2] == _MULTICODEC_ED25519 and len(raw) == 34:
            return json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw[2:])})
        if raw[:2] == _MULTICODEC_P256 and len(raw) == 35:
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[2:])
            numbers = point.public_numbers()
            return json.dumps(
                {
                    "crv": "P-256",
                    "kty": "EC",
                    "x": b64url_encode(numbers.x.to_bytes(32, "big")),
                    "y": b64url_encode(numbers.y.to_bytes(32, "big")),
                }
            )
    raise ValueError("unsupported DID")


def did_key_resolve(did_url: str) -> dict[str, Any]:
    """The public JWK behind a did:jwk or did:key (optionally with a #fragment)."""
    did, _, fragment = str(did_url).partition("#")
    parts = did.split(":")
    if len(parts) != 3 or parts[0] != "did" or parts[1] not in ("jwk", "key"):
        raise JoseError(
            "unsupported_did_method",
            "only did:jwk and did:key name a key we can resolve without a network",
        )
    try:
        key = json.loads(_did_key_jwk(did))
    except (ValueError, TypeError, JoseError) as exc:
        raise JoseError("unresolvable_did", "the DID does not encode a usable key") from exc
    if fragment and fragment not in ("0", parts[2]):
        raise JoseError("unresolvable_did", "the DID has no verification method by that id")
    return dict(key)


# --- JWE (encrypted OpenID4VP responses) ------------------------------------------------------


def jwe_encrypt(payload: bytes, key: dict[str, Any], *, enc: str = "A128GCM") -> str:
    if enc not in CONTENT_ENCRYPTIONS:
        raise JoseError("enc_not_allowed", f"content encryption {enc!r} is not allowed")
    header: dict[str, Any] = {"alg": "ECDH-ES", "enc": enc}
    if key.get("kid"):
        header["kid"] = key["kid"]
    token = jwe.JWE(payload, protected=json.dumps(header))
    token.add_recipient(key_load(public_jwk(key)))
    return str(token.serialize(compact=True))


def jwe_decrypt(token: Any, key: dict[str, Any]) -> bytes:
    """Decrypt a compact JWE made for `key` (ECDH-ES + A128GCM/A256GCM only)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS * 2 or token.count(".") != 4:
        raise JoseError("malformed", "the encrypted response is not a compact JWE")
    try:
        header = b64url_json(token.split(".", 1)[0])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JoseError("malformed", "the encrypted response is not a compact JWE") from exc
    if not isinstance(header, dict):
        raise JoseError("malformed", "the encrypted response is not a compact JWE")
    if header.get("alg") not in ENCRYPTION_ALGORITHMS:
        raise JoseError(
            "alg_not_allowed", f"responses encrypted with {header.get('alg')!r} are refused"
        )
    if header.get("enc") not in CONTENT_ENCRYPTIONS:
        raise JoseError(
            "enc_not_allowed", f"responses encrypted with {header.get('enc')!r} are refused"
        )
    if key.get("kid") and header.get("kid") not in (None, key["kid"]):
        raise JoseError("wrong_key", "the response was encrypted to another key")
    decrypter = jwe.JWE()
    decrypter.allowed_algs = [*ENCRYPTION_ALGORITHMS, *CONTENT_ENCRYPTIONS]
    try:
        decrypter.deserialize(token, key=key_load(key))
    except (JWException, ValueError, TypeError) as exc:
        raise JoseError(
            "undecryptable", "the encrypted response cannot be decrypted with our key"
        ) from exc
    return bytes(decrypter.payload)


# --- X.509 --------------------------------------------------------------------------------------


def certificate_load(text: str | bytes) -> x509.Certificate:
    data = text.encode() if isinstance(text, str) else text
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise JoseError("bad_certificate", "not an X.509 certificate") from exc


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def certificate_x5c(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def certificate_hash(certificate: x509.Certificate) -> str:
    """base64url SHA-256 of the DER certificate (OpenID4VP's x509_hash)."""
    return b64url_encode(
        hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    )


def certificate_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    """The dNSName and uniformResourceIdentifier SAN entries."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        [str(n) for n in san.get_values_for_type(x509.DNSName)],
        [str(n) for n in san.get_values_for_type(x509.UniformResourceIdentifier)],
    )


def certificate_jwk(certificate: x509.Certificate) -> dict[str, Any]:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise JoseError("bad_certificate", "the certificate's key is not an EC or Ed25519 key")
    exported = jwk.JWK.from_pyca(key).export_public()
    return public_jwk(json.loads(exported))


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.ca)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def x5c_chain_verify(
    x5c: Any, anchors: Iterable[x509.Certificate], *, now: datetime | None = None
) -> tuple[x509.Certificate, x509.Certificate]:
    """Check an `x5c` chain up to one of `anchors`; returns (leaf, the anchor it chains to).

    Every certificate must be within its validity period, every issuer a CA, every link signed
    by the next; the last certificate must be an anchor or be issued by one.
    """
    if not isinstance(x5c, list) or not x5c or len(x5c) > 5:
        raise JoseError("bad_certificate", "x5c is not a list of one to five certificates")
    try:
        chain = [
            x509.load_der_x509_certificate(base64.b64decode(str(c), validate=True)) for c in x5c
        ]
    except (ValueError, TypeError) as exc:
        raise JoseError("bad_certificate", "x5c holds something that is not a certificate") from exc
    moment = now or datetime.now(UTC)
    for certificate in chain:
        if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
            raise JoseError(
                "bad_certificate", "a certificate in x5c is outside its validity period"
            )
    for child, parent in zip(chain, chain[1:], strict=False):
        if not _is_ca(parent) or not _issued_by(child, parent):
            raise JoseError("bad_certificate", "the x5c chain is broken")
    last = chain[-1]
    for anchor in anchors:
        if not anchor.not_valid_before_utc <= moment <= anchor.not_valid_after_utc:
            continue
        if last == anchor or (_is_ca(anchor) and _issued_by(last, anchor)):
            return chain[0], anchor
    raise JoseError("untrusted_certificate", "the x5c chain does not lead to a trusted certificate")
