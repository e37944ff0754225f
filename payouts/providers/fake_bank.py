"""An in-process bank-transfer provider that behaves like a real payment API.

"The bank" keeps its state in its own tables (FakeBankTransfer, FakeBankEvent), committed
independently of our ledger as a real bank would be, so a worker killed after the call
finds the transfer still there. Failure injection (FakeBankFault rows, consumed one per
call, visible to every process): 429 with Retry-After, a timeout after the transfer was
accepted, a permanent refusal, a transfer that fails later, duplicated webhooks, webhooks
out of order. Webhook bodies are JSON signed with HMAC-SHA256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from payouts.models import FakeBankEvent, FakeBankFault, FakeBankTransfer
from payouts.providers.base import (
    PayoutProvider,
    ProviderRejected,
    ProviderTimeout,
    RateLimited,
    SignatureInvalid,
    TransferRequest,
    TransferResult,
    WebhookEvent,
)


def fault_inject(kind: str, times: int = 1) -> None:
    """Make the next `times` matching calls misbehave as `kind` (tests and demos)."""
    FakeBankFault.objects.create(kind=kind, remaining=times)


def _fault_take(kind: str) -> bool:
    with transaction.atomic():
        fault = (
            FakeBankFault.objects.select_for_update()
            .filter(kind=kind, remaining__gt=0)
            .order_by("pk")
            .first()
        )
        if fault is None:
            return False
        FakeBankFault.objects.filter(pk=fault.pk).update(remaining=fault.remaining - 1)
        return True


def _request_hash(request: TransferRequest) -> str:
    body = json.dumps(
        [request.amount, request.currency, request.destination.get("iban", "")], sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()


class FakeBankProvider(PayoutProvider):
    name = "fake_bank"

    def _secret(self) -> bytes:
        return hashlib.sha256(f"fake-bank-webhooks:{settings.SECRET_KEY}".encode()).digest()

    def transfer_create(self, request: TransferRequest) -> TransferResult:
        if _fault_take(FakeBankFault.Kind.RATE_LIMIT):
            raise RateLimited("429 Too Many Requests", retry_after=1.0)
        if request.amount <= 0:
            raise ProviderRejected("400 amount must be positive")
        request_hash = _request_hash(request)
        existing = FakeBankTransfer.objects.filter(idempotency_key=request.idempotency_key).first()
        if existing is not None:
            return self._replay(existing, request_hash)
        if _fault_take(FakeBankFault.Kind.REJECT):
            raise ProviderRejected("422 beneficiary account closed")
        iban = request.destination.get("iban", "")
        if not iban:
            raise ProviderRejected("422 no beneficiary account")
        fails = _fault_take(FakeBankFault.Kind.FAIL_LATER)
        try:
            with transaction.atomic():
                transfer = FakeBankTransfer.objects.create(
                    reference=f"tr_{uuid.uuid4().hex[:24]}",
                    idempotency_key=request.idempotency_key,
                    request_hash=request_hash,
                    amount=request.amount,
                    currency=request.currency,
                    iban=iban,
                    status="failed" if fails else "paid",
                )
                FakeBankEvent.objects.create(
                    event_id=f"evt_{uuid.uuid4().hex[:24]}",
                    transfer=transfer,
                    type="transfer.processing",
                )
                FakeBankEvent.objects.create(
                    event_id=f"evt_{uuid.uuid4().hex[:24]}",
                    transfer=transfer,
                    type="transfer.failed" if fails else "transfer.paid",
                )
        except IntegrityError:
            # A concurrent request with the same key won: answer as a replay.
            existing = FakeBankTransfer.objects.get(idempotency_key=request.idempotency_key)
            return self._replay(existing, request_hash)
        if _fault_take(FakeBankFault.Kind.TIMEOUT_AFTER_ACCEPT):
            raise ProviderTimeout("504 Gateway Timeout (the transfer was accepted)")
        return TransferResult(reference=transfer.reference, status="accepted")

    def _replay(self, existing: FakeBankTransfer, request_hash: str) -> TransferResult:
        if existing.request_hash != request_hash:
            raise ProviderRejected("400 idempotency key reused with different parameters")
        return TransferResult(reference=existing.reference, status="accepted", replayed=True)

    def transfer_get(self, *, idempotency_key: str) -> TransferResult | None:
        transfer = FakeBankTransfer.objects.filter(idempotency_key=idempotency_key).first()
        if transfer is None:
            return None
        return TransferResult(reference=transfer.reference, status=transfer.status)

    def webhooks_deliver(self, handler: Callable[[WebhookEvent], object]) -> int:
        pending = list(
            FakeBankEvent.objects.filter(delivered_at__isnull=True)
            .select_related("transfer")
            .order_by("pk")[:500]
        )
        if not pending:
            return 0
        if _fault_take(FakeBankFault.Kind.REORDER_WEBHOOKS):
            pending.reverse()
        copies = 2 if _fault_take(FakeBankFault.Kind.DUPLICATE_WEBHOOKS) else 1
        deliveries = 0
        for event in pending:
            body = self._body(event)
            for _ in range(copies):
                # Through the same parse path a webhook endpoint uses.
                handler(self.webhook_parse(body=body, signature=self.webhook_sign(body)))
                deliveries += 1
            FakeBankEvent.objects.filter(pk=event.pk).update(delivered_at=timezone.now())
        return deliveries

    def _body(self, event: FakeBankEvent) -> bytes:
        return json.dumps(
            {
                "id": event.event_id,
                "type": event.type,
                "data": {
                    "reference": event.transfer.reference,
                    "idempotency_key": event.transfer.idempotency_key,
                    "reason": "beneficiary bank returned the transfer"
                    if event.type == "transfer.failed"
                    else "",
                },
            },
            sort_keys=True,
        ).encode()

    def webhook_sign(self, body: bytes) -> str:
        return hmac.new(self._secret(), body, hashlib.sha256).hexdigest()

    def webhook_parse(self, *, body: bytes, signature: str) -> WebhookEvent:
        if not hmac.compare_digest(self.webhook_sign(body), signature or ""):
            raise SignatureInvalid("webhook signature does not match")
        try:
            data = json.loads(body)
            return WebhookEvent(
                event_id=str(data["id"]),
                type=str(data["type"]),
                reference=str(data["data"]["reference"]),
                idempotency_key=str(data["data"]["idempotency_key"]),
                reason=str(data["data"].get("reason", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise SignatureInvalid("webhook body is not a transfer event") from None
