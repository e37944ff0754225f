"""SD-JWT (RFC 9901): taking a presentation apart, resolving disclosures, key binding; and the
issuer's and holder's side for our own CLIs. No Django here, and no trust decisions: which key
may sign, which `vct` is wanted and what the status is are `identity.sd_jwt_vc`'s.

Rules enforced while resolving disclosures (each refusal has a code):

- every disclosure is well-formed base64url JSON: `[salt, name, value]` for an object property,
  `[salt, value]` for an array element; a name is never `_sd`, `_sd_alg` or `...`;
- `duplicate_disclosure`: the same disclosure twice (same digest), or one digest referenced
  twice in the payload;
- `unreferenced_disclosure`: a disclosure whose digest is not in any `_sd` array or `...` entry
  reachable from the payload (or from disclosed values);
- a disclosed name may not overwrite a claim that is already there;
- `_sd_alg`, when present, is `sha-256` (the only one supported here);
- limits on the number of disclosures and on nesting, so a presentation cannot make us work
  without bound.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from identity import jose

SEPARATOR = "~"
MAX_DISCLOSURES = 100
MAX_DEPTH = 16
KB_TYP = "kb+jwt"
HASH_ALGORITHM = "sha-256"
RESERVED_NAMES = ("_sd", "...", "_sd_alg")


class SdJwtError(jose.JoseError):
    """A presentation that is not a valid SD-JWT; `code` names the rule."""


@dataclass(frozen=True)
class Presentation:
    """An SD-JWT presentation taken apart; nothing verified yet."""

    issuer_jwt: jose.Compact
    disclosures: tuple[str, ...]
    kb_jwt: str  # "" when the presentation has no key binding

    @property
    def sd_hash_input(self) -> str:
        """What the KB-JWT's `sd_hash` is a hash of: everything before the KB-JWT."""
        return SEPARATOR.join((self.issuer_jwt.token, *self.disclosures, ""))


def looks_like_sd_jwt(value: Any) -> bool:
    return isinstance(value, str) and SEPARATOR in value and value.count(".") >= 2


def parse(text: Any) -> Presentation:
    if not isinstance(text, str) or SEPARATOR not in text:
        raise SdJwtError("malformed", "the presentation is not an SD-JWT (no ~ separators)")
    parts = text.strip().split(SEPARATOR)
    if len(parts) - 2 > MAX_DISCLOSURES:
        raise SdJwtError("too_large", f"the SD-JWT holds more than {MAX_DISCLOSURES} disclosures")
    issuer_jwt = jose.jws_decode(parts[0], "the issuer-signed JWT")
    disclosures = tuple(parts[1:-1])
    if any(not d for d in disclosures):
        raise SdJwtError("malformed", "the SD-JWT has an empty disclosure")
    return Presentation(issuer_jwt=issuer_jwt, disclosures=disclosures, kb_jwt=parts[-1])


@dataclass(frozen=True)
class _Disclosure:
    digest: str
    name: str | None  # None for an array element
    value: Any


def _disclosure_decode(text: str) -> _Disclosure:
    try:
        decoded = jose.b64url_json(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SdJwtError("malformed_disclosure", "a disclosure is not base64url JSON") from exc
    if not isinstance(decoded, list) or len(decoded) not in (2, 3):
        raise SdJwtError("malformed_disclosure", "a disclosure is not a 2- or 3-element array")
    if not isinstance(decoded[0], str):
        raise SdJwtError("malformed_disclosure", "a disclosure's salt is not a string")
    if len(decoded) == 3:
        if not isinstance(decoded[1], str) or decoded[1] in RESERVED_NAMES:
            raise SdJwtError(
                "malformed_disclosure", "a disclosure names a reserved or non-string claim"
            )
        return _Disclosure(jose.digest_b64(text), decoded[1], decoded[2])
    return _Disclosure(jose.digest_b64(text), None, decoded[1])


def claims_resolve(payload: dict[str, Any], disclosures: Iterable[str]) -> dict[str, Any]:
    """The payload with every disclosure put back in place (RFC 9901 section 7.1)."""
    if payload.get("_sd_alg", HASH_ALGORITHM) != HASH_ALGORITHM:
        raise SdJwtError(
            "unsupported_hash",
            f"_sd_alg {payload.get('_sd_alg')!r} is unsupported (only sha-256)",
        )
    by_digest: dict[str, _Disclosure] = {}
    for text in disclosures:
        disclosure = _disclosure_decode(text)
        if disclosure.digest in by_digest:
            raise SdJwtError("duplicate_disclosure", "the same disclosure is presented twice")
        by_digest[disclosure.digest] = disclosure
    seen: set[str] = set()

    def use(digest: Any) -> _Disclosure | None:
        if not isinstance(digest, str):
            raise SdJwtError("malformed", "a digest in the SD-JWT is not a string")
        if digest in seen:
            raise SdJwtError("duplicate_disclosure", "a digest is referenced twice in the SD-JWT")
        seen.add(digest)
        return by_digest.get(digest)

    def resolve(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SdJwtError("malformed", "the SD-JWT is nested too deeply")
        if isinstance(value, list):
            out: list[Any] = []
            for item in value:
                if isinstance(item, dict) and "..." in item:
                    if len(item) != 1:
                        raise SdJwtError("malformed", "an array digest entry has other members")
                    found = use(item["..."])
                    if found is not None:
                        if found.name is not None:
                            raise SdJwtError(
                                "malformed_disclosure", "an object disclosure is used in an array"
                            )
                        out.append(resolve(found.value, depth + 1))
                else:
                    out.append(resolve(item, depth + 1))
            return out
        if isinstance(value, dict):
            digests = value.get("_sd", [])
            if not isinstance(digests, list):
                raise SdJwtError("malformed", "an _sd member is not an array")
            result = {
                k: resolve(v, depth + 1) for k, v in value.items() if k not in ("_sd", "_sd_alg")
            }
            for digest in digests:
                found = use(digest)
                if found is None:
                    continue
                if found.name is None:
                    raise SdJwtError(
                        "malformed_disclosure", "an array disclosure is used in an object"
                    )
                if found.name in result:
                    raise SdJwtError(
                        "malformed_disclosure", "a disclosure would overwrite a claim already there"
                    )
                result[found.name] = resolve(found.value, depth + 1)
            return result
        return value

    resolved = resolve(payload, 0)
    if set(by_digest) - seen:
        raise SdJwtError(
            "unreferenced_disclosure", "a disclosure is not referenced by the issuer-signed JWT"
        )
    return dict(resolved)


# --- key binding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyBindingExpectation:
    nonce: str
    audience: str
    now: datetime
    max_age: timedelta
    clock_skew: timedelta


def key_binding_check(
    presentation: Presentation, holder_key: dict[str, Any], expected: KeyBindingExpectation
) -> dict[str, Any]:
    """Check the KB-JWT: typ, signature by the `cnf` key, nonce, aud, iat and sd_hash."""
    if not presentation.kb_jwt:
        raise SdJwtError("no_key_binding", "the presentation has no key binding JWT")
    kb = jose.jws_decode(presentation.kb_jwt, "the key binding JWT")
    if kb.header.get("typ") != KB_TYP:
        raise SdJwtError("wrong_kb_typ", "the key binding JWT's typ is not kb+jwt")
    try:
        jose.jws_verify(kb, holder_key, "the key binding JWT")
    except jose.JoseError as exc:
        code = "kb_alg_not_allowed" if exc.code == "alg_not_allowed" else "kb_bad_signature"
        raise SdJwtError(code, f"{exc.message} (it must be signed by the key in cnf)") from exc
    claims = kb.claims
    if claims.get("nonce") != expected.nonce:
        raise SdJwtError("wrong_nonce", "the key binding JWT was not made for this request (nonce)")
    if claims.get("aud") != expected.audience:
        raise SdJwtError(
            "wrong_audience",
            f"the key binding JWT was made for another verifier (aud must be {expected.audience})",
        )
    moment = jose.epoch(claims.get("iat"))
    if moment is None:
        raise SdJwtError("kb_no_iat", "the key binding JWT has no numeric iat")
    if moment > expected.now + expected.clock_skew:
        raise SdJwtError("kb_iat_future", "the key binding JWT is dated in the future")
    if moment < expected.now - expected.max_age:
        raise SdJwtError("kb_too_old", "the key binding JWT is too old (iat)")
    if claims.get("sd_hash") != jose.digest_b64(presentation.sd_hash_input):
        raise SdJwtError(
            "wrong_sd_hash", "the key binding JWT does not cover these disclosures (sd_hash)"
        )
    return claims


# --- issuing and presenting (our issuer and wallet) ---------------------------------------------


def _salt() -> str:
    return jose.b64url_encode(secrets.token_bytes(16))


def disclosure_make(name: str | None, value: Any) -> str:
    item = [_salt(), value] if name is None else [_salt(), name, value]
    return jose.b64url_encode(json.dumps(item, ensure_ascii=False).encode())


def issue(
    *,
    claims: dict[str, Any],
    selectively_disclosable: Callable[[tuple[str, ...]], bool],
    key: dict[str, Any],
    header: dict[str, Any],
    decoys: int = 0,
) -> str:
    """An SD-JWT (issuance form, ending in ~): object members whose path `selectively_disclosable`
    accepts become disclosures, recursively (a disclosable object's own members may be too)."""
    disclosures: list[str] = []

    def conceal(value: Any, path: tuple[str, ...]) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        digests: list[str] = []
        for name, member in value.items():
            inner = conceal(member, (*path, name))
            if selectively_disclosable((*path, name)):
                disclosure = disclosure_make(name, inner)
                disclosures.append(disclosure)
                digests.append(jose.digest_b64(disclosure))
            else:
                out[name] = inner
        if path == () and decoys:
            digests.extend(jose.b64url_encode(secrets.token_bytes(32)) for _ in range(decoys))
        if digests:
            out["_sd"] = sorted(digests)
        return out

    payload = conceal(claims, ())
    payload["_sd_alg"] = HASH_ALGORITHM
    token = jose.jws_sign(payload, key, header=header)
    return SEPARATOR.join((token, *disclosures, ""))


def disclosure_paths(issued: str) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Each disclosure of an issued SD-JWT with the claim path it reveals and its value."""
    presentation = parse(issued)
    decoded = {jose.digest_b64(d): (d, _disclosure_decode(d)) for d in presentation.disclosures}
    found: dict[str, tuple[tuple[str, ...], Any]] = {}

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for digest in value.get("_sd", []):
                if digest in decoded:
                    text, disclosure = decoded[digest]
                    child = (*path, str(disclosure.name))
                    found[text] = (child, disclosure.value)
                    walk(disclosure.value, child)
            for name, member in value.items():
                if name not in ("_sd", "_sd_alg"):
                    walk(member, (*path, name))

    walk(presentation.issuer_jwt.claims, ())
    return found


def present(
    issued: str,
    *,
    paths: Iterable[tuple[str, ...]],
    nonce: str,
    audience: str,
    holder_key: dict[str, Any],
    issued_at: datetime | None = None,
) -> str:
    """A presentation disclosing exactly what `paths` need (each path and its parents)."""
    wanted = {tuple(p) for p in paths}
    chosen: list[str] = []
    for text, (path, _value) in disclosure_paths(issued).items():
        if any(path == w[: len(path)] for w in wanted):
            chosen.append(text)
    token = parse(issued).issuer_jwt.token
    body = SEPARATOR.join((token, *chosen, ""))
    moment = issued_at or datetime.now(UTC)
    kb = jose.jws_sign(
        {
            "nonce": nonce,
            "aud": audience,
            "iat": int(moment.timestamp()),
            "sd_hash": jose.digest_b64(body),
        },
        holder_key,
        header={"alg": jose.algorithm_for(holder_key), "typ": KB_TYP},
    )
    return body + kb


def claims_of(issued: str) -> dict[str, Any]:
    """All claims of an issued SD-JWT (the holder's own view; nothing verified)."""
    presentation = parse(issued)
    return claims_resolve(presentation.issuer_jwt.claims, presentation.disclosures)
