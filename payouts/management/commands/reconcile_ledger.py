"""`manage.py reconcile_ledger`: print balances and fail on any breach of a money invariant."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from payouts.reconcile import ledger_reconcile


class Command(BaseCommand):
    help = "Recompute the ledger's invariants from the raw rows; exit non-zero on any breach."

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_reconcile()
        self.stdout.write("account                 currency  balance           organization")
        for row in report.balances:
            self.stdout.write(
                f"{row['account']:<23} {row['currency']:<9} {row['balance']:>16}  {row['organization']}"
            )
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in report.figures.items()))
        if not report.ok:
            for problem in report.problems:
                self.stderr.write(f"BREACH: {problem}")
            raise CommandError(f"{len(report.problems)} invariant breach(es) found.")
        self.stdout.write(
            "OK: every entry balanced per currency, balances match postings, "
            "no account overdrawn, every distribution charged and settled to the unit."
        )
