"""Demo data of queries for `manage.py seed_demo`."""

from typing import Any


def seed(*, stdout: Any = None) -> list[str]:
    return []
