"""The onboarding policy (what a contributor must show) and the verifier's own keys.

Settings (Django settings first, then the environment, then the default):

| name | meaning | default |
| --- | --- | --- |
| `CLEANROOM_ONBOARDING_CREDENTIAL` | W3C credential type onboarding asks for | `PersonhoodCredential` |
| `CLEANROOM_ONBOARDING_VCTS` | SD-JWT VC types accepted (comma-separated) | `urn:eudi:pid:1` |
| `CLEANROOM_ONBOARDING_CLAIMS` | claims an SD-JWT VC must disclose as `true` (dotted paths) | `age_equal_or_over.18` |
| `CLEANROOM_ONBOARDING_FORMATS` | presentation formats onboarding accepts | `dc+sd-jwt,ldp_vp,jwt_vp` |
| `CLEANROOM_VERIFIER_CLIENT_ID_PREFIX` | `decentralized_identifier`, `x509_san_dns` or `redirect_uri` | `decentralized_identifier` |
| `CLEANROOM_VERIFIER_KEY_FILE` | the verifier's P-256 signing key (JWK), made on first use | `var/verifier-key.json` |
| `CLEANROOM_VERIFIER_CERTIFICATE_FILE` | PEM chain for `x509_san_dns` (leaf first) | self-signed, `var/verifier-cert.pem` |
| `CLEANROOM_OPENID4VP_RESPONSE_MODE` | response mode of the join page | `direct_post` |

The policy asks for the least that proves what onboarding needs: by default an age predicate
(`age_equal_or_over.18`) from a PID-like SD-JWT VC, never the birth date.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from django.conf import settings
from jwcrypto import jwk

from identity import jose

FORMATS = ("dc+sd-jwt", "ldp_vp", "jwt_vp")
# The DCQL credential format each presentation format answers.
DCQL_FORMATS = {"dc+sd-jwt": "dc+sd-jwt", "ldp_vp": "ldp_vc", "jwt_vp": "jwt_vc_json"}
CLIENT_ID_PREFIXES = ("decentralized_identifier", "x509_san_dns", "redirect_uri")
RESPONSE_MODES = ("direct_post", "direct_post.jwt")


def setting(name: str, default: str) -> str:
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, default)
    return str(value)


def _listed(name: str, default: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in setting(name, default).split(",") if v.strip())


@dataclass(frozen=True)
class Policy:
    credential_type: str
    vcts: tuple[str, ...]
    required_claims: tuple[tuple[str, ...], ...]
    formats: tuple[str, ...]


def policy() -> Policy:
    formats = tuple(
        f for f in _listed("CLEANROOM_ONBOARDING_FORMATS", ",".join(FORMATS)) if f in FORMATS
    )
    return Policy(
        credential_type=settings.CLEANROOM_ONBOARDING_CREDENTIAL,
        vcts=_listed("CLEANROOM_ONBOARDING_VCTS", "urn:eudi:pid:1"),
        required_claims=tuple(
            tuple(c.split("."))
            for c in _listed("CLEANROOM_ONBOARDING_CLAIMS", "age_equal_or_over.18")
        ),
        formats=formats or FORMATS,
    )


def dcql_query(
    *, formats: tuple[str, ...], policy: Policy, w3c_issuers: list[str], sd_jwt_vcts: list[str]
) -> dict[str, Any]:
    """OpenID4VP 1.0 DCQL for onboarding: one credential query per format, any one of them.

    DCQL defines no trusted-authority type for DIDs or issuer URLs; W3C queries list the
    trusted issuer DIDs under the type "did" (a hint for our wallet, which others ignore).
    SD-JWT VC queries ask for exactly the required claims with the value `true`.
    """
    credentials: list[dict[str, Any]] = []
    type_values = [["VerifiableCredential", policy.credential_type]]
    if "dc+sd-jwt" in formats:
        vcts = [v for v in policy.vcts if v in sd_jwt_vcts] or list(policy.vcts)
        credentials.append(
            {
                "id": "onboarding_sd_jwt",
                "format": "dc+sd-jwt",
                "meta": {"vct_values": vcts},
                "claims": [
                    {"id": "_".join(path), "path": list(path), "values": [True]}
                    for path in policy.required_claims
                ],
            }
        )
    for presentation_format, query_id in (
        ("ldp_vp", "onboarding_ldp"),
        ("jwt_vp", "onboarding_jwt"),
    ):
        if presentation_format in formats:
            credentials.append(
                {
                    "id": query_id,
                    "format": DCQL_FORMATS[presentation_format],
                    "meta": {"type_values": type_values},
                    # Empty when no issuer is trusted yet: our wallet then offers nothing.
                    "trusted_authorities": [{"type": "did", "values": w3c_issuers}],
                }
            )
    return {
        "credentials": credentials,
        "credential_sets": [{"options": [[c["id"]] for c in credentials], "required": True}],
    }


# --- the verifier's keys ------------------------------------------------------------------------

_lock = threading.Lock()


def _var() -> Path:
    return Path(settings.VAR_DIR)


def _write_once(path: Path, text: str) -> None:
    """Create `path` with `text` unless another process did first (then keep theirs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def verifier_key() -> dict[str, Any]:
    """The verifier's private P-256 key (signs request objects)."""
    path = Path(setting("CLEANROOM_VERIFIER_KEY_FILE", str(_var() / "verifier-key.json")))
    with _lock:
        if not path.exists():
            _write_once(path, json.dumps(jose.key_generate(algorithm="ES256")))
        key = json.loads(path.read_text())
    if not isinstance(key, dict) or key.get("crv") != "P-256" or "d" not in key:
        raise RuntimeError(f"{path} does not hold a private P-256 JWK")
    return dict(key)


def verifier_did() -> str:
    return jose.did_jwk(verifier_key())


def origin_host() -> str:
    return urlsplit(settings.CLEANROOM_ORIGIN).hostname or "localhost"


def verifier_certificates() -> list[x509.Certificate]:
    """The verifier's certificate chain for x509_san_dns (leaf first)."""
    configured = setting("CLEANROOM_VERIFIER_CERTIFICATE_FILE", "")
    if configured:
        data = Path(configured).read_bytes()
        return x509.load_pem_x509_certificates(data)
    path = _var() / "verifier-cert.pem"
    host = origin_host()
    if path.exists():
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        names, _ = jose.certificate_names(certificate)
        if host in names and certificate.not_valid_after_utc > dt.datetime.now(
            dt.UTC
        ) + dt.timedelta(days=1):
            return [certificate]
    key = jwk.JWK(**verifier_key()).get_op_key("sign")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_text(jose.certificate_pem(certificate))
    return [certificate]


def client_id_prefix() -> str:
    prefix = setting("CLEANROOM_VERIFIER_CLIENT_ID_PREFIX", "decentralized_identifier")
    if prefix not in CLIENT_ID_PREFIXES:
        raise RuntimeError(
            f"CLEANROOM_VERIFIER_CLIENT_ID_PREFIX must be one of {', '.join(CLIENT_ID_PREFIXES)}"
        )
    return prefix


def client_id(*, response_uri: str, prefix: str | None = None) -> str:
    """The verifier's OpenID4VP client_id (the KB-JWT `aud`), with its prefix."""
    prefix = prefix or client_id_prefix()
    if prefix == "decentralized_identifier":
        return f"decentralized_identifier:{verifier_did()}"
    if prefix == "x509_san_dns":
        return f"x509_san_dns:{origin_host()}"
    return f"redirect_uri:{response_uri}"


def response_mode_default() -> str:
    mode = setting("CLEANROOM_OPENID4VP_RESPONSE_MODE", "direct_post")
    return mode if mode in RESPONSE_MODES else "direct_post"
