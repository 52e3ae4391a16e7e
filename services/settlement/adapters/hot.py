"""Storage for the hot path: the group-commit Settle batch and PreSettle.

Two implementations of one contract. On SQLite (the embedded default) they go through the
SQLAlchemy repository. On PostgreSQL they speak SQL to the pooled asyncpg connection directly:
profiling Settle showed SQLAlchemy's async layer at about 1 ms of CPU per statement on this
project's machines, and the round trips adding up to most of an unloaded call. So a batch is
five round trips, however many settlements it holds:

1. ``BEGIN`` (with generic plans for the transaction's statements, see ``_PG_BEGIN``);
2. lock the batch's visits, in id order (``FOR UPDATE``);
3. one statement for everything else it reads: the requests' idempotency keys, the unsettled
   lines, the stays' deductibles so far, the persons' inpatient stays, and the persons' year
   accumulators with their accounts, locked (``FOR UPDATE``, in (person, year) order);
4. one statement for every write (data-modifying CTEs over ``unnest`` arrays): the settlements,
   their outbox events, the lines marked, the accumulators and balances, the visits' status and
   the idempotency keys;
5. ``COMMIT``.

Statement 3 runs after the visit locks are held, so its snapshot sees whatever a concurrent
call on the same visits committed before (a duplicate's key, lines settled by an interim
settlement); the accumulator rows it locks are re-read at their newest version when it has to
wait for them (PostgreSQL's READ COMMITTED row locking). The database's unique constraints still
refuse what a race between replicas might let through; the batch then fails as a whole and its
calls are settled one at a time (libs/platform/group_commit.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Integer, String, Table, Text
from sqlalchemy.types import TypeEngine

from libs.platform.db import CommitUnknown, Database
from libs.platform.idempotency import lookup_many
from libs.policy import Accumulators, FeeLine, SettlementResult
from libs.policy.model import slot_builder
from services.settlement.adapters.db import (
    _ACC_FIELDS,
    SettlementRepository,
    fee_lines,
    idempotency_keys,
    settlement_events,
    settlement_row,
    settlements,
    visit_from_row,
    visits,
)
from services.settlement.application.ports import BatchReads, BatchUnit, KeyRow, PreSettleReads, StatusChange
from services.settlement.domain.model import SettlementRecord, VisitRecord

# -- the column lists, from the Table definitions (adapters/db.py) ------------------------------


def _pg_type(column: Column[Any]) -> str:
    """The PostgreSQL array element type of a column, for ``unnest($n::type[])``."""
    t: TypeEngine[Any] = column.type
    for kind, name in ((BigInteger, "int8"), (Integer, "int4"), (Boolean, "bool"), (Date, "date")):
        if isinstance(t, kind):
            return name
    if isinstance(t, DateTime):
        return "timestamptz" if t.timezone else "timestamp"
    if isinstance(t, String | Text):
        return "text"
    raise TypeError(f"no PostgreSQL array type for {column.table.name}.{column.name} ({t!r})")


def _columns(table: Table) -> tuple[tuple[str, str], ...]:
    return tuple((c.name, _pg_type(c)) for c in table.columns)


_VISIT_COLUMNS = ", ".join(c.name for c in visits.columns)
# Every settlements column, in table order: the batch inserts them all (settlement_row gives each).
_SETTLEMENT_COLUMNS = _columns(settlements)
# A fee line as the engine takes it: FeeLine's fields, in field order, are fee_lines columns.
_FEE_LINE_COLUMNS = tuple(f.name for f in fields(FeeLine))
if missing := set(_FEE_LINE_COLUMNS) - set(fee_lines.columns.keys()):  # pragma: no cover - a schema change
    raise TypeError(f"FeeLine fields without a fee_lines column: {sorted(missing)}")
_FEE_LINE_LIST = ", ".join(_FEE_LINE_COLUMNS)


@asynccontextmanager
async def batch_unit(db: Database) -> AsyncIterator[BatchUnit]:
    """One transaction for a batch: commits when the block ends normally, else rolls back."""
    if db.is_sqlite:
        async with db.transaction() as s:
            yield _SqlBatchUnit(SettlementRepository(s))
    else:
        async with db.driver_connection() as con:
            await con.execute(_PG_BEGIN)
            try:
                yield _PgBatchUnit(con)
            except BaseException:
                if not con.is_closed() and con.is_in_transaction():
                    with contextlib.suppress(Exception):  # the batch's own error is the one to see
                        await con.execute("ROLLBACK")
                raise  # a connection left inside its transaction is discarded by driver_connection
            pid = Database.server_pid_of(con)
            try:
                await con.execute("COMMIT")
            except Exception as exc:
                raise CommitUnknown(db, pid, db.dependency) from exc


# The batch's statements take arrays whose length the planner cannot use to choose a plan, so
# their generic plans are the ones a custom plan would find; planning the write afresh for every
# batch (PostgreSQL's default while custom plans look cheaper) cost 0.6 ms of database time per
# batch, the read and the visit locks 0.1-0.2 ms each (PostgreSQL's log, unloaded). LOCAL: the
# pooled connection is back to the default when the transaction ends; one round trip with BEGIN.
_PG_BEGIN = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"


async def presettle_reads(db: Database, visit_id: str, year: int) -> PreSettleReads | None:
    """The visit, its unsettled lines, the person's accumulators for ``year`` (the balance seeded
    from the visit's eligibility decision when the person has no account row yet) and the
    deductible borne in the stay so far. None when there is no such visit. No locks, no writes."""
    if not db.is_sqlite:
        async with db.driver_connection() as con:
            row = await con.fetchrow(_PG_PRESETTLE, visit_id, year)
        if row is None:
            return None
        visit = visit_from_row(row)
        values = {} if row["acc"] is None else dict(zip(_ACC_FIELDS, row["acc"], strict=True))
        balance = row["balance"]
        acc = Accumulators(
            year=year,
            account_balance_fen=visit.decision.account_balance_fen if balance is None else balance,
            **values,
        )
        return PreSettleReads(visit, tuple(map(_fee_line, row["lines"])), acc, int(row["prior"]))
    async with db.read() as s:
        repo = SettlementRepository(s)
        found = await repo.visit(visit_id)
        if found is None:
            return None
        lines = tuple(u.line for u in await repo.lines(visit_id, unsettled_only=True))
        acc = await repo.read_accumulators(found.decision.person_no, year, found.decision.account_balance_fen)
        prior = await repo.deductible_borne_in_stay(visit_id) if found.settled_stays else 0
        return PreSettleReads(found, lines, acc, prior)


# ------------------------------------------------------------------------------- SQLite


class _SqlBatchUnit:
    def __init__(self, repo: SettlementRepository) -> None:
        self.repo = repo

    async def lock_visits(self, visit_ids: list[str]) -> dict[str, VisitRecord]:
        return await self.repo.visits_for_update(visit_ids)

    async def read(
        self,
        request_ids: list[str],
        visit_ids: list[str],
        stay_visit_ids: list[str],
        stay_persons: list[str],
        wanted: list[tuple[str, int]],
    ) -> BatchReads:
        repo = self.repo
        return BatchReads(
            keys=await lookup_many(repo.s, idempotency_keys, request_ids),
            lines=await repo.unsettled_lines_of(visit_ids),
            prior=await repo.stay_deductibles(stay_visit_ids),
            stays=await repo.inpatient_stays_of(stay_persons),
            accs=await repo.lock_accumulators_of(dict.fromkeys(wanted, 0), create=False) if wanted else {},
        )

    async def create_accumulators(self, seeds: dict[tuple[str, int], int]) -> dict[tuple[str, int], Accumulators]:
        return await self.repo.lock_accumulators_of(seeds)

    async def write(
        self,
        records: list[tuple[SettlementRecord, SettlementResult]],
        accs: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        statuses: list[StatusChange],
        keys: list[KeyRow],
    ) -> None:
        status_rows: list[dict[str, Any]] = []
        for visit_id, status, discharge in statuses:
            row: dict[str, Any] = {"b_visit": visit_id, "b_status": status, "b_delta": 1}
            if discharge is not None:
                row["b_discharge"] = discharge
            status_rows.append(row)
        key_rows = [{"request_id": k[0], "operation": k[1], "fingerprint": k[2], "result_ref": k[3]} for k in keys]
        await self.repo.write_batch(records, accs, balances, status_rows, key_rows, settlement_events)


# --------------------------------------------------------------------------- PostgreSQL

_ACC_LIST = ", ".join(f"a.{n}" for n in _ACC_FIELDS)

_PG_LOCK_VISITS = f"""
SELECT {_VISIT_COLUMNS} FROM visits
WHERE visit_id = ANY($1::text[]) ORDER BY visit_id FOR UPDATE
"""


def _lock_accs(persons_param: str) -> str:
    """The persons' accumulator rows with their balances, locked in (person, year) order."""
    return f"""
ARRAY(
  SELECT row(a.person_no, a.year, {_ACC_LIST}, b.balance_fen)
  FROM person_year_accumulators a JOIN personal_accounts b ON b.person_no = a.person_no
  WHERE a.person_no = ANY({persons_param}::text[]) ORDER BY a.person_no, a.year FOR UPDATE
) AS accs"""


_PG_READ = f"""
SELECT
  ARRAY(
    SELECT row(request_id, operation, fingerprint, result_ref) FROM idempotency_keys
    WHERE request_id = ANY($1::text[])
  ) AS keys,
  ARRAY(
    SELECT row(visit_id, row({_FEE_LINE_LIST}))
    FROM fee_lines WHERE visit_id = ANY($2::text[]) AND settlement_id IS NULL
    ORDER BY visit_id, line_no
  ) AS lines,
  ARRAY(
    SELECT row(visit_id, sum(deductible_fen)) FROM settlements
    WHERE visit_id = ANY($3::text[]) GROUP BY visit_id
  ) AS prior,
  ARRAY(
    SELECT row(person_no, visit_id, institution_code, admission_date, discharge_date) FROM visits
    WHERE person_no = ANY($4::text[]) AND service_type = 'inpatient' AND status <> 'cancelled'
  ) AS stays,
  {_lock_accs("$5")}
"""

_PG_RELOCK_ACCS = f"SELECT {_lock_accs('$1')}"

_PG_CREATE_ACCS = f"""
WITH a AS (
  INSERT INTO person_year_accumulators (person_no, year, {", ".join(_ACC_FIELDS)})
  SELECT p, y, {", ".join("0" for _ in _ACC_FIELDS)} FROM unnest($1::text[], $2::int4[]) AS u(p, y)
  ON CONFLICT DO NOTHING
)
INSERT INTO personal_accounts (person_no, balance_fen)
SELECT DISTINCT ON (p) p, b FROM unnest($1::text[], $3::int8[]) AS u(p, b)
ON CONFLICT DO NOTHING
"""


def _unnest(first: int, types: list[str]) -> str:
    return "unnest(" + ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types)) + ")"


def _write_sql() -> str:
    n = len(_SETTLEMENT_COLUMNS)  # $1..$n: the settlements' columns, in table order
    names = [c for c, _ in _SETTLEMENT_COLUMNS]
    sid, vid, kind = (f"${names.index(c) + 1}" for c in ("settlement_id", "visit_id", "kind"))
    p_payload = n + 1
    p_acc = n + 2  # person, year, then the accumulator fields
    p_bal = p_acc + 2 + len(_ACC_FIELDS)  # person, balance
    p_st = p_bal + 2  # visit, status, discharge date
    p_key = p_st + 3  # request id, operation, fingerprint, result ref
    acc_set = ", ".join(f"{c} = u.{c}" for c in _ACC_FIELDS)
    return f"""
WITH
s AS (
  INSERT INTO settlements ({", ".join(c for c, _ in _SETTLEMENT_COLUMNS)})
  SELECT * FROM {_unnest(1, [t for _, t in _SETTLEMENT_COLUMNS])}
),
o AS (
  INSERT INTO {settlement_events.name} (event_type, entity_id, payload)
  SELECT * FROM unnest({kind}::text[], {sid}::text[], ${p_payload}::bytea[])
),
l AS (  -- "= ANY" as well as the join: the planner then reads the lines by primary key
  UPDATE fee_lines f SET settlement_id = u.sid
  FROM unnest({vid}::text[], {sid}::text[]) AS u(vid, sid)
  WHERE f.visit_id = ANY({vid}::text[]) AND f.visit_id = u.vid AND f.settlement_id IS NULL
),
a AS (
  UPDATE person_year_accumulators t SET {acc_set}
  FROM {_unnest(p_acc, ["text", "int4", *["int8"] * len(_ACC_FIELDS)])}
    AS u(person_no, year, {", ".join(_ACC_FIELDS)})
  WHERE t.person_no = u.person_no AND t.year = u.year
),
b AS (
  UPDATE personal_accounts t SET balance_fen = u.balance
  FROM {_unnest(p_bal, ["text", "int8"])} AS u(person_no, balance)
  WHERE t.person_no = u.person_no
),
v AS (
  UPDATE visits t SET status = u.status, settled_stays = t.settled_stays + 1,
    discharge_date = coalesce(u.discharge, t.discharge_date)
  FROM {_unnest(p_st, ["text", "text", "date"])} AS u(visit_id, status, discharge)
  WHERE t.visit_id = u.visit_id
)
INSERT INTO {idempotency_keys.name} (request_id, operation, fingerprint, result_ref)
SELECT * FROM {_unnest(p_key, ["text", "text", "text", "text"])}
"""


_PG_WRITE = _write_sql()

_PG_PRESETTLE = f"""
SELECT {_VISIT_COLUMNS},
  ARRAY(
    SELECT row({_FEE_LINE_LIST}) FROM fee_lines
    WHERE visit_id = v.visit_id AND settlement_id IS NULL ORDER BY line_no
  ) AS lines,
  (SELECT row({_ACC_LIST}) FROM person_year_accumulators a
    WHERE a.person_no = v.person_no AND a.year = $2::int4) AS acc,
  (SELECT balance_fen FROM personal_accounts WHERE person_no = v.person_no) AS balance,
  (SELECT coalesce(sum(deductible_fen), 0) FROM settlements WHERE visit_id = v.visit_id) AS prior
FROM visits v WHERE v.visit_id = $1::text
"""


# FeeLine from its fields in order, without the frozen dataclass __init__ (a batch builds
# thousands: the generated __init__ was the largest single cost of reading a batch).
_fee_line = slot_builder(FeeLine)


def _acc_from(r: tuple[Any, ...]) -> Accumulators:
    # r = (person_no, year, *_ACC_FIELDS, balance)
    values = dict(zip(_ACC_FIELDS, r[2:-1], strict=True))
    return Accumulators(year=r[1], account_balance_fen=r[-1], **values)


class _PgBatchUnit:
    def __init__(self, con: Any) -> None:
        self.con = con

    async def lock_visits(self, visit_ids: list[str]) -> dict[str, VisitRecord]:
        rows = await self.con.fetch(_PG_LOCK_VISITS, sorted(set(visit_ids)))
        return {r["visit_id"]: visit_from_row(r) for r in rows}

    async def read(
        self,
        request_ids: list[str],
        visit_ids: list[str],
        stay_visit_ids: list[str],
        stay_persons: list[str],
        wanted: list[tuple[str, int]],
    ) -> BatchReads:
        row = await self.con.fetchrow(
            _PG_READ,
            sorted(set(request_ids)),
            visit_ids,
            stay_visit_ids,
            sorted(set(stay_persons)),
            sorted({p for p, _ in wanted}),
        )
        out = BatchReads()
        out.keys = {k[0]: (k[1], k[2], k[3]) for k in row["keys"]}
        lines = out.lines = {v: [] for v in visit_ids}
        fee_line = _fee_line
        for vid, line in row["lines"]:
            lines[vid].append(fee_line(line))
        out.prior = {vid: int(n or 0) for vid, n in row["prior"]}
        for person, visit_id, institution, admitted, discharged in row["stays"]:
            out.stays.setdefault(person, []).append((visit_id, institution, admitted, discharged))
        keep = set(wanted)
        out.accs = {(r[0], r[1]): _acc_from(r) for r in row["accs"] if (r[0], r[1]) in keep}
        return out

    async def create_accumulators(self, seeds: dict[tuple[str, int], int]) -> dict[tuple[str, int], Accumulators]:
        keys = sorted(seeds)
        await self.con.execute(_PG_CREATE_ACCS, [p for p, _ in keys], [y for _, y in keys], [seeds[k] for k in keys])
        locked = await self.con.fetchval(_PG_RELOCK_ACCS, sorted({p for p, _ in keys}))
        accs = {(r[0], r[1]): _acc_from(r) for r in locked if (r[0], r[1]) in seeds}
        if len(accs) != len(seeds):
            raise AssertionError("accumulator rows vanished")
        return accs

    async def write(
        self,
        records: list[tuple[SettlementRecord, SettlementResult]],
        accs: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        statuses: list[StatusChange],
        keys: list[KeyRow],
    ) -> None:
        rows = [settlement_row(rec, result) for rec, result in records]
        columns: list[list[Any]] = [[r[c] for r in rows] for c, _ in _SETTLEMENT_COLUMNS]
        acc_items = list(accs.items())
        await self.con.execute(
            _PG_WRITE,
            *columns,
            [rec.settlement_id.encode() for rec, _ in records],
            [p for (p, _), _ in acc_items],
            [y for (_, y), _ in acc_items],
            *([getattr(a, n) for _, a in acc_items] for n in _ACC_FIELDS),
            list(balances),
            list(balances.values()),
            [s[0] for s in statuses],
            [s[1] for s in statuses],
            [s[2] for s in statuses],
            *([k[i] for k in keys] for i in range(4)),
        )
