"""The contract every PayoutProvider passes (run against each registered provider)."""

from __future__ import annotations

from typing import Any

import pytest

from payouts.providers import provider_get, provider_names
from payouts.providers.base import (
    PayoutProvider,
    ProviderRejected,
    ProviderRetryable,
    SignatureInvalid,
    TransferRequest,
    WebhookEvent,
)

IBAN = "DE89370400440532013000"


def _request(key: str = "k1", amount: int = 1_500_000) -> TransferRequest:
    return TransferRequest(
        idempotency_key=key,
        amount=amount,
        currency="EUR",
        destination={"iban": IBAN, "holder_name": "A"},
    )


@pytest.fixture(params=provider_names())
def provider(request: Any, db: Any) -> PayoutProvider:
    return provider_get(request.param)


@pytest.fixture
def inject(provider: PayoutProvider) -> Any:
    """Failure injection is provider-specific: each provider maps the contract's faults."""
    if provider.name == "fake_bank":
        from payouts.providers.fake_bank import fault_inject

        return fault_inject
    pytest.skip(f"{provider.name} has no failure injection")


def _collect(provider: PayoutProvider) -> list[WebhookEvent]:
    events: list[WebhookEvent] = []
    provider.webhooks_deliver(events.append)
    return events


def test_same_key_same_request_is_replayed(provider: PayoutProvider) -> None:
    first = provider.transfer_create(_request())
    second = provider.transfer_create(_request())
    assert (first.replayed, second.replayed) == (False, True)
    assert first.reference == second.reference
    assert provider.transfer_get(idempotency_key="k1") is not None


def test_same_key_different_request_is_refused(provider: PayoutProvider) -> None:
    provider.transfer_create(_request())
    with pytest.raises(ProviderRejected):
        provider.transfer_create(_request(amount=1_500_001))


def test_different_keys_are_different_transfers(provider: PayoutProvider) -> None:
    assert (
        provider.transfer_create(_request("a")).reference
        != provider.transfer_create(_request("b")).reference
    )


def test_unknown_transfer_is_none(provider: PayoutProvider) -> None:
    assert provider.transfer_get(idempotency_key="never") is None


def test_non_positive_amount_is_refused(provider: PayoutProvider) -> None:
    with pytest.raises(ProviderRejected):
        provider.transfer_create(_request(amount=0))
    assert provider.transfer_get(idempotency_key="k1") is None


def test_rate_limit_is_retryable_and_moves_nothing(provider: PayoutProvider, inject: Any) -> None:
    inject("rate_limit")
    with pytest.raises(ProviderRetryable) as raised:
        provider.transfer_create(_request())
    assert raised.value.retry_after > 0
    assert provider.transfer_get(idempotency_key="k1") is None


def test_timeout_after_acceptance_then_retry_is_one_transfer(
    provider: PayoutProvider, inject: Any
) -> None:
    inject("timeout_after_accept")
    with pytest.raises(ProviderRetryable):
        provider.transfer_create(_request())
    accepted = provider.transfer_get(idempotency_key="k1")
    assert accepted is not None
    retried = provider.transfer_create(_request())
    assert retried.replayed and retried.reference == accepted.reference


def test_outcome_arrives_as_signed_events(provider: PayoutProvider) -> None:
    result = provider.transfer_create(_request())
    events = _collect(provider)
    assert [e.type for e in events] == ["transfer.processing", "transfer.paid"]
    assert {e.reference for e in events} == {result.reference}
    assert {e.idempotency_key for e in events} == {"k1"}
    assert len({e.event_id for e in events}) == 2
    assert _collect(provider) == []  # delivered once


def test_duplicated_webhooks_keep_their_event_id(provider: PayoutProvider, inject: Any) -> None:
    provider.transfer_create(_request())
    inject("duplicate_webhooks")
    events = _collect(provider)
    assert len(events) == 4 and len({e.event_id for e in events}) == 2


def test_webhook_signature_is_checked(provider: PayoutProvider) -> None:
    body = b'{"id": "evt_1", "type": "transfer.paid", "data": {"reference": "r", "idempotency_key": "k"}}'
    event = provider.webhook_parse(body=body, signature=provider.webhook_sign(body))
    assert event.type == "transfer.paid"
    with pytest.raises(SignatureInvalid):
        provider.webhook_parse(body=body, signature="0" * 64)
    with pytest.raises(SignatureInvalid):
        provider.webhook_parse(body=body + b" ", signature=provider.webhook_sign(body))
