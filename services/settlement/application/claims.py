"""Manual reimbursement: SubmitManualClaim (direct settlement was impossible) and the insured
place's ProcessManualClaim, GetManualClaim, ListManualClaims."""

from __future__ import annotations

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform import idempotency
from libs.platform.logs import get_logger
from libs.policy import Catalogue, FilingType, SettlementResult, Visit, settle, validate_visit
from libs.policy.loader import PolicySet
from services.settlement.application.commands import ProcessClaimCommand, Request, SubmitClaimCommand
from services.settlement.application.context import SettlementContext, new_id
from services.settlement.domain import results
from services.settlement.domain.model import (
    ClaimStatus,
    ManualClaim,
    check_owner,
    require_not_after_today,
    same_stay,
)

_log = get_logger("medsettle.settlement")


class Claims:
    def __init__(self, ctx: SettlementContext) -> None:
        self.ctx = ctx

    async def submit_claim(self, req: Request, cmd: SubmitClaimCommand) -> ManualClaim:
        """Direct settlement was impossible: keep the details and diagnosis for the insured place.
        The person must be identifiable; they need not be eligible (that is why it is manual)."""
        ctx = self.ctx
        v = cmd.visit
        check_owner(v.institution_code, req.caller)
        async with ctx.store.read() as repo:
            if ref := await repo.check_key(req.request_id, "submit_claim", req.fp):
                return await self.claim_or_fail(ref)
        decision = await ctx.decide(v)
        if not decision.person_no or decision.insurance_type is None or decision.person_type is None:
            raise DomainError(Reason.PERSON_NOT_FOUND, "the person could not be identified")
        require_not_after_today("discharge_date", cmd.discharge_date, ctx.today())
        if cmd.discharge_date < v.admission_date:
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "discharge_date is before the admission date",
                violations=[FieldViolation("discharge_date", "must be on or after the admission date")],
            )
        claim = ManualClaim(
            claim_id=new_id("M"),
            institution_code=v.institution_code,
            hospital_visit_no=v.hospital_visit_no,
            service_type=v.service_type,
            decision=decision,
            admission_date=v.admission_date,
            discharge_date=cmd.discharge_date,
            diagnosis_codes=v.diagnosis_codes,
            lines=cmd.lines,
            failure_reason=cmd.failure_reason,
            status=ClaimStatus.SUBMITTED,
            submitted_at=ctx.now(),
        )
        validate_visit(
            claim_visit(claim, decision.filing_type or FilingType.OTHER_TEMPORARY), self.claim_catalogue(claim)
        )

        async def attempt() -> ManualClaim:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "submit_claim", req.fp):
                    raise idempotency.Replay(ref)
                await repo.lock_stays_of(decision.person_no, v.institution_code, v.service_type.value)
                for stay in await repo.stays_of(decision.person_no, v.institution_code, v.service_type.value):
                    if same_stay(
                        stay.hospital_visit_no,
                        stay.admission_date,
                        stay.discharge_date,
                        v.hospital_visit_no,
                        v.admission_date,
                        cmd.discharge_date,
                    ):
                        live = stay.live_settlement
                        first = f"settled directly ({live})" if live else "open for direct settlement"
                        raise DomainError(
                            Reason.STAY_ALREADY_PAID,
                            f"the stay is {first} in visit {stay.ref_id}: it is not reimbursed manually too",
                            metadata={"visit_id": stay.ref_id, "settlement_id": live},
                        )
                if await repo.claim_by_visit_no(v.institution_code, v.hospital_visit_no):
                    raise DomainError(
                        Reason.VISIT_STATE_INVALID,
                        f"a claim for hospital visit {v.hospital_visit_no} exists",
                        violations=[FieldViolation("hospital_visit_no", "already claimed")],
                    )
                await repo.add_claim(claim)
                await repo.record_key(req.request_id, "submit_claim", req.fp, claim.claim_id)
            _log.info("manual_claim_submitted", claim_id=claim.claim_id, institution=v.institution_code)
            return claim

        return await idempotency.run_once(attempt, self.claim_or_fail)

    def claim_catalogue(self, claim: ManualClaim, books: PolicySet | None = None) -> Catalogue:
        return (books or self.ctx.books).catalogues.find(claim.decision.treatment_region, claim.admission_date)

    async def process_claim(self, req: Request, cmd: ProcessClaimCommand) -> tuple[ManualClaim, SettlementResult]:
        """The insured place reimburses with the same engine, in one transaction with the person's
        accumulators. A filing made after discharge (retro-filing) counts; without any filing the
        claim is computed as other temporary treatment (the largest reduction)."""
        ctx = self.ctx
        claim_id = cmd.claim_id
        claim = await self.claim_or_fail(claim_id)
        filing_type = await ctx.eligibility.filing_type_on(
            claim.decision.person_no, claim.decision.treatment_region, claim.admission_date
        )

        async def attempt() -> tuple[ManualClaim, SettlementResult]:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "process_claim", req.fp):
                    raise idempotency.Replay(ref)
                current = await repo.claim(claim_id, for_update=True)
                if current is None:
                    raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no manual claim {claim_id}")
                if current.status is not ClaimStatus.SUBMITTED:
                    raise DomainError(Reason.VISIT_STATE_INVALID, f"claim {claim_id} was already processed")
                d = current.decision
                if d.insurance_type is None:
                    raise DomainError(Reason.INVARIANT_VIOLATED, f"claim {claim_id} lacks an insurance type")
                day = current.discharge_date
                acc = await repo.lock_accumulators(d.person_no, day.year, d.account_balance_fen)
                books = ctx.books
                policy = books.policies.find(d.insured_region, d.insurance_type, day)
                result = settle(
                    policy,
                    self.claim_catalogue(current, books),
                    claim_visit(current, filing_type or FilingType.OTHER_TEMPORARY),
                    acc,
                )
                await repo.save_accumulators(d.person_no, result.accumulators_after)
                await repo.mark_claim_processed(claim_id, results.dump(result), result.fund_total_fen, ctx.now())
                await repo.record_key(req.request_id, "process_claim", req.fp, claim_id)
            _log.info("manual_claim_processed", claim_id=claim_id, reimbursed_fen=result.fund_total_fen)
            return await self.claim_or_fail(claim_id), result

        async def replay(ref: str) -> tuple[ManualClaim, SettlementResult]:
            c = await self.claim_or_fail(ref)
            return c, results.load(c.result_json)

        return await idempotency.run_once(attempt, replay)

    async def claim_or_fail(self, claim_id: str) -> ManualClaim:
        async with self.ctx.store.read() as repo:
            c = await repo.claim(claim_id)
        if c is None:
            raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no manual claim {claim_id}")
        return c

    async def get_claim(self, claim_id: str) -> ManualClaim:
        return await self.claim_or_fail(claim_id)

    async def list_claims(self, insured_region: str, status: str, after_id: str, limit: int) -> list[ManualClaim]:
        async with self.ctx.store.read() as repo:
            return await repo.claims(insured_region, status, after_id, limit)


def claim_visit(claim: ManualClaim, filing_type: FilingType) -> Visit:
    """The engine's visit of a manual claim: the whole stay, settled on its discharge date."""
    d = claim.decision
    if d.insurance_type is None or d.person_type is None:
        raise DomainError(Reason.INVARIANT_VIOLATED, "claim decision lacks insurance or person type")
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
