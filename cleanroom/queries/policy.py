"""Typed access to a dataset's policy JSON: the one place queries read policy values.

Every reader goes through ``policy_int`` / ``policy_decimal`` / ``policy_bool`` with a
default, so a missing value means the default and a malformed one (``"ten"``, ``1.5``
for an integer, ``"maybe"`` for a flag, NaN) is a ``QueryRefused`` naming the field:
a clear 400 at preview and submit, never a ``ValueError`` (a 500, or a query stuck in
``running`` in the worker).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from cleanroom.errors import QueryRefused

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0", ""}


def _malformed(name: str, expected: str) -> QueryRefused:
    return QueryRefused(
        f"The dataset's policy has a malformed {name} (expected {expected}); "
        "compliance must fix the policy before it answers queries."
    )


def policy_int(policy: dict[str, Any] | None, name: str, default: int, *, minimum: int = 0) -> int:
    """An integer policy value >= minimum (a missing or null value is the default)."""
    value = (policy or {}).get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _malformed(name, "an integer")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise _malformed(name, "an integer") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise _malformed(name, "an integer")
    if number < minimum:
        raise _malformed(name, f"an integer of at least {minimum}")
    return int(number)


def policy_decimal(
    policy: dict[str, Any] | None, name: str, default: str | None, *, positive: bool = False
) -> Decimal | None:
    """A finite, non-negative decimal policy value (a missing or null value is the default)."""
    value = (policy or {}).get(name)
    if value is None or value == "":
        return None if default is None else Decimal(default)
    if isinstance(value, bool):
        raise _malformed(name, "a number")
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise _malformed(name, "a number") from None
    if not number.is_finite() or number < 0 or (positive and number == 0):
        raise _malformed(name, "a positive number" if positive else "a non-negative number")
    return number


def policy_bool(policy: dict[str, Any] | None, name: str, default: bool) -> bool:
    """A flag: true/false (or the strings "true"/"false", 1/0); anything else is malformed."""
    value = (policy or {}).get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _malformed(name, "true or false")


def policy_names(policy: dict[str, Any] | None, name: str) -> tuple[str, ...] | None:
    """A list of names (columns, aggregates, organizations); missing or empty is None."""
    value = (policy or {}).get(name)
    if value is None or value == [] or value == "":
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _malformed(name, "a list of names")
    return tuple(value)
