"""A holder wallet: an Ed25519 did:key and a P-256 holder key kept encrypted on disk,
W3C credentials and SD-JWT VCs, and OpenID4VP 1.0 answers.

The keys and credentials are sealed with AES-256-GCM under a key derived from a passphrase
(scrypt); only the DID and the holder key's public part are stored in clear. `present_url`
reads a request object by URL or QR payload, checks it (`identity.wallet.openid4vp`), picks a
credential its DCQL query accepts and answers at its response_uri: an SD-JWT VC discloses only
the claims the query names; a W3C presentation is signed with the nonce as challenge.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt

from identity import jose, sdjwt, vc
from identity.wallet import openid4vp

SCRYPT_N = 2**15
WALLET_FILE = "wallet.json"


class WalletError(Exception):
    """Something the person running the wallet must fix (wrong passphrase, no credential...)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _jwt_claims(token: str) -> dict[str, Any]:
    try:
        segment = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError) as exc:
        raise WalletError("not a JWT credential") from exc
    if not isinstance(data, dict):
        raise WalletError("not a JWT credential")
    return data


@dataclass(frozen=True)
class CredentialSummary:
    number: int
    format: str
    types: list[str]
    issuer: str
    subject: str | None
    expires: str | None


def credential_summary(credential: dict[str, Any] | str, number: int = 0) -> CredentialSummary:
    if sdjwt.looks_like_sd_jwt(credential):
        assert isinstance(credential, str)
        try:
            claims = sdjwt.parse(credential).issuer_jwt.claims
        except jose.JoseError as exc:
            raise WalletError("not an SD-JWT credential") from exc
        holder = (claims.get("cnf") or {}).get("jwk")
        return CredentialSummary(
            number,
            "dc+sd-jwt",
            [str(claims.get("vct"))],
            str(claims.get("iss")),
            jose.did_jwk(holder) if isinstance(holder, dict) else None,
            datetime.fromtimestamp(float(claims["exp"]), UTC).isoformat()
            if isinstance(claims.get("exp"), int | float)
            else None,
        )
    if isinstance(credential, str):
        claims = _jwt_claims(credential)
        body = claims.get("vc") or {}
        expires = (
            datetime.fromtimestamp(float(claims["exp"]), UTC).isoformat()
            if "exp" in claims
            else None
        )
        return CredentialSummary(
            number,
            "jwt_vc_json",
            [t for t in body.get("type", []) if t != "VerifiableCredential"],
            str(claims.get("iss")),
            claims.get("sub"),
            expires,
        )
    issuer = credential.get("issuer")
    issuer = issuer.get("id") if isinstance(issuer, dict) else issuer
    subject = credential.get("credentialSubject")
    types = credential.get("type", [])
    types = [types] if isinstance(types, str) else types
    return CredentialSummary(
        number,
        "ldp_vc",
        [t for t in types if t != "VerifiableCredential"],
        str(issuer),
        subject.get("id") if isinstance(subject, dict) else None,
        credential.get("expirationDate"),
    )


@dataclass
class Wallet:
    key: str
    credentials: list[dict[str, Any] | str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    # P-256 key SD-JWT VCs are bound to (cnf.jwk); made when first needed.
    holder_key: dict[str, Any] | None = None

    @classmethod
    def generate(cls) -> Wallet:
        return cls(key=vc.key_generate(), holder_key=jose.key_generate(algorithm="ES256"))

    @property
    def did(self) -> str:
        return vc.key_did(self.key)

    def holder_signing_key(self) -> dict[str, Any]:
        if self.holder_key is None:
            self.holder_key = jose.key_generate(algorithm="ES256")
        return self.holder_key

    @property
    def holder_jwk(self) -> dict[str, Any]:
        """The public key an issuer binds SD-JWT VCs to (`cleanroom-wallet jwk`)."""
        return jose.public_jwk(self.holder_signing_key())

    def credential_import(self, credential: dict[str, Any] | str) -> CredentialSummary:
        """Keep a credential issued to this wallet's DID (W3C) or holder key (SD-JWT VC)."""
        if isinstance(credential, str):
            credential = credential.strip()
            if credential.startswith("{"):
                credential = json.loads(credential)
        summary = credential_summary(credential)
        mine = jose.did_jwk(self.holder_jwk) if summary.format == "dc+sd-jwt" else self.did
        if summary.subject != mine:
            raise WalletError("This credential was issued to another DID than this wallet's.")
        if credential not in self.credentials:
            self.credentials.append(credential)
        return credential_summary(credential, self.credentials.index(credential) + 1)

    def summaries(self) -> list[CredentialSummary]:
        return [credential_summary(c, n) for n, c in enumerate(self.credentials, start=1)]

    def matching(self, request: dict[str, Any]) -> list[dict[str, Any] | str]:
        """Credentials that a request's DCQL query accepts (type, format, trusted issuer, unexpired)."""
        queries = (request.get("dcql_query") or {}).get("credentials") or []
        now = datetime.now(UTC)
        found: list[dict[str, Any] | str] = []
        for credential in self.credentials:
            summary = credential_summary(credential)
            if (
                summary.expires
                and datetime.fromisoformat(summary.expires.replace("Z", "+00:00")) <= now
            ):
                continue
            for query in queries:
                if query.get("format") != summary.format:
                    continue
                if summary.format == "dc+sd-jwt":
                    if self._sd_jwt_matches(str(credential), summary, query):
                        found.append(credential)
                        break
                    continue
                wanted_types = (query.get("meta") or {}).get("type_values") or []
                if wanted_types and not any(
                    all(t == "VerifiableCredential" or t in summary.types for t in option)
                    for option in wanted_types
                ):
                    continue
                authorities = query.get("trusted_authorities") or []
                allowed = [
                    v for a in authorities if a.get("type") == "did" for v in a.get("values", [])
                ]
                if authorities and summary.issuer not in allowed:
                    continue
                found.append(credential)
                break
        return found

    @staticmethod
    def _sd_jwt_matches(credential: str, summary: CredentialSummary, query: dict[str, Any]) -> bool:
        vcts = (query.get("meta") or {}).get("vct_values") or []
        if vcts and summary.types[0] not in vcts:
            return False
        claims = sdjwt.claims_of(credential)
        for claim in query.get("claims") or []:
            value: Any = claims
            for name in claim.get("path") or []:
                if not isinstance(value, dict) or name not in value:
                    return False
                value = value[name]
            if "values" in claim and value not in claim["values"]:
                return False
        return True

    def answer(self, request: dict[str, Any]) -> dict[str, list[Any]]:
        """An OpenID4VP 1.0 vp_token for the request: {credential query id: [presentation]},
        for the first credential query (in the request's order) this wallet can satisfy."""
        queries = (request.get("dcql_query") or {}).get("credentials") or []
        for query in queries:
            candidates = self.matching({"dcql_query": {"credentials": [query]}})
            if not candidates:
                continue
            credential = candidates[0]
            if query.get("format") == "dc+sd-jwt":
                assert isinstance(credential, str)
                presentation: Any = sdjwt.present(
                    credential,
                    paths=[tuple(c["path"]) for c in query.get("claims") or []],
                    nonce=str(request["nonce"]),
                    audience=str(request["client_id"]),
                    holder_key=self.holder_signing_key(),
                )
            else:
                presentation = self.present(request, credential=credential)
            return {str(query["id"]): [presentation]}
        raise WalletError(
            "This wallet holds no credential the request accepts (type, claims and trusted issuer)."
        )

    def present(
        self, request: dict[str, Any], *, credential: dict[str, Any] | str | None = None
    ) -> dict[str, Any] | str:
        """A signed presentation answering `request` (challenge = nonce, domain = domain)."""
        if credential is None:
            candidates = [c for c in self.matching(request) if not sdjwt.looks_like_sd_jwt(c)]
            if not candidates:
                raise WalletError(
                    "This wallet holds no credential the request accepts (type and trusted issuer)."
                )
            credential = candidates[0]
        jwt = isinstance(credential, str)
        presentation = {
            "@context": ["https://www.w3.org/2018/credentials/v1"],
            "type": ["VerifiablePresentation"],
            "holder": self.did,
            "verifiableCredential": [credential],
        }
        return vc.presentation_issue(
            presentation,
            key=self.key,
            verification_method=vc.key_verification_method(self.key),
            challenge=str(request["nonce"]),
            domain=str(request.get("domain") or request["client_id"]),
            jwt=jwt,
        )

    # -- encrypted storage --------------------------------------------------------------------

    def _secret(self) -> bytes:
        return json.dumps(
            {
                "key": self.key,
                "credentials": self.credentials,
                "tokens": self.tokens,
                "holder_key": self.holder_signing_key(),
            }
        ).encode()

    def save(self, directory: Path, passphrase: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        salt = os.urandom(16)
        derived = scrypt(passphrase.encode(), salt, 32, N=SCRYPT_N, r=8, p=1)  # type: ignore[arg-type]
        cipher = AES.new(derived, AES.MODE_GCM)  # type: ignore[arg-type]
        ciphertext, tag = cipher.encrypt_and_digest(self._secret())
        document = {
            "version": 1,
            "did": self.did,
            "holder_jwk": self.holder_jwk,
            "kdf": {"name": "scrypt", "salt": _b64(salt), "n": SCRYPT_N, "r": 8, "p": 1},
            "cipher": "AES-256-GCM",
            "nonce": _b64(cipher.nonce),
            "ciphertext": _b64(ciphertext),
            "tag": _b64(tag),
        }
        path = directory / WALLET_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path, passphrase: str) -> Wallet:
        path = directory / WALLET_FILE
        if not path.exists():
            raise WalletError(f"No wallet in {directory}: run `cleanroom-wallet init` first.")
        document = json.loads(path.read_text())
        kdf = document["kdf"]
        derived = scrypt(
            passphrase.encode(),
            _unb64(kdf["salt"]),
            32,
            N=int(kdf["n"]),
            r=int(kdf["r"]),
            p=int(kdf["p"]),  # type: ignore[arg-type]
        )
        cipher = AES.new(derived, AES.MODE_GCM, nonce=_unb64(document["nonce"]))  # type: ignore[arg-type]
        try:
            secret = cipher.decrypt_and_verify(
                _unb64(document["ciphertext"]), _unb64(document["tag"])
            )
        except ValueError as exc:
            raise WalletError("Wrong passphrase (or the wallet file was altered).") from exc
        data = json.loads(secret)
        return cls(
            key=data["key"],
            credentials=data.get("credentials", []),
            tokens=data.get("tokens", {}),
            holder_key=data.get("holder_key"),
        )


# --- talking to a verifier -------------------------------------------------------------------

JOIN_PATH = re.compile(r"/join/(?P<id>[0-9a-fA-F-]{36})/?$")


def request_uri_from(url: str) -> str:
    """The request_uri behind what a person pastes: an openid4vp:// link, a portal join link,
    or the request_uri itself."""
    return link_parse(url)[0]


def link_parse(url: str) -> tuple[str, str | None]:
    """(request_uri, client_id or None) of a QR payload, a portal join link or a request_uri."""
    parts = urlsplit(url.strip())
    query = parse_qs(parts.query)
    if "request_uri" in query:
        client_ids = query.get("client_id") or []
        return query["request_uri"][0], client_ids[0] if client_ids else None
    if parts.scheme not in ("http", "https"):
        raise WalletError(f"Cannot read a presentation request from {url!r}.")
    join = JOIN_PATH.search(parts.path)
    if join:
        path = f"/api/v1/identity/presentation-requests/{join.group('id')}/"
        return urlunsplit((parts.scheme, parts.netloc, path, "", "")), None
    return url.strip(), None


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]

    @property
    def verified(self) -> bool:
        return bool(self.body.get("verified"))


def _json_of(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return data if isinstance(data, dict) else {"detail": str(data)}


REQUEST_OBJECT_TYPE = "application/oauth-authz-req+jwt"


def request_fetch(
    url: str, *, client: httpx.Client, trusted_certificates: Sequence[Any] = ()
) -> dict[str, Any]:
    """Read and check the request object behind a link (see identity.wallet.openid4vp)."""
    request_uri, client_id = link_parse(url)
    response = client.get(request_uri, headers={"Accept": REQUEST_OBJECT_TYPE})
    if response.status_code != 200:
        detail = _json_of(response).get("detail", response.text[:200])
        raise WalletError(
            f"The service would not give the request ({response.status_code}): {detail}"
        )
    if not response.headers.get("content-type", "").startswith(REQUEST_OBJECT_TYPE):
        raise WalletError("The service did not answer with a request object (JWT).")
    try:
        return openid4vp.request_object_verify(
            response.text, client_id=client_id, trusted_certificates=trusted_certificates
        )
    except openid4vp.RequestRefused as exc:
        raise WalletError(f"Refusing the request: {exc}") from exc


def response_post(
    request: dict[str, Any], vp_token: Any, *, client: httpx.Client
) -> httpx.Response:
    """POST the answer to the request's response_uri as its response_mode says."""
    payload: dict[str, Any] = {"vp_token": vp_token}
    if request.get("state"):
        payload["state"] = request["state"]
    if request.get("response_mode") == "direct_post.jwt":
        try:
            key, enc = openid4vp.encryption_key(request)
        except openid4vp.RequestRefused as exc:
            raise WalletError(f"Refusing the request: {exc}") from exc
        body = {"response": jose.jwe_encrypt(json.dumps(payload).encode(), key, enc=enc)}
    else:
        body = {
            "vp_token": json.dumps(vp_token),
            **({"state": payload["state"]} if "state" in payload else {}),
        }
    return client.post(str(request["response_uri"]), data=body)


def present_url(
    wallet: Wallet,
    url: str,
    *,
    client: httpx.Client,
    trusted_certificates: Sequence[Any] = (),
) -> Outcome:
    """Read the request at `url`, answer it with what its DCQL query asks, post the answer."""
    request = request_fetch(url, client=client, trusted_certificates=trusted_certificates)
    answer = response_post(request, wallet.answer(request), client=client)
    outcome = Outcome(answer.status_code, _json_of(answer))
    if outcome.verified and isinstance(outcome.body.get("token"), str):
        wallet.tokens[str(request.get("domain") or request.get("client_id"))] = outcome.body[
            "token"
        ]
    return outcome


def login(
    wallet: Wallet,
    service_url: str,
    *,
    client: httpx.Client,
    trusted_certificates: Sequence[Any] = (),
) -> Outcome:
    """Sign in to a service's API: ask it for a request, answer it, keep the API token."""
    base = service_url.rstrip("/")
    response = client.post(f"{base}/api/v1/identity/presentation-requests/")
    if response.status_code != 201:
        raise WalletError(
            f"The service at {base} did not start a sign-in ({response.status_code})."
        )
    return present_url(
        wallet,
        response.json()["openid4vp_url"],
        client=client,
        trusted_certificates=trusted_certificates,
    )
