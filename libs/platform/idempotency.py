"""Exactly-once writes: every mutating request carries ``request_id``.

A service keeps one ``idempotency_keys`` table (primary key = request_id). The use case looks the
key up inside its transaction: same fingerprint -> return the stored result reference; other
fingerprint -> REQUEST_ID_REUSED. Concurrent duplicates both miss the lookup, but only one
insert of the key can commit (primary key); the loser's transaction rolls back and the caller
retries the lookup (see :func:`run_once`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Column, DateTime, MetaData, Select, String, Table, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.core.errors import DomainError, Reason
from libs.platform.db import CommitUnknown, TransactionConflict

T = TypeVar("T")


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys",
        metadata,
        Column("request_id", String(128), primary_key=True),
        Column("operation", String(64), nullable=False),
        Column("fingerprint", String(64), nullable=False),
        Column("result_ref", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Replay(Exception):
    """Raised inside a unit of work to say: this request already ran; its result is ``ref``."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


@functools.cache
def _lookup_stmt(table: Table) -> Select[Any]:
    """Built once per table: a statement built per call would regenerate its cache key."""
    return select(table.c.operation, table.c.fingerprint, table.c.result_ref).where(
        table.c.request_id == bindparam("b_request_id")
    )


async def check(session: AsyncConnection, table: Table, request_id: str, operation: str, fp: str) -> str | None:
    row = (await session.execute(_lookup_stmt(table), {"b_request_id": request_id})).first()
    if row is None:
        return None
    if row.operation != operation or row.fingerprint != fp:
        raise DomainError(
            Reason.REQUEST_ID_REUSED,
            "request_id was already used for a different request",
            metadata={"operation": row.operation},
        )
    return str(row.result_ref)


@functools.cache
def _lookup_many_stmt(table: Table) -> Select[Any]:
    return select(table.c.request_id, table.c.operation, table.c.fingerprint, table.c.result_ref).where(
        table.c.request_id.in_(bindparam("b_request_ids", expanding=True))
    )


async def lookup_many(
    session: AsyncConnection, table: Table, request_ids: list[str]
) -> dict[str, tuple[str, str, str]]:
    """request_id -> (operation, fingerprint, result_ref) for the ids already recorded."""
    rows = (await session.execute(_lookup_many_stmt(table), {"b_request_ids": sorted(set(request_ids))})).all()
    return {r.request_id: (str(r.operation), str(r.fingerprint), str(r.result_ref)) for r in rows}


async def lookup(session: AsyncConnection, table: Table, request_id: str) -> tuple[str, str] | None:
    """(operation, result_ref) of an earlier request, whatever its payload."""
    row = (await session.execute(_lookup_stmt(table), {"b_request_id": request_id})).first()
    return (str(row.operation), str(row.result_ref)) if row else None


async def record(session: AsyncConnection, table: Table, request_id: str, operation: str, fp: str, ref: str) -> None:
    await session.execute(
        table.insert(), {"request_id": request_id, "operation": operation, "fingerprint": fp, "result_ref": ref}
    )


def outcome_unknown(dependency: str = "database") -> DomainError:
    return DomainError(
        Reason.COMMIT_OUTCOME_UNKNOWN,
        "the outcome of this request is unknown: retry with the same request_id",
        metadata={"dependency": dependency},
    )


async def run_once(
    attempt: Callable[[], Awaitable[T]],
    replay: Callable[[str], Awaitable[T]],
    *,
    tries: int = 3,
    uncertain: CommitUnknown | None = None,
) -> T:
    """Runs a unit of work; if it lost an insert race (IntegrityError) or found its key already
    recorded (Replay), answers from the stored result instead.

    A lost COMMIT answer (:class:`CommitUnknown`, or ``uncertain`` given by a caller whose own
    commit failed) is never answered as a failure: once the old transaction is over
    (``settle()``), the unit of work runs again, and its key lookup, now conclusive, answers the
    stored result if the first one was stored, or runs the request once if it was not. When that
    cannot be known (the database is unreachable), the answer is UNAVAILABLE with
    REASON_COMMIT_OUTCOME_UNKNOWN: retry with the same request_id."""
    last: Exception | None = None
    races = 0
    if uncertain is not None and not await uncertain.settle():
        raise outcome_unknown(uncertain.dependency) from uncertain
    for _ in range(tries + 2):
        try:
            return await attempt()
        except Replay as r:
            return await replay(r.ref)
        except (IntegrityError, TransactionConflict) as exc:
            last = exc  # a concurrent duplicate committed first, or a deadlock victim: look again
            races += 1
            if races >= tries:
                break
        except CommitUnknown as exc:
            if uncertain is not None or not await exc.settle():
                raise outcome_unknown(exc.dependency) from exc  # twice in a row, or unknowable
            uncertain = exc
        except DomainError as exc:
            if uncertain is not None and exc.reason is Reason.DEPENDENCY_UNAVAILABLE:
                raise outcome_unknown(uncertain.dependency) from exc  # could not find out
            raise
        except Exception as exc:
            if uncertain is not None:  # the re-run could not reach the database: still unknown
                raise outcome_unknown(uncertain.dependency) from exc
            raise
    raise DomainError(Reason.CONCURRENT_UPDATE, "request raced with a concurrent one; retry") from last
