"""The one composition root: the CLI, the all-in-one host and the tests all build servers here."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from libs.platform import migrate
from libs.platform.clock import Clock, clock_for, system_clock
from libs.platform.host import Host, ServiceModule
from libs.platform.logs import get_logger
from libs.platform.settings import SERVICES, Settings
from libs.platform.tracing import configure_tracing


def create_module(name: str, settings: Settings, clock: Clock = system_clock) -> ServiceModule:
    """Imports a service only when it is hosted: a one-service process loads only its own code."""
    module: ServiceModule = importlib.import_module(f"services.{name}.server").create(settings, clock=clock)
    return module


def resolve(names: Sequence[str]) -> list[str]:
    """Service names in dependency order (filing before eligibility before settlement ...)."""
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return [n for n in SERVICES if n in names]


async def migrate_all(settings: Settings, names: Sequence[str]) -> None:
    for name in resolve(names):
        await migrate.upgrade_async(name, settings.database_url(name))


def build_host(
    settings: Settings,
    names: Sequence[str],
    *,
    port: int,
    bind_host: str = "127.0.0.1",
    clock: Clock | None = None,
    reuse_port: bool = False,
) -> Host:
    """``clock`` is the one source of "now" for every hosted service (tests pass a shifted one);
    by default the system clock, or the shifted one ``MEDSETTLE_TEST_CLOCK_START`` asks for."""
    if clock is None:
        clock = clock_for(settings.test_clock_start)
        if settings.test_clock_start is not None:
            get_logger("medsettle.suite").warning(
                "clock_shifted", start=settings.test_clock_start.isoformat(), note="MEDSETTLE_TEST_CLOCK_START is set"
            )
    resolved = resolve(names)
    configure_tracing("medsettle" if len(resolved) > 1 else f"medsettle-{resolved[0]}")
    modules = [create_module(n, settings, clock) for n in resolved]
    return Host(settings, modules, port=port, bind_host=bind_host, reuse_port=reuse_port)


async def start(
    settings: Settings,
    names: Sequence[str],
    *,
    port: int = 0,
    bind_host: str = "127.0.0.1",
    run_migrations: bool = True,
    clock: Clock | None = None,
) -> Host:
    """Migrates (optionally) and starts a host; the caller stops it."""
    if run_migrations:
        await migrate_all(settings, names)
    host = build_host(settings, names, port=port, bind_host=bind_host, clock=clock)
    await host.start()
    return host
