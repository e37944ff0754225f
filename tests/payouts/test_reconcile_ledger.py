"""`manage.py reconcile_ledger`: prints balances, passes on a sound ledger, fails on a breach."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from payouts.models import Account
from payouts.services import business_account, query_charge
from tests.payouts.conftest import members


def test_sound_ledger_passes_and_prints_balances(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    query_charge(query=make_query(dataset), members=members(1, 2, 3))
    out = StringIO()
    call_command("reconcile_ledger", stdout=out)
    text = out.getvalue()
    assert "OK:" in text
    assert "business" in text and "94.000000" in text
    assert "platform_revenue" in text and "1.200000" in text


def test_balance_that_disagrees_with_its_postings_fails(funded: Any) -> None:
    account = business_account(organization=funded)
    Account.objects.filter(pk=account.pk).update(balance=account.balance + 1)
    err = StringIO()
    with pytest.raises(CommandError, match="1 invariant breach"):
        call_command("reconcile_ledger", stdout=StringIO(), stderr=err)
    assert "postings sum to 100000000" in err.getvalue()
