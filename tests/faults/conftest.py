"""Fault tests run on their own throwaway PostgreSQL and Redis (tests/faults/servers.py).

For this package the test process's database connection, the Celery app's broker and
every worker it starts point at those servers, so a test may crash and restart them
without touching the machine's services or the other tests' database. The schema is
built there by ``migrate``; ``transactional_db`` flushes it after each test as usual.
Everything is put back when the package ends.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.servers import PostgresServer, RedisServer

DATABASE = "cleanroom_faults"


@dataclass
class Servers:
    postgres: PostgresServer
    redis: RedisServer

    def restart_postgres(self) -> None:
        """A crash (immediate stop) and a start; the test process reconnects."""
        self.postgres.restart("immediate")
        reconnect()

    def restart_redis(self) -> None:
        """A clean restart; the test process's broker connections are renewed."""
        self.redis.restart()
        use_broker(self.redis.url(0))


def use_broker(url: str) -> None:
    """Point the Celery app (and the workers the tests start) at this broker."""
    from django.conf import settings
    from kombu import pools

    from cleanroom.celery import app

    pools.reset()  # closes and forgets every pooled broker connection of this process
    settings.CELERY_BROKER_URL = url
    app.conf.broker_url = app.conf.broker_read_url = app.conf.broker_write_url = url
    app._pool = None
    app.amqp._producer_pool = None


def reconnect() -> None:
    """After a server restart: drop the test process's broken database connections."""
    from django.db import connections

    for connection in connections.all():
        try:
            connection.close()
        except Exception:  # a dead socket: closing it may fail, forgetting it is enough
            connection.connection = None


@pytest.fixture(scope="package")
def servers(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Servers]:
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    root = Path(tempfile.mkdtemp(prefix="cleanroom-faults-"))
    root.chmod(0o755)  # the server user (nobody, under root) must reach its data
    postgres = redis = None
    database = settings.DATABASES["default"]
    saved = dict(database)
    broker = settings.CELERY_BROKER_URL
    try:
        postgres = PostgresServer(root)
        postgres.start()
        redis = RedisServer(root)
        redis.start()
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
        with django_db_blocker.unblock():
            connections.close_all()
            changes = {
                "HOST": "127.0.0.1",
                "PORT": str(postgres.port),
                "NAME": DATABASE,
                "USER": "postgres",
                "PASSWORD": "",
            }
            database.update(changes)
            connections["default"].settings_dict.update(changes)
            call_command("migrate", verbosity=0, interactive=False)
        use_broker(redis.url(0))
        yield Servers(postgres, redis)
    finally:
        with django_db_blocker.unblock():
            connections.close_all()
        database.clear()
        database.update(saved)
        connections["default"].settings_dict.update(saved)
        use_broker(broker)
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fault_db(servers: Servers, transactional_db: Any) -> Servers:
    """Committed data on the throwaway servers (ask for this, not `db`)."""
    return servers


# The fixtures of the queries area (a households dataset with an encrypted pool).
from tests.queries.conftest import pool_dataset  # noqa: E402,F401


@dataclass
class ArmedWorker:
    """The package's worker on the throwaway servers, and the crash plan it reads."""

    process: Any
    plan: Path

    def arm(self, **plan: str) -> None:
        import json

        self.plan.write_text(json.dumps(plan))

    def disarm(self) -> None:
        self.plan.write_text("{}")

    def ensure_running(self) -> None:
        if self.process.process is None or self.process.process.poll() is not None:
            self.process.start()

    def killed_then_restarted(self, marker: Path, what: str) -> None:
        """Wait for the armed kill, then do what a restarted machine does: the broker
        hands back the dead worker's messages and a fresh worker starts."""
        from tests.conftest import restore_unacked, wait_for

        wait_for(marker.exists, 60, what, self.process)
        assert self.process.process is not None
        self.process.process.wait(timeout=30)
        self.disarm()
        restore_unacked()
        self.process.start()


@pytest.fixture(scope="package")
def armed_worker(servers: Servers, tmp_path_factory: Any) -> Iterator[ArmedWorker]:
    from tests.conftest import WorkerProcess

    plan = tmp_path_factory.mktemp("faults") / "plan.json"
    plan.write_text("{}")
    worker = WorkerProcess(
        extra_env={
            "CLEANROOM_CRASH_PLAN": str(plan),
            "CELERY_VISIBILITY_TIMEOUT": "2",
            "CLEANROOM_QUERY_HEARTBEAT_SECONDS": "0.5",
            "CLEANROOM_QUERY_DEAD_AFTER_SECONDS": "3",
        }
    )
    worker.start()
    yield ArmedWorker(worker, plan)
    worker.stop()


@pytest.fixture
def worker_on_servers(armed_worker: ArmedWorker, fault_db: Servers) -> Iterator[ArmedWorker]:
    armed_worker.disarm()
    armed_worker.ensure_running()
    yield armed_worker
    armed_worker.disarm()
