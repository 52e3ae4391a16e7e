"""Settlement use cases: the hospital-facing hot path.

Each write owns one transaction: lock the person's accumulators for the year, compute with the
policy library, insert the settlement and its outbox event, update the accumulators, commit.
No RPC inside a transaction: the one eligibility call happens before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from opentelemetry import context as otel_context

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform import idempotency, outbox
from libs.platform.convert import CST
from libs.platform.db import Database
from libs.platform.logs import get_logger
from libs.policy import (
    Accumulators,
    Catalogue,
    CatalogueBook,
    FeeLine,
    FilingType,
    Policy,
    PolicyBook,
    ServiceType,
    SettlementResult,
    Visit,
    reverse,
    settle,
    validate_visit,
)
from libs.policy.loader import PolicySet
from services.settlement.adapters.db import (
    SettlementRepository,
    archived_policy_version,
    idempotency_keys,
    record_policy_versions,
    settlement_events,
)
from services.settlement.adapters.hot import KeyRow, StatusChange, batch_unit, presettle_reads
from services.settlement.application import queries
from services.settlement.application.batch import SettleBatcher, SettleCall
from services.settlement.domain import monitoring, results
from services.settlement.domain.model import (
    ClaimStatus,
    CredentialRef,
    Decision,
    ManualClaim,
    SettlementKind,
    SettlementRecord,
    UploadedLine,
    VisitRecord,
    VisitStatus,
    check_owner,
    clearing_category,
    fee_date_violations,
    require_direct,
    require_eligible,
    require_not_after_today,
    require_trauma_declaration,
    same_stay,
)
from services.settlement.domain.monitoring import Stay

_log = get_logger("medsettle.settlement")


class EligibilityPort(Protocol):
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
    ) -> Decision: ...

    async def filing_type_on(self, person_no: str, treatment_region: str, day: dt.date) -> FilingType | None:
        """The type of the person's filing (retro-filings included) covering the region and day."""
        ...


@dataclass(frozen=True, slots=True)
class OpenVisitCommand:
    institution_code: str
    hospital_visit_no: str
    credential: CredentialRef
    service_type: ServiceType
    admission_date: dt.date
    diagnosis_codes: tuple[str, ...]
    special_disease_code: str = ""
    emergency: bool = False
    trauma: bool = False


@dataclass(frozen=True, slots=True)
class Committed:
    record: SettlementRecord
    result: SettlementResult
    visit: VisitRecord


class PolicySource(Protocol):
    """Where the policies and catalogues come from (a watched ``PolicyStore`` in production)."""

    @property
    def current(self) -> PolicySet: ...

    def policy_version(self, version: str) -> Policy: ...

    def catalogue_version(self, version: str) -> Catalogue: ...

    def remember(self, kind: str, text: str, origin: str) -> Policy | Catalogue: ...


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:22].upper()


class SettlementService:
    def __init__(
        self,
        db: Database,
        eligibility: EligibilityPort,
        policies: PolicySource,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        on_commit: Callable[[SettlementRecord, SettlementResult], None] | None = None,
    ) -> None:
        self.db = db
        self.eligibility = eligibility
        self.policy_source = policies
        self.notifier = outbox.FeedNotifier()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._on_commit = on_commit
        # SQLite has one writer anyway; on PostgreSQL a second batch reads and computes while the
        # first one waits for its commit.
        self.batcher = SettleBatcher(self, writers=1 if db.is_sqlite else 2)

    def today(self) -> dt.date:
        return self._clock().astimezone(CST).date()

    @property
    def books(self) -> PolicySet:
        """The policy set in force now. Take it once per computation: a reload swaps the whole
        set, so one computation never mixes two."""
        return self.policy_source.current

    @property
    def policies(self) -> PolicyBook:
        return self.policy_source.current.policies

    @property
    def catalogues(self) -> CatalogueBook:
        return self.policy_source.current.catalogues

    async def _decide(self, cmd: OpenVisitCommand) -> Decision:
        """The one eligibility call of a visit, made before any transaction opens."""
        return await self.eligibility.check(
            cmd.credential,
            cmd.institution_code,
            cmd.service_type,
            cmd.admission_date,
            special_disease_code=cmd.special_disease_code,
            emergency=cmd.emergency,
            trauma=cmd.trauma,
        )

    # -- visits ---------------------------------------------------------------------------
    async def open_visit(self, request_id: str, fp: str, caller: str | None, cmd: OpenVisitCommand) -> VisitRecord:
        check_owner(cmd.institution_code, caller)
        require_not_after_today("admission_date", cmd.admission_date, self.today())
        require_trauma_declaration(cmd.diagnosis_codes, cmd.trauma)
        async with self.db.read() as s:
            if ref := await idempotency.check(s, idempotency_keys, request_id, "open_visit", fp):
                return await self._visit_or_fail(ref)
        decision = await self._decide(cmd)
        require_eligible(decision)
        require_direct(decision)
        self._require_rules_on(decision, cmd.admission_date)

        async def attempt() -> VisitRecord:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "open_visit", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                visit = await self._insert_visit(repo, cmd, decision)
                await idempotency.record(s, idempotency_keys, request_id, "open_visit", fp, visit.visit_id)
            _log.info(
                "visit_opened",
                visit_id=visit.visit_id,
                institution=cmd.institution_code,
                service_type=cmd.service_type.value,
                filing_type=str(decision.filing_type or ""),
            )
            return visit

        return await idempotency.run_once(attempt, self._visit_or_fail)

    def _require_rules_on(self, decision: Decision, day: dt.date) -> None:
        """A visit opens only when the treatment place's catalogue and the insured place's policy
        cover its admission date (NO_CATALOGUE_IN_EFFECT / NO_POLICY_IN_EFFECT otherwise)."""
        books = self.books
        books.catalogues.find(decision.treatment_region, day)
        if decision.insurance_type is not None:
            books.policies.find(decision.insured_region, decision.insurance_type, day)

    async def _insert_visit(self, repo: SettlementRepository, cmd: OpenVisitCommand, decision: Decision) -> VisitRecord:
        await repo.lock_stays_of(decision.person_no, cmd.institution_code, cmd.service_type.value)
        if await repo.visit_by_hospital_no(cmd.institution_code, cmd.hospital_visit_no):
            raise DomainError(
                Reason.VISIT_STATE_INVALID,
                f"hospital visit {cmd.hospital_visit_no} is already open for direct settlement",
                violations=[FieldViolation("hospital_visit_no", "already used by another visit")],
            )
        for c in await repo.claims_of(decision.person_no, cmd.institution_code, cmd.service_type.value):
            if same_stay(
                c.hospital_visit_no, c.admission_date, c.discharge_date, cmd.hospital_visit_no, cmd.admission_date, None
            ):
                raise DomainError(
                    Reason.STAY_ALREADY_PAID,
                    f"the stay is claimed for manual reimbursement ({c.claim_id}): it is not settled directly too",
                    metadata={"claim_id": c.claim_id},
                )
        visit = VisitRecord(
            visit_id=_new_id("V"),
            institution_code=cmd.institution_code,
            hospital_visit_no=cmd.hospital_visit_no,
            service_type=cmd.service_type,
            status=VisitStatus.OPEN,
            decision=decision,
            admission_date=cmd.admission_date,
            discharge_date=None,
            diagnosis_codes=cmd.diagnosis_codes,
            special_disease_code=cmd.special_disease_code,
            opened_at=self._clock(),
            emergency=cmd.emergency,
            trauma_declared=cmd.trauma,
        )
        await repo.add_visit(visit)
        return visit

    async def upload_fees(
        self, request_id: str, fp: str, caller: str | None, visit_id: str, lines: list[UploadedLine]
    ) -> tuple[VisitRecord, int, queries.FeeSplit]:
        """Stores the lines and answers every line's split after the upload (national 2301)."""

        async def attempt() -> tuple[VisitRecord, int, queries.FeeSplit]:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "upload_fees", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                visit = await self._open_visit_for_write(repo, visit_id, caller)
                existing = await repo.lines(visit_id)
                self._validate_lines(visit, lines, existing)
                await repo.replace_lines(visit_id, lines)
                await idempotency.record(s, idempotency_keys, request_id, "upload_fees", fp, visit_id)
                visit = await repo.visit(visit_id)
                assert visit is not None
                split = await queries.fee_split(self, repo, visit)
            return visit, len(lines), split

        async def replay(ref: str) -> tuple[VisitRecord, int, queries.FeeSplit]:
            async with self.db.read() as s:
                repo = SettlementRepository(s)
                visit = await repo.visit(ref)
                if visit is None:
                    raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {ref}")
                return visit, len(lines), await queries.fee_split(self, repo, visit)

        return await idempotency.run_once(attempt, replay)

    def _validate_lines(self, visit: VisitRecord, new: list[UploadedLine], existing: list[UploadedLine]) -> None:
        """The request's lines first (their indices match the request), then the kept unsettled ones.
        A line already settled (by an interim settlement) cannot be replaced: cancel that settlement,
        or upload a refund line against an unsettled line."""
        bad_dates = fee_date_violations([u.fee_date for u in new], visit.admission_date, self.today())
        if bad_dates:
            raise DomainError(Reason.VALIDATION_FAILED, "fee dates outside the stay", violations=bad_dates)
        settled = {u.line.line_no: u.settlement_id for u in existing if u.settlement_id}
        clashes = [
            FieldViolation(f"lines[{i}].line_no", f"line {u.line.line_no} was settled by {settled[u.line.line_no]}")
            for i, u in enumerate(new)
            if u.line.line_no in settled
        ]
        if clashes:
            raise DomainError(Reason.VISIT_STATE_INVALID, "fee lines already settled cannot change", violations=clashes)
        replaced = {u.line.line_no for u in new}
        merged = tuple(u.line for u in new) + tuple(
            u.line for u in existing if u.line.line_no not in replaced and not u.settlement_id
        )
        validate_visit(self._policy_visit(visit, merged, use_account=False), self._catalogue(visit))

    async def _open_visit_for_write(self, repo: SettlementRepository, visit_id: str, caller: str | None) -> VisitRecord:
        return self._writable(await repo.visit(visit_id, for_update=True), visit_id, caller)

    def _writable(self, visit: VisitRecord | None, visit_id: str, caller: str | None) -> VisitRecord:
        if visit is None:
            raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
        check_owner(visit.institution_code, caller)
        if visit.status is not VisitStatus.OPEN:
            raise DomainError(Reason.VISIT_STATE_INVALID, f"visit {visit_id} is {visit.status.value}")
        return visit

    async def update_visit(
        self,
        request_id: str,
        fp: str,
        caller: str | None,
        visit_id: str,
        *,
        diagnosis_codes: tuple[str, ...] | None,
        admission_date: dt.date | None,
    ) -> VisitRecord:
        """Admission changes: diagnoses any time while open; the admission date only before any
        settlement of the stay."""

        async def attempt() -> VisitRecord:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "update_visit", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                visit = await self._open_visit_for_write(repo, visit_id, caller)
                values: dict[str, object] = {}
                if diagnosis_codes is not None:
                    values["diagnosis_codes"] = diagnosis_codes
                if admission_date is not None and admission_date != visit.admission_date:
                    require_not_after_today("admission_date", admission_date, self.today())
                    if visit.settled_stays:
                        raise DomainError(
                            Reason.VISIT_STATE_INVALID,
                            "the admission date cannot change after an interim settlement; cancel it first",
                        )
                    values["admission_date"] = admission_date
                if values:
                    await repo.update_visit(visit_id, **values)
                await idempotency.record(s, idempotency_keys, request_id, "update_visit", fp, visit_id)
            return await self._visit_or_fail(visit_id)

        return await idempotency.run_once(attempt, self._visit_or_fail)

    async def cancel_visit(self, request_id: str, fp: str, caller: str | None, visit_id: str) -> VisitRecord:
        """Cancels an admission or registration that has no live settlement (national 2404)."""

        async def attempt() -> VisitRecord:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "cancel_visit", fp):
                    raise idempotency.Replay(ref)
                await self._cancel_visit_in_tx(SettlementRepository(s), visit_id, caller)
                await idempotency.record(s, idempotency_keys, request_id, "cancel_visit", fp, visit_id)
            return await self._visit_or_fail(visit_id)

        return await idempotency.run_once(attempt, self._visit_or_fail)

    async def _cancel_visit_in_tx(self, repo: SettlementRepository, visit_id: str, caller: str | None) -> None:
        visit = await self._open_visit_for_write(repo, visit_id, caller)
        if visit.settled_stays:
            raise DomainError(
                Reason.VISIT_STATE_INVALID, "the visit has live settlements: cancel them before the visit"
            )
        await repo.set_visit_status(visit_id, VisitStatus.CANCELLED)

    # -- computing ------------------------------------------------------------------------
    def _catalogue(self, visit: VisitRecord, books: PolicySet | None = None) -> Catalogue:
        return (books or self.books).catalogues.find(visit.decision.treatment_region, visit.admission_date)

    def _policy_visit(
        self,
        visit: VisitRecord,
        lines: tuple[FeeLine, ...],
        *,
        use_account: bool,
        settle_date: dt.date | None = None,
        prior_deductible_fen: int = 0,
        new_admission: bool | None = None,
    ) -> Visit:
        """The engine's visit; ``new_admission`` defaults to "no earlier live stay settlement"."""
        d = visit.decision
        if d.insurance_type is None or d.person_type is None or d.filing_type is None:
            raise DomainError(Reason.INVARIANT_VIOLATED, "visit decision lacks insurance, person or filing type")
        return Visit(
            service_type=visit.service_type,
            hospital_level=d.hospital_level,
            insurance_type=d.insurance_type,
            person_type=d.person_type,
            filing_type=d.filing_type,
            settle_date=settle_date or self.today(),
            lines=lines,
            use_personal_account=use_account and d.has_personal_account,
            assistance_category=d.assistance_category or None,
            hardship=d.hardship,
            new_admission=visit.settled_stays == 0 if new_admission is None else new_admission,
            prior_stay_deductible_fen=prior_deductible_fen,
        )

    def _compute(
        self,
        visit: VisitRecord,
        lines: tuple[FeeLine, ...],
        acc: Accumulators,
        *,
        use_account: bool,
        day: dt.date,
        prior_deductible_fen: int,
    ) -> SettlementResult:
        books = self.books
        policy = books.policies.find(visit.decision.insured_region, visit.decision.insurance_type, day)
        catalogue = self._catalogue(visit, books)
        pv = self._policy_visit(
            visit, lines, use_account=use_account, settle_date=day, prior_deductible_fen=prior_deductible_fen
        )
        return settle(policy, catalogue, pv, acc)

    async def pre_settle(self, caller: str | None, visit_id: str, use_account: bool) -> SettlementResult:
        day = self.today()
        found = await presettle_reads(self.db, visit_id, day.year)
        if found is None:
            raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
        visit, lines, acc, prior = found
        check_owner(visit.institution_code, caller)
        if not lines:
            raise DomainError(Reason.VISIT_HAS_NO_FEES, "no unsettled fee lines: upload fees before settling")
        return self._compute(visit, lines, acc, use_account=use_account, day=day, prior_deductible_fen=prior)

    # -- settling -------------------------------------------------------------------------
    async def settle(
        self,
        request_id: str,
        fp: str,
        caller: str | None,
        visit_id: str,
        *,
        use_account: bool,
        interim: bool = False,
        discharge_date: dt.date | None = None,
    ) -> Committed:
        """Settle through the group-commit batcher (application/batch.py)."""
        call = SettleCall(request_id, fp, caller, visit_id, use_account, interim, discharge_date)
        return await self.batcher.submit(call)

    async def settle_one(
        self,
        request_id: str,
        fp: str,
        caller: str | None,
        visit_id: str,
        *,
        use_account: bool,
        interim: bool = False,
        discharge_date: dt.date | None = None,
    ) -> Committed:
        async def attempt() -> Committed:
            async with self.db.transaction() as s:
                repo = SettlementRepository(s)
                # Take the visit's row lock before looking at the key: a concurrent duplicate that
                # got the lock first has committed its key by the time we get it.
                locked = await repo.visit(visit_id, for_update=True)
                if ref := await idempotency.check(s, idempotency_keys, request_id, "settle", fp):
                    raise idempotency.Replay(ref)
                visit = self._writable(locked, visit_id, caller)
                committed = await self._settle_in_tx(
                    repo, visit, request_id, use_account=use_account, interim=interim, discharge_date=discharge_date
                )
                await idempotency.record(s, idempotency_keys, request_id, "settle", fp, committed.record.settlement_id)
            self._committed(committed)
            return committed

        return await idempotency.run_once(attempt, self._committed_or_fail)

    def _settle_day(self, visit: VisitRecord, discharge_date: dt.date | None) -> dt.date:
        today = self.today()
        if discharge_date is not None:
            require_not_after_today("discharge_date", discharge_date, today)
        day = discharge_date or today
        if day < visit.admission_date:
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "discharge_date is before the admission date",
                violations=[FieldViolation("discharge_date", "must be on or after the admission date")],
            )
        return day

    @staticmethod
    def _inputs(visit: VisitRecord, use_account: bool, prior_deductible_fen: int) -> results.Inputs:
        """The engine inputs ``_policy_visit`` derives from the visit, kept for recomputation."""
        return results.Inputs(
            new_admission=visit.settled_stays == 0,
            prior_stay_deductible_fen=prior_deductible_fen,
            use_personal_account=use_account and visit.decision.has_personal_account,
        )

    def _new_settlement(
        self,
        visit: VisitRecord,
        request_id: str,
        day: dt.date,
        interim: bool,
        lines: tuple[FeeLine, ...],
        result: SettlementResult,
        stays: list[Stay],
        inputs: results.Inputs,
    ) -> SettlementRecord:
        """The settlement record, with the monitoring flags raised at settle time."""
        d = visit.decision
        flags = monitoring.line_flags(lines)
        flags.extend(monitoring.catalogue_flags(result.lines))
        catalogue = self.policy_source.catalogue_version(result.catalogue_version)
        flags.extend(monitoring.restriction_flags(lines, catalogue, d.sex, d.birth_date, day))
        if visit.service_type is ServiceType.INPATIENT:
            flags.extend(monitoring.overlap_flags(stays, visit.visit_id, visit.admission_date, day))
        return SettlementRecord(
            settlement_id=_new_id("S"),
            request_id=request_id,
            visit_id=visit.visit_id,
            kind=SettlementKind.SETTLEMENT,
            cancels_settlement_id="",
            institution_code=visit.institution_code,
            person_no=d.person_no,
            insured_region=d.insured_region,
            treatment_region=d.treatment_region,
            service_type=visit.service_type,
            category=clearing_category(visit.service_type),
            settle_date=day,
            settled_at=self._clock(),
            interim=interim,
            result_json=results.dump(result, inputs),
            flags=tuple(flags),
        )

    async def settle_batch(self, calls: list[SettleCall]) -> list[Committed | BaseException | None]:
        """Settles many calls in one transaction; see application/batch.py for the contract and
        adapters/hot.py for its statements. Returns, per call, its settlement, its own error, or
        None (settle it one at a time)."""
        out: list[Committed | BaseException | None] = [None] * len(calls)
        replays: dict[int, str] = {}
        done: list[tuple[SettleCall, Committed]] = []
        today = self.today()
        async with batch_unit(self.db) as unit:
            # Lock first, then read the keys and the rest (as the one-at-a-time path does). The
            # reads cover the calls on open visits of their own hospital; which of them settle
            # (not a replay, not a reused key) is decided below, with each refusal's reason.
            visits = await unit.lock_visits([c.visit_id for c in calls])
            open_ = [
                (c, v)
                for c in calls
                if (v := visits.get(c.visit_id)) is not None
                and v.status is VisitStatus.OPEN
                and v.institution_code == c.caller
            ]
            reads = await unit.read(
                [c.request_id for c in calls],
                sorted({v.visit_id for _, v in open_}),
                sorted({v.visit_id for _, v in open_ if v.settled_stays}),
                [v.decision.person_no for _, v in open_ if v.service_type is ServiceType.INPATIENT],
                [(v.decision.person_no, (c.discharge_date or today).year) for c, v in open_],
            )
            active: list[tuple[int, SettleCall, VisitRecord, dt.date]] = []
            taken_ids: set[str] = set()
            taken_visits: set[str] = set()
            for i, c in enumerate(calls):
                if c.request_id in taken_ids or c.visit_id in taken_visits:
                    continue  # a duplicate or a second call for the visit: after this batch, alone
                if (key := reads.keys.get(c.request_id)) is not None:
                    if key[0] == "settle" and key[1] == c.fp:
                        replays[i] = key[2]
                    else:
                        out[i] = DomainError(
                            Reason.REQUEST_ID_REUSED,
                            "request_id was already used for a different request",
                            metadata={"operation": key[0]},
                        )
                    continue
                try:
                    visit = self._writable(visits.get(c.visit_id), c.visit_id, c.caller)
                    day = self._settle_day(visit, c.discharge_date)
                except DomainError as exc:
                    out[i] = exc
                    continue
                taken_ids.add(c.request_id)
                taken_visits.add(c.visit_id)
                active.append((i, c, visit, day))
            accs = reads.accs
            seeds = {
                (v.decision.person_no, day.year): v.decision.account_balance_fen
                for _, _, v, day in active
                if (v.decision.person_no, day.year) not in accs
            }
            if seeds:  # a person's first settlement of the year: created only for calls that settle
                accs.update(await unit.create_accumulators(seeds))
            balances = {person: acc.account_balance_fen for (person, _), acc in accs.items()}
            records: list[tuple[SettlementRecord, SettlementResult]] = []
            statuses: list[StatusChange] = []
            key_rows: list[KeyRow] = []
            touched: set[tuple[str, int]] = set()
            for i, c, visit, day in active:
                fee = tuple(reads.lines.get(visit.visit_id, ()))
                if not fee:
                    out[i] = DomainError(
                        Reason.VISIT_HAS_NO_FEES, "no unsettled fee lines: upload fees before settling"
                    )
                    continue
                d = visit.decision
                key = (d.person_no, day.year)
                acc = replace(accs[key], account_balance_fen=balances[d.person_no])
                try:
                    result = self._compute(
                        visit,
                        fee,
                        acc,
                        use_account=c.use_account,
                        day=day,
                        prior_deductible_fen=reads.prior.get(visit.visit_id, 0),
                    )
                except DomainError as exc:
                    out[i] = exc
                    continue
                accs[key] = result.accumulators_after  # the next call of this person starts here
                balances[d.person_no] = result.accumulators_after.account_balance_fen
                touched.add(key)
                record = self._new_settlement(
                    visit,
                    c.request_id,
                    day,
                    c.interim,
                    fee,
                    result,
                    reads.stays.get(d.person_no, []),
                    self._inputs(visit, c.use_account, reads.prior.get(visit.visit_id, 0)),
                )
                records.append((record, result))
                new_status = VisitStatus.OPEN if c.interim else VisitStatus.SETTLED
                statuses.append((visit.visit_id, new_status.value, None if c.interim else c.discharge_date))
                key_rows.append((c.request_id, "settle", c.fp, record.settlement_id))
                committed = Committed(record, result, replace(visit, status=new_status))
                out[i] = committed
                done.append((c, committed))
            if records:
                persons = {person for person, _ in touched}
                await unit.write(
                    records,
                    {k: accs[k] for k in touched},
                    {p: b for p, b in balances.items() if p in persons},
                    statuses,
                    key_rows,
                )
        return await self._after_batch(out, replays, done)

    async def _after_batch(
        self,
        out: list[Committed | BaseException | None],
        replays: dict[int, str],
        done: list[tuple[SettleCall, Committed]],
    ) -> list[Committed | BaseException | None]:
        for call, committed in done:
            token = otel_context.attach(call.trace_context)  # log under the caller's trace id
            try:
                self._committed(committed)
            finally:
                otel_context.detach(token)
        for i, ref in replays.items():
            out[i] = await self._committed_or_fail(ref)
        return out

    async def _settle_in_tx(
        self,
        repo: SettlementRepository,
        visit: VisitRecord,
        request_id: str,
        *,
        use_account: bool,
        interim: bool,
        discharge_date: dt.date | None,
    ) -> Committed:
        lines = tuple(u.line for u in await repo.lines(visit.visit_id, unsettled_only=True))
        if not lines:
            raise DomainError(Reason.VISIT_HAS_NO_FEES, "no unsettled fee lines: upload fees before settling")
        day = self._settle_day(visit, discharge_date)
        d = visit.decision
        prior = await repo.deductible_borne_in_stay(visit.visit_id) if visit.settled_stays else 0
        acc = await repo.lock_accumulators(d.person_no, day.year, d.account_balance_fen)
        result = self._compute(visit, lines, acc, use_account=use_account, day=day, prior_deductible_fen=prior)
        stays: list[Stay] = []
        if visit.service_type is ServiceType.INPATIENT:
            stays = (await repo.inpatient_stays_of([d.person_no])).get(d.person_no, [])
        record = self._new_settlement(
            visit, request_id, day, interim, lines, result, stays, self._inputs(visit, use_account, prior)
        )
        await self._write_settlement(repo, record, result)
        await repo.mark_lines_settled(visit.visit_id, [ln.line_no for ln in lines], record.settlement_id)
        await repo.save_accumulators(d.person_no, result.accumulators_after)
        await repo.set_visit_status(
            visit.visit_id,
            VisitStatus.OPEN if interim else VisitStatus.SETTLED,
            discharge_date=None if interim else discharge_date,
            settled_stays_delta=1,
        )
        visit = replace(visit, status=VisitStatus.OPEN if interim else VisitStatus.SETTLED)
        return Committed(record, result, visit)

    async def _write_settlement(
        self, repo: SettlementRepository, record: SettlementRecord, result: SettlementResult
    ) -> None:
        await repo.add_settlement(record, result)
        await outbox.append(
            repo.s, settlement_events, record.kind.value, record.settlement_id, record.settlement_id.encode()
        )

    async def cancel(self, request_id: str, fp: str, caller: str | None, settlement_id: str) -> Committed:
        async def attempt() -> Committed:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "cancel", fp):
                    raise idempotency.Replay(ref)
                committed = await self._cancel_in_tx(SettlementRepository(s), request_id, caller, settlement_id)
                await idempotency.record(s, idempotency_keys, request_id, "cancel", fp, committed.record.settlement_id)
            self._committed(committed)
            return committed

        return await idempotency.run_once(attempt, self._committed_or_fail)

    async def _cancel_in_tx(
        self, repo: SettlementRepository, request_id: str, caller: str | None, settlement_id: str
    ) -> Committed:
        original = await repo.settlement(settlement_id)
        if original is None:
            raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no settlement {settlement_id}")
        check_owner(original.institution_code, caller)
        if original.kind is not SettlementKind.SETTLEMENT:
            raise DomainError(Reason.VISIT_STATE_INVALID, "a cancellation cannot itself be cancelled")
        if original.cancelled_by:
            raise DomainError(
                Reason.SETTLEMENT_ALREADY_REVERSED,
                f"settlement {settlement_id} was already cancelled by {original.cancelled_by}",
            )
        visit = await repo.visit(original.visit_id, for_update=True)
        assert visit is not None
        orig_result = results.load(original.result_json)
        acc = await repo.lock_accumulators(
            original.person_no, original.settle_date.year, visit.decision.account_balance_fen
        )
        # The negative mirror, applied to the person's accumulators as they are now: it takes back
        # exactly what the original added, whatever happened in between.
        mirror = reverse(orig_result, acc)
        restored = mirror.accumulators_after
        record = SettlementRecord(
            settlement_id=_new_id("C"),
            request_id=request_id,
            visit_id=original.visit_id,
            kind=SettlementKind.CANCELLATION,
            cancels_settlement_id=original.settlement_id,
            institution_code=original.institution_code,
            person_no=original.person_no,
            insured_region=original.insured_region,
            treatment_region=original.treatment_region,
            service_type=original.service_type,
            category=original.category,
            settle_date=self.today(),
            settled_at=self._clock(),
            interim=original.interim,
            result_json=results.dump(mirror),
        )
        await self._write_settlement(repo, record, mirror)
        # its lines can be corrected and settled again
        await repo.unmark_lines(original.visit_id, original.settlement_id)
        await repo.save_accumulators(original.person_no, restored)
        await repo.set_visit_status(original.visit_id, VisitStatus.OPEN, settled_stays_delta=-1)
        return Committed(record, mirror, replace(visit, status=VisitStatus.OPEN))

    async def reverse_transaction(
        self, request_id: str, fp: str, caller: str | None, original_request_id: str
    ) -> tuple[bool, Committed | None]:
        """Undo whatever ``original_request_id`` did (national 2601): a settlement is cancelled by
        its negative mirror, an opened visit is cancelled; if the original never arrived, its id
        is tombstoned so a late arrival is refused. Returns (something was undone, cancellation)."""
        if caller is None:
            raise DomainError(Reason.INSTITUTION_IDENTITY_MISSING, "the calling institution is not authenticated")

        async def attempt() -> tuple[bool, Committed | None]:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "reverse", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                original = await repo.settlement_by_request(original_request_id)
                earlier = await idempotency.lookup(s, idempotency_keys, original_request_id)
                committed: Committed | None = None
                if original is not None:
                    committed = await self._cancel_in_tx(repo, request_id, caller, original.settlement_id)
                    ref = committed.record.settlement_id
                elif earlier is not None and earlier[0] == "open_visit":
                    await self._cancel_visit_in_tx(repo, earlier[1], caller)
                    ref = f"visit:{earlier[1]}"
                elif earlier is None:
                    # Never arrived: tombstone the id so the original is refused if it shows up late.
                    await idempotency.record(s, idempotency_keys, original_request_id, "reversed", "-", "-")
                    ref = "-"
                elif earlier[0] in ("reverse", "reversed"):
                    ref = "-"  # a reversal itself, or an id already tombstoned: nothing to undo
                else:
                    raise DomainError(
                        Reason.TRANSACTION_NOT_REVERSIBLE,
                        f"request {original_request_id} ({earlier[0]}) cannot be reversed; nothing was undone",
                        metadata={"operation": earlier[0]},
                    )
                await idempotency.record(s, idempotency_keys, request_id, "reverse", fp, ref)
            if committed:
                self._committed(committed)
            return ref != "-", committed

        async def replay(ref: str) -> tuple[bool, Committed | None]:
            if ref == "-":
                return False, None
            if ref.startswith("visit:"):
                return True, None
            return True, await self._committed_or_fail(ref)

        return await idempotency.run_once(attempt, replay)

    async def settle_outpatient(
        self,
        request_id: str,
        fp: str,
        caller: str | None,
        cmd: OpenVisitCommand,
        lines: list[UploadedLine],
        *,
        use_account: bool,
    ) -> Committed:
        check_owner(cmd.institution_code, caller)
        require_not_after_today("visit_date", cmd.admission_date, self.today())
        require_trauma_declaration(cmd.diagnosis_codes, cmd.trauma)
        async with self.db.read() as s:
            if ref := await idempotency.check(s, idempotency_keys, request_id, "settle_outpatient", fp):
                return await self._committed_or_fail(ref)
        decision = await self._decide(cmd)
        require_eligible(decision)
        require_direct(decision)

        async def attempt() -> Committed:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "settle_outpatient", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                visit = await self._insert_visit(repo, cmd, decision)
                self._validate_lines(visit, lines, [])
                await repo.replace_lines(visit.visit_id, lines)
                committed = await self._settle_in_tx(
                    repo, visit, request_id, use_account=use_account, interim=False, discharge_date=cmd.admission_date
                )
                stored = await repo.visit(visit.visit_id)  # the visit as stored: its lines and status
                assert stored is not None
                committed = replace(committed, visit=stored)
                await idempotency.record(
                    s, idempotency_keys, request_id, "settle_outpatient", fp, committed.record.settlement_id
                )
            self._committed(committed)
            return committed

        return await idempotency.run_once(attempt, self._committed_or_fail)

    def _committed(self, c: Committed) -> None:
        self.notifier.notify()
        _log.info(
            "settlement_committed",
            settlement_id=c.record.settlement_id,
            kind=c.record.kind.value,
            visit_id=c.record.visit_id,
            total_fen=c.result.total_fen,
            fund_total_fen=c.result.fund_total_fen,
        )
        if self._on_commit is not None:
            self._on_commit(c.record, c.result)

    # -- manual reimbursement -------------------------------------------------------------
    async def submit_claim(
        self,
        request_id: str,
        fp: str,
        caller: str | None,
        cmd: OpenVisitCommand,
        discharge_date: dt.date,
        lines: list[UploadedLine],
        failure_reason: str,
    ) -> ManualClaim:
        """Direct settlement was impossible: keep the details and diagnosis for the insured place.
        The person must be identifiable; they need not be eligible (that is why it is manual)."""
        check_owner(cmd.institution_code, caller)
        async with self.db.read() as s:
            if ref := await idempotency.check(s, idempotency_keys, request_id, "submit_claim", fp):
                return await self._claim_or_fail(ref)
        decision = await self._decide(cmd)
        if not decision.person_no or decision.insurance_type is None or decision.person_type is None:
            raise DomainError(Reason.PERSON_NOT_FOUND, "the person could not be identified")
        require_not_after_today("discharge_date", discharge_date, self.today())
        if discharge_date < cmd.admission_date:
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "discharge_date is before the admission date",
                violations=[FieldViolation("discharge_date", "must be on or after the admission date")],
            )
        claim = ManualClaim(
            claim_id=_new_id("M"),
            institution_code=cmd.institution_code,
            hospital_visit_no=cmd.hospital_visit_no,
            service_type=cmd.service_type,
            decision=decision,
            admission_date=cmd.admission_date,
            discharge_date=discharge_date,
            diagnosis_codes=cmd.diagnosis_codes,
            lines=tuple(lines),
            failure_reason=failure_reason,
            status=ClaimStatus.SUBMITTED,
            submitted_at=self._clock(),
        )
        validate_visit(
            self._claim_visit(claim, decision.filing_type or FilingType.OTHER_TEMPORARY), self._claim_catalogue(claim)
        )

        async def attempt() -> ManualClaim:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "submit_claim", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                await repo.lock_stays_of(decision.person_no, cmd.institution_code, cmd.service_type.value)
                for v, live in await repo.stays_of(decision.person_no, cmd.institution_code, cmd.service_type.value):
                    if same_stay(
                        v.hospital_visit_no,
                        v.admission_date,
                        v.discharge_date,
                        cmd.hospital_visit_no,
                        cmd.admission_date,
                        discharge_date,
                    ):
                        first = f"settled directly ({live})" if live else "open for direct settlement"
                        raise DomainError(
                            Reason.STAY_ALREADY_PAID,
                            f"the stay is {first} in visit {v.visit_id}: it is not reimbursed manually too",
                            metadata={"visit_id": v.visit_id, "settlement_id": live},
                        )
                if await repo.claim_by_visit_no(cmd.institution_code, cmd.hospital_visit_no):
                    raise DomainError(
                        Reason.VISIT_STATE_INVALID,
                        f"a claim for hospital visit {cmd.hospital_visit_no} exists",
                        violations=[FieldViolation("hospital_visit_no", "already claimed")],
                    )
                await repo.add_claim(claim)
                await idempotency.record(s, idempotency_keys, request_id, "submit_claim", fp, claim.claim_id)
            _log.info("manual_claim_submitted", claim_id=claim.claim_id, institution=cmd.institution_code)
            return claim

        return await idempotency.run_once(attempt, self._claim_or_fail)

    def _claim_catalogue(self, claim: ManualClaim, books: PolicySet | None = None) -> Catalogue:
        return (books or self.books).catalogues.find(claim.decision.treatment_region, claim.admission_date)

    def _claim_visit(self, claim: ManualClaim, filing_type: FilingType) -> Visit:
        d = claim.decision
        assert d.insurance_type is not None and d.person_type is not None
        return Visit(
            service_type=claim.service_type,
            hospital_level=d.hospital_level,
            insurance_type=d.insurance_type,
            person_type=d.person_type,
            filing_type=filing_type,
            settle_date=claim.discharge_date,
            lines=tuple(u.line for u in claim.lines),
            use_personal_account=False,
            assistance_category=d.assistance_category or None,
            hardship=d.hardship,
            new_admission=True,
        )

    async def process_claim(self, request_id: str, fp: str, claim_id: str) -> tuple[ManualClaim, SettlementResult]:
        """The insured place reimburses with the same engine, in one transaction with the person's
        accumulators. A filing made after discharge (retro-filing) counts; without any filing the
        claim is computed as other temporary treatment (the largest reduction)."""
        async with self.db.read() as s:
            claim = await SettlementRepository(s).claim(claim_id)
        if claim is None:
            raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no manual claim {claim_id}")
        filing_type = await self.eligibility.filing_type_on(
            claim.decision.person_no, claim.decision.treatment_region, claim.admission_date
        )

        async def attempt() -> tuple[ManualClaim, SettlementResult]:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "process_claim", fp):
                    raise idempotency.Replay(ref)
                repo = SettlementRepository(s)
                current = await repo.claim(claim_id, for_update=True)
                assert current is not None
                if current.status is not ClaimStatus.SUBMITTED:
                    raise DomainError(Reason.VISIT_STATE_INVALID, f"claim {claim_id} was already processed")
                d = current.decision
                day = current.discharge_date
                acc = await repo.lock_accumulators(d.person_no, day.year, d.account_balance_fen)
                books = self.books
                policy = books.policies.find(d.insured_region, d.insurance_type, day)
                result = settle(
                    policy,
                    self._claim_catalogue(current, books),
                    self._claim_visit(current, filing_type or FilingType.OTHER_TEMPORARY),
                    acc,
                )
                await repo.save_accumulators(d.person_no, result.accumulators_after)
                await repo.mark_claim_processed(claim_id, results.dump(result), result.fund_total_fen, self._clock())
                await idempotency.record(s, idempotency_keys, request_id, "process_claim", fp, claim_id)
            _log.info("manual_claim_processed", claim_id=claim_id, reimbursed_fen=result.fund_total_fen)
            return await self._claim_or_fail(claim_id), result

        async def replay(ref: str) -> tuple[ManualClaim, SettlementResult]:
            c = await self._claim_or_fail(ref)
            return c, results.load(c.result_json)

        return await idempotency.run_once(attempt, replay)

    async def _claim_or_fail(self, claim_id: str) -> ManualClaim:
        async with self.db.read() as s:
            c = await SettlementRepository(s).claim(claim_id)
        if c is None:
            raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no manual claim {claim_id}")
        return c

    async def get_claim(self, claim_id: str) -> ManualClaim:
        return await self._claim_or_fail(claim_id)

    async def list_claims(self, insured_region: str, status: str, after_id: str, limit: int) -> list[ManualClaim]:
        async with self.db.read() as s:
            return await SettlementRepository(s).claims(insured_region, status, after_id, limit)

    # -- reads ----------------------------------------------------------------------------
    async def _visit_or_fail(self, visit_id: str) -> VisitRecord:
        async with self.db.read() as s:
            v = await SettlementRepository(s).visit(visit_id)
        if v is None:
            raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
        return v

    async def _committed_or_fail(self, settlement_id: str) -> Committed:
        async with self.db.read() as s:
            repo = SettlementRepository(s)
            rec = await repo.settlement(settlement_id)
            if rec is None:
                raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no settlement {settlement_id}")
            visit = await repo.visit(rec.visit_id)
        assert visit is not None
        return Committed(rec, results.load(rec.result_json), visit)

    async def get_visit(self, caller: str | None, visit_id: str) -> tuple[VisitRecord, list[UploadedLine]]:
        async with self.db.read() as s:
            repo = SettlementRepository(s)
            visit = await repo.visit(visit_id)
            if visit is None:
                raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
            check_owner(visit.institution_code, caller)
            return visit, await repo.lines(visit_id)

    async def get_settlement(self, caller: str | None, settlement_id: str) -> Committed:
        c = await self._committed_or_fail(settlement_id)
        check_owner(c.record.institution_code, caller)
        return c

    async def recompute(self, caller: str | None, settlement_id: str) -> tuple[Committed, SettlementResult]:
        """Computes a stored settlement again with exactly the policy and catalogue versions it
        names (also after newer versions were published or the files changed), from its own fee
        lines and the accumulators it started from. Returns the stored one and the new result;
        the engine is deterministic, so they are equal unless the stored data was altered."""
        async with self.db.read() as s:
            repo = SettlementRepository(s)
            rec = await repo.settlement(settlement_id)
            if rec is None:
                raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no settlement {settlement_id}")
            check_owner(rec.institution_code, caller)
            visit = await repo.visit(rec.visit_id)
            lines = tuple(u.line for u in await repo.lines(rec.visit_id) if u.settlement_id == settlement_id)
        assert visit is not None
        if rec.kind is not SettlementKind.SETTLEMENT:
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "a cancellation is the mirror of the settlement it cancels: recompute that one",
                violations=[FieldViolation("settlement_id", f"a cancellation of {rec.cancels_settlement_id}")],
            )
        inputs = results.inputs_of(rec.result_json)
        if not lines:
            raise DomainError(
                Reason.SETTLEMENT_ALREADY_REVERSED, "the settlement was cancelled and its fee lines released"
            )
        if inputs is None:
            raise DomainError(
                Reason.VISIT_STATE_INVALID, "the settlement was stored before its engine inputs were recorded"
            )
        stored = results.load(rec.result_json)
        pv = self._policy_visit(
            visit,
            lines,
            use_account=inputs.use_personal_account,
            settle_date=stored.settle_date,
            prior_deductible_fen=inputs.prior_stay_deductible_fen,
            new_admission=inputs.new_admission,
        )
        policy = await self._version(stored.policy_version, "policy")
        catalogue = await self._version(stored.catalogue_version, "catalogue")
        assert isinstance(policy, Policy) and isinstance(catalogue, Catalogue)
        again = settle(policy, catalogue, pv, stored.accumulators_before)
        return Committed(rec, stored, visit), again

    async def _version(self, version: str, kind: str) -> Policy | Catalogue:
        """A policy or catalogue by full version: in memory, else from this service's archive."""
        find = self.policy_source.policy_version if kind == "policy" else self.policy_source.catalogue_version
        try:
            return find(version)
        except DomainError:
            async with self.db.read() as s:
                found = await archived_policy_version(s, version)
            if found is None or found[0] != kind:
                raise
            return self.policy_source.remember(kind, found[1], f"archived {version}")

    async def archive_policies(self) -> int:
        """Archive every version in force that is not archived yet (at start and after reloads)."""
        async with self.db.transaction() as s:
            return await record_policy_versions(s, dict(self.books.sources), self._clock())

    async def stream(
        self, after: int, follow: bool, stopping: asyncio.Event | None
    ) -> AsyncIterator[tuple[int, SettlementRecord, SettlementResult]]:
        """The outbox feed, in position order; positions are assigned after commit (never skips)."""
        async with contextlib.aclosing(
            outbox.follow(self.db, settlement_events, after, self.notifier, stopping)
        ) as batches:
            async for rows in batches:
                if not rows:
                    if not follow:
                        return
                    continue
                async with self.db.read() as session:
                    found = await SettlementRepository(session).settlements_by_ids([row.entity_id for row in rows])
                for row in rows:
                    rec = found[row.entity_id]
                    yield row.position, rec, results.load(rec.result_json)
