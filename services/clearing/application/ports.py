"""What the clearing use cases need from storage, as interfaces (``typing.Protocol``).

``adapters/db.py`` implements them with SQLAlchemy (``SqlClearingStore``); the unit tests
implement the part the fund operations use in memory (``tests/unit/clearing/fakes.py``);
``services/clearing/server.py`` passes the implementation in. Methods answering ``Any`` return
rows with attribute access, named as the columns of ``adapters/db.py``'s tables."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from services.clearing.domain.ledger import Entry
from services.clearing.domain.model import NO_AMOUNTS, Category, FeedSettlement, Statement, StatementStatus

# Statement states in which the insured place has drawn the amount (confirmed by it, or paid).
DRAWN = (StatementStatus.CONFIRMED_BY_INSURED_SIDE.value, StatementStatus.DISBURSED.value)


def rejected_split(r: Any) -> tuple[int, ...]:
    """A verification's deduction per payer; rows answered before the split was stored were
    deducted from the fund part as a whole, shown as pooled."""
    if r.rejected_split:
        return tuple(int(x) for x in json.loads(r.rejected_split))
    return (int(r.rejected_fen), *NO_AMOUNTS[1:])


class ClearingRepo(Protocol):
    """Clearing's tables inside one transaction (or one read). Every write commits with the
    transaction or not at all; a posting id, a statement id, a request id are unique."""

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        """The result of an earlier request with this id; REQUEST_ID_REUSED for another payload."""
        ...

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None: ...

    async def recorded_ref(self, request_id: str) -> str | None:
        """The result reference of a recorded request, whatever its payload."""
        ...

    async def cursor(self, feed: str) -> int: ...

    async def set_cursor(self, feed: str, position: int, now: dt.datetime) -> None: ...

    async def known(self, ids: Sequence[str]) -> set[str]: ...

    async def settle_dates(self, ids: Sequence[str]) -> dict[str, dt.date]: ...

    async def add_settlements(self, items: Sequence[FeedSettlement], months: Mapping[str, int]) -> None:
        """Bulk insert. On PostgreSQL a COPY inside the same transaction (far fewer round trips
        and less parsing than multi-row INSERTs)."""
        ...

    async def ingested_count(self) -> int: ...

    async def cleared(self, settlement_id: str) -> Any: ...

    async def post(self, posting_id: str, entries: Sequence[Entry], now: dt.datetime) -> None: ...

    async def balances(self, prefix: str = "") -> list[tuple[str, int]]: ...

    async def balance(self, account: str) -> int: ...

    async def lock_month(self, year: int, month: int) -> dict[str, Statement | StatementStatus]:
        """The month's statements, locked (PostgreSQL) so a confirmation cannot interleave with a
        rebuild (SQLite write transactions are serialised anyway). Drafts come back as their
        status only (they are about to be rebuilt), closed ones in full."""
        ...

    async def month_aggregate(self, year: int, month: int, through: int) -> list[Any]: ...

    async def release_claims(self, statement_ids: Sequence[str]) -> None:
        """A draft being rebuilt gives back its adjustments and deductions, to claim them again."""
        ...

    async def claim_late_rows(self, year: int, month: int, through: int) -> None:
        """Rows of an earlier month that arrived after that month's statement was closed become
        adjustments of this month, unless this month's statement of the pair is closed too."""
        ...

    async def rejection_candidates(self, year: int, month: int, through: int) -> list[Any]:
        """Answered deductions not yet taken by a statement, of this month or earlier, whose
        settlement is not cancelled and whose pair's statement of this month is still open;
        oldest answer first."""
        ...

    async def claim_rejections(self, verification_ids: Sequence[str], year: int, month: int) -> None: ...

    async def claim_reinstatements(self, year: int, month: int, through: int) -> None:
        """A deduction taken by a closed statement whose settlement was cancelled afterwards is
        given back by this month's statement (the cancellation returned the whole payment)."""
        ...

    async def adjustments_of(self, year: int, month: int) -> dict[tuple[str, str, Category], tuple[int, ...]]:
        """Late rows claimed by this month's statements, summed per pair and category, per payer."""
        ...

    async def rejections_of(self, year: int, month: int) -> dict[tuple[str, str, Category], tuple[int, ...]]:
        """Deductions claimed by this month's statements, per pair and category, per payer
        (verifications are few: summed here from each one's stored split)."""
        ...

    async def save_drafts(self, fresh: Sequence[Statement], drafts: Sequence[Statement], now: dt.datetime) -> None:
        """Set-based: the drafts being rebuilt are deleted and written again with the new ones
        in one bulk insert (COPY on PostgreSQL). The caller holds the month's lock."""
        ...

    async def save_statement(self, st: Statement, now: dt.datetime, *, expect: StatementStatus | None) -> bool:
        """Insert (``expect`` None), or update if the stored status is still ``expect``."""
        ...

    async def statement(self, statement_id: str, *, for_update: bool = False) -> Statement | None: ...

    async def statements_of_month(self, year: int, month: int, province: str = "") -> list[Statement]: ...

    async def latest_signed(self, treatment_province: str) -> Statement | None: ...

    async def set_calendar(self, year: int, dates: Sequence[dt.date]) -> None: ...

    async def calendar(self, year: int | None = None) -> list[dt.date]: ...

    async def signed_not_disbursed(self) -> list[Statement]: ...

    async def owed_to_institutions(self) -> list[Any]:
        """Per institution and signed statement: what the statement holds for the institution
        (its rows of the month up to the statement's position, the late rows it claimed, less the
        deductions it took, plus those it gave back), with the statement's due date."""
        ...

    async def institution_payments(self) -> dict[str, int]: ...

    async def clearing_sum(
        self, ip: str, tp: str, year: int, months: Sequence[int], statuses: Sequence[str] = ()
    ) -> int: ...

    async def prepayment(self, ip: str, tp: str, year: int) -> Any: ...

    async def add_prepayment(self, ip: str, tp: str, year: int, amount: int, q4: int, now: dt.datetime) -> None: ...

    async def top_ups_sum(
        self, ip: str, tp: str, year: int, month: int | None = None, statuses: Sequence[str] = ("disbursed",)
    ) -> int: ...

    async def top_up(self, top_up_id: str, *, for_update: bool = False) -> Any: ...

    async def move_top_up(self, top_up_id: str, expect: str, values: Mapping[str, Any]) -> bool: ...

    async def add_top_up(
        self, top_up_id: str, ip: str, tp: str, year: int, month: int, amount: int, now: dt.datetime
    ) -> None: ...

    async def add_verification(self, row: Mapping[str, Any]) -> None: ...

    async def verification(self, verification_id: str) -> Any: ...

    async def answer_verification(
        self, verification_id: str, answer: str, split: tuple[int, ...], now: dt.datetime, *, auto: bool = False
    ) -> bool: ...

    async def verifications_of(self, settlement_ids: Sequence[str]) -> list[Any]: ...

    async def overdue_verifications(self, today: dt.date, through: int) -> list[Any]:
        """Unanswered past their deadline, of settlements not cancelled."""
        ...

    async def cancellation_of(self, settlement_id: str) -> str | None: ...

    async def all_verifications(self) -> list[Any]: ...

    async def month_pairs_by_category(self, year: int, month: int) -> list[Any]: ...

    async def institution_province(self, institution: str) -> str | None: ...

    async def institution_month(self, institution: str, year: int, month: int) -> list[Any]:
        """The institution's rows cleared in the month, summed per treatment province, insured
        province and category (the statements' base, restricted to one institution)."""
        ...

    async def statement_states(self, statement_ids: Sequence[str]) -> dict[str, str]: ...

    async def account_entries(self, account: str, posting_prefix: str) -> list[Any]: ...

    async def day_totals(self, day: dt.date, institution: str, province: str) -> list[Any]: ...

    async def day_items(self, day: dt.date, institution: str, province: str) -> list[Any]: ...

    async def save_reconciliation(
        self, rid: str, kind: str, submitter: str, day: dt.date, matched: bool, result: str, now: dt.datetime
    ) -> None: ...

    async def reconciliation(self, rid: str) -> Any: ...


class ClearingStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[ClearingRepo]: ...

    def read(self) -> AbstractAsyncContextManager[ClearingRepo]: ...
