"""Alembic per service: each service keeps its history in ``services/<name>/migrations`` and its
own version table, so services never share a migration history (even on one database)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["medsettle_service"] = service
    return cfg


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Blocking; safe to call from a thread (env.py runs its own event loop)."""
    _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(service, url), revision)


async def upgrade_async(service: str, url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, service, url, revision)


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    cfg = context.config
    service = cfg.attributes.get("medsettle_service") or Path(cfg.get_main_option("script_location", "")).parent.name
    url = cfg.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    opts: dict[str, Any] = dict(
        target_metadata=metadata,
        version_table=version_table(service),
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **opts)
        with context.begin_transaction():
            context.run_migrations()
        return

    def _run(conn: Connection) -> None:
        context.configure(connection=conn, **opts)
        with context.begin_transaction():
            context.run_migrations()

    async def _main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(_main())
