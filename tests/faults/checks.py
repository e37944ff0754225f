"""What every fault test ends with: nothing lost, nothing done twice, books that balance."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Sum


def ended_well() -> list[str]:
    """The problems found (an empty list when all is well):

    every query released (charged once, paid once, with a result) or failed/rejected with
    its budget and price given back; each dataset's spent epsilon equal to the charges it
    holds; the ledger reconciled; the audit log verifying."""
    from audit.selectors import log_verify
    from cleanroom.datasets.models import Dataset
    from cleanroom.queries.models import BudgetCharge, Query
    from payouts.models import Distribution, JournalEntry
    from payouts.reconcile import ledger_reconcile

    problems: list[str] = []
    for query in Query.objects.order_by("pk"):
        charge = BudgetCharge.objects.filter(query=query).first()
        state = charge.state if charge else None
        paid = Distribution.objects.filter(query_id=query.pk).count()
        charged = JournalEntry.objects.filter(key=f"query:{query.pk}:charge").count()
        given_back = JournalEntry.objects.filter(key=f"query:{query.pk}:hold:released").count()
        if query.status == "released":
            if (state, paid, charged, given_back) != ("charged", 1, 1, 0) or not query.result:
                problems.append(f"released query {query.pk}: {state}, {paid} paid, {charged}")
        elif query.status in ("failed", "rejected"):
            if (state, paid, charged, given_back) != ("refunded", 0, 0, 1):
                problems.append(
                    f"{query.status} query {query.pk} not refunded: {state}, {paid} paid, "
                    f"{charged} charged, {given_back} given back ({query.error})"
                )
        else:
            problems.append(f"query {query.pk} is still {query.status}")
    for dataset in Dataset.objects.all():
        held = BudgetCharge.objects.filter(
            dataset=dataset, state__in=("reserved", "charged")
        ).aggregate(total=Sum("epsilon"))["total"] or Decimal(0)
        if dataset.spent_epsilon != held:
            problems.append(f"{dataset.slug}: spent {dataset.spent_epsilon}, charges {held}")
    ledger = ledger_reconcile()
    problems.extend(f"ledger: {problem}" for problem in ledger.problems)
    audit = log_verify()
    if not audit.ok:
        problems.append(f"audit: entry {audit.first_bad_entry}: {audit.reason}")
    return problems
