"""Backups that restore: the database and the encrypted pool segments, taken together.

Invariants:
* **One moment.** A backup is one database snapshot (``pg_dump --snapshot`` of a REPEATABLE
  READ transaction; on SQLite a copy made under the write lock) and exactly the segment
  files that snapshot's ``PoolSegment`` rows name. The snapshot is taken while the backup
  holds every dataset's pool advisory lock in shared mode, so no compaction, erasure or
  retention run (they hold it exclusively, see ``cleanroom.datasets.services``) can delete
  or replace a named file before it is copied. Segments are stored relative to the pool
  folder, which is named after the database, so a restore may use another database name.
* **No key in a backup.** The manifest names the KEK ids that wrapped the keys it holds
  and the audit key id that signed its checkpoints, never the keys: a stolen backup is
  ciphertext, and a restore needs the same ``CLEANROOM_KEK`` (or it among
  ``CLEANROOM_KEK_PREVIOUS``) and the same audit key file.
* **Checked before anything is written.** A restore first checks the manifest, every
  file's SHA-256 and the key ids; it writes only into an empty (or absent) database and
  an empty pool folder; it ends only after the audit log verifies, a consistency proof
  shows the restored log's newest checkpoint extends the backup's, and the ledger
  reconciles. The restore is itself recorded in the restored log and signed over.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from cleanroom.errors import DomainError

FORMAT = "cleanroom-backup/1"
MANIFEST = "manifest.json"
DATABASE_DUMP = "database.dump"  # PostgreSQL: pg_dump's custom format
DATABASE_COPY = "database.sqlite3"  # SQLite: a consistent copy
SEGMENTS = "segments"
KEYS_NOTE = (
    "No key is in this backup: restoring it needs the KEK(s) named in kek_ids "
    "(CLEANROOM_KEK or CLEANROOM_KEK_PREVIOUS) and the audit key file whose id is "
    "audit_key_id, each kept apart from the backup."
)
CHUNK = 1024 * 1024

# The class half of the pool's advisory lock key; must equal the one
# cleanroom.datasets.services._pool_lock takes (tests/operations checks that a backup
# waits for it).
POOL_LOCK_CLASS = zlib.crc32(b"cleanroom.pool") & 0x7FFFFFFF

Progress = Callable[..., Any]  # tqdm-like: progress(total=..., desc=..., unit=...)


class BackupFailed(Exception):
    """The backup or restore was refused or could not finish; the message says why."""


@dataclass
class RestoreReport:
    backup_id: str
    database: str
    entries: int
    backup_checkpoint: int | None
    restored_checkpoint: int | None
    segments: int
    seconds: dict[str, float] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    migrations_applied: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "database": self.database,
            "audit_entries": self.entries,
            "backup_checkpoint": self.backup_checkpoint,
            "restored_checkpoint": self.restored_checkpoint,
            "segments": self.segments,
            "seconds": self.seconds,
            "ledger": self.ledger,
            "migrations_applied": self.migrations_applied,
        }


def _quiet(**options: Any) -> Any:
    return tqdm(disable=True, **options)


def _sha256_copy(source: Path, target: Path | None, bar: Any) -> tuple[str, int]:
    """SHA-256 and size of `source`, copying it to `target` on the way (constant memory)."""
    digest = hashlib.sha256()
    size = 0
    out = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = (target.parent / f".{target.name}.part").open("xb")
    try:
        with source.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
                bar.update(len(chunk))
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    if target is not None:
        os.replace(target.parent / f".{target.name}.part", target)
    return digest.hexdigest(), size


def _fresh_directory(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupFailed(f"{path} exists and is not an empty folder.")
    path.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- what a backup describes


def _kek_ids_in_use() -> list[str]:
    """Every KEK id some stored ciphertext depends on (ids only: fingerprints, not keys)."""
    from cleanroom.datasets.models import ContributorKey, PoolSegment
    from payouts.fields import KEK_ID_BYTES, EncryptedTextField

    ids = set(ContributorKey.objects.filter(wrapped__isnull=False).values_list("kek_id", flat=True))
    ids |= set(PoolSegment.objects.values_list("kek_id", flat=True))
    for model in apps.get_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                column = connection.ops.quote_name(str(model_field.column))
                table = connection.ops.quote_name(model._meta.db_table)
                with connection.cursor() as cursor:
                    # Only quoted identifiers from the models are spliced in.
                    cursor.execute(
                        f"SELECT DISTINCT substr({column}, 1, {KEK_ID_BYTES}) FROM {table} "  # noqa: S608
                        f"WHERE {column} IS NOT NULL"
                    )
                    ids |= {bytes(row[0]).decode("ascii", "replace") for row in cursor.fetchall()}
    return sorted(i for i in ids if i)


def _counts() -> dict[str, int]:
    from audit.models import AuditCheckpoint, AuditEvent
    from cleanroom.accounts.models import Contributor
    from cleanroom.datasets.models import Contribution, Dataset, PoolSegment
    from cleanroom.queries.models import Query
    from payouts.models import JournalEntry

    return {
        "datasets": Dataset.objects.count(),
        "contributors": Contributor.objects.count(),
        "contributions": Contribution.objects.count(),
        "pool_segments": PoolSegment.objects.count(),
        "queries": Query.objects.count(),
        "journal_entries": JournalEntry.objects.count(),
        "audit_events": AuditEvent.objects.count(),
        "audit_checkpoints": AuditCheckpoint.objects.count(),
    }


def _audit_state() -> dict[str, Any]:
    from audit import keys
    from audit.models import AuditEvent
    from audit.selectors import checkpoint_data, checkpoint_latest

    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    latest = checkpoint_latest()
    return {
        "entries": head[0] if head else 0,
        "head": head[1] if head else None,
        "checkpoint": checkpoint_data(latest) if latest else None,
        "audit_key_id": keys.current_key_id(),
    }


def _segment_names() -> list[str]:
    from cleanroom.datasets.models import PoolSegment

    return list(PoolSegment.objects.order_by("file_name").values_list("file_name", flat=True))


def _applied_migrations() -> dict[str, str]:
    from django.db.migrations.recorder import MigrationRecorder

    latest: dict[str, str] = {}
    for app, name in (
        MigrationRecorder(connection).migration_qs.order_by("id").values_list("app", "name")
    ):
        latest[app] = name
    return latest


# ---------------------------------------------------------------- backup


def _pg_environment(database: dict[str, Any], name: str | None = None) -> dict[str, str]:
    env = {**os.environ}
    env["PGHOST"] = str(database.get("HOST") or "127.0.0.1")
    env["PGPORT"] = str(database.get("PORT") or 5432)
    env["PGUSER"] = str(database.get("USER") or "postgres")
    env["PGDATABASE"] = str(name or database["NAME"])
    if database.get("PASSWORD"):
        env["PGPASSWORD"] = str(database["PASSWORD"])
    return env


@contextmanager
def _pools_shared() -> Iterator[str]:
    """Hold every dataset's pool lock in shared mode and a REPEATABLE READ snapshot taken
    after all of them were granted; yields the exported snapshot id (PostgreSQL)."""
    from cleanroom.datasets.models import Dataset

    held: set[int] = set()

    def lock(pks: set[int]) -> None:
        with connection.cursor() as cursor:
            for pk in sorted(pks - held):
                # Session level: granted before the snapshot's transaction begins, so the
                # snapshot sees every writer that held the lock as committed.
                cursor.execute("SELECT pg_advisory_lock_shared(%s, %s)", [POOL_LOCK_CLASS, pk])
                held.add(pk)

    try:
        lock(set(Dataset.objects.values_list("pk", flat=True)))
        while True:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    cursor.execute("SELECT pg_export_snapshot()")
                    snapshot = str(cursor.fetchone()[0])
                missing = set(Dataset.objects.values_list("pk", flat=True)) - held
                if not missing:
                    yield snapshot
                    return
            lock(missing)  # a dataset created meanwhile: lock it too, then a new snapshot
    finally:
        with connection.cursor() as cursor:
            for pk in sorted(held):
                cursor.execute("SELECT pg_advisory_unlock_shared(%s, %s)", [POOL_LOCK_CLASS, pk])


@contextmanager
def _sqlite_write_lock() -> Iterator[None]:
    """SQLite: another connection holds the write lock (no writer can commit; readers,
    including the copy, still read) while the backup is described and copied."""
    guard = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]), timeout=60)
    guard.isolation_level = None
    try:
        guard.execute("BEGIN IMMEDIATE")
        yield
        guard.execute("COMMIT")
    finally:
        guard.close()


def _dump_postgresql(*, snapshot: str, target: Path, progress: Progress) -> None:
    database = settings.DATABASES["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        estimate = int(cursor.fetchone()[0])
    command = [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--snapshot={snapshot}",
        f"--file={target}",
    ]
    bar = progress(total=estimate, desc="database (pg_dump)", unit="B", unit_scale=True)
    # stderr to a file: a pipe could fill while we poll the dump's size.
    with tempfile.TemporaryFile() as errors_file:
        try:
            process = subprocess.Popen(
                command,
                env=_pg_environment(database),
                stdout=subprocess.DEVNULL,
                stderr=errors_file,
            )
            seen = 0
            while process.poll() is None:
                time.sleep(0.2)
                size = target.stat().st_size if target.exists() else 0
                bar.update(max(0, size - seen))
                seen = max(seen, size)
            bar.total = seen  # the estimate was the database's size; the dump is smaller
            bar.refresh()
        finally:
            bar.close()
        errors_file.seek(0)
        errors = errors_file.read().decode(errors="replace")
    if process.returncode != 0:
        raise BackupFailed(f"pg_dump failed ({process.returncode}): {errors.strip()[-2000:]}")


def _copy_sqlite(target: Path) -> None:
    """A page-consistent copy through SQLite's backup API (writers are held off)."""
    source = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]), timeout=60)
    destination = sqlite3.connect(target)
    try:
        source.backup(destination)
    finally:
        destination.close()
        source.close()


def backup_create(*, destination: Path, progress: Progress = _quiet) -> dict[str, Any]:
    """Write a backup into `destination` (absent or empty) and return its manifest.

    The manifest is written last: a folder without one is an unfinished backup, which a
    restore refuses. The backup is then recorded in the audit log (its id and the
    manifest's SHA-256), outside the backup itself.
    """
    destination = Path(destination)
    _fresh_directory(destination)
    started = time.perf_counter()
    vendor = connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        raise BackupFailed(f"backups of {vendor} databases are not supported")
    database_file = destination / (DATABASE_DUMP if vendor == "postgresql" else DATABASE_COPY)
    segments_dir = destination / SEGMENTS
    segment_entries: list[dict[str, Any]] = []
    held = _pools_shared() if vendor == "postgresql" else _sqlite_write_lock()
    with held as snapshot:
        described_at = timezone.now()
        names = _segment_names()
        audit_state = _audit_state()
        kek_ids = _kek_ids_in_use()
        counts = _counts()
        migrations = _applied_migrations()
        if vendor == "postgresql":
            assert isinstance(snapshot, str)
            _dump_postgresql(snapshot=snapshot, target=database_file, progress=progress)
        else:
            _copy_sqlite(database_file)
        from cleanroom.datasets.storage import segment_path

        sources = [segment_path(name) for name in names]
        missing = [name for name, path in zip(names, sources, strict=True) if not path.is_file()]
        if missing:
            raise BackupFailed(
                f"{len(missing)} pool segment file(s) named by the database are missing, "
                f"e.g. {missing[0]}; the pool folder does not match the database."
            )
        total = sum(path.stat().st_size for path in sources)
        bar = progress(total=total, desc="pool segments", unit="B", unit_scale=True)
        try:
            for name, source in zip(names, sources, strict=True):
                digest, size = _sha256_copy(source, segments_dir / name, bar)
                segment_entries.append({"file": name, "sha256": digest, "bytes": size})
        finally:
            bar.close()
    database_sha, database_bytes = _sha256_copy(database_file, None, _quiet())
    backup_id = uuid.uuid4().hex
    manifest = {
        "format": FORMAT,
        "backup_id": backup_id,
        "created_at": described_at.isoformat(),
        "database": {
            "vendor": vendor,
            "name": str(Path(str(settings.DATABASES["default"]["NAME"])).name),
            "file": database_file.name,
            "sha256": database_sha,
            "bytes": database_bytes,
            "migrations": migrations,
        },
        "segments": segment_entries,
        "audit": {
            "entries": audit_state["entries"],
            "head": audit_state["head"],
            "checkpoint": audit_state["checkpoint"],
        },
        "keys": {
            "kek_ids": kek_ids,
            "audit_key_id": audit_state["audit_key_id"],
            "included": False,
            "note": KEYS_NOTE,
        },
        "counts": counts,
        "seconds": round(time.perf_counter() - started, 3),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    partial = destination / f".{MANIFEST}.part"
    partial.write_bytes(text)
    os.replace(partial, destination / MANIFEST)
    from audit.services import audit_record

    with transaction.atomic():
        audit_record(
            action="operations.backup.created",
            actor=None,
            subject=f"backup:{backup_id}",
            payload={
                "backup": backup_id,
                "manifest_sha256": hashlib.sha256(text).hexdigest(),
                "audit_entries": audit_state["entries"],
                "segments": len(segment_entries),
            },
        )
    return manifest


# ---------------------------------------------------------------- restore


def manifest_read(source: Path) -> dict[str, Any]:
    path = Path(source) / MANIFEST
    if not path.is_file():
        raise BackupFailed(f"{source} holds no {MANIFEST}: not a backup, or an unfinished one.")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise BackupFailed(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupFailed(f"{path} is not a {FORMAT} manifest.")
    return manifest


def _safe_relative(name: str) -> Path:
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise BackupFailed(f"segment name {name!r} is not a relative path inside the pool.")
    return relative


def backup_check(*, source: Path, progress: Progress = _quiet) -> dict[str, Any]:
    """Check a backup without writing anything: manifest, every SHA-256, and that the keys
    it needs are configured here. Returns the manifest."""
    from audit import keys
    from cleanroom.datasets import crypto

    source = Path(source)
    manifest = manifest_read(source)
    database = manifest["database"]
    expected_vendor = connection.vendor
    if database["vendor"] != expected_vendor:
        raise BackupFailed(
            f"the backup is of a {database['vendor']} database; this service uses {expected_vendor}."
        )
    known = set(crypto.known_keks())
    needed = set(manifest["keys"]["kek_ids"])
    if needed - known:
        raise BackupFailed(
            "the backup's keys are wrapped by KEK id(s) "
            f"{', '.join(sorted(needed - known))}, which neither CLEANROOM_KEK nor "
            f"CLEANROOM_KEK_PREVIOUS holds here (configured: {', '.join(sorted(known))})."
        )
    key_file = Path(settings.CLEANROOM_AUDIT_KEY_FILE)
    if not key_file.is_file():
        # keys.signing_key() would make a new key, under which the old checkpoints fail.
        raise BackupFailed(
            f"the audit key file {key_file} does not exist; restore needs the key with id "
            f"{manifest['keys']['audit_key_id']} (CLEANROOM_AUDIT_KEY_FILE)."
        )
    if keys.current_key_id() != manifest["keys"]["audit_key_id"]:
        raise BackupFailed(
            f"the audit key here has id {keys.current_key_id()}, the backup was signed by "
            f"{manifest['keys']['audit_key_id']}."
        )
    files = [(source / database["file"], database["sha256"], database["bytes"])]
    for entry in manifest["segments"]:
        files.append(
            (source / SEGMENTS / _safe_relative(entry["file"]), entry["sha256"], entry["bytes"])
        )
    bar = progress(
        total=sum(f[2] for f in files), desc="checking hashes", unit="B", unit_scale=True
    )
    try:
        for path, sha, size in files:
            if not path.is_file():
                raise BackupFailed(f"{path} is missing from the backup.")
            actual_sha, actual_size = _sha256_copy(path, None, bar)
            if actual_sha != sha or actual_size != size:
                raise BackupFailed(
                    f"{path} does not match the manifest (SHA-256 {actual_sha[:16]}..., "
                    f"{actual_size} bytes; expected {sha[:16]}..., {size} bytes)."
                )
    finally:
        bar.close()
    return manifest


def _pg_connect(name: str) -> Any:
    import psycopg

    database = settings.DATABASES["default"]
    return psycopg.connect(
        host=database.get("HOST") or "127.0.0.1",
        port=database.get("PORT") or 5432,
        user=database.get("USER") or "postgres",
        password=database.get("PASSWORD") or None,
        dbname=name,
        autocommit=True,
    )


def _postgresql_target_prepare(name: str) -> bool:
    """Make sure the target database is new or empty; returns True if it was created."""
    import psycopg
    from psycopg import sql

    with _pg_connect("postgres") as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    try:
        with _pg_connect(name) as target:
            tables = target.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
            ).fetchone()
    except psycopg.Error as exc:
        raise BackupFailed(f"cannot open database {name}: {exc}") from None
    if tables and tables[0]:
        raise BackupFailed(
            f"database {name} is not empty ({tables[0]} relations); restore only into a new "
            "or empty database."
        )
    return False


def _restore_postgresql(dump: Path, name: str, progress: Progress) -> None:
    database = settings.DATABASES["default"]
    bar = progress(total=None, desc="database (pg_restore)", unit="s")
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1):
            bar.update(1)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        result = subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={name}",
                str(dump),
            ],
            env=_pg_environment(database, name),
            capture_output=True,
            check=False,
        )
    finally:
        stop.set()
        ticker.join()
        bar.close()
    if result.returncode != 0:
        raise BackupFailed(
            f"pg_restore failed ({result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()[-2000:]}"
        )


def _restore_sqlite(copy: Path, name: str) -> None:
    target = Path(name)
    if target.exists() and target.stat().st_size > 0:
        raise BackupFailed(f"{target} exists; restore only into a new database file.")
    target.parent.mkdir(parents=True, exist_ok=True)
    _sha256_copy(copy, target, _quiet())


def _verify_restored(manifest: dict[str, Any], report: RestoreReport) -> None:
    """Audit log verifies, extends the backup's checkpoint; ledger reconciles."""
    from audit import chain, keys
    from audit.models import AuditEvent
    from audit.selectors import checkpoint_latest, consistency_proof_get, log_verify
    from audit.services import audit_record, checkpoint_create
    from payouts.reconcile import ledger_reconcile

    audit = manifest["audit"]
    if audit["entries"]:
        head = AuditEvent.objects.filter(seq=audit["entries"]).values_list("hash", flat=True)
        if list(head) != [audit["head"]]:
            raise BackupFailed(
                f"the restored audit log does not hold the backup's head at entry {audit['entries']}."
            )
    if AuditEvent.objects.filter(seq__gt=audit["entries"]).exists():
        raise BackupFailed("the restored audit log has entries the backup did not describe.")
    with transaction.atomic():
        audit_record(
            action="operations.backup.restored",
            actor=None,
            subject=f"backup:{manifest['backup_id']}",
            payload={
                "backup": manifest["backup_id"],
                "audit_entries": audit["entries"],
                "database": report.database,
            },
        )
    newest = checkpoint_create()  # signs the backup's unsigned tail and the restore event
    assert newest is not None
    report.restored_checkpoint = newest.tree_size
    verified = log_verify()
    if not verified.ok:
        raise BackupFailed(f"the restored audit log does not verify: {verified.reason}")
    latest = checkpoint_latest()
    assert latest is not None and latest.pk == newest.pk
    old = audit["checkpoint"]
    if old is not None:
        signed = chain.checkpoint_from_dict(old)
        if not chain.signature_is_valid(keys.public_key(), signed.body, signed.signature):
            raise BackupFailed("the backup's checkpoint is not signed by the audit key here.")
        proof = consistency_proof_get(first=old["tree_size"], second=newest.tree_size)
        if not chain.verify_consistency(
            old["tree_size"],
            newest.tree_size,
            bytes.fromhex(old["root"]),
            bytes.fromhex(newest.root),
            [bytes.fromhex(p) for p in proof["proof"]],
        ):
            raise BackupFailed(
                f"checkpoint {newest.tree_size} of the restored log does not prove that it "
                f"extends the backup's checkpoint {old['tree_size']}."
            )
    ledger = ledger_reconcile()
    if not ledger.ok:
        raise BackupFailed(f"the restored ledger does not reconcile: {'; '.join(ledger.problems)}")
    report.ledger = dict(ledger.figures)


def backup_restore(*, source: Path, progress: Progress = _quiet) -> RestoreReport:
    """Restore a backup into the configured database (new or empty) and its pool folder
    (new or empty), then prove it: audit log, consistency with the backup, ledger."""
    from django.core.management import call_command
    from django.db.migrations.executor import MigrationExecutor

    from cleanroom.datasets.storage import segment_path

    timings: dict[str, float] = {}
    started = time.perf_counter()
    source = Path(source)
    manifest = backup_check(source=source, progress=progress)
    timings["check"] = time.perf_counter() - started
    database = settings.DATABASES["default"]
    name = str(database["NAME"])
    # The pool folder of the target database; segments land under it by relative name.
    pool_folder = segment_path("placeholder").parent
    if pool_folder.exists() and any(pool_folder.iterdir()):
        raise BackupFailed(f"the pool folder {pool_folder} is not empty.")
    report = RestoreReport(
        backup_id=manifest["backup_id"],
        database=Path(name).name,
        entries=manifest["audit"]["entries"],
        backup_checkpoint=(manifest["audit"]["checkpoint"] or {}).get("tree_size"),
        restored_checkpoint=None,
        segments=len(manifest["segments"]),
    )
    connection.close()
    step = time.perf_counter()
    if connection.vendor == "postgresql":
        _postgresql_target_prepare(name)
        _restore_postgresql(source / manifest["database"]["file"], name, progress)
    else:
        _restore_sqlite(source / manifest["database"]["file"], name)
    timings["database"] = time.perf_counter() - step
    step = time.perf_counter()
    total = sum(entry["bytes"] for entry in manifest["segments"])
    bar = progress(total=total, desc="pool segments", unit="B", unit_scale=True)
    try:
        for entry in manifest["segments"]:
            relative = _safe_relative(entry["file"])
            digest, _ = _sha256_copy(source / SEGMENTS / relative, segment_path(entry["file"]), bar)
            if digest != entry["sha256"]:
                raise BackupFailed(f"segment {entry['file']} changed while it was restored.")
    finally:
        bar.close()
    timings["segments"] = time.perf_counter() - step
    step = time.perf_counter()
    connection.close()
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:  # a backup from an older release: bring its schema up to this code
        call_command("migrate", verbosity=0, interactive=False)
    report.migrations_applied = len(pending)
    try:
        _verify_restored(manifest, report)
    except DomainError as exc:  # e.g. the backup's checkpoint is not in the restored log
        raise BackupFailed(exc.detail) from None
    timings["verify"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - started
    report.seconds = {k: round(v, 3) for k, v in timings.items()}
    return report
