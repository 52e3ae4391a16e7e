from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.platform.host import Host
from libs.platform.settings import Settings


@pytest.fixture
async def suite(settings: Settings) -> AsyncIterator[Host]:
    """Filing, eligibility and settlement in one process (clearing is not needed here)."""
    from services.suite import start

    host = await start(settings, ["filing", "eligibility", "settlement"], port=0, run_migrations=False)
    try:
        yield host
    finally:
        await host.stop(drain=False)
