"""Concurrent uploads of one contributor cannot exceed the row limit together."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection

from cleanroom.datasets.models import Contribution
from cleanroom.datasets.services import contribution_upload
from cleanroom.errors import ValidationFailed
from tests.datasets.conftest import record


def test_two_uploads_at_once_respect_the_limit(
    transactional_db: Any, dataset: Any, consented: Any
) -> None:
    person = consented()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def send() -> None:
        try:
            barrier.wait()
            contribution_upload(contributor=person, dataset=dataset, records=[record()] * 15)
            outcomes.append("stored")
        except ValidationFailed:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused", "stored"]
    assert sum(Contribution.objects.values_list("rows", flat=True)) == 15
