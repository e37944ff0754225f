"""One way to show money, epsilon and time (portal/templatetags/display.py) and the
lists that showed raw micro-units and float noise before."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.template import Context, Template
from django.test import Client

from portal.templatetags.display import epsilon_text, money_text


def render(source: str, **context: Any) -> str:
    return Template("{% load display %}" + source).render(Context(context))


def test_money_is_two_decimals_with_the_currency_and_exact_on_hover() -> None:
    assert render("{% money 6000000 'EUR' %}") == (
        '<span class="money" title="6.000000 EUR" data-exact="6.000000 EUR">€6.00</span>'
    )
    assert render("{% money '12.345678' 'USD' decimal=True %}").endswith(">$12.35</span>")
    assert money_text(Decimal("1234.5"), "CHF") == "CHF 1,234.50"
    assert money_text(Decimal("-0.004"), "EUR") == "€0.00"
    assert money_text(Decimal("1500"), "JPY") == "¥1,500"
    assert money_text(Decimal("2.5"), "SEK") == "2.50 SEK"
    assert render("{% money None 'EUR' %}") == "—"


def test_epsilon_has_no_float_noise_and_the_exact_charge_on_hover() -> None:
    assert epsilon_text(Decimal("0.499999999999500")) == "0.5"
    assert epsilon_text("1.000000000000") == "1"
    assert epsilon_text(0.1 + 0.2) == "0.3"
    assert epsilon_text(Decimal("0.0000004")) == "4.0e-7"
    assert render("{{ e|epsilon }}", e=Decimal("0.4999999999995")) == (
        '<span class="exact" title="0.4999999999995">0.5</span>'
    )
    assert render("{{ e|epsilon }}", e=Decimal("0.250000000000")) == "0.25"


def test_times_are_one_format_in_a_time_element() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    expected = '<time datetime="2026-03-04T05:06:07+00:00">04 Mar 2026, 05:06</time>'
    assert render("{{ t|when }}", t=moment) == expected
    assert render("{{ t|when }}", t="2026-03-04T05:06:07.123456+00:00") == expected
    assert render("{{ t|when }}", t=None) == "—"


def test_my_queries_show_money_as_money_and_epsilon_without_noise(
    business_user: Any, make_dataset_for_display: Any
) -> None:
    query = make_dataset_for_display(business_user)
    client = Client()
    client.force_login(business_user)
    page = client.get("/queries/").content.decode()
    assert ">€6.00</span>" in page and ">6000000<" not in page
    assert 'title="0.499999999999">0.5</span>' in page
    assert f'<time datetime="{query.created_at.isoformat(timespec="seconds")}' in page


def test_counts_read_as_english(db: Any, compliance_user: Any) -> None:
    """'1 ranges', '1 signed checkpoint match', '1 rows' were on the pages."""
    page = render(
        "{{ n }} range{{ n|pluralize }}; {{ c }} signed checkpoint{{ c|pluralize }} "
        'match{{ c|pluralize:"es," }}',
        n=1,
        c=1,
    )
    assert page == "1 range; 1 signed checkpoint matches"
    from audit.services import audit_record, checkpoint_create

    audit_record(action="accounts.account.created", actor=None, subject="user:1")
    checkpoint_create()
    client = Client()
    client.force_login(compliance_user)
    verify = client.get("/audit/verify/").content.decode()
    assert "1 signed checkpoint matches the Merkle tree" in verify
