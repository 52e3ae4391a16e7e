"""Migrations match the models, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.migrate import version_table
from services.clearing.adapters.db import metadata as clearing
from services.eligibility.adapters.db import metadata as eligibility
from services.filing.adapters.db import metadata as filing
from services.settlement.adapters.db import metadata as settlement

pytestmark = pytest.mark.db
METADATA = {"filing": filing, "eligibility": eligibility, "settlement": settlement, "clearing": clearing}


@pytest.mark.parametrize("service", list(METADATA))
def test_migrations_match_the_models(service: str, db_urls: dict[str, str]) -> None:
    async def diff() -> list:  # type: ignore[type-arg]
        engine = create_async_engine(db_urls[service])
        async with engine.connect() as conn:
            result = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True, "version_table": version_table(service)}),
                    METADATA[service],
                )
            )
        await engine.dispose()
        return result

    assert asyncio.run(diff()) == []


def test_fee_lines_leave_room_for_heap_only_updates_on_postgresql(db_urls: dict[str, str], db_kind: str) -> None:
    if db_kind != "postgres":
        pytest.skip("a PostgreSQL storage parameter")

    async def options() -> list[str] | None:
        engine = create_async_engine(db_urls["settlement"])
        async with engine.connect() as conn:
            got = (await conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'fee_lines'")).scalar()
        await engine.dispose()
        return got  # type: ignore[no-any-return]

    assert asyncio.run(options()) == ["fillfactor=50"]
