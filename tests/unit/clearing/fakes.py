"""An in-memory store for clearing's fund operations and statement transitions: the part of
``services.clearing.application.ports.ClearingRepo`` that prepayments, emergency top-ups,
interest, the signing calendar and confirming/disbursing statements use. Monthly clearing,
ingest, verifications and reconciliation run set-based SQL and are tested against the
databases (tests/integration/test_clearing_*.py); their methods are not here, so a use case
that needs one fails with AttributeError instead of running against a half-made copy."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from services.clearing.domain.ledger import Entry, check_balanced
from services.clearing.domain.model import Statement, StatementStatus
from tests.unit.fakes import Keys, unique_violation


@dataclass
class _State:
    statements: dict[str, Statement] = field(default_factory=dict)
    ledger: list[tuple[str, str, int, dt.datetime]] = field(default_factory=list)  # posting, account, fen, at
    calendar: dict[dt.date, int] = field(default_factory=dict)  # signing date -> year
    prepayments: dict[tuple[str, str, int], SimpleNamespace] = field(default_factory=dict)
    top_ups: dict[str, SimpleNamespace] = field(default_factory=dict)
    keys: Keys = field(default_factory=Keys)

    def copy(self) -> _State:
        return _State(
            dict(self.statements),
            list(self.ledger),
            dict(self.calendar),
            dict(self.prepayments),
            {k: copy.copy(v) for k, v in self.top_ups.items()},
            self.keys.copy(),
        )


class _Repo:
    def __init__(self, state: _State) -> None:
        self.st = state

    # -- requests
    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        return self.st.keys.check(request_id, operation, fingerprint)

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        self.st.keys.record(request_id, operation, fingerprint, ref)

    async def recorded_ref(self, request_id: str) -> str | None:
        row = self.st.keys.rows.get(request_id)
        return row[2] if row else None

    # -- ledger
    async def post(self, posting_id: str, entries: Sequence[Entry], now: dt.datetime) -> None:
        check_balanced(entries)
        self.st.ledger.extend((posting_id, e.account, e.amount_fen, now) for e in entries)

    async def balances(self, prefix: str = "") -> list[tuple[str, int]]:
        sums: dict[str, int] = {}
        for _, account, fen, _at in self.st.ledger:
            if account.startswith(prefix):
                sums[account] = sums.get(account, 0) + fen
        return sorted(sums.items())

    async def balance(self, account: str) -> int:
        return sum(fen for _, a, fen, _at in self.st.ledger if a == account)

    # -- statements
    async def statement(self, statement_id: str, *, for_update: bool = False) -> Statement | None:
        return self.st.statements.get(statement_id)

    async def save_statement(self, st: Statement, now: dt.datetime, *, expect: StatementStatus | None) -> bool:
        old = self.st.statements.get(st.statement_id)
        if expect is None:
            if old is not None:
                raise unique_violation(f"statements.statement_id {st.statement_id}")
        elif old is None or old.status is not expect:
            return False
        self.st.statements[st.statement_id] = st
        return True

    async def statements_of_month(self, year: int, month: int, province: str = "") -> list[Statement]:
        return sorted(
            (
                s
                for s in self.st.statements.values()
                if s.year == year
                and s.month == month
                and (not province or province in (s.insured_province, s.treatment_province))
            ),
            key=lambda s: s.statement_id,
        )

    async def clearing_sum(
        self, ip: str, tp: str, year: int, months: Sequence[int], statuses: Sequence[str] = ()
    ) -> int:
        return sum(
            s.amount_due_fen
            for s in self.st.statements.values()
            if (s.insured_province, s.treatment_province, s.year) == (ip, tp, year)
            and s.month in months
            and (not statuses or s.status.value in statuses)
        )

    # -- signing calendar
    async def set_calendar(self, year: int, dates: Sequence[dt.date]) -> None:
        self.st.calendar = {d: y for d, y in self.st.calendar.items() if y != year}
        for d in dates:
            if d in self.st.calendar:
                raise unique_violation(f"signing_calendar.signing_date {d}")
            self.st.calendar[d] = year

    async def calendar(self, year: int | None = None) -> list[dt.date]:
        return sorted(d for d, y in self.st.calendar.items() if year is None or y == year)

    # -- prepayments and top-ups
    async def prepayment(self, ip: str, tp: str, year: int) -> Any:
        return self.st.prepayments.get((ip, tp, year))

    async def add_prepayment(self, ip: str, tp: str, year: int, amount: int, q4: int, now: dt.datetime) -> None:
        if (ip, tp, year) in self.st.prepayments:
            raise unique_violation(f"prepayments {ip}-{tp}-{year}")
        self.st.prepayments[(ip, tp, year)] = SimpleNamespace(
            insured_province=ip,
            treatment_province=tp,
            year=year,
            annual_prepayment_fen=amount,
            previous_q4_clearing_fen=q4,
            created_at=now,
        )

    async def top_ups_sum(
        self, ip: str, tp: str, year: int, month: int | None = None, statuses: Sequence[str] = ("disbursed",)
    ) -> int:
        return sum(
            t.amount_fen
            for t in self.st.top_ups.values()
            if (t.insured_province, t.treatment_province, t.year) == (ip, tp, year)
            and t.status in statuses
            and (month is None or t.month == month)
        )

    async def top_up(self, top_up_id: str, *, for_update: bool = False) -> Any:
        return self.st.top_ups.get(top_up_id)

    async def move_top_up(self, top_up_id: str, expect: str, values: Mapping[str, Any]) -> bool:
        t = self.st.top_ups.get(top_up_id)
        if t is None or t.status != expect:
            return False
        self.st.top_ups[top_up_id] = SimpleNamespace(**{**vars(t), **values})
        return True

    async def add_top_up(
        self, top_up_id: str, ip: str, tp: str, year: int, month: int, amount: int, now: dt.datetime
    ) -> None:
        if top_up_id in self.st.top_ups:
            raise unique_violation(f"top_ups.top_up_id {top_up_id}")
        self.st.top_ups[top_up_id] = SimpleNamespace(
            top_up_id=top_up_id,
            insured_province=ip,
            treatment_province=tp,
            year=year,
            month=month,
            amount_fen=amount,
            created_at=now,
            status="requested",
            reviewed_at=None,
            review_note=None,
            disbursement_date=None,
        )


class InMemoryClearingStore:
    def __init__(self) -> None:
        self.state = _State()
        self.commits = 0

    def seed(self, *statements: Statement) -> None:
        """Statements as a monthly clearing run would have stored them."""
        for st in statements:
            self.state.statements[st.statement_id] = st

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Repo]:
        base = self.state
        work = base.copy()
        yield _Repo(work)
        await asyncio.sleep(0)  # a commit is a suspension point, as a database round trip is
        if self.state is not base:
            # another transaction committed meanwhile: where the database would have made this
            # one wait for its row locks, the fake refuses it and run_once runs it again
            raise unique_violation("concurrent transaction")
        work.keys.merge_into(base.keys)
        work.keys = base.keys
        self.state = work
        self.commits += 1

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Repo]:
        yield _Repo(self.state)
