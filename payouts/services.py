"""Money services (placeholder signatures until the payouts capability lands).

Amounts are integers in micro-units (1e-6 of the currency unit).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

MICRO = 1_000_000


def query_price(*, price: dict[str, Any], epsilon: float) -> int:
    """Price of a query in micro-units: per_query + per_epsilon * epsilon, rounded up."""
    per_query = Decimal(str(price.get("per_query", "0")))
    per_epsilon = Decimal(str(price.get("per_epsilon", "0")))
    total = (per_query + per_epsilon * Decimal(str(epsilon))) * MICRO
    return int(total.to_integral_value(rounding="ROUND_CEILING"))


def balance_ensure(*, organization: Any, amount: int) -> None:
    """Raise InsufficientBalance when the organization cannot pay `amount` micro-units."""


def query_charge(*, query: Any, members: Any) -> None:
    """Charge the business and record the distribution to `members` (idempotent on query)."""
