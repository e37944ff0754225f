"""Backup and restore drill: a backup restored into a fresh database and folder answers the
same, its audit log verifies and provably extends the backed-up one, its ledger balances;
a damaged backup, a missing key or a used database are refused before anything is written;
a backup waits for a pool writer instead of copying files that writer deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import ROOT, WorkerProcess, wait_for

SCHEMA = {
    "columns": [
        {"name": "age", "type": "integer", "lower": 18, "upper": 100},
        {"name": "region", "type": "string", "categories": ["north", "south", "east", "west"]},
        {"name": "income", "type": "float", "lower": 0, "upper": 200000},
    ]
}
POLICY = {
    "total_epsilon": "10",
    "max_query_epsilon": "1",
    "min_contributors": 5,
    "max_rows_per_contributor": 3,
    "auto_approve": True,
}
PRICE = {"currency": "EUR", "per_query": "1.50", "per_epsilon": "10", "platform_fee": "0.20"}
SQL = "SELECT region, COUNT(*) AS n, AVG(income) AS mean_income FROM households GROUP BY region"
REGIONS = ["north", "south", "east", "west"]


def _rows(index: int) -> list[dict[str, Any]]:
    return [
        {
            "age": 20 + (index * 7 + k) % 60,
            "region": REGIONS[(index + k) % 4],
            "income": 1000.0 * (index + k + 1),
        }
        for k in range(2)
    ]


def _seed(
    compliance_user: Any, business_user: Any, make_contributor: Any, contributors: int = 8
) -> Any:
    from cleanroom.datasets.services import consent_give, contribution_upload, dataset_create
    from payouts.services import topup_record

    topup_record(
        organization=business_user.organization,
        amount=1_000_000_000,
        actor=None,
        currency="EUR",
        reference="backup-drill",
    )
    dataset = dataset_create(
        actor=compliance_user,
        slug="households",
        name="Households",
        purpose="Backup drill",
        schema=SCHEMA,
        policy=POLICY,
        price=PRICE,
    )
    for index in range(contributors):
        person = make_contributor(f"did:example:drill-{index}")
        consent_give(contributor=person, dataset=dataset)
        contribution_upload(contributor=person, dataset=dataset, records=_rows(index))
    return dataset


def _pool(dataset: Any) -> tuple[list[int], pl.DataFrame]:
    from cleanroom.datasets.models import Dataset
    from cleanroom.datasets.pool import pool_snapshot

    snapshot = pool_snapshot(dataset=Dataset.objects.get(slug=dataset.slug))
    frame = snapshot.frame.collect()
    return snapshot.members.tolist(), frame.sort(frame.columns)  # every column: one order


def _released(pk: int) -> bool:
    from cleanroom.queries.models import Query

    return Query.objects.filter(pk=pk, status="released").exists()


def _restored_name() -> str:
    return f"{settings.DATABASES['default']['NAME']}_restored"


def _database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
        f"{db.get('PORT') or 5432}/{name}"
    )


def _drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _database_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Segment files of the in-process tests go to this test's own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def restored_database() -> Iterator[str]:
    name = _restored_name()
    _drop_database(name)  # a leftover of an interrupted run of this very test
    yield name
    _drop_database(name)


def _manage(
    *arguments: str, database_url: str | None, var_dir: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`manage.py <arguments>` as an operator runs it: another process with its own var
    folder and database (None: DATABASE_URL unset, the SQLite file in the var folder), the
    keys passed in from outside (this process's, unless `env` names others)."""
    environment = {
        **os.environ,
        "CLEANROOM_VAR_DIR": str(var_dir),
        "CLEANROOM_KEK": settings.CLEANROOM_KEK,
        "CLEANROOM_AUDIT_KEY_FILE": str(settings.CLEANROOM_AUDIT_KEY_FILE),
        **env,
    }
    environment.pop("DATABASE_URL", None)
    if database_url is not None:
        environment["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _restore_command(
    source: Path, database: str, var_dir: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`manage.py restore` into a new PostgreSQL database and a new var folder."""
    return _manage(
        "restore",
        "--quiet",
        str(source),
        database_url=_database_url(database),
        var_dir=var_dir,
        **env,
    )


@contextmanager
def _connected_to(name: str, media_root: Path) -> Iterator[None]:
    """Point this process's default connection and MEDIA_ROOT at the restored copy."""
    original_name = connection.settings_dict["NAME"]
    original_media = settings.MEDIA_ROOT
    connection.close()
    connection.settings_dict["NAME"] = name
    settings.MEDIA_ROOT = media_root
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original_name
        settings.MEDIA_ROOT = original_media


@pytest.mark.worker
@pytest.mark.slow
def test_a_restored_backup_answers_the_same_verifies_extends_and_balances(
    worker: Any,
    celery_worker_process: Any,
    compliance_user: Any,
    business_user: Any,
    make_contributor: Any,
    restored_database: str,
    tmp_path: Path,
) -> None:
    from audit import chain
    from audit.selectors import checkpoint_latest, consistency_proof_get, log_verify
    from audit.services import checkpoint_create
    from cleanroom.datasets.models import Contribution, Dataset, PoolSegment
    from cleanroom.datasets.services import consent_give, contribution_upload, pool_compact
    from cleanroom.operations.services import backup_create
    from cleanroom.queries.services import query_submit
    from payouts.reconcile import ledger_reconcile

    dataset = _seed(compliance_user, business_user, make_contributor)
    pool_compact(dataset_pk=dataset.pk)
    # One upload stays uncompacted: the pool is segment files plus database rows.
    late = make_contributor("did:example:drill-late")
    consent_give(contributor=late, dataset=dataset)
    contribution_upload(contributor=late, dataset=dataset, records=_rows(99))
    assert PoolSegment.objects.filter(dataset=dataset).exists()
    assert Contribution.objects.filter(dataset=dataset, is_compacted=False).count() == 1
    query = query_submit(dataset="households", sql=SQL, epsilon="0.5", requester=business_user)
    wait_for(lambda: _released(query.pk), timeout=60, what="the first query", worker=worker)
    signed = checkpoint_create()
    assert signed is not None
    consent_give(
        contributor=make_contributor("did:example:drill-tail"), dataset=dataset
    )  # unsigned tail

    members, rows = _pool(dataset)
    assert len(members) == 9 and rows.height == 18
    manifest = backup_create(destination=tmp_path / "backup")
    text = (tmp_path / "backup" / "manifest.json").read_text()
    assert manifest["audit"]["checkpoint"]["tree_size"] == signed.tree_size
    assert manifest["audit"]["entries"] > signed.tree_size
    assert manifest["keys"]["included"] is False
    assert settings.CLEANROOM_KEK not in text  # ids only, never the keys
    assert Path(settings.CLEANROOM_AUDIT_KEY_FILE).read_text().split("-----")[2].strip() not in text
    assert {s["file"] for s in manifest["segments"]} == set(
        PoolSegment.objects.values_list("file_name", flat=True)
    )

    var_dir = tmp_path / "restored-var"
    done = _restore_command(tmp_path / "backup", restored_database, var_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert report["backup_checkpoint"] == signed.tree_size
    assert report["restored_checkpoint"] == manifest["audit"]["entries"] + 1  # + the restore event

    celery_worker_process.stop()  # one worker on the broker at a time: the restored one next
    with _connected_to(restored_database, var_dir / "media"):
        restored_segments = Path(settings.MEDIA_ROOT) / "pool" / restored_database
        assert sorted(
            p.relative_to(restored_segments).as_posix() for p in restored_segments.rglob("*.seg")
        ) == sorted(s["file"] for s in manifest["segments"])
        # The same pool answers: members and every row, from the restored segments and rows.
        restored_members, restored_rows = _pool(dataset)
        assert restored_members == members
        assert restored_rows.equals(rows)
        # The audit log verifies and its newest checkpoint extends the backed-up one.
        verified = log_verify()
        assert verified.ok, verified.reason
        newest = checkpoint_latest()
        assert newest is not None and newest.tree_size == report["restored_checkpoint"]
        old = manifest["audit"]["checkpoint"]
        proof = consistency_proof_get(first=old["tree_size"], second=newest.tree_size)
        assert chain.verify_consistency(
            old["tree_size"],
            newest.tree_size,
            bytes.fromhex(old["root"]),
            bytes.fromhex(newest.root),
            [bytes.fromhex(p) for p in proof["proof"]],
        )
        assert newest.chain_head != manifest["audit"]["head"]  # it signs past the backup's head
        ledger = ledger_reconcile()
        assert ledger.ok, ledger.problems
        # A query runs on the restored pool, through a worker of the restored service.
        restored_worker = WorkerProcess(
            extra_env={
                "CLEANROOM_VAR_DIR": str(var_dir),
                "CLEANROOM_KEK": settings.CLEANROOM_KEK,
                "CLEANROOM_AUDIT_KEY_FILE": str(settings.CLEANROOM_AUDIT_KEY_FILE),
            }
        )
        restored_worker.start()
        try:
            from cleanroom.accounts.models import User

            analyst = User.objects.get(username=business_user.username)
            again = query_submit(dataset="households", sql=SQL, epsilon="0.5", requester=analyst)
            wait_for(
                lambda: _released(again.pk),
                timeout=60,
                what="a query on the restored pool",
                worker=restored_worker,
            )
        finally:
            restored_worker.stop()
        assert ledger_reconcile().ok
        assert Dataset.objects.get(slug="households").spent_epsilon == 1
        assert log_verify().ok


@pytest.mark.slow
def test_a_damaged_backup_is_refused_before_anything_is_written(
    transactional_db: Any,
    media_root: Path,
    compliance_user: Any,
    business_user: Any,
    make_contributor: Any,
    restored_database: str,
    tmp_path: Path,
) -> None:
    from cleanroom.datasets.services import pool_compact
    from cleanroom.operations.services import backup_create

    dataset = _seed(compliance_user, business_user, make_contributor, contributors=5)
    pool_compact(dataset_pk=dataset.pk)
    manifest = backup_create(destination=tmp_path / "backup")
    segment = tmp_path / "backup" / "segments" / manifest["segments"][0]["file"]
    blob = bytearray(segment.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit
    segment.write_bytes(bytes(blob))

    done = _restore_command(tmp_path / "backup", restored_database, tmp_path / "var")
    assert done.returncode == 1
    assert (
        manifest["segments"][0]["file"] in done.stderr
        and "does not match the manifest" in done.stderr
    )
    assert not _database_exists(restored_database)
    assert not (tmp_path / "var" / "media" / "pool").exists()


@pytest.mark.slow
def test_a_restore_without_the_backups_keys_or_into_a_used_database_is_refused(
    transactional_db: Any,
    media_root: Path,
    settings: Any,
    compliance_user: Any,
    business_user: Any,
    make_contributor: Any,
    tmp_path: Path,
) -> None:
    """In-process (the command's path is the drill's): each refusal before any write."""
    import base64

    from audit.models import AuditEvent
    from cleanroom.datasets.services import pool_compact
    from cleanroom.operations.services import BackupFailed, backup_check, backup_restore

    dataset = _seed(compliance_user, business_user, make_contributor, contributors=5)
    pool_compact(dataset_pk=dataset.pk)
    from cleanroom.operations.services import backup_create

    manifest = backup_create(destination=tmp_path / "backup")
    events = AuditEvent.objects.count()
    kek, audit_key = settings.CLEANROOM_KEK, settings.CLEANROOM_AUDIT_KEY_FILE

    settings.CLEANROOM_KEK = base64.b64encode(b"\x07" * 32).decode()
    with pytest.raises(BackupFailed, match=f"KEK id\\(s\\) {manifest['keys']['kek_ids'][0]}"):
        backup_check(source=tmp_path / "backup")
    settings.CLEANROOM_KEK = kek
    settings.CLEANROOM_AUDIT_KEY_FILE = str(tmp_path / "elsewhere" / "audit_key.pem")
    with pytest.raises(BackupFailed, match="audit key file .* does not exist"):
        backup_check(source=tmp_path / "backup")
    assert not (tmp_path / "elsewhere").exists()  # no new key made up on the way
    settings.CLEANROOM_AUDIT_KEY_FILE = audit_key
    backup_check(source=tmp_path / "backup")  # with both keys it passes

    # Into this test's own, migrated database (with an empty pool folder): refused before
    # anything is written.
    settings.MEDIA_ROOT = tmp_path / "empty-media"
    with pytest.raises(BackupFailed, match="database .* is not empty"):
        backup_restore(source=tmp_path / "backup")
    assert AuditEvent.objects.count() == events
    assert not list((tmp_path / "empty-media").rglob("*"))


@pytest.mark.slow
def test_a_backup_waits_for_a_pool_writer_and_copies_what_it_left(
    transactional_db: Any,
    media_root: Path,
    compliance_user: Any,
    business_user: Any,
    make_contributor: Any,
    tmp_path: Path,
) -> None:
    """A retention run holds the pool lock and deletes every segment file when it commits;
    a backup started meanwhile must describe the pool after it, not copy files it deletes."""
    from django.db import connections
    from django.utils import timezone

    from cleanroom.datasets.models import PoolSegment
    from cleanroom.datasets.services import _pool_lock, contributions_expire, pool_compact
    from cleanroom.operations.services import backup_create

    dataset = _seed(compliance_user, business_user, make_contributor, contributors=5)
    pool_compact(dataset_pk=dataset.pk)
    before = set(PoolSegment.objects.values_list("file_name", flat=True))
    assert before
    locked, failure = threading.Event(), []

    def writer() -> None:
        try:
            with _pool_lock(dataset.pk):
                locked.set()
                time.sleep(1.5)
                contributions_expire(now=timezone.now() + timedelta(days=400))
        except BaseException as error:  # surfaced below
            failure.append(error)
        finally:
            locked.set()
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    assert locked.wait(30)
    manifest = backup_create(destination=tmp_path / "backup")
    thread.join(30)
    assert not failure, failure
    # The pool as the writer left it: no segment (every upload expired), no upload row.
    assert manifest["segments"] == [] and manifest["counts"]["contributions"] == 0
    assert not PoolSegment.objects.exists()
    assert not [
        p
        for p in media_root.rglob("*.seg")
        if p.relative_to(media_root / "pool").as_posix().split("/", 1)[1] in before
    ]
