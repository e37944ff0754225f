"""A small credential issuer: PersonhoodCredentials (JSON-LD with an inline context, or JWT)
and a status list that revokes them. Used by the `cleanroom-issuer` command, the demo and tests.

Status list bits are numbered from the most significant bit of the first byte (W3C order).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from identity import statuslist, vc

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


@dataclass
class Issuer:
    key: str  # the issuer's private JWK
    name: str = "Demo personhood issuer"
    status: StatusListState | None = None

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

    # -- storage -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "key": json.loads(self.key),
            "name": self.name,
            "status": self.status.__dict__ if self.status else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Issuer:
        status = StatusListState(**data["status"]) if data.get("status") else None
        return cls(
            key=json.dumps(data["key"], separators=(",", ":")),
            name=data.get("name", ""),
            status=status,
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
