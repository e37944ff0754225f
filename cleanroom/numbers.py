"""Numbers from client text: ASCII digits only, in the range the database can hold.

Python reads more than a client means: ``int("١٢")`` and ``Decimal("١٢")`` are 12 (any
Unicode decimal digit), ``int("1_000")`` is 1000, ``"²".isdigit()`` is true but ``int("²")``
fails, and ``int`` refuses more than 4,300 digits. Every whole number or decimal a client
writes as text goes through `whole_number` or `decimal_number` instead.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

BIGINT_MAX = 2**63 - 1
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# NaN and infinities are read (in ASCII) so callers can say "must be finite" about them.
_SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def whole_number(text: str, *, maximum: int = BIGINT_MAX) -> int | None:
    """A whole number >= 0 written in ASCII digits and at most `maximum`, else None."""
    digits = text.strip()
    if not _WHOLE.fullmatch(digits) or len(digits.lstrip("0")) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None


def decimal_number(value: object) -> Decimal:
    """A Decimal from an int, a float or ASCII decimal text (``"12.50"``, ``"1e-3"``);
    raises decimal.InvalidOperation for anything else (``"١٢"``, ``"1_000"``). ``"NaN"`` and
    ``"Infinity"`` are read as such: callers refuse what is not finite."""
    if isinstance(value, bool):
        raise InvalidOperation(f"{value!r} is not a number")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    if not (_DECIMAL.fullmatch(text) or _SPECIAL.fullmatch(text)):
        raise InvalidOperation(f"{text[:40]!r} is not a decimal number")
    return Decimal(text)
