"""scripts/test on a machine with only Python: throwaway PostgreSQL and Redis from the dev wheels.

`scripts/services.py start` (what scripts/test runs first) starts a server only where nothing
answers at the configured address, and `stop` ends it; where the services answer (CI, this
machine) it starts nothing and prints nothing, so scripts/test behaves as before. `stop`
deletes only a folder that `start` made.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "services.py"), *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_nothing_listening_starts_throwaway_postgres_and_redis_then_stop_ends_them(
    tmp_path: Path,
) -> None:
    pg_port, redis_port = free_port(), free_port()
    database_url = f"postgres://postgres@127.0.0.1:{pg_port}/cleanroom_laptop"
    broker_url = f"redis://127.0.0.1:{redis_port}/0"
    assert not answers(pg_port) and not answers(redis_port)
    # Run from a scratch folder: a `stop` that went wrong could only ever reach that one.
    started = services(
        "start", cwd=tmp_path, DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip(), started.stderr
    root = Path(started.stdout.strip())
    try:
        assert root.is_dir()
        # It says so, naming what it started and where.
        assert f"no PostgreSQL answered at 127.0.0.1:{pg_port}" in started.stderr
        assert f"no Redis answered at 127.0.0.1:{redis_port}" in started.stderr
        # The URL's database exists and the URL's user may create tables, as scripts/test needs.
        with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("cleanroom_laptop",)
            conn.execute("CREATE TABLE t (x int)")
        client = redis.Redis.from_url(broker_url)
        assert client.ping() is True
        client.close()
    finally:
        stopped = services("stop", str(root), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert not root.exists()
    assert not answers(pg_port) and not answers(redis_port)


def test_stop_refuses_a_folder_that_start_did_not_make(tmp_path: Path) -> None:
    """An empty or foreign path must never be deleted (an empty one is the current folder)."""
    keep = tmp_path / "cleanroom-services-lookalike"
    keep.mkdir()
    (keep / "precious.txt").write_text("keep me")
    (tmp_path / "also-precious.txt").write_text("keep me too")
    for argument in (str(keep), "", ".", str(tmp_path)):
        result = services("stop", argument, cwd=tmp_path)
        assert result.returncode == 2, (argument, result.stderr)
    assert (keep / "precious.txt").read_text() == "keep me"
    assert (tmp_path / "also-precious.txt").read_text() == "keep me too"


def test_services_that_answer_are_used_as_they_are(tmp_path: Path) -> None:
    """CI's and this machine's own services: nothing started, nothing printed."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("runs against the PostgreSQL the suite uses")
    url = f"postgres://postgres@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/x"
    result = services(
        "start", cwd=tmp_path, DATABASE_URL=url, CELERY_BROKER_URL=settings.CELERY_BROKER_URL
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_sqlite_and_another_machines_address_are_left_alone(tmp_path: Path) -> None:
    result = services(
        "start",
        cwd=tmp_path,
        DATABASE_URL="sqlite:///var/x.sqlite3",
        # Not loopback: neither started nor even contacted (the name does not resolve anyway).
        CELERY_BROKER_URL="redis://broker.invalid:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_without_pg_dump_on_path_the_wheels_client_tools_are_offered(tmp_path: Path) -> None:
    """The backup drill runs pg_dump and pg_restore: on a machine without them, or when the
    server came from the PostgreSQL wheel, scripts/test puts the wheel's bin directory first
    on PATH (nothing is printed where the machine's tools serve its own server)."""
    import shutil

    if shutil.which("pg_dump") is not None:
        assert services("client-bin", cwd=tmp_path).stdout == ""
        # ...unless the server itself came from the wheel: its own client tools match it.
        started = tmp_path / "started"
        (started / "postgres").mkdir(parents=True)
        assert services("client-bin", str(started), cwd=tmp_path).stdout.strip() != ""
        assert services("client-bin", str(tmp_path / "nothing"), cwd=tmp_path).stdout == ""
    bare = tmp_path / "bin"  # a PATH holding only this Python
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    offered = services("client-bin", cwd=tmp_path, PATH=str(bare))
    assert offered.returncode == 0, offered.stderr
    client_bin = Path(offered.stdout.strip())
    assert (client_bin / "pg_dump").is_file() and (client_bin / "pg_restore").is_file()
    version = subprocess.run(
        [str(client_bin / "pg_dump"), "--version"], capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0 and "pg_dump (PostgreSQL)" in version.stdout
