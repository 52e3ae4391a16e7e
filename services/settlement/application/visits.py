"""Visit use cases: OpenVisit (2401/2201), UpdateVisit (2403), CancelVisit (2404), UploadFees
(2301), GetVisit. Each write is one unit of work that checks and records its idempotency key."""

from __future__ import annotations

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform import idempotency
from libs.platform.logs import get_logger
from libs.policy import validate_visit
from services.settlement.application import queries
from services.settlement.application.commands import (
    CancelVisitCommand,
    OpenVisitCommand,
    Request,
    UpdateVisitCommand,
    UploadFeesCommand,
)
from services.settlement.application.context import SettlementContext, new_id
from services.settlement.application.ports import SettlementRepo
from services.settlement.domain import visits as rules
from services.settlement.domain.model import (
    Decision,
    UploadedLine,
    VisitRecord,
    VisitStatus,
    check_owner,
    fee_date_violations,
    require_direct,
    require_eligible,
    require_not_after_today,
    require_trauma_declaration,
    same_stay,
)

_log = get_logger("medsettle.settlement")


class Visits:
    def __init__(self, ctx: SettlementContext) -> None:
        self.ctx = ctx

    def check_new_visit(self, caller: str | None, cmd: OpenVisitCommand, date_field: str) -> None:
        """A new visit (OpenVisit, SettleOutpatient): the caller's own institution, a date not
        after today, the trauma declaration; checked before anything is read."""
        check_owner(cmd.institution_code, caller)
        require_not_after_today(date_field, cmd.admission_date, self.ctx.today())
        require_trauma_declaration(cmd.diagnosis_codes, cmd.trauma)

    async def direct_decision(self, cmd: OpenVisitCommand) -> Decision:
        """The eligibility decision of a new visit, which must allow direct settlement."""
        decision = await self.ctx.decide(cmd)
        require_eligible(decision)
        require_direct(decision)
        return decision

    async def open_visit(self, req: Request, cmd: OpenVisitCommand) -> VisitRecord:
        ctx = self.ctx
        self.check_new_visit(req.caller, cmd, "admission_date")
        async with ctx.store.read() as repo:
            if ref := await repo.check_key(req.request_id, "open_visit", req.fp):
                return await ctx.visit_or_fail(ref)
        decision = await self.direct_decision(cmd)
        self.require_rules_on(decision, cmd)

        async def attempt() -> VisitRecord:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "open_visit", req.fp):
                    raise idempotency.Replay(ref)
                visit = await self.insert_visit(repo, cmd, decision)
                await repo.record_key(req.request_id, "open_visit", req.fp, visit.visit_id)
            _log.info(
                "visit_opened",
                visit_id=visit.visit_id,
                institution=cmd.institution_code,
                service_type=cmd.service_type.value,
                filing_type=str(decision.filing_type or ""),
            )
            return visit

        return await idempotency.run_once(attempt, ctx.visit_or_fail)

    def require_rules_on(self, decision: Decision, cmd: OpenVisitCommand) -> None:
        """A visit opens only when the treatment place's catalogue and the insured place's policy
        cover its admission date (NO_CATALOGUE_IN_EFFECT / NO_POLICY_IN_EFFECT otherwise)."""
        books = self.ctx.books
        books.catalogues.find(decision.treatment_region, cmd.admission_date)
        if decision.insurance_type is not None:
            books.policies.find(decision.insured_region, decision.insurance_type, cmd.admission_date)

    async def insert_visit(self, repo: SettlementRepo, cmd: OpenVisitCommand, decision: Decision) -> VisitRecord:
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
                    f"the stay is claimed for manual reimbursement ({c.ref_id}): it is not settled directly too",
                    metadata={"claim_id": c.ref_id},
                )
        visit = VisitRecord(
            visit_id=new_id("V"),
            institution_code=cmd.institution_code,
            hospital_visit_no=cmd.hospital_visit_no,
            service_type=cmd.service_type,
            status=VisitStatus.OPEN,
            decision=decision,
            admission_date=cmd.admission_date,
            discharge_date=None,
            diagnosis_codes=cmd.diagnosis_codes,
            special_disease_code=cmd.special_disease_code,
            opened_at=self.ctx.now(),
            emergency=cmd.emergency,
            trauma_declared=cmd.trauma,
        )
        await repo.add_visit(visit)
        return visit

    async def upload_fees(self, req: Request, cmd: UploadFeesCommand) -> tuple[VisitRecord, int, queries.FeeSplit]:
        """Stores the lines and answers every line's split after the upload (national 2301)."""
        ctx = self.ctx
        lines = list(cmd.lines)

        async def attempt() -> tuple[VisitRecord, int, queries.FeeSplit]:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "upload_fees", req.fp):
                    raise idempotency.Replay(ref)
                visit = rules.writable(await repo.visit(cmd.visit_id, for_update=True), cmd.visit_id, req.caller)
                existing = await repo.lines(cmd.visit_id)
                self.validate_lines(visit, lines, existing)
                await repo.replace_lines(cmd.visit_id, lines)
                await repo.record_key(req.request_id, "upload_fees", req.fp, cmd.visit_id)
                stored = await repo.visit(cmd.visit_id)
                if stored is None:
                    raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {cmd.visit_id}")
                split = await queries.fee_split(ctx, repo, stored)
            return stored, len(lines), split

        async def replay(ref: str) -> tuple[VisitRecord, int, queries.FeeSplit]:
            async with ctx.store.read() as repo:
                visit = await repo.visit(ref)
                if visit is None:
                    raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {ref}")
                return visit, len(lines), await queries.fee_split(ctx, repo, visit)

        return await idempotency.run_once(attempt, replay)

    def validate_lines(self, visit: VisitRecord, new: list[UploadedLine], existing: list[UploadedLine]) -> None:
        """Fee dates within the stay, no settled line replaced, and the visit's unsettled lines
        after the upload valid against the catalogue."""
        ctx = self.ctx
        today = ctx.today()
        bad_dates = fee_date_violations([u.fee_date for u in new], visit.admission_date, today)
        if bad_dates:
            raise DomainError(Reason.VALIDATION_FAILED, "fee dates outside the stay", violations=bad_dates)
        merged = rules.require_lines_replaceable(new, existing)
        validate_visit(rules.policy_visit(visit, merged, use_account=False, settle_date=today), ctx.catalogue_of(visit))

    async def update_visit(self, req: Request, cmd: UpdateVisitCommand) -> VisitRecord:
        """Admission changes: diagnoses any time while open; the admission date only before any
        settlement of the stay."""
        ctx = self.ctx

        async def attempt() -> VisitRecord:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "update_visit", req.fp):
                    raise idempotency.Replay(ref)
                visit = rules.writable(await repo.visit(cmd.visit_id, for_update=True), cmd.visit_id, req.caller)
                values = rules.visit_changes(visit, cmd.diagnosis_codes, cmd.admission_date, ctx.today())
                if values:
                    await repo.update_visit(cmd.visit_id, **values)
                await repo.record_key(req.request_id, "update_visit", req.fp, cmd.visit_id)
            return await ctx.visit_or_fail(cmd.visit_id)

        return await idempotency.run_once(attempt, ctx.visit_or_fail)

    async def cancel_visit(self, req: Request, cmd: CancelVisitCommand) -> VisitRecord:
        """Cancels an admission or registration that has no live settlement (national 2404)."""
        ctx = self.ctx

        async def attempt() -> VisitRecord:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "cancel_visit", req.fp):
                    raise idempotency.Replay(ref)
                await self.cancel_visit_in(repo, cmd.visit_id, req.caller)
                await repo.record_key(req.request_id, "cancel_visit", req.fp, cmd.visit_id)
            return await ctx.visit_or_fail(cmd.visit_id)

        return await idempotency.run_once(attempt, ctx.visit_or_fail)

    async def cancel_visit_in(self, repo: SettlementRepo, visit_id: str, caller: str | None) -> None:
        visit = rules.writable(await repo.visit(visit_id, for_update=True), visit_id, caller)
        rules.require_cancellable(visit)
        await repo.set_visit_status(visit_id, VisitStatus.CANCELLED)

    async def get_visit(self, caller: str | None, visit_id: str) -> tuple[VisitRecord, list[UploadedLine]]:
        async with self.ctx.store.read() as repo:
            visit = await repo.visit(visit_id)
            if visit is None:
                raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
            check_owner(visit.institution_code, caller)
            return visit, await repo.lines(visit_id)
