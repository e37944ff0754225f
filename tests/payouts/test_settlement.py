"""Settlement: earnings by difference arrays, one line per contributor keyed (settlement,
contributor), batches, Merkle root and inclusion proofs, idempotent re-runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from payouts.merkle import leaf_hash, proof_verify
from payouts.models import Distribution, JournalEntry, Posting, Settlement
from payouts.reconcile import ledger_reconcile
from payouts.selectors import contributor_balance
from payouts.services import query_charge
from payouts.settlement import (
    earnings_compute,
    settlement_open,
    settlement_process,
    settlement_proof,
)
from tests.payouts.conftest import members


def test_earnings_match_the_naive_sum(db: Any) -> None:
    rng = np.random.default_rng(7)
    groups = []
    naive: dict[int, int] = {}
    for _ in range(40):
        pool = np.unique(rng.integers(1, 300, size=120))
        share = int(rng.integers(1, 1000))
        from payouts.membership import ranges_from_members

        groups.append((ranges_from_members(pool), share))
        for pk in pool.tolist():
            naive[pk] = naive.get(pk, 0) + share
    pks, amounts = earnings_compute(groups)
    assert dict(zip(pks.tolist(), amounts.tolist(), strict=True)) == naive


def _charge_three(funded: Any, dataset: Any, make_query: Any) -> list[Distribution]:
    return [
        query_charge(query=make_query(dataset, epsilon="0.5"), members=members(1, 2, 3, 4)),
        query_charge(query=make_query(dataset, epsilon="0.1"), members=members(3, 4, 5)),
        query_charge(query=make_query(dataset, epsilon="0.5"), members=members(1, 2, 3, 4)),
    ]


def test_settlement_pays_every_member_exactly(funded: Any, dataset: Any, make_query: Any) -> None:
    d1, d2, d3 = _charge_three(funded, dataset, make_query)
    settlement = settlement_open(currency="EUR")
    assert settlement is not None and settlement.distribution_count == 3
    settlement = settlement_process(settlement_id=settlement.pk)
    lines = dict(
        Posting.objects.filter(
            entry__settlement=settlement, contributor_pk__isnull=False
        ).values_list("contributor_pk", "amount")
    )
    assert lines == {
        1: d1.share + d3.share,
        2: d1.share + d3.share,
        3: d1.share + d2.share + d3.share,
        4: d1.share + d2.share + d3.share,
        5: d2.share,
    }
    assert settlement.status == "completed"
    assert settlement.total_amount == sum(lines.values())
    assert settlement.contributor_count == 5
    assert AuditEvent.objects.filter(action="payouts.settlement.completed").count() == 1
    assert contributor_balance(contributor_pk=5, currency="EUR") == d2.share
    assert ledger_reconcile().ok


def test_balance_between_settlements_counts_unsettled_shares(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    d1, d2, d3 = _charge_three(funded, dataset, make_query)
    assert contributor_balance(contributor_pk=3, currency="EUR") == d1.share + d2.share + d3.share
    assert contributor_balance(contributor_pk=99, currency="EUR") == 0
    settlement = settlement_open(currency="EUR")
    assert settlement is not None
    # Claimed but not yet written: still counted once.
    assert contributor_balance(contributor_pk=3, currency="EUR") == d1.share + d2.share + d3.share
    settlement_process(settlement_id=settlement.pk)
    assert contributor_balance(contributor_pk=3, currency="EUR") == d1.share + d2.share + d3.share


def test_settlement_in_batches_and_rerun_writes_nothing_new(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    _charge_three(funded, dataset, make_query)
    settlement = settlement_open(currency="EUR")
    assert settlement is not None
    Settlement.objects.filter(pk=settlement.pk).update(batch_size=2)
    settlement_process(settlement_id=settlement.pk)
    keys = list(
        JournalEntry.objects.filter(settlement=settlement)
        .order_by("key")
        .values_list("key", flat=True)
    )
    assert keys == [f"settlement:{settlement.pk}:batch:{k}" for k in range(3)]
    postings = Posting.objects.count()
    Settlement.objects.filter(pk=settlement.pk)  # re-running a completed settlement is a no-op
    settlement_process(settlement_id=settlement.pk)
    assert Posting.objects.count() == postings
    assert ledger_reconcile().ok


def test_nothing_to_settle_opens_nothing(db: Any) -> None:
    assert settlement_open(currency="EUR") is None
    assert Settlement.objects.count() == 0


def test_a_distribution_is_settled_once(funded: Any, dataset: Any, make_query: Any) -> None:
    _charge_three(funded, dataset, make_query)
    first = settlement_open(currency="EUR")
    assert first is not None
    assert settlement_open(currency="EUR") is None
    query_charge(query=make_query(dataset), members=members(7))
    second = settlement_open(currency="EUR")
    assert second is not None and second.distribution_count == 1


def test_every_contributor_gets_a_proof_of_their_line_only(
    funded: Any, dataset: Any, make_query: Any, monkeypatch: Any
) -> None:
    import payouts.settlement as settlement_module

    query_charge(query=make_query(dataset), members=np.arange(1, 41, dtype=np.int64))
    settlement = settlement_open(currency="EUR")
    assert settlement is not None
    monkeypatch.setattr(settlement_module, "CHUNK", 16)  # proofs cross the chunk roots
    settlement = settlement_process(settlement_id=settlement.pk)
    assert len(settlement.chunk_roots) == 3
    root = bytes.fromhex(settlement.merkle_root)
    for pk in (1, 16, 17, 33, 40):
        proof = settlement_proof(settlement=settlement, contributor_pk=pk)
        assert proof is not None
        leaf = leaf_hash(
            settlement=settlement.pk,
            contributor=pk,
            amount=proof["leaf"]["amount_micro"],
            currency="EUR",
        )
        assert leaf.hex() == proof["leaf"]["hash"]
        assert proof_verify(leaf=leaf, proof=proof["proof"], root=root)
        forged = leaf_hash(
            settlement=settlement.pk,
            contributor=pk,
            amount=proof["leaf"]["amount_micro"] + 1,
            currency="EUR",
        )
        assert not proof_verify(leaf=forged, proof=proof["proof"], root=root)
    assert settlement_proof(settlement=settlement, contributor_pk=41) is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="database guards are PostgreSQL's")
def test_distribution_is_immutable_except_its_settlement_once(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    distribution = query_charge(query=make_query(dataset), members=members(1, 2))
    for statement in (
        "UPDATE payouts_distribution SET share = share + 1 WHERE id = %s",
        "DELETE FROM payouts_distribution WHERE id = %s",
    ):
        with (
            pytest.raises(IntegrityError, match="immutable"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [distribution.pk])
    first = settlement_open(currency="EUR")
    assert first is not None
    other = Settlement.objects.create(currency="EUR")
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        Distribution.objects.filter(pk=distribution.pk).update(settlement=other)
    assert Distribution.objects.get(pk=distribution.pk).settlement_id == first.pk


def _in_threads(count: int, target: Any) -> list[Any]:
    import threading

    from django.db import connections

    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        try:
            results.append(target())
        except BaseException as error:  # reported below: a thread must not fail silently
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under concurrency")
@pytest.mark.django_db(transaction=True)
def test_concurrent_settlements_claim_and_write_once(
    funded: Any, dataset: Any, make_query: Any
) -> None:
    _charge_three(funded, dataset, make_query)
    opened = _in_threads(4, lambda: settlement_open(currency="EUR"))
    claimed = [s for s in opened if s is not None]
    assert len(claimed) == 1 and claimed[0].distribution_count == 3
    settlement = claimed[0]
    Settlement.objects.filter(pk=settlement.pk).update(batch_size=2)
    _in_threads(3, lambda: settlement_process(settlement_id=settlement.pk))
    assert Posting.objects.filter(contributor_pk__isnull=False).count() == 5
    assert Settlement.objects.get(pk=settlement.pk).status == "completed"
    assert AuditEvent.objects.filter(action="payouts.settlement.completed").count() == 1
    assert ledger_reconcile().ok


def test_a_served_proof_verifies_offline_and_a_tampered_one_does_not(
    api: Any, funded: Any, dataset: Any, make_query: Any, make_contributor: Any, tmp_path: Any
) -> None:
    import copy
    import json

    from payouts.merkle import main, proof_check

    me = make_contributor()
    query_charge(query=make_query(dataset), members=members(me.pk, me.pk + 1, me.pk + 2))
    settlement_process(settlement_id=settlement_open(currency="EUR").pk)  # type: ignore[union-attr]
    [proof] = api(me.user).get("/api/v1/me/earnings/").json()["settlements"]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    assert main([str(path)]) == 0
    inflated = copy.deepcopy(proof)
    inflated["leaf"]["amount_micro"] += 1
    assert proof_check(inflated) == (False, "the leaf hash does not match its fields")
    forged = copy.deepcopy(proof)
    forged["leaf"]["amount_micro"] += 1
    forged["leaf"]["hash"] = leaf_hash(
        settlement=forged["leaf"]["settlement"],
        contributor=me.pk,
        amount=forged["leaf"]["amount_micro"],
        currency="EUR",
    ).hex()
    assert proof_check(forged)[0] is False
    path.write_text(json.dumps(forged))
    assert main([str(path)]) == 1
