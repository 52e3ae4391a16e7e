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
from libs.platform.db import Database
from libs.platform.logs import get_logger
from services.clearing.adapters.db import DRAWN, ClearingRepository, idempotency_keys
from services.clearing.domain import ledger, rules
from services.clearing.domain.model import StatementStatus, month_key, payment_deadline, statement_id

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
class TopUpResult:
    prepayment: PrepaymentView
    cap_fen: int
    month_clearing_fen: int
    month_top_ups_fen: int


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
    )


async def _verification_in(repo: ClearingRepository, vid: str) -> Verification:
    row = await repo.verification(vid)
    if row is None:
        raise DomainError(Reason.VERIFICATION_NOT_FOUND, f"no verification request {vid}")
    return _verification(row)


class Funds:
    def __init__(self, db: Database, clock: Callable[[], dt.datetime]) -> None:
        self.db = db
        self._clock = clock

    def today(self) -> dt.date:
        return self._clock().astimezone(CST).date()

    async def _once(
        self,
        request_id: str,
        op: str,
        fp: str,
        work: Callable[[ClearingRepository, dt.datetime], Awaitable[str]],
        answer: Callable[[ClearingRepository, str], Awaitable[T]],
    ) -> T:
        """``work`` validates and writes, ``answer`` reads the result: both in ONE transaction,
        before the commit, so a request whose answer cannot be computed writes nothing."""

        async def attempt() -> T:
            async with self.db.transaction() as s:
                if await idempotency.check(s, idempotency_keys, request_id, op, fp):
                    raise idempotency.Replay(request_id)
                repo = ClearingRepository(s)
                ref = await work(repo, self._clock())
                result = await answer(repo, ref)
                await idempotency.record(s, idempotency_keys, request_id, op, fp, ref)
            return result

        async def replayed(_: str) -> T:
            async with self.db.read() as s:
                row = await s.execute(idempotency_keys.select().where(idempotency_keys.c.request_id == request_id))
                return await answer(ClearingRepository(s), str(row.first().result_ref))  # type: ignore[union-attr]

        return await idempotency.run_once(attempt, replayed)

    # -- prepayments ----------------------------------------------------------------------
    async def prepayment(self, ip: str, tp: str, year: int) -> PrepaymentView:
        async with self.db.read() as s:
            return await self._view(ClearingRepository(s), ip, tp, year)

    async def _view(self, repo: ClearingRepository, ip: str, tp: str, year: int) -> PrepaymentView:
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

        async def work(repo: ClearingRepository, now: dt.datetime) -> str:
            if await repo.prepayment(ip, tp, year) is not None:
                raise DomainError(Reason.PREPAYMENT_ALREADY_SET, f"the {year} prepayment {ip}->{tp} is already set")
            q4 = await repo.clearing_sum(ip, tp, year - 1, rules.Q4_MONTHS, DRAWN)
            amount = rules.annual_prepayment(q4)
            await repo.add_prepayment(ip, tp, year, amount, q4, now)
            await repo.post(f"prepayment:{ip}-{tp}-{year}", ledger.prepayment_transfer(ip, tp, amount), now)
            _log.info("prepayment_set", insured=ip, treatment=tp, year=year, amount_fen=amount)
            return f"{ip}-{tp}-{year}"

        async def answer(repo: ClearingRepository, _: str) -> PrepaymentView:
            return await self._view(repo, ip, tp, year)

        return await self._once(request_id, "prepayment", fp, work, answer)

    async def request_top_up(
        self, request_id: str, fp: str, ip: str, tp: str, year: int, month: int, amount_fen: int
    ) -> TopUpResult:
        """At a monthly signing the treatment province may ask for an emergency increase."""

        async def work(repo: ClearingRepository, now: dt.datetime) -> str:
            pre = await repo.prepayment(ip, tp, year)
            if pre is None:
                raise DomainError(Reason.PREPAYMENT_NOT_FOUND, f"no prepayment {ip}->{tp} for {year}")
            st = await repo.statement(statement_id(ip, tp, year, month))
            if st is None:
                raise DomainError(Reason.STATEMENT_NOT_FOUND, f"no statement {ip}->{tp} {year}-{month:02d}")
            if not st.closed:
                raise DomainError(
                    Reason.STATEMENT_STATE_INVALID, "a top-up is requested at the signing: confirm the statement first"
                )
            granted = await repo.top_ups_sum(ip, tp, year, month)
            rules.check_top_up(amount_fen, st.amount_due_fen, int(pre.annual_prepayment_fen), granted)
            await repo.add_top_up(request_id, ip, tp, year, month, amount_fen, now)
            await repo.post(f"top_up:{request_id}"[:64], ledger.prepayment_transfer(ip, tp, amount_fen), now)
            _log.info("top_up_granted", insured=ip, treatment=tp, year=year, month=month, amount_fen=amount_fen)
            return request_id

        async def answer(repo: ClearingRepository, _: str) -> TopUpResult:
            view = await self._view(repo, ip, tp, year)
            st = await repo.statement(statement_id(ip, tp, year, month))
            clearing = st.amount_due_fen if st else 0
            return TopUpResult(
                view,
                rules.top_up_cap(clearing, view.annual_prepayment_fen),
                clearing,
                await repo.top_ups_sum(ip, tp, year, month),
            )

        return await self._once(request_id, "top_up", fp, work, answer)

    async def record_interest(self, request_id: str, fp: str, ip: str, tp: str, year: int, amount_fen: int) -> int:
        """Interest on a prepayment is the treatment place's income, never the insured fund's."""

        async def work(repo: ClearingRepository, now: dt.datetime) -> str:
            if await repo.prepayment(ip, tp, year) is None:
                raise DomainError(Reason.PREPAYMENT_NOT_FOUND, f"no prepayment {ip}->{tp} for {year}")
            await repo.post(f"interest:{request_id}"[:64], ledger.prepayment_interest(tp, amount_fen), now)
            return tp

        async def answer(repo: ClearingRepository, _: str) -> int:
            return await repo.balance(f"province:{tp}:interest_income")

        return await self._once(request_id, "interest", fp, work, answer)

    # -- institutions ---------------------------------------------------------------------
    async def pay_institution(
        self, request_id: str, fp: str, institution: str, amount_fen: int, on: dt.date
    ) -> InstitutionPayment:
        account = f"institution:{institution}:receivable"
        found: dict[str, str] = {}

        async def treatment_province(repo: ClearingRepository) -> str:
            tp = await repo.institution_province(institution)
            if tp is None:
                raise DomainError(Reason.INSTITUTION_NOT_FOUND, f"clearing holds no settlement of {institution}")
            return tp

        async def work(repo: ClearingRepository, now: dt.datetime) -> str:
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

        async def answer(repo: ClearingRepository, _: str) -> InstitutionPayment:
            tp = found.get("tp") or await treatment_province(repo)
            latest = await repo.latest_signed(tp)
            deadline = payment_deadline(latest.signing_date) if latest and latest.signing_date else None
            return InstitutionPayment(
                tp, -await repo.balance(account), deadline, deadline is not None and on > deadline
            )

        return await self._once(request_id, "pay_institution", fp, work, answer)

    # -- expense verification -------------------------------------------------------------
    async def create_verification(self, request_id: str, fp: str, settlement_id: str, reason: str) -> Verification:
        async def work(repo: ClearingRepository, now: dt.datetime) -> str:
            row = await repo.cleared(settlement_id)
            if row is None:
                raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"clearing holds no settlement {settlement_id}")
            if row.kind != "settlement":
                raise invalid("settlement_id", "a cancellation cannot be verified; name the settlement")
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
                }
            )
            return vid

        return await self._once(request_id, "verify", fp, work, _verification_in)

    async def answer_verification(
        self, request_id: str, fp: str, vid: str, answer: str, rejected_fen: int
    ) -> Verification:
        async def work(repo: ClearingRepository, now: dt.datetime) -> str:
            row = await repo.verification(vid)
            if row is None:
                raise DomainError(Reason.VERIFICATION_NOT_FOUND, f"no verification request {vid}")
            settlement = await repo.cleared(row.settlement_id)
            rules.check_answer(
                now.astimezone(CST).date(),
                row.answer_deadline,
                row.answered_at is not None,
                rejected_fen,
                int(settlement.fund_total_fen),
            )
            if not await repo.answer_verification(vid, answer, rejected_fen, now):
                raise DomainError(Reason.VERIFICATION_ALREADY_ANSWERED, "the verification request was already answered")
            if rejected_fen:
                entries = ledger.rejection(
                    row.insured_province, row.treatment_province, row.institution_code, rejected_fen
                )
                await repo.post(f"rejected:{vid}", entries, now)
            return vid

        return await self._once(request_id, "answer_verification", fp, work, _verification_in)

    async def verification(self, vid: str) -> Verification:
        async with self.db.read() as s:
            return await _verification_in(ClearingRepository(s), vid)

    async def verifications(self) -> list[Verification]:
        async with self.db.read() as s:
            return [_verification(r) for r in await ClearingRepository(s).all_verifications()]
