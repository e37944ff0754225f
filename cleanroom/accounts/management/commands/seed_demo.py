"""`manage.py seed_demo`: demo accounts and data for a first run (idempotent).

Each capability seeds its own part in its `demo.py`; this command runs them in
dependency order and prints the sign-ins.
"""

import time
from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand

# Order matters: accounts, then identity (contributors), the pool, queries, money.
SEED_MODULES = [
    "cleanroom.accounts.demo",
    "identity.demo",
    "cleanroom.datasets.demo",
    "cleanroom.queries.demo",
    "payouts.demo",
    "audit.demo",
]


class Command(BaseCommand):
    help = "Seed demo accounts, a dataset, contributors and queries (safe to run twice)."

    def handle(self, *args: Any, **options: Any) -> None:
        lines: list[str] = []
        started = time.monotonic()
        for name in SEED_MODULES:
            module = import_module(name)
            step = time.monotonic()
            lines.extend(module.seed(stdout=self.stdout) or [])
            self.stderr.write(f"seed_demo: {name} in {time.monotonic() - step:.1f} s")
        self.stderr.write(f"seed_demo: done in {time.monotonic() - started:.1f} s")
        for line in lines:
            self.stdout.write(line)
