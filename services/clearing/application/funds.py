"""Prepayments, emergency top-ups, prepayment interest, institution payments and expense
verification requests. Each use case owns its transaction and posts balanced ledger entries."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from libs.core.errors import DomainError, Reason, invalid
from libs.platform import idempotency
from libs.platform.convert import CST
from libs.platform.logs import get_logger
from services.clearing.application.ports import DRAWN, ClearingRepo, ClearingStore, rejected_split
from services.clearing.domain import ledger, rules
from services.clearing.domain.model import (
    NO_AMOUNTS,
    StatementStatus,
    add,
    is_overdue,
    month_key,
    payer_amounts,
    payment_deadline,
    statement_id,
)

_log = get_logger("medsettle.clearing")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PrepaymentView:
    insured_province: str
    treatment_province: str
    year: int
    annual_prepayment_fen: int
    previous_q4_clearing_fen: int
    top_ups_fen: int
    drawn_fen: int
    replenished_fen: int

    @property
    def available_fen(self) -> int:
        return self.annual_prepayment_fen + self.top_ups_fen - self.drawn_fen + self.replenished_fen


@dataclass(frozen=True, slots=True)
class Overdue:
    kind: str  # disbursement | institution_payment
    subject: str  # the statement id, or the institution code
    province: str  # who owes: the insured province, or the treatment province
    due_date: dt.date | None
    amount_fen: int


@dataclass(frozen=True, slots=True)
class TopUpView:
    top_up_id: str
    insured_province: str
    treatment_province: str
    year: int
    month: int
    amount_fen: int
    status: rules.TopUpStatus
    review_note: str
    requested_at: dt.datetime
    reviewed_at: dt.datetime | None
    disbursement_date: dt.date | None


@dataclass(frozen=True, slots=True)
class TopUpResult:
    prepayment: PrepaymentView
    cap_fen: int
    month_clearing_fen: int
    month_top_ups_fen: int
    top_up: TopUpView | None = None


@dataclass(frozen=True, slots=True)
class TopUpAllowance:
    month_clearing_fen: int
    annual_prepayment_fen: int
    threshold_met: bool
    cap_fen: int
    taken_fen: int
    statement_closed: bool

    @property
    def allowed_fen(self) -> int:
        return max(0, self.cap_fen - self.taken_fen)


@dataclass(frozen=True, slots=True)
class InstitutionPayment:
    treatment_province: str
    outstanding_fen: int
    deadline: dt.date | None
    late: bool


@dataclass(frozen=True, slots=True)
class Verification:
    verification_id: str
    settlement_id: str
    reason: str
    answer_deadline: dt.date
    answered: bool
    rejected_fen: int
    answer: str
    insured_province: str
    treatment_province: str
    created_at: dt.datetime
    deducted_in_statement_id: str
    questioned_fen: int = 0
    deducted_without_answer: bool = False
    reinstated_in_statement_id: str = ""


def _deducted(rows: Any) -> tuple[int, ...]:
    """What answered verifications of a settlement already deducted, per payer (a deduction
    given back after a cancellation still counts: the settlement is gone)."""
    total = NO_AMOUNTS
    for r in rows:
        if r.answered_at is not None:
            total = add(total, rejected_split(r))
    return total


def _verification(r: Any) -> Verification:
    return Verification(
        r.verification_id,
        r.settlement_id,
        r.reason,
        r.answer_deadline,
        r.answered_at is not None,
        int(r.rejected_fen),
        r.answer or "",
        r.insured_province,
        r.treatment_province,
        r.created_at,
        r.deducted_in_statement_id or "",
        int(r.questioned_fen),
        bool(r.auto_deducted),
        r.reinstated_in_statement_id or "",
    )


async def _verification_in(repo: ClearingRepo, vid: str) -> Verification:
    row = await repo.verification(vid)
    if row is None:
        raise DomainError(Reason.VERIFICATION_NOT_FOUND, f"no verification request {vid}")
    return _verification(row)


class Funds:
    def __init__(self, store: ClearingStore, clock: Callable[[], dt.datetime]) -> None:
        self.store = store
        self._clock = clock

    def today(self) -> dt.date:
        return self._clock().astimezone(CST).date()

    async def _once(
        self,
        request_id: str,
        op: str,
        fp: str,
        work: Callable[[ClearingRepo, dt.datetime], Awaitable[str]],
        answer: Callable[[ClearingRepo, str], Awaitable[T]],
    ) -> T:
        """``work`` validates and writes, ``answer`` reads the result: both in ONE transaction,
        before the commit, so a request whose answer cannot be computed writes nothing."""

        async def attempt() -> T:
            async with self.store.transaction() as repo:
                if await repo.request_ref(request_id, op, fp):
                    raise idempotency.Replay(request_id)
                ref = await work(repo, self._clock())
                result = await answer(repo, ref)
                await repo.record_request(request_id, op, fp, ref)
            return result

        async def replayed(_: str) -> T:
            async with self.store.read() as repo:
                ref = await repo.recorded_ref(request_id)
                if ref is None:  # recorded in the transaction that raced this one: cannot happen
                    raise DomainError(Reason.CONCURRENT_UPDATE, "request raced with a concurrent one; retry")
                return await answer(repo, ref)

        return await idempotency.run_once(attempt, replayed)

    # -- prepayments ----------------------------------------------------------------------
    async def prepayment(self, ip: str, tp: str, year: int) -> PrepaymentView:
        async with self.store.read() as repo:
            return await self._view(repo, ip, tp, year)

    async def _view(self, repo: ClearingRepo, ip: str, tp: str, year: int) -> PrepaymentView:
        row = await repo.prepayment(ip, tp, year)
        if row is None:
            raise DomainError(Reason.PREPAYMENT_NOT_FOUND, f"no prepayment {ip}->{tp} for {year}")
        months = range(1, 13)
        return PrepaymentView(
            ip,
            tp,
            year,
            int(row.annual_prepayment_fen),
            int(row.previous_q4_clearing_fen),
            await repo.top_ups_sum(ip, tp, year),
            await repo.clearing_sum(ip, tp, year, months, DRAWN),
            await repo.clearing_sum(ip, tp, year, months, (StatementStatus.DISBURSED.value,)),
        )

    async def compute_annual_prepayment(self, request_id: str, fp: str, ip: str, tp: str, year: int) -> PrepaymentView:
        """2 x the monthly average of the previous year's Q4 clearing (statements signed by both
        sides), set once per pair and year, and advanced by the insured province."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            if await repo.prepayment(ip, tp, year) is not None:
                raise DomainError(Reason.PREPAYMENT_ALREADY_SET, f"the {year} prepayment {ip}->{tp} is already set")
            q4 = await repo.clearing_sum(ip, tp, year - 1, rules.Q4_MONTHS, DRAWN)
            amount = rules.annual_prepayment(q4)
            await repo.add_prepayment(ip, tp, year, amount, q4, now)
            await repo.post(f"prepayment:{ip}-{tp}-{year}", ledger.prepayment_transfer(ip, tp, amount), now)
            _log.info("prepayment_set", insured=ip, treatment=tp, year=year, amount_fen=amount)
            return f"{ip}-{tp}-{year}"

        async def answer(repo: ClearingRepo, _: str) -> PrepaymentView:
            return await self._view(repo, ip, tp, year)

        return await self._once(request_id, "prepayment", fp, work, answer)

    async def top_up_allowance(self, ip: str, tp: str, year: int, month: int) -> TopUpAllowance:
        """What the treatment province may still ask for the month, before it asks."""
        async with self.store.read() as repo:
            return await self._allowance(repo, ip, tp, year, month)

    async def _allowance(self, repo: ClearingRepo, ip: str, tp: str, year: int, month: int) -> TopUpAllowance:
        pre = await repo.prepayment(ip, tp, year)
        if pre is None:
            raise DomainError(Reason.PREPAYMENT_NOT_FOUND, f"no prepayment {ip}->{tp} for {year}")
        st = await repo.statement(statement_id(ip, tp, year, month))
        if st is None:
            raise DomainError(Reason.STATEMENT_NOT_FOUND, f"no statement {ip}->{tp} {year}-{month:02d}")
        annual = int(pre.annual_prepayment_fen)
        return TopUpAllowance(
            st.amount_due_fen,
            annual,
            rules.top_up_threshold_met(st.amount_due_fen, annual),
            rules.top_up_cap(st.amount_due_fen, annual),
            await repo.top_ups_sum(ip, tp, year, month, rules.TAKEN),
            st.closed,
        )

    async def request_top_up(
        self, request_id: str, fp: str, ip: str, tp: str, year: int, month: int, amount_fen: int
    ) -> TopUpResult:
        """At a monthly signing the treatment province may ask for an emergency increase; it is
        requested until the national operator reviews it, and moves money only when disbursed."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            allowance = await self._allowance(repo, ip, tp, year, month)
            if not allowance.statement_closed:
                raise DomainError(
                    Reason.STATEMENT_STATE_INVALID, "a top-up is requested at the signing: confirm the statement first"
                )
            rules.check_top_up(
                amount_fen, allowance.month_clearing_fen, allowance.annual_prepayment_fen, allowance.taken_fen
            )
            top_up_id = f"TU{uuid.uuid4().hex[:20].upper()}"
            await repo.add_top_up(top_up_id, ip, tp, year, month, amount_fen, now)
            _log.info("top_up_requested", top_up_id=top_up_id, insured=ip, treatment=tp, amount_fen=amount_fen)
            return top_up_id

        async def answer(repo: ClearingRepo, top_up_id: str) -> TopUpResult:
            allowance = await self._allowance(repo, ip, tp, year, month)
            return TopUpResult(
                await self._view(repo, ip, tp, year),
                allowance.cap_fen,
                allowance.month_clearing_fen,
                allowance.taken_fen,
                await self._top_up(repo, top_up_id),
            )

        return await self._once(request_id, "top_up", fp, work, answer)

    async def review_top_up(self, request_id: str, fp: str, top_up_id: str, approve: bool, note: str) -> TopUpView:
        """The national operator approves or refuses a requested top-up."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            row = await self._top_up_row(repo, top_up_id)
            step = rules.TopUpStatus.APPROVED if approve else rules.TopUpStatus.REFUSED
            rules.next_top_up_status(rules.TopUpStatus(row.status), step)
            values = {"status": step.value, "reviewed_at": now, "review_note": note}
            if not await repo.move_top_up(top_up_id, row.status, values):
                raise DomainError(Reason.CONCURRENT_UPDATE, f"top-up {top_up_id} changed meanwhile; retry")
            _log.info("top_up_reviewed", top_up_id=top_up_id, status=step.value)
            return top_up_id

        return await self._once(request_id, "review_top_up", fp, work, self._top_up)

    async def disburse_top_up(
        self, request_id: str, fp: str, top_up_id: str, on: dt.date
    ) -> tuple[TopUpView, PrepaymentView]:
        """The insured province pays an approved top-up: the prepayment grows, cash moves."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            row = await self._top_up_row(repo, top_up_id)
            rules.next_top_up_status(rules.TopUpStatus(row.status), rules.TopUpStatus.DISBURSED)
            if not await repo.move_top_up(top_up_id, row.status, {"status": "disbursed", "disbursement_date": on}):
                raise DomainError(Reason.CONCURRENT_UPDATE, f"top-up {top_up_id} changed meanwhile; retry")
            ip, tp = row.insured_province, row.treatment_province
            await repo.post(f"top_up:{top_up_id}"[:64], ledger.prepayment_transfer(ip, tp, int(row.amount_fen)), now)
            _log.info("top_up_disbursed", top_up_id=top_up_id, amount_fen=int(row.amount_fen))
            return top_up_id

        async def answer(repo: ClearingRepo, ref: str) -> tuple[TopUpView, PrepaymentView]:
            t = await self._top_up(repo, ref)
            return t, await self._view(repo, t.insured_province, t.treatment_province, t.year)

        return await self._once(request_id, "disburse_top_up", fp, work, answer)

    @staticmethod
    async def _top_up_row(repo: ClearingRepo, top_up_id: str) -> Any:
        row = await repo.top_up(top_up_id, for_update=True)
        if row is None:
            raise DomainError(Reason.TOP_UP_NOT_FOUND, f"no emergency top-up {top_up_id}")
        return row

    async def top_up(self, top_up_id: str) -> TopUpView:
        async with self.store.read() as repo:
            return await self._top_up(repo, top_up_id)

    @staticmethod
    async def _top_up(repo: ClearingRepo, top_up_id: str) -> TopUpView:
        r = await repo.top_up(top_up_id)
        if r is None:
            raise DomainError(Reason.TOP_UP_NOT_FOUND, f"no emergency top-up {top_up_id}")
        return TopUpView(
            r.top_up_id,
            r.insured_province,
            r.treatment_province,
            int(r.year),
            int(r.month),
            int(r.amount_fen),
            rules.TopUpStatus(r.status),
            r.review_note or "",
            r.created_at,
            r.reviewed_at,
            r.disbursement_date,
        )

    async def record_interest(self, request_id: str, fp: str, ip: str, tp: str, year: int, amount_fen: int) -> int:
        """Interest on a prepayment is the treatment place's income, never the insured fund's."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            if await repo.prepayment(ip, tp, year) is None:
                raise DomainError(Reason.PREPAYMENT_NOT_FOUND, f"no prepayment {ip}->{tp} for {year}")
            await repo.post(f"interest:{request_id}"[:64], ledger.prepayment_interest(tp, amount_fen), now)
            return tp

        async def answer(repo: ClearingRepo, _: str) -> int:
            return await repo.balance(f"province:{tp}:interest_income")

        return await self._once(request_id, "interest", fp, work, answer)

    # -- institutions ---------------------------------------------------------------------
    async def pay_institution(
        self, request_id: str, fp: str, institution: str, amount_fen: int, on: dt.date
    ) -> InstitutionPayment:
        account = f"institution:{institution}:receivable"
        found: dict[str, str] = {}

        async def treatment_province(repo: ClearingRepo) -> str:
            tp = await repo.institution_province(institution)
            if tp is None:
                raise DomainError(Reason.INSTITUTION_NOT_FOUND, f"clearing holds no settlement of {institution}")
            return tp

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            tp = await treatment_province(repo)
            outstanding = -await repo.balance(account)
            if amount_fen > outstanding:
                raise DomainError(
                    Reason.INSTITUTION_PAYMENT_EXCEEDS_OUTSTANDING,
                    f"payment {amount_fen} fen exceeds what is owed to {institution} ({outstanding} fen)",
                )
            await repo.post(
                f"institution_paid:{request_id}"[:64], ledger.institution_payment(tp, institution, amount_fen), now
            )
            found["tp"] = tp
            return institution

        async def answer(repo: ClearingRepo, _: str) -> InstitutionPayment:
            tp = found.get("tp") or await treatment_province(repo)
            latest = await repo.latest_signed(tp)
            deadline = None
            if latest and latest.signing_date:
                deadline = latest.due_date or payment_deadline(latest.signing_date)
            return InstitutionPayment(
                tp, -await repo.balance(account), deadline, deadline is not None and on > deadline
            )

        return await self._once(request_id, "pay_institution", fp, work, answer)

    # -- signing calendar and overdue payments --------------------------------------------
    async def set_calendar(self, request_id: str, fp: str, year: int, dates: list[dt.date]) -> list[dt.date]:
        """The national operator sets the year's monthly signing dates (one per month, in it)."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            await repo.set_calendar(year, dates)
            _log.info("signing_calendar_set", year=year, dates=len(dates))
            return str(year)

        async def answer(repo: ClearingRepo, _: str) -> list[dt.date]:
            return await repo.calendar(year)

        return await self._once(request_id, "signing_calendar", fp, work, answer)

    async def overdue(self, as_of: dt.date) -> list[Overdue]:
        """Signed statements the insured place has not disbursed by their due date, and what the
        treatment place still owes an institution from statements whose due date has passed."""
        async with self.store.read() as repo:
            out = [
                Overdue("disbursement", st.statement_id, st.insured_province, st.due_date, st.amount_due_fen)
                for st in await repo.signed_not_disbursed()
                if is_overdue(st.due_date, False, as_of)
            ]
            owed: dict[str, tuple[int, dt.date]] = {}
            for r in await repo.owed_to_institutions():
                if r.due_date is not None and as_of > r.due_date:
                    fen, first = owed.get(r.institution_code, (0, r.due_date))
                    owed[r.institution_code] = (fen + int(r.fen), min(first, r.due_date))
            paid = await repo.institution_payments()
            for code, (fen, due) in sorted(owed.items()):
                left = fen - paid.get(code, 0)
                if left > 0:
                    province = await repo.institution_province(code) or ""
                    out.append(Overdue("institution_payment", code, province, due, left))
        return out

    # -- expense verification -------------------------------------------------------------
    async def create_verification(
        self,
        request_id: str,
        fp: str,
        settlement_id: str,
        reason: str,
        amount_fen: int = 0,
        *,
        may_act_for: Callable[[str], None] = lambda _province: None,
    ) -> Verification:
        """At most one open request per settlement, none of a cancelled one, and never more in
        question than the settlement's funds have left after earlier deductions. ``may_act_for``
        refuses a caller who is not the settlement's insured province (checked inside the
        transaction, so a refusal writes nothing)."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            row = await repo.cleared(settlement_id)
            if row is None:
                raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"clearing holds no settlement {settlement_id}")
            may_act_for(str(row.insured_province))
            if row.kind != "settlement":
                raise invalid("settlement_id", "a cancellation cannot be verified; name the settlement")
            if (cancellation := await repo.cancellation_of(settlement_id)) is not None:
                raise DomainError(
                    Reason.SETTLEMENT_ALREADY_REVERSED,
                    f"settlement {settlement_id} was cancelled ({cancellation}): nothing left to verify",
                    metadata={"cancellation_id": cancellation},
                )
            earlier = await repo.verifications_of([settlement_id])
            for v in earlier:
                if v.answered_at is None:
                    raise DomainError(
                        Reason.VERIFICATION_ALREADY_OPEN,
                        f"verification {v.verification_id} of settlement {settlement_id} is still open",
                        metadata={"verification_id": v.verification_id},
                    )
            left = rules.deductible_left(payer_amounts(row), _deducted(earlier))
            questioned = amount_fen or left
            rules.split_deduction(questioned, payer_amounts(row), _deducted(earlier))  # refuses beyond what is left
            if questioned == 0:
                raise DomainError(
                    Reason.AMOUNT_OUT_OF_RANGE,
                    f"settlement {settlement_id} has no fund payment left to verify",
                    metadata={"remaining_fen": "0"},
                )
            vid = f"VR{uuid.uuid4().hex[:20].upper()}"
            await repo.add_verification(
                {
                    "verification_id": vid,
                    "settlement_id": settlement_id,
                    "institution_code": row.institution_code,
                    "insured_province": row.insured_province,
                    "treatment_province": row.treatment_province,
                    "category": row.category,
                    "clearing_month": month_key(row.settle_date),
                    "reason": reason,
                    "created_at": now,
                    "answer_deadline": rules.answer_deadline(now.astimezone(CST).date()),
                    "rejected_fen": 0,
                    "questioned_fen": questioned,
                }
            )
            return vid

        return await self._once(request_id, "verify", fp, work, _verification_in)

    async def answer_verification(
        self,
        request_id: str,
        fp: str,
        vid: str,
        answer: str,
        rejected_fen: int,
        *,
        may_act_for: Callable[[str], None] = lambda _province: None,
    ) -> Verification:
        """``may_act_for`` refuses a caller who is not the settlement's treatment province."""

        async def work(repo: ClearingRepo, now: dt.datetime) -> str:
            row = await repo.verification(vid)
            if row is None:
                raise DomainError(Reason.VERIFICATION_NOT_FOUND, f"no verification request {vid}")
            may_act_for(str(row.treatment_province))
            settlement = await repo.cleared(row.settlement_id)
            rules.check_answer(
                now.astimezone(CST).date(),
                row.answer_deadline,
                row.answered_at is not None,
                rejected_fen,
                int(settlement.fund_total_fen),
            )
            if (cancellation := await repo.cancellation_of(row.settlement_id)) is not None:
                raise DomainError(
                    Reason.SETTLEMENT_ALREADY_REVERSED,
                    f"settlement {row.settlement_id} was cancelled ({cancellation}): nothing to deduct",
                    metadata={"cancellation_id": cancellation},
                )
            others = [v for v in await repo.verifications_of([row.settlement_id]) if v.verification_id != vid]
            split = rules.split_deduction(rejected_fen, payer_amounts(settlement), _deducted(others))
            await self._deduct(repo, row, answer, split, now)
            return vid

        return await self._once(request_id, "answer_verification", fp, work, _verification_in)

    @staticmethod
    async def _deduct(
        repo: ClearingRepo, row: Any, answer: str, split: tuple[int, ...], now: dt.datetime, *, auto: bool = False
    ) -> None:
        if not await repo.answer_verification(row.verification_id, answer, split, now, auto=auto):
            raise DomainError(Reason.VERIFICATION_ALREADY_ANSWERED, "the verification request was already answered")
        if sum(split):
            entries = ledger.rejection(row.insured_province, row.treatment_province, row.institution_code, split)
            await repo.post(f"rejected:{row.verification_id}", entries, now)

    async def deduct_overdue(self, repo: ClearingRepo, today: dt.date, through: int, now: dt.datetime) -> int:
        """Unanswered requests past their deadline are deducted in full (the amount in question,
        within what the settlement's funds have left), inside the clearing run's transaction."""
        done = 0
        for row in await repo.overdue_verifications(today, through):
            settlement = await repo.cleared(row.settlement_id)
            others = [
                v for v in await repo.verifications_of([row.settlement_id]) if v.verification_id != row.verification_id
            ]
            paid, already = payer_amounts(settlement), _deducted(others)
            amount = min(
                int(row.questioned_fen) or rules.deductible_left(paid, already), rules.deductible_left(paid, already)
            )
            split = rules.split_deduction(amount, paid, already)
            note = f"no answer by {row.answer_deadline.isoformat()}: deducted in full"
            await self._deduct(repo, row, note, split, now, auto=True)
            _log.info("verification_deducted_unanswered", verification_id=row.verification_id, amount_fen=amount)
            done += 1
        return done

    async def verification(self, vid: str) -> Verification:
        async with self.store.read() as repo:
            return await _verification_in(repo, vid)

    async def verifications(self) -> list[Verification]:
        async with self.store.read() as repo:
            return [_verification(r) for r in await repo.all_verifications()]
