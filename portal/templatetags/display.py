"""One way to show money, epsilon and time on every page.

- Money is stored in integer micro-units; pages show it rounded to the currency's display
  decimals (two for most) with the currency's sign, and the exact amount on hover
  (``title``) and in ``data-exact``. The API keeps the exact decimal strings.
- Epsilon is a 12-decimal budget figure; pages show it to six decimals without float
  noise (0.4999999999995 reads 0.5) and the exact charge on hover.
- Times are ``<time datetime="ISO 8601">`` in one format, in the server's time zone.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

MICRO = Decimal(1_000_000)
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF "}
# Currencies shown without cents (ISO 4217 minor units); the rest show two decimals.
ZERO_DECIMALS = {"JPY", "KRW", "ISK", "CLP", "VND"}
DATE_FORMAT = "%d %b %Y, %H:%M"


def _amount(value: Any, *, micro: bool) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number / MICRO if micro else number


def money_text(amount: Decimal, currency: str) -> str:
    """'€12.35' for 12.345678 EUR; '-€1.00'; '1,234 JPY'-style grouping."""
    code = (currency or "").upper()
    places = Decimal(1) if code in ZERO_DECIMALS else Decimal("0.01")
    rounded = amount.quantize(places, rounding=ROUND_HALF_EVEN)
    digits = f"{abs(rounded):,.{0 if code in ZERO_DECIMALS else 2}f}"
    sign = "-" if rounded < 0 else ""
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {code}".rstrip()


@register.simple_tag
def money(value: Any, currency: str = "EUR", *, decimal: bool = False) -> SafeString | str:
    """Micro-units (or, with decimal=True, a decimal string) as money with the exact hover."""
    amount = _amount(value, micro=not decimal)
    if amount is None:
        return "—"
    exact = f"{amount.quantize(Decimal('0.000001'))} {(currency or '').upper()}".strip()
    return format_html(
        '<span class="money" title="{}" data-exact="{}">{}</span>',
        exact,
        exact,
        money_text(amount, currency),
    )


def epsilon_text(value: Any) -> str:
    number = _amount(value, micro=False)
    if number is None:
        return "—"
    shown = number.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN).normalize()
    if shown == 0 and number != 0:
        return f"{number:.1e}"
    return f"{shown:f}"


@register.filter
def epsilon(value: Any) -> SafeString | str:
    """An epsilon (or delta-free budget figure) to six decimals, the exact value on hover."""
    text = epsilon_text(value)
    if text == "—":
        return text
    exact = _amount(value, micro=False)
    exact_text = f"{exact.normalize():f}" if exact is not None else text
    if exact_text == text:
        return text
    return format_html('<span class="exact" title="{}">{}</span>', exact_text, text)


@register.filter
def when(value: Any) -> SafeString | str:
    """A datetime as ``<time datetime=ISO>`` in the one display format."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return "—" if value in (None, "") else str(value)
    moment = timezone.localtime(value) if timezone.is_aware(value) else value
    return format_html(
        '<time datetime="{}">{}</time>',
        moment.isoformat(timespec="seconds"),
        moment.strftime(DATE_FORMAT),
    )


@register.filter
def percent(value: Any) -> str:
    """A share (0.034) as '3.4%' (one decimal below 10%, none above)."""
    number = _amount(value, micro=False)
    if number is None:
        return "—"
    share = number * 100
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


@register.filter
def figure(value: Any) -> str:
    """A released number for a table: thousands separated, two decimals for non-integers."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float | Decimal):
        return f"{value:,.2f}"
    return str(value)
