"""A small credential issuer: PersonhoodCredentials (JSON-LD with an inline context, or JWT)
and a status list that revokes them; and PID-like SD-JWT VCs (`given_name`, `family_name`,
`birthdate`, `age_equal_or_over`, each selectively disclosable) with an IETF Token Status List.
Used by the `cleanroom-issuer` command, the demo and tests.

W3C status list bits are numbered from the most significant bit of the first byte (W3C order);
Token Status List bits from the least significant (IETF order).

SD-JWT VCs are signed ES256 with a P-256 key of their own. Their `iss` is the issuer's URL when
it has one (keys published as JWT VC Issuer Metadata at `metadata()`), otherwise the key's
did:jwk.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from identity import jose, sdjwt, statuslist, vc

CREDENTIALS_V1 = "https://www.w3.org/2018/credentials/v1"
STATUS_LIST_2021_CONTEXT = "https://w3id.org/vc/status-list/2021/v1"
VOCAB = "https://vocab.cleanroom.example/v1#"
STATUS_VOCAB = "https://www.w3.org/ns/credentials/status#"

# didkit cannot fetch remote contexts, so our own terms travel inline with each credential.
CREDENTIAL_CONTEXT: dict[str, Any] = {
    "PersonhoodCredential": VOCAB + "PersonhoodCredential",
    "KYCCredential": VOCAB + "KYCCredential",
    "ageOver18": {"@id": VOCAB + "ageOver18", "@type": "http://www.w3.org/2001/XMLSchema#boolean"},
    "countryOfResidence": VOCAB + "countryOfResidence",
}
# The Bitstring Status List terms (the W3C context needs the VC 2.0 context, unsupported here).
BITSTRING_CONTEXT: dict[str, Any] = {
    "BitstringStatusListEntry": {
        "@id": STATUS_VOCAB + "BitstringStatusListEntry",
        "@context": {
            "statusPurpose": STATUS_VOCAB + "statusPurpose",
            "statusListIndex": STATUS_VOCAB + "statusListIndex",
            "statusListCredential": {"@id": STATUS_VOCAB + "statusListCredential", "@type": "@id"},
        },
    },
    "BitstringStatusListCredential": STATUS_VOCAB + "BitstringStatusListCredential",
    "BitstringStatusList": {
        "@id": STATUS_VOCAB + "BitstringStatusList",
        "@context": {
            "statusPurpose": STATUS_VOCAB + "statusPurpose",
            "encodedList": {
                "@id": STATUS_VOCAB + "encodedList",
                "@type": "https://w3id.org/security#multibase",
            },
        },
    },
}
STATUS_KINDS = ("StatusList2021", "BitstringStatusList")
DEFAULT_LIST_SIZE = 131072  # 16 KiB of bits: the specifications' minimum, for herd privacy


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class StatusListState:
    url: str
    kind: str = "StatusList2021"
    size: int = DEFAULT_LIST_SIZE
    next_index: int = 0
    revoked: list[int] = field(default_factory=list)


PID_VCT = "urn:eudi:pid:1"
AGE_THRESHOLDS = (12, 14, 16, 18, 21, 65)
# Claims a holder may hide: all personal ones, each age threshold on its own.
PID_DISCLOSABLE = ("given_name", "family_name", "birthdate", "nationalities", "age_equal_or_over")


@dataclass
class TokenStatusState:
    uri: str
    size: int = DEFAULT_LIST_SIZE
    next_index: int = 0
    revoked: list[int] = field(default_factory=list)


def age_claims(birthdate: date, today: date) -> dict[str, bool]:
    years = (
        today.year - birthdate.year - ((today.month, today.day) < (birthdate.month, birthdate.day))
    )
    return {str(t): years >= t for t in AGE_THRESHOLDS}


@dataclass
class Issuer:
    key: str  # the issuer's private JWK
    name: str = "Demo personhood issuer"
    status: StatusListState | None = None
    sd_jwt_key: dict[str, Any] | None = None  # P-256 private JWK for SD-JWT VCs
    url: str | None = None  # the issuer identifier (iss) of its SD-JWT VCs, when it has one
    token_status: TokenStatusState | None = None

    @classmethod
    def generate(cls, name: str = "Demo personhood issuer") -> Issuer:
        return cls(key=vc.key_generate(), name=name)

    @property
    def did(self) -> str:
        return vc.key_did(self.key)

    @property
    def verification_method(self) -> str:
        return vc.key_verification_method(self.key)

    # -- credentials -------------------------------------------------------------------------

    def credential_body(
        self,
        *,
        subject: str,
        credential_type: str = "PersonhoodCredential",
        claims: dict[str, Any] | None = None,
        valid_days: float | None = 365,
        issued_at: datetime | None = None,
        status_index: int | None = None,
    ) -> dict[str, Any]:
        """The unsigned credential (tests tamper with it before signing)."""
        issued = issued_at or datetime.now(UTC) - timedelta(minutes=1)
        context: list[Any] = [CREDENTIALS_V1, CREDENTIAL_CONTEXT]
        body: dict[str, Any] = {
            "@context": context,
            "id": f"urn:uuid:{uuid.uuid4()}",
            "type": ["VerifiableCredential", credential_type],
            "issuer": self.did,
            "issuanceDate": _timestamp(issued),
            "credentialSubject": {
                "id": subject,
                **(claims if claims is not None else {"ageOver18": True}),
            },
        }
        if valid_days is not None:
            body["expirationDate"] = _timestamp(issued + timedelta(days=valid_days))
        if status_index is not None:
            if self.status is None:
                raise ValueError("this issuer has no status list; create one first")
            body["credentialStatus"] = self.status_entry(status_index)
            context.append(
                STATUS_LIST_2021_CONTEXT
                if self.status.kind == "StatusList2021"
                else BITSTRING_CONTEXT
            )
        return body

    def sign(self, body: dict[str, Any], *, jwt: bool = False) -> dict[str, Any] | str:
        return vc.credential_issue(
            body, key=self.key, verification_method=self.verification_method, jwt=jwt
        )

    def issue(
        self, *, subject: str, jwt: bool = False, with_status: bool = False, **kwargs: Any
    ) -> dict[str, Any] | str:
        """A signed credential for `subject`; with_status takes the next status list index."""
        index = None
        if with_status:
            if self.status is None:
                raise ValueError("this issuer has no status list; create one first")
            index = self.status.next_index
            self.status.next_index += 1
        return self.sign(
            self.credential_body(subject=subject, status_index=index, **kwargs), jwt=jwt
        )

    # -- status list -------------------------------------------------------------------------

    def status_list_create(
        self, *, url: str, kind: str = "StatusList2021", size: int = DEFAULT_LIST_SIZE
    ) -> None:
        if kind not in STATUS_KINDS:
            raise ValueError(f"kind must be one of {', '.join(STATUS_KINDS)}")
        self.status = StatusListState(url=url, kind=kind, size=size)

    def status_entry(self, index: int) -> dict[str, Any]:
        assert self.status is not None
        entry_type = (
            "StatusList2021Entry"
            if self.status.kind == "StatusList2021"
            else "BitstringStatusListEntry"
        )
        return {
            "id": f"{self.status.url}#{index}",
            "type": entry_type,
            "statusPurpose": "revocation",
            "statusListIndex": str(index),
            "statusListCredential": self.status.url,
        }

    def revoke(self, index: int) -> None:
        if self.status is None:
            raise ValueError("this issuer has no status list")
        if not 0 <= index < self.status.size:
            raise ValueError(f"index {index} is outside the list of {self.status.size}")
        if index not in self.status.revoked:
            self.status.revoked.append(index)

    def status_list_credential(
        self, *, jwt: bool = False, valid_days: float = 30
    ) -> dict[str, Any] | str:
        """The signed status list credential to publish at the list's URL."""
        if self.status is None:
            raise ValueError("this issuer has no status list")
        bits = statuslist.bits_with(self.status.revoked, size=self.status.size)
        bitstring = self.status.kind == "BitstringStatusList"
        now = datetime.now(UTC) - timedelta(minutes=1)
        body = {
            "@context": [
                CREDENTIALS_V1,
                BITSTRING_CONTEXT if bitstring else STATUS_LIST_2021_CONTEXT,
            ],
            "id": self.status.url,
            "type": ["VerifiableCredential", f"{self.status.kind}Credential"],
            "issuer": self.did,
            "issuanceDate": _timestamp(now),
            "expirationDate": _timestamp(now + timedelta(days=valid_days)),
            "credentialSubject": {
                "id": f"{self.status.url}#list",
                "type": self.status.kind,
                "statusPurpose": "revocation",
                "encodedList": statuslist.bitstring_encode(bits, multibase=bitstring),
            },
        }
        return self.sign(body, jwt=jwt)

    # -- SD-JWT VC ---------------------------------------------------------------------------

    def sd_jwt_signing_key(self) -> dict[str, Any]:
        if self.sd_jwt_key is None:
            self.sd_jwt_key = jose.key_generate(algorithm="ES256")
            self.sd_jwt_key["kid"] = jose.thumbprint(self.sd_jwt_key)
        return self.sd_jwt_key

    @property
    def sd_jwt_issuer(self) -> str:
        """The `iss` of this issuer's SD-JWT VCs: its URL, or its key's did:jwk."""
        return self.url or jose.did_jwk(self.sd_jwt_signing_key())

    def _sd_jwt_header(self, typ: str, x5c: list[str] | None) -> dict[str, Any]:
        key = self.sd_jwt_signing_key()
        header: dict[str, Any] = {"alg": "ES256", "typ": typ}
        if x5c:
            header["x5c"] = x5c
        elif self.url:
            header["kid"] = key["kid"]
        else:
            header["kid"] = f"{self.sd_jwt_issuer}#0"
        return header

    def metadata(self) -> dict[str, Any]:
        """JWT VC Issuer Metadata, served at /.well-known/jwt-vc-issuer{path of url}."""
        if not self.url:
            raise ValueError("this issuer has no URL; give it one with `init --url`")
        key = self.sd_jwt_signing_key()
        public = {**jose.public_jwk(key), "kid": key["kid"], "alg": "ES256", "use": "sig"}
        return {"issuer": self.url, "jwks": {"keys": [public]}}

    def issue_sd_jwt(
        self,
        *,
        holder_jwk: dict[str, Any],
        given_name: str,
        family_name: str = "",
        birthdate: date,
        nationalities: list[str] | None = None,
        vct: str = PID_VCT,
        valid_days: float = 365,
        issued_at: datetime | None = None,
        with_status: bool = False,
        x5c: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        disclosable: tuple[str, ...] = PID_DISCLOSABLE,
    ) -> str:
        """A PID-like SD-JWT VC bound to `holder_jwk` (the wallet's key), every personal claim
        and every age threshold selectively disclosable."""
        issued = issued_at or datetime.now(UTC) - timedelta(minutes=1)
        claims: dict[str, Any] = {
            "iss": self.sd_jwt_issuer,
            "vct": vct,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(days=valid_days)).timestamp()),
            "cnf": {"jwk": jose.public_jwk(holder_jwk)},
            "given_name": given_name,
            "birthdate": birthdate.isoformat(),
            "age_equal_or_over": age_claims(birthdate, issued.date()),
        }
        if family_name:
            claims["family_name"] = family_name
        if nationalities:
            claims["nationalities"] = nationalities
        if with_status:
            if self.token_status is None:
                raise ValueError("this issuer has no token status list; create one first")
            claims["status"] = {
                "status_list": {"idx": self.token_status.next_index, "uri": self.token_status.uri}
            }
            self.token_status.next_index += 1
        claims.update(extra or {})
        return sdjwt.issue(
            claims=claims,
            selectively_disclosable=lambda path: (
                path[0] in disclosable and (len(path) == 1 or path[0] == "age_equal_or_over")
            ),
            key=self.sd_jwt_signing_key(),
            header=self._sd_jwt_header("dc+sd-jwt", x5c),
            decoys=3,
        )

    def token_status_create(self, *, uri: str, size: int = DEFAULT_LIST_SIZE) -> None:
        self.token_status = TokenStatusState(uri=uri, size=size)

    def token_status_revoke(self, index: int) -> None:
        if self.token_status is None:
            raise ValueError("this issuer has no token status list")
        if not 0 <= index < self.token_status.size:
            raise ValueError(f"index {index} is outside the list of {self.token_status.size}")
        if index not in self.token_status.revoked:
            self.token_status.revoked.append(index)

    def token_status_list(
        self, *, valid_seconds: int = 86400, ttl: int = 300, x5c: list[str] | None = None
    ) -> str:
        """The signed Token Status List (statuslist+jwt) to publish at the list's URI."""
        if self.token_status is None:
            raise ValueError("this issuer has no token status list")
        now = int(datetime.now(UTC).timestamp()) - 60
        lst = statuslist.token_status_encode(
            {i: statuslist.TOKEN_STATUS_INVALID for i in self.token_status.revoked},
            size=self.token_status.size,
        )
        return jose.jws_sign(
            {
                "sub": self.token_status.uri,
                "iss": self.sd_jwt_issuer,
                "iat": now,
                "exp": now + valid_seconds,
                "ttl": ttl,
                "status_list": {"bits": 1, "lst": lst},
            },
            self.sd_jwt_signing_key(),
            header=self._sd_jwt_header("statuslist+jwt", x5c),
        )

    # -- storage -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "key": json.loads(self.key),
            "name": self.name,
            "status": self.status.__dict__ if self.status else None,
            "sd_jwt_key": self.sd_jwt_key,
            "url": self.url,
            "token_status": self.token_status.__dict__ if self.token_status else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Issuer:
        status = StatusListState(**data["status"]) if data.get("status") else None
        token_status = (
            TokenStatusState(**data["token_status"]) if data.get("token_status") else None
        )
        return cls(
            key=json.dumps(data["key"], separators=(",", ":")),
            name=data.get("name", ""),
            status=status,
            sd_jwt_key=data.get("sd_jwt_key"),
            url=data.get("url"),
            token_status=token_status,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Issuer:
        return cls.from_json(json.loads(path.read_text()))
