"""run_once after a lost COMMIT answer: the stored result, a single re-run, or UNAVAILABLE saying
the outcome is unknown; never the commit's own error."""

from __future__ import annotations

import pytest

from libs.core.errors import DomainError, Reason
from libs.platform.db import CommitUnknown, Database
from libs.platform.errors import status_for
from libs.platform.idempotency import Replay, run_once


class _Lost(CommitUnknown):
    def __init__(self, knowable: bool) -> None:
        super().__init__(Database("sqlite+aiosqlite://"), 1234, "settlement-database")
        self.knowable = knowable
        self.settled = 0

    async def settle(self) -> bool:
        self.settled += 1
        return self.knowable


async def _replay(ref: str) -> str:
    return f"stored:{ref}"


async def test_a_lost_commit_that_was_stored_answers_the_stored_result() -> None:
    lost = _Lost(knowable=True)
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise lost
        raise Replay("S1")  # the re-run finds the key the first one committed

    assert await run_once(attempt, _replay) == "stored:S1"
    assert lost.settled == 1 and calls == 2


async def test_a_lost_commit_that_was_not_stored_runs_once_more() -> None:
    results = iter([_Lost(knowable=True), "fresh"])

    async def attempt() -> str:
        item = next(results)
        if isinstance(item, Exception):
            raise item
        return item

    assert await run_once(attempt, _replay) == "fresh"


@pytest.mark.parametrize("second", ["unknowable", "unreachable", "lost again"])
async def test_an_outcome_that_cannot_be_found_is_unavailable_commit_outcome_unknown(second: str) -> None:
    first = _Lost(knowable=second != "unknowable")
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise first
        if second == "unreachable":
            raise ConnectionRefusedError("database down")
        raise _Lost(knowable=True)

    with pytest.raises(DomainError) as info:
        await run_once(attempt, _replay)
    assert info.value.reason is Reason.COMMIT_OUTCOME_UNKNOWN
    assert info.value.metadata == {"dependency": "settlement-database"}
    code, status = status_for(info.value)
    assert code.name == "UNAVAILABLE" and "same request_id" in status.message


def test_sqlalchemy_error_lines_carry_no_sql_parameters_or_traceback(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from sqlalchemy.exc import DBAPIError

    db = Database("sqlite+aiosqlite://")
    pool_logger = db.engine.sync_engine.pool.logger
    err = DBAPIError("SELECT * FROM persons WHERE id_number = ?", ("110105195403120027",), Exception("boom"))
    with caplog.at_level(logging.ERROR):
        try:
            raise err
        except DBAPIError:
            pool_logger.error("Exception during reset or similar", exc_info=True)
    text = caplog.text
    assert "Exception during reset or similar" in text
    assert "SELECT" not in text and "110105195403120027" not in text and "Traceback" not in text
