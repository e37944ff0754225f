"""Demo data of payouts for `manage.py seed_demo`."""

from typing import Any


def seed(*, stdout: Any = None) -> list[str]:
    return []
