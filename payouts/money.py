"""Money as integers in micro-units (1e-6 of the currency unit); decimal strings at the edges.

No float ever holds an amount: parsing goes through ``Decimal`` from the string the
client sent, formatting is integer arithmetic.
"""

from __future__ import annotations

from decimal import InvalidOperation

from cleanroom.errors import ValidationFailed
from cleanroom.numbers import decimal_number

MICRO = 1_000_000
DECIMALS = 6
# Top-ups above this are refused as a typo guard (one billion units).
MAX_AMOUNT = 10**9 * MICRO


def micro_format(amount: int) -> str:
    """'12.345678' for 12345678 micro-units (always six decimals, sign kept)."""
    sign = "-" if amount < 0 else ""
    units, micros = divmod(abs(int(amount)), MICRO)
    return f"{sign}{units}.{micros:06d}"


def micro_parse(value: object, *, field: str = "amount", positive: bool = True) -> int:
    """Micro-units from a decimal string (or int); refuses floats, >6 decimals, junk."""
    if isinstance(value, (bool, float)):
        raise ValidationFailed(
            f"{field} must be a decimal string such as '12.50', not a float.",
            errors=[{"field": field, "message": "Use a decimal string."}],
        )
    try:
        number = decimal_number(value)  # ASCII digits only: Decimal() also reads "١٢"
    except (InvalidOperation, ValueError):
        raise ValidationFailed(
            f"{field} is not a decimal number: {str(value)[:40]!r}.",
            errors=[{"field": field, "message": "Not a decimal number."}],
        ) from None
    if not number.is_finite():
        raise ValidationFailed(
            f"{field} must be a finite number.", errors=[{"field": field, "message": "Not finite."}]
        )
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMALS:
        raise ValidationFailed(
            f"{field} has more than {DECIMALS} decimal places.",
            errors=[{"field": field, "message": f"At most {DECIMALS} decimal places."}],
        )
    micro = int(number * MICRO)
    if positive and micro <= 0:
        raise ValidationFailed(
            f"{field} must be greater than zero.",
            errors=[{"field": field, "message": "Must be greater than zero."}],
        )
    if abs(micro) > MAX_AMOUNT:
        raise ValidationFailed(
            f"{field} is larger than {micro_format(MAX_AMOUNT)}.",
            errors=[{"field": field, "message": "Too large."}],
        )
    return micro
