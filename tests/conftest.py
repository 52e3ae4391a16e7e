"""Shared fixtures: databases (SQLite or PostgreSQL), in-process suites, service processes.

Choose the database with ``--db=postgres`` or ``MEDSETTLE_TEST_DB=postgres``. PostgreSQL is reached
at ``MEDSETTLE_TEST_PG`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432``). When CI is set,
an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from libs.platform.settings import SERVICES, Settings
from tests.dates import TEST_CLOCK_START

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = os.environ.get("MEDSETTLE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgres"),
        default=os.environ.get("MEDSETTLE_TEST_DB", "sqlite"),
        help="database for the db tests",
    )


@pytest.fixture(scope="session")
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--db"))


def _pg_admin_dsn() -> str:
    return PG_BASE.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"


async def _pg_exec(sql: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn(), timeout=5)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_databases(db_kind: str) -> Iterator[dict[str, str] | None]:
    """Fresh PostgreSQL databases for this pytest session (one per service), migrated to head.
    Names carry the process id, so concurrent sessions on one server never touch each other's."""
    if db_kind != "postgres":
        yield None
        return
    tag = f"{os.getpid()}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    names = {s: f"medsettle_test_{tag}_{s}" for s in SERVICES}
    drop = [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values()]
    try:
        asyncio.run(_pg_exec(drop + [f'CREATE DATABASE "{n}"' for n in names.values()]))
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    urls = {s: f"{PG_BASE}/{n}" for s, n in names.items()}
    from libs.platform import migrate

    for s, url in urls.items():
        migrate.upgrade(s, url)
    yield urls
    asyncio.run(_pg_exec(drop))


async def _truncate(urls: dict[str, str]) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    for url in urls.values():
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            tables = (
                (
                    await conn.execute(
                        text(
                            "SELECT tablename FROM pg_tables "
                            "WHERE schemaname = 'public' AND tablename NOT LIKE 'alembic_%'"
                        )
                    )
                )
                .scalars()
                .all()
            )
            if tables:
                await conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY"))
        await engine.dispose()


@pytest.fixture
def db_urls(db_kind: str, pg_databases: dict[str, str] | None, tmp_path: Path) -> dict[str, str]:
    """One database URL per service, empty and migrated, for this test."""
    if pg_databases is not None:
        asyncio.run(_truncate(pg_databases))
        return dict(pg_databases)
    from libs.platform import migrate

    urls = {s: f"sqlite+aiosqlite:///{tmp_path / f'{s}.db'}" for s in SERVICES}
    for s, url in urls.items():
        migrate.upgrade(s, url)
    return urls


@pytest.fixture
def settings(db_urls: dict[str, str], tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        drain_seconds=0.0,
        grace_seconds=1.0,
        log_level="WARNING",
        test_clock_start=TEST_CLOCK_START,
        **{f"{s}_database_url": u for s, u in db_urls.items()},  # type: ignore[arg-type]
    )


@pytest.fixture
async def suite(settings: Settings) -> AsyncIterator[object]:
    """All four services in-process on one loopback port (all-in-one mode)."""
    from services.suite import start

    host = await start(settings, SERVICES, port=0, run_migrations=False)
    try:
        yield host
    finally:
        await host.stop(drain=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(target: str, service: str = "", timeout: float = 30.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(target) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except Exception as exc:  # noqa: BLE001 - any failure means: not serving yet
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING after {timeout}s: {last}")


class ServiceProcesses:
    """The suite as separate OS processes (as in Kubernetes), one port each."""

    def __init__(self, db_urls: dict[str, str], tmp_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.ports = {s: free_port() for s in SERVICES}
        self.targets = {s: f"127.0.0.1:{p}" for s, p in self.ports.items()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = {s: tmp_path / f"{s}.log" for s in SERVICES}
        env = {
            **os.environ,
            "MEDSETTLE_DATA_DIR": str(tmp_path),
            "MEDSETTLE_DRAIN_SECONDS": "0.2",
            "MEDSETTLE_GRACE_SECONDS": "1",
            "MEDSETTLE_LOG_LEVEL": "INFO",
            "MEDSETTLE_TEST_CLOCK_START": TEST_CLOCK_START.isoformat(),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "libs" / "contracts")]),
        }
        for s in SERVICES:
            env[f"MEDSETTLE_{s.upper()}_DATABASE_URL"] = db_urls[s]
            env[f"MEDSETTLE_{s.upper()}_TARGET"] = self.targets[s]
        env.update(extra_env or {})
        self.env = env

    def start(self, service: str) -> None:
        self.procs[service] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "serve",
                service,
                "--port",
                str(self.ports[service]),
                "--host",
                "127.0.0.1",
                "--no-migrate",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.logs[service].open("ab"),
            stderr=subprocess.STDOUT,
        )

    def start_all(self) -> None:
        for s in SERVICES:
            self.start(s)
        for s in SERVICES:
            wait_serving(self.targets[s])

    def stop(self, service: str, timeout: float = 15) -> int:
        proc = self.procs.pop(service)
        proc.terminate()
        return proc.wait(timeout)

    def stop_all(self) -> None:
        for s in list(self.procs):
            try:
                self.stop(s)
            except subprocess.TimeoutExpired:
                self.procs.get(s, None) and self.procs[s].kill()


@pytest.fixture
def processes(db_urls: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcesses]:
    sp = ServiceProcesses(db_urls, tmp_path)
    try:
        yield sp
    finally:
        sp.stop_all()
        # Printed at teardown, so pytest shows it only when the test failed: what each service
        # logged at warning level or above (an INTERNAL answer's exception and traceback).
        for service, log in sp.logs.items():
            if log.exists():
                text = log.read_text(errors="replace")
                worth = [ln for ln in text.splitlines() if '"level": "error"' in ln or '"level": "warning"' in ln]
                if worth:
                    print(f"--- {service} log, warnings and errors ---", *worth[-20:], sep="\n")
