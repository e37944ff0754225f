"""Nothing contributed sits in plaintext: a database dump and every stored file, searched."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from cleanroom.datasets.models import Contribution, PoolSegment
from cleanroom.datasets.services import consent_give, dataset_create
from cleanroom.datasets.tasks import pools_compact_task
from tests.conftest import wait_for
from tests.datasets.conftest import HOUSEHOLDS_POLICY, HOUSEHOLDS_PRICE

# Values nobody else would store: any copy of them, plain or hex-encoded, is a leak.
TEXT_MARKER = "zq-plaintext-marker-5307"
CSV_MARKER = "vk-csv-marker-8812"
FLOAT_MARKER = 271828.18281
INT_MARKER = 918273645


def variants(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, raw.hex().encode(), raw.hex().upper().encode()]


def database_dump() -> bytes:
    db = settings.DATABASES["default"]
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    return subprocess.run(
        [
            "pg_dump",
            "--host",
            db.get("HOST") or "127.0.0.1",
            "--port",
            str(db.get("PORT") or 5432),
            "--username",
            db.get("USER") or "postgres",
            "--no-owner",
            db["NAME"],
        ],
        check=True,
        capture_output=True,
        env=env,
    ).stdout


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="pg_dump needs PostgreSQL",
)
def test_dump_and_storage_hold_no_uploaded_value(
    worker: Any, api: Any, compliance_user: Any, make_contributor: Any, caplog: Any
) -> None:
    dataset = dataset_create(
        actor=compliance_user,
        slug="diaries",
        name="Diaries",
        purpose="Free text research",
        schema={
            "columns": [
                {"name": "note", "type": "string"},
                {"name": "amount", "type": "float", "lower": 0, "upper": 1e9},
                {"name": "count", "type": "integer", "lower": 0, "upper": 10**10},
            ]
        },
        policy=HOUSEHOLDS_POLICY,
        price=HOUSEHOLDS_PRICE,
    )
    people = [make_contributor() for _ in range(3)]
    for person in people:
        consent_give(contributor=person, dataset=dataset)
    url = "/api/v1/datasets/diaries/contributions/"
    json_upload = api(people[0].user).post(
        url,
        {"records": [{"note": TEXT_MARKER, "amount": FLOAT_MARKER, "count": INT_MARKER}]},
        format="json",
    )
    csv = io.BytesIO(f"note,amount,count\n{CSV_MARKER},{FLOAT_MARKER},{INT_MARKER}\n".encode())
    csv_upload = api(people[1].user).post(url, {"file": csv}, format="multipart")
    refused = api(people[2].user).post(
        url,
        {"records": [{"note": TEXT_MARKER + "-refused", "amount": -1, "count": 1}]},
        format="json",
    )
    assert (json_upload.status_code, csv_upload.status_code, refused.status_code) == (
        201,
        201,
        400,
    )
    pools_compact_task.delay()  # the periodic job, through the real worker
    wait_for(
        lambda: not Contribution.objects.filter(is_compacted=False).exists(),
        what="compaction",
    )
    assert PoolSegment.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")

    dump = database_dump()
    assert b"diaries" in dump  # the dump is real and holds our tables
    files = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert files
    stored = [dump, *(p.read_bytes() for p in files)]
    logs = [p.read_bytes() for p in Path(settings.VAR_DIR).glob("test-worker-*.log")]
    responses = [json_upload.content, csv_upload.content, refused.content]

    for value in (TEXT_MARKER, CSV_MARKER, str(FLOAT_MARKER), str(INT_MARKER)):
        for needle in variants(value):
            assert not any(needle in blob for blob in stored), f"{value} found at rest"
            assert not any(needle in blob for blob in logs), f"{value} found in a log"
            assert not any(needle in blob for blob in responses), f"{value} in a response"
        assert value not in caplog.text
