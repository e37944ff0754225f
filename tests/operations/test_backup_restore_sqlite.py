"""Backup and restore on SQLite, the zero-setup default (DATABASE_URL unset or sqlite:///).

Every step runs in its own `manage.py` process, as an operator runs it, away from this
test's PostgreSQL database and Redis broker: a small demo world is seeded into a SQLite file
named by DATABASE_URL, backed up, and restored with DATABASE_URL unset into a new var folder
(so into that folder's own SQLite file) with the keys passed in from outside. The restored
service has the same pools (members and rows), its audit log verifies and its ledger
balances. The PostgreSQL drill and the refusals are in test_backup_restore.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.operations.test_backup_restore import _manage, _pool

POPULATION = 100  # the demo datasets' minimum pool: their queries run and are released
LATE_RECORD = {
    "age": 41,
    "region": "north",
    "income": 52000.0,
    "household_size": 2,
    "visits": 4,
    "owns_home": True,
}


def world_seed() -> None:
    """In the seeding process: the demo world, then one upload that stays uncompacted and
    leaves the audit log an unsigned tail after the demo's checkpoint."""
    from django.core.management import call_command

    from cleanroom.accounts.services import contributor_get_or_create
    from cleanroom.datasets.models import Dataset
    from cleanroom.datasets.services import consent_give, contribution_upload

    os.environ["CLEANROOM_DEMO_POPULATION"] = str(POPULATION)  # this process only
    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_demo")
    households = Dataset.objects.get(slug="households")
    late, _ = contributor_get_or_create(did="did:example:sqlite-drill-late")
    consent_give(contributor=late, dataset=households)
    contribution_upload(contributor=late, dataset=households, records=[LATE_RECORD])


def world_state() -> dict[str, Any]:
    """In a process of the service: what its pools answer, and what the world holds."""
    from cleanroom.datasets.models import Contribution, Dataset, PoolSegment
    from cleanroom.queries.models import Query

    pools = {}
    for dataset in Dataset.objects.order_by("slug"):
        members, rows = _pool(dataset)
        pools[dataset.slug] = {
            "members": len(members),
            "members_sha256": hashlib.sha256(json.dumps(members).encode()).hexdigest(),
            "rows": rows.height,
            "rows_sha256": hashlib.sha256(rows.write_csv().encode()).hexdigest(),
        }
    return {
        "pools": pools,
        "segments": PoolSegment.objects.count(),
        "uncompacted_uploads": Contribution.objects.filter(is_compacted=False).count(),
        "released_queries": Query.objects.filter(status="released").count(),
    }


@dataclass
class Service:
    """One SQLite service: its var folder, its database (None: DATABASE_URL unset, the
    folder's own cleanroom.sqlite3), its broker file (never this test's Redis) and keys."""

    var_dir: Path
    database_url: str | None
    keys: dict[str, str]

    def run(self, *arguments: str) -> str:
        """`manage.py <arguments>`; fails the test with its stderr, else returns stdout."""
        done = _manage(
            *arguments,
            database_url=self.database_url,
            var_dir=self.var_dir,
            CELERY_BROKER_URL=f"sqla+sqlite:///{self.var_dir / 'celery-broker.sqlite3'}",
            **self.keys,
        )
        assert done.returncode == 0, f"manage.py {arguments[0]}: {done.stderr[-3000:]}"
        return done.stdout

    def state(self, *, seed_first: bool = False) -> Any:
        """`world_state()` of this service (after `world_seed()` when `seed_first`)."""
        out = self.run(
            "shell",
            "-c",
            "import json; from tests.operations import test_backup_restore_sqlite as drill; "
            + ("drill.world_seed(); " if seed_first else "")
            + "print(json.dumps(drill.world_state()))",
        )
        return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_sqlite_backup_restores_into_the_default_file_with_the_same_pools(
    tmp_path: Path,
) -> None:
    (tmp_path / "keys").mkdir()
    keys = {  # this drill's own keys, kept apart from the var folders and the backup
        "CLEANROOM_KEK": base64.b64encode(os.urandom(32)).decode(),
        "CLEANROOM_AUDIT_KEY_FILE": str(tmp_path / "keys" / "audit_key.pem"),
    }
    (tmp_path / "world").mkdir()
    world = Service(
        tmp_path / "world-var", f"sqlite:///{tmp_path / 'world' / 'world.sqlite3'}", keys
    )
    before = world.state(seed_first=True)  # one process: seeding is not what is tested
    # Compacted segments and an upload waiting beside them; released (charged) queries.
    assert before["pools"]["households"]["members"] == 6 + POPULATION + 1
    assert before["pools"]["households"]["rows"] == 6 + POPULATION + 1
    assert before["pools"]["commutes"]["members"] == 5 + POPULATION
    assert before["segments"] == 4
    assert before["uncompacted_uploads"] == 1
    assert before["released_queries"] == 4

    world.run("backup", "--quiet", "--out", str(tmp_path / "backup"))
    text = (tmp_path / "backup" / "manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["database"]["vendor"] == "sqlite"
    assert manifest["database"]["file"] == "database.sqlite3"
    assert len(manifest["segments"]) == 4
    checkpoint = manifest["audit"]["checkpoint"]["tree_size"]
    assert manifest["audit"]["entries"] > checkpoint  # the late upload is an unsigned tail
    assert keys["CLEANROOM_KEK"] not in text

    # DATABASE_URL unset: the restore writes the new var folder's own cleanroom.sqlite3.
    restored = Service(tmp_path / "restored-var", None, keys)
    out = restored.run("restore", "--quiet", str(tmp_path / "backup"))
    report = json.loads(out[: out.rindex("}") + 1])
    assert report["database"] == "cleanroom.sqlite3"
    assert report["backup_checkpoint"] == checkpoint
    assert report["restored_checkpoint"] == manifest["audit"]["entries"] + 1  # + the restore
    assert report["segments"] == 4 and report["migrations_applied"] == 0
    assert (restored.var_dir / "cleanroom.sqlite3").is_file()
    segments = restored.var_dir / "media" / "pool" / "cleanroom"
    assert sorted(path.relative_to(segments).as_posix() for path in segments.rglob("*.seg")) == (
        sorted(segment["file"] for segment in manifest["segments"])
    )

    assert restored.state() == before  # the same members and rows in every pool
    verified = json.loads(restored.run("audit_verify"))
    assert verified["ok"] is True
    assert verified["entries"] == verified["latest_checkpoint"] == report["restored_checkpoint"]
    assert "OK: every entry balanced per currency" in restored.run("reconcile_ledger")
