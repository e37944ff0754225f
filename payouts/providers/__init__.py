"""Payout providers: the interface (base.py) and the registered implementations."""

from __future__ import annotations

from payouts.providers.base import PayoutProvider


def _registry() -> dict[str, type[PayoutProvider]]:
    from payouts.providers.fake_bank import FakeBankProvider

    return {FakeBankProvider.name: FakeBankProvider}


def provider_names() -> list[str]:
    return sorted(_registry())


def provider_get(name: str) -> PayoutProvider:
    """The provider registered under `name` (ValidationFailed when unknown)."""
    from cleanroom.errors import ValidationFailed

    registry = _registry()
    if name not in registry:
        raise ValidationFailed(
            f"Unknown payout provider {name!r}; known: {', '.join(sorted(registry))}.",
            errors=[{"field": "provider", "message": "Unknown provider."}],
        )
    return registry[name]()
