"""The PayoutProvider interface every payout rail implements, and its errors.

A provider moves money out of the system to a contributor's bank. The contract
(tests/payouts/test_provider_contract.py runs it against every registered provider):

- ``transfer_create`` is idempotent on ``idempotency_key``: the same key with the same
  request returns the same transfer (``replayed=True``) and moves money once; the same
  key with a different request is refused (``ProviderRejected``);
- transient trouble raises ``ProviderRetryable`` (``RateLimited`` with ``retry_after``,
  ``ProviderTimeout`` when the outcome is unknown, maybe accepted): retry with the same key;
- a permanent refusal raises ``ProviderRejected`` and moves nothing;
- outcomes arrive as webhook events (``transfer.processing``, ``transfer.paid``,
  ``transfer.failed``) that may be duplicated or out of order; each has a unique id and
  names the transfer by reference and idempotency key;
- ``webhook_parse`` authenticates a delivered body by its signature.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ProviderError(Exception):
    pass


class ProviderRetryable(ProviderError):
    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ProviderRetryable):
    """HTTP 429: nothing was done; retry after `retry_after` seconds."""


class ProviderTimeout(ProviderRetryable):
    """No answer: the transfer may or may not have been accepted; retry with the same key."""


class ProviderRejected(ProviderError):
    """A permanent refusal: nothing was moved, retrying will not help."""


class SignatureInvalid(ProviderError):
    pass


@dataclass(frozen=True)
class TransferRequest:
    idempotency_key: str
    amount: int  # micro-units
    currency: str
    destination: dict[str, str] = field(default_factory=dict)  # {"iban", "holder_name"}


@dataclass(frozen=True)
class TransferResult:
    reference: str
    status: str  # accepted | paid | failed
    replayed: bool = False


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    type: str  # transfer.processing | transfer.paid | transfer.failed
    reference: str
    idempotency_key: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "reference": self.reference,
            "idempotency_key": self.idempotency_key,
            "reason": self.reason,
        }


class PayoutProvider(ABC):
    name: str = ""

    @abstractmethod
    def transfer_create(self, request: TransferRequest) -> TransferResult:
        """Send money once per idempotency key."""

    @abstractmethod
    def transfer_get(self, *, idempotency_key: str) -> TransferResult | None:
        """What the provider knows of the transfer with this key (None: never accepted)."""

    @abstractmethod
    def webhooks_deliver(self, handler: Callable[[WebhookEvent], object]) -> int:
        """Push pending webhook events to `handler`; returns how many deliveries were made."""

    @abstractmethod
    def webhook_parse(self, *, body: bytes, signature: str) -> WebhookEvent:
        """Authenticate and decode a webhook body (raises SignatureInvalid)."""

    @abstractmethod
    def webhook_sign(self, body: bytes) -> str:
        """The signature the provider puts on `body` (used by its webhook sender)."""
