"""In-memory implementations of the settlement ports (services/settlement/application/ports.py).

Real fakes, as cosmicpython's FakeUnitOfWork: they keep state, a unit of work sees its own
writes and commits them only when it ends normally (a refused request writes nothing), and they
refuse what the database's keys refuse (IntegrityError, as SQLAlchemy raises it): a request id
recorded twice, a second settlement with one request id, a second cancellation of a settlement,
a hospital visit number used twice at one institution, a second claim for one hospital visit.
One unit of work runs at a time (SQLite's single writer). No SQL, no event loop tricks.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from libs.core.errors import DomainError, Reason
from libs.policy import Accumulators, FeeLine, FilingType, ServiceType, SettlementResult
from libs.policy.money import round_half_up
from services.settlement.application.ports import (
    BatchReads,
    FeedRow,
    KeyRow,
    PreSettleReads,
    StatusChange,
)
from services.settlement.domain.model import (
    ClaimStatus,
    CredentialRef,
    Decision,
    ManualClaim,
    SettlementKind,
    SettlementRecord,
    StayRef,
    UploadedLine,
    VisitRecord,
    VisitStatus,
)
from services.settlement.domain.monitoring import Stay


def _unique(what: str) -> IntegrityError:
    return IntegrityError(f"duplicate key: {what}", None, Exception(what))


@dataclass
class State:
    """Every table of the service, as the database holds it."""

    visits: dict[str, VisitRecord] = field(default_factory=dict)
    lines: dict[str, dict[int, UploadedLine]] = field(default_factory=dict)  # visit -> line_no -> line
    settlements: dict[str, SettlementRecord] = field(default_factory=dict)
    settlement_totals: dict[str, dict[str, int]] = field(default_factory=dict)  # the money columns
    accumulators: dict[tuple[str, int], Accumulators] = field(default_factory=dict)  # balance 0 here
    accounts: dict[str, int] = field(default_factory=dict)
    claims: dict[str, ManualClaim] = field(default_factory=dict)
    claim_results: dict[str, tuple[str, int]] = field(default_factory=dict)  # result json, reimbursed
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # request -> (op, fp, ref)
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: list[tuple[str, str]] = field(default_factory=list)  # (event_type, entity_id), not yet numbered


@dataclass(frozen=True, slots=True)
class Event:
    position: int
    entity_id: str


class FakeRepo:
    """``SettlementRepo`` over one unit of work's copy of the state."""

    def __init__(self, state: State) -> None:
        self.t = state

    # keys
    async def check_key(self, request_id: str, operation: str, fp: str) -> str | None:
        found = self.t.keys.get(request_id)
        if found is None:
            return None
        if found[0] != operation or found[1] != fp:
            raise DomainError(
                Reason.REQUEST_ID_REUSED,
                "request_id was already used for a different request",
                metadata={"operation": found[0]},
            )
        return found[2]

    async def lookup_key(self, request_id: str) -> tuple[str, str] | None:
        found = self.t.keys.get(request_id)
        return None if found is None else (found[0], found[2])

    async def record_key(self, request_id: str, operation: str, fp: str, ref: str) -> None:
        if request_id in self.t.keys:
            raise _unique(f"idempotency_keys.request_id={request_id}")
        self.t.keys[request_id] = (operation, fp, ref)

    # visits
    async def add_visit(self, v: VisitRecord) -> None:
        if v.visit_id in self.t.visits:
            raise _unique(f"visits.visit_id={v.visit_id}")
        if await self.visit_by_hospital_no(v.institution_code, v.hospital_visit_no):
            raise _unique("ux_visits_institution_visit_no")
        self.t.visits[v.visit_id] = v
        self.t.lines[v.visit_id] = {}

    async def visit(self, visit_id: str, *, for_update: bool = False) -> VisitRecord | None:
        return self.t.visits.get(visit_id)

    async def visit_by_hospital_no(self, institution: str, visit_no: str) -> VisitRecord | None:
        return next(
            (
                v
                for v in self.t.visits.values()
                if v.institution_code == institution and v.hospital_visit_no == visit_no
            ),
            None,
        )

    async def update_visit(self, visit_id: str, **values: object) -> None:
        self.t.visits[visit_id] = replace(self.t.visits[visit_id], **values)  # type: ignore[arg-type]

    async def set_visit_status(
        self, visit_id: str, status: VisitStatus, *, discharge_date: dt.date | None = None, settled_stays_delta: int = 0
    ) -> None:
        v = self.t.visits[visit_id]
        self.t.visits[visit_id] = replace(
            v,
            status=status,
            settled_stays=v.settled_stays + settled_stays_delta,
            discharge_date=discharge_date if discharge_date is not None else v.discharge_date,
        )

    async def latest_visit_of(self, person_no: str, institution: str | None) -> VisitRecord | None:
        found = [
            v
            for v in self.t.visits.values()
            if v.decision.person_no == person_no and (institution is None or v.institution_code == institution)
        ]
        return max(found, key=lambda v: (v.opened_at, v.visit_id), default=None)

    def _live(self, visit_id: str) -> str:
        cancelled = {s.cancels_settlement_id for s in self.t.settlements.values() if s.cancels_settlement_id}
        live = [
            s
            for s in self.t.settlements.values()
            if s.visit_id == visit_id and s.kind is SettlementKind.SETTLEMENT and s.settlement_id not in cancelled
        ]
        return max(live, key=lambda s: s.settled_at).settlement_id if live else ""

    async def lock_stays_of(self, person_no: str, institution: str, service_type: str) -> None:
        return None  # one unit of work at a time: the check is serialised already

    async def stays_of(self, person_no: str, institution: str, service_type: str) -> list[StayRef]:
        return [
            StayRef(v.visit_id, v.hospital_visit_no, v.admission_date, v.discharge_date, self._live(v.visit_id))
            for v in self.t.visits.values()
            if v.decision.person_no == person_no
            and v.institution_code == institution
            and v.service_type.value == service_type
            and v.status is not VisitStatus.CANCELLED
        ]

    async def inpatient_stays_of(self, persons: list[str]) -> dict[str, list[Stay]]:
        out: dict[str, list[Stay]] = {}
        for v in self.t.visits.values():
            if (
                v.decision.person_no in persons
                and v.service_type is ServiceType.INPATIENT
                and v.status is not VisitStatus.CANCELLED
            ):
                out.setdefault(v.decision.person_no, []).append(
                    (v.visit_id, v.institution_code, v.admission_date, v.discharge_date)
                )
        return out

    # fee lines
    async def lines(self, visit_id: str, *, unsettled_only: bool = False) -> list[UploadedLine]:
        found = sorted(self.t.lines.get(visit_id, {}).values(), key=lambda u: u.line.line_no)
        return [u for u in found if not (unsettled_only and u.settlement_id)]

    async def replace_lines(self, visit_id: str, lines: list[UploadedLine]) -> None:
        stored = self.t.lines.setdefault(visit_id, {})
        for u in lines:
            stored[u.line.line_no] = replace(u, settlement_id="")
        total = sum(round_half_up(u.line.quantity_milli * u.line.unit_price_fen, 1000) for u in stored.values())
        await self.update_visit(visit_id, fee_line_count=len(stored), fee_total_fen=total)

    async def mark_lines_settled(self, visit_id: str, line_nos: list[int], settlement_id: str) -> None:
        stored = self.t.lines[visit_id]
        for n in line_nos:
            stored[n] = replace(stored[n], settlement_id=settlement_id)

    async def unmark_lines(self, visit_id: str, settlement_id: str) -> None:
        stored = self.t.lines[visit_id]
        for n, u in list(stored.items()):
            if u.settlement_id == settlement_id:
                stored[n] = replace(u, settlement_id="")

    async def deductible_borne_in_stay(self, visit_id: str) -> int:
        return sum(
            self.t.settlement_totals[s.settlement_id]["deductible_fen"]
            for s in self.t.settlements.values()
            if s.visit_id == visit_id
        )

    # settlements
    async def add_settlement(self, rec: SettlementRecord, result: SettlementResult) -> None:
        if rec.settlement_id in self.t.settlements:
            raise _unique(f"settlements.settlement_id={rec.settlement_id}")
        if any(s.request_id == rec.request_id for s in self.t.settlements.values()):
            raise _unique(f"settlements.request_id={rec.request_id}")
        if rec.cancels_settlement_id and any(
            s.cancels_settlement_id == rec.cancels_settlement_id for s in self.t.settlements.values()
        ):
            raise _unique(f"settlements.cancels_settlement_id={rec.cancels_settlement_id}")
        self.t.settlements[rec.settlement_id] = replace(rec, cancelled_by="")
        self.t.settlement_totals[rec.settlement_id] = {
            "total_fen": result.total_fen,
            "deductible_fen": result.deductible_fen,
            "fund_total_fen": result.fund_total_fen,
            "personal_account_fen": result.personal_account_fen,
            "cash_fen": result.cash_fen,
        }
        self.t.events.append((rec.kind.value, rec.settlement_id))

    def _with_cancel(self, rec: SettlementRecord) -> SettlementRecord:
        by = next(
            (s.settlement_id for s in self.t.settlements.values() if s.cancels_settlement_id == rec.settlement_id), ""
        )
        return replace(rec, cancelled_by=by) if by else rec

    async def settlement(self, settlement_id: str) -> SettlementRecord | None:
        rec = self.t.settlements.get(settlement_id)
        return None if rec is None else self._with_cancel(rec)

    async def settlements_by_ids(self, ids: list[str]) -> dict[str, SettlementRecord]:
        return {i: self.t.settlements[i] for i in ids if i in self.t.settlements}

    async def settlement_by_request(self, request_id: str) -> SettlementRecord | None:
        return next((s for s in self.t.settlements.values() if s.request_id == request_id), None)

    async def list_settlements(
        self,
        *,
        institution: str | None,
        person_no: str | None,
        insured_region: str | None,
        date_from: dt.date,
        date_to: dt.date,
        kind: str | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[SettlementRecord]:
        found = [
            s
            for s in self.t.settlements.values()
            if date_from <= s.settle_date <= date_to
            and (institution is None or s.institution_code == institution)
            and (person_no is None or s.person_no == person_no)
            and (insured_region is None or s.insured_region == insured_region)
            and (kind is None or s.kind.value == kind)
            and (after is None or (s.settled_at, s.settlement_id) < after)
        ]
        found.sort(key=lambda s: (s.settled_at, s.settlement_id), reverse=True)
        return [self._with_cancel(s) for s in found[:limit]]

    # accumulators
    def _acc(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators | None:
        acc = self.t.accumulators.get((person_no, year))
        if acc is None:
            return None
        return replace(acc, account_balance_fen=self.t.accounts.get(person_no, seed_balance_fen))

    async def lock_accumulators(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators:
        self.t.accumulators.setdefault((person_no, year), Accumulators(year=year))
        self.t.accounts.setdefault(person_no, seed_balance_fen)
        acc = self._acc(person_no, year, seed_balance_fen)
        assert acc is not None
        return acc

    async def read_accumulators(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators:
        acc = self._acc(person_no, year, seed_balance_fen)
        if acc is not None:
            return acc
        return Accumulators(year=year, account_balance_fen=self.t.accounts.get(person_no, seed_balance_fen))

    async def save_accumulators(self, person_no: str, acc: Accumulators) -> None:
        if (person_no, acc.year) not in self.t.accumulators or person_no not in self.t.accounts:
            return  # an UPDATE of no row
        self.t.accumulators[(person_no, acc.year)] = replace(acc, account_balance_fen=0)
        self.t.accounts[person_no] = acc.account_balance_fen

    # manual claims
    async def add_claim(self, c: ManualClaim) -> None:
        if c.claim_id in self.t.claims or await self.claim_by_visit_no(c.institution_code, c.hospital_visit_no):
            raise _unique("ux_manual_claims_visit")
        self.t.claims[c.claim_id] = c

    async def claim(self, claim_id: str, *, for_update: bool = False) -> ManualClaim | None:
        return self.t.claims.get(claim_id)

    async def claims_of(self, person_no: str, institution: str, service_type: str) -> list[StayRef]:
        return [
            StayRef(c.claim_id, c.hospital_visit_no, c.admission_date, c.discharge_date)
            for c in self.t.claims.values()
            if c.decision.person_no == person_no
            and c.institution_code == institution
            and c.service_type.value == service_type
        ]

    async def claim_by_visit_no(self, institution: str, visit_no: str) -> ManualClaim | None:
        return next(
            (
                c
                for c in self.t.claims.values()
                if c.institution_code == institution and c.hospital_visit_no == visit_no
            ),
            None,
        )

    async def mark_claim_processed(
        self, claim_id: str, result_json: str, reimbursed_fen: int, now: dt.datetime
    ) -> None:
        c = self.t.claims[claim_id]
        self.t.claims[claim_id] = replace(c, status=ClaimStatus.PROCESSED, result_json=result_json, processed_at=now)
        self.t.claim_results[claim_id] = (result_json, reimbursed_fen)

    async def claims(self, insured_region: str, status: str, after_id: str, limit: int) -> list[ManualClaim]:
        found = sorted(
            (
                c
                for c in self.t.claims.values()
                if (not insured_region or c.decision.insured_region == insured_region)
                and (not status or c.status.value == status)
                and c.claim_id > after_id
            ),
            key=lambda c: c.claim_id,
        )
        return found[:limit]

    # archive
    async def record_policy_versions(self, sources: dict[str, tuple[str, str]], now: dt.datetime) -> int:
        missing = [v for v in sources if v not in self.t.versions]
        for v in missing:
            self.t.versions[v] = sources[v]
        return len(missing)

    async def archived_policy_version(self, version: str) -> tuple[str, str] | None:
        return self.t.versions.get(version)


class FakeBatchUnit:
    """``BatchUnit`` over the batch transaction's copy of the state, through the same repository."""

    def __init__(self, repo: FakeRepo) -> None:
        self.repo = repo

    async def lock_visits(self, visit_ids: list[str]) -> dict[str, VisitRecord]:
        return {i: v for i in sorted(set(visit_ids)) if (v := self.repo.t.visits.get(i)) is not None}

    async def read(
        self,
        request_ids: list[str],
        visit_ids: list[str],
        stay_visit_ids: list[str],
        stay_persons: list[str],
        wanted: list[tuple[str, int]],
    ) -> BatchReads:
        t = self.repo.t
        lines = {v: [u.line for u in await self.repo.lines(v, unsettled_only=True)] for v in visit_ids}
        accs: dict[tuple[str, int], Accumulators] = {}
        for person, year in wanted:
            if (acc := self.repo._acc(person, year, 0)) is not None and person in t.accounts:
                accs[(person, year)] = acc
        return BatchReads(
            keys={r: t.keys[r] for r in request_ids if r in t.keys},
            lines=lines,
            prior={v: await self.repo.deductible_borne_in_stay(v) for v in stay_visit_ids},
            stays=await self.repo.inpatient_stays_of(stay_persons),
            accs=accs,
        )

    async def create_accumulators(self, seeds: dict[tuple[str, int], int]) -> dict[tuple[str, int], Accumulators]:
        return {(p, y): await self.repo.lock_accumulators(p, y, b) for (p, y), b in seeds.items()}

    async def write(
        self,
        records: list[tuple[SettlementRecord, SettlementResult]],
        accs: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        statuses: list[StatusChange],
        keys: list[KeyRow],
    ) -> None:
        repo, t = self.repo, self.repo.t
        for rec, result in records:
            await repo.add_settlement(rec, result)
            unsettled = [u.line.line_no for u in await repo.lines(rec.visit_id, unsettled_only=True)]
            await repo.mark_lines_settled(rec.visit_id, unsettled, rec.settlement_id)
        for key, acc in accs.items():
            t.accumulators[key] = replace(acc, account_balance_fen=0)
        t.accounts.update(balances)
        for visit_id, status, discharge in statuses:
            await repo.set_visit_status(visit_id, VisitStatus(status), discharge_date=discharge, settled_stays_delta=1)
        for request_id, operation, fp, ref in keys:
            await repo.record_key(request_id, operation, fp, ref)


class FakeStore:
    """``Store``: units of work on a copy of the state, committed (swapped in) when they end
    normally. ``fail_commits`` makes the next commits fail (the write is lost, as a failed COMMIT)."""

    def __init__(self) -> None:
        self.state = State()
        self.positions: list[Event] = []  # the feed: events numbered at commit
        self.units = 0  # units of work opened: a test can see that a path did not touch storage
        self.fail_commits = 0
        self._writer = asyncio.Lock()
        self._woken = asyncio.Event()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeRepo]:
        self.units += 1
        yield FakeRepo(copy.deepcopy(self.state))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeRepo]:
        async with self._writer:
            self.units += 1
            work = copy.deepcopy(self.state)
            yield FakeRepo(work)
            if self.fail_commits:
                self.fail_commits -= 1
                raise ConnectionError("commit failed")
            self._commit(work)

    def _commit(self, work: State) -> None:
        for _, entity in work.events:
            self.positions.append(Event(len(self.positions) + 1, entity))
        work.events = []
        self.state = work

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[FakeBatchUnit]:
        async with self.transaction() as repo:
            yield FakeBatchUnit(repo)

    async def presettle_reads(self, visit_id: str, year: int) -> PreSettleReads | None:
        async with self.read() as repo:
            visit = await repo.visit(visit_id)
            if visit is None:
                return None
            lines = tuple(u.line for u in await repo.lines(visit_id, unsettled_only=True))
            acc = await repo.read_accumulators(visit.decision.person_no, year, visit.decision.account_balance_fen)
            prior = await repo.deductible_borne_in_stay(visit_id) if visit.settled_stays else 0
            return PreSettleReads(visit, lines, acc, prior)

    async def follow(self, after: int, stopping: asyncio.Event | None) -> AsyncGenerator[Sequence[FeedRow], None]:
        position = after
        while stopping is None or not stopping.is_set():
            rows = [e for e in self.positions if e.position > position]
            yield rows
            if rows:
                position = rows[-1].position
            else:
                self._woken.clear()
                await self._woken.wait()

    def notify(self) -> None:
        self._woken.set()

    # what the tests look at
    def rows(self) -> dict[str, Any]:
        return {
            "settlements": self.state.settlements,
            "lines": self.state.lines,
            "accumulators": self.state.accumulators,
            "accounts": self.state.accounts,
            "keys": self.state.keys,
        }


class FakeEligibility:
    """``EligibilityPort``: answers the decision set for the credential's card number, counts calls."""

    def __init__(self) -> None:
        self.decisions: dict[str, Decision] = {}
        self.filings: dict[str, FilingType] = {}
        self.calls = 0

    async def check(
        self,
        cred: CredentialRef,
        institution_code: str,
        service: ServiceType,
        day: dt.date,
        *,
        special_disease_code: str,
        emergency: bool,
        trauma: bool,
    ) -> Decision:
        self.calls += 1
        return self.decisions[cred.card_number]

    async def filing_type_on(self, person_no: str, treatment_region: str, day: dt.date) -> FilingType | None:
        return self.filings.get(person_no)


def fee(line_no: int, code: str, quantity_milli: int, price_fen: int, day: dt.date | None = None) -> UploadedLine:
    return UploadedLine(FeeLine(line_no, code, quantity_milli, price_fen, None), f"item {code}", day)
