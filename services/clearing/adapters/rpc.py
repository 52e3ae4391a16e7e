"""ClearingService servicer: proto -> command -> use case -> proto."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc

from libs.core.errors import DomainError, Reason, Violations
from libs.platform.convert import check_request_id, date_from_proto, date_to_proto, fingerprint, timestamp
from libs.platform.identity import Role, caller, scoped_request_id
from medsettle.clearing.v1 import clearing_pb2 as pb
from medsettle.clearing.v1 import clearing_pb2_grpc
from medsettle.common.v1 import types_pb2
from services.clearing.adapters.peers import CATEGORY_IN
from services.clearing.application.funds import PrepaymentView, TopUpView, Verification
from services.clearing.application.institutions import InstitutionViews
from services.clearing.application.service import ClearingService
from services.clearing.domain.model import (
    FUND_FIELDS,
    Category,
    Owed,
    Payer,
    Side,
    Statement,
    StatementStatus,
    payment_deadline,
)
from services.clearing.domain.reconcile import Difference, DifferenceKind, Item, Totals
from services.clearing.domain.rules import MAX_AMOUNT_FEN, MAX_YEAR, MIN_YEAR, TopUpStatus

CATEGORY_OUT = {v: types_pb2.ClearingCategory.ValueType(k) for k, v in CATEGORY_IN.items()}
STATUS_OUT = {
    StatementStatus.DRAFT: pb.STATEMENT_STATUS_DRAFT,
    StatementStatus.CONFIRMED_BY_TREATMENT_SIDE: pb.STATEMENT_STATUS_CONFIRMED_BY_TREATMENT_SIDE,
    StatementStatus.CONFIRMED_BY_INSURED_SIDE: pb.STATEMENT_STATUS_CONFIRMED_BY_INSURED_SIDE,
    StatementStatus.DISBURSED: pb.STATEMENT_STATUS_DISBURSED,
}


def _month(m: Any, field: str, v: Violations) -> tuple[int, int]:
    v.check(2000 <= m.year <= 2100, f"{field}.year", "2000..2100")
    v.check(1 <= m.month <= 12, f"{field}.month", "1..12")
    return m.year, m.month


SIDE_IN = {pb.SIDE_TREATMENT: Side.TREATMENT, pb.SIDE_INSURED: Side.INSURED}
KIND_OUT = {
    DifferenceKind.MISSING_HERE: pb.DIFFERENCE_KIND_MISSING_HERE,
    DifferenceKind.MISSING_THERE: pb.DIFFERENCE_KIND_MISSING_THERE,
    DifferenceKind.AMOUNT_DIFFERS: pb.DIFFERENCE_KIND_AMOUNT_DIFFERS,
    DifferenceKind.TOTALS_DIFFER: pb.DIFFERENCE_KIND_TOTALS_DIFFER,
}
MAX_ITEMS = 200_000


def _province(value: str, field: str, v: Violations) -> str:
    v.check(len(value) == 2 and value.isdigit(), field, "2-digit province code")
    return value


def _year(value: int, field: str, v: Violations) -> int:
    v.check(2000 <= value <= 2100, field, "2000..2100")
    return value


def _amount(value: int, field: str, v: Violations, *, zero: bool = False) -> int:
    """A positive (or, with ``zero``, non-negative) amount of at most MAX_AMOUNT_FEN."""
    low = 0 if zero else 1
    v.check(low <= value <= MAX_AMOUNT_FEN, field, f"{low}..{MAX_AMOUNT_FEN} fen")
    return value


def _business_date(d: dt.date | None, field: str, v: Violations, *, not_before: dt.date | None = None) -> None:
    if d is None:
        return
    v.check(MIN_YEAR <= d.year <= MAX_YEAR, field, f"year {MIN_YEAR}..{MAX_YEAR}")
    if not_before is not None:
        v.check(d >= not_before, field, f"on or after {not_before.isoformat()}")


def _totals_in(msg: Any, field: str, v: Violations) -> Totals:
    category: Category | None = None
    if msg.category:
        category = CATEGORY_IN.get(msg.category)
        v.check(category is not None, f"{field}.category", "unknown clearing category")
    funds = [getattr(msg, f) if msg.HasField(f) else None for f in FUND_FIELDS]
    return Totals(category, msg.count, msg.medical_total_fen, msg.fund_total_fen, msg.personal_account_fen, *funds)


def _items_in(items: Any, v: Violations) -> list[Item]:
    v.check(len(items) <= MAX_ITEMS, "items", f"at most {MAX_ITEMS} per request")
    seen: set[str] = set()
    out = []
    for i, it in enumerate(items):
        v.check(0 < len(it.settlement_id) <= 40, f"items[{i}].settlement_id", "required, 1-40 characters")
        v.check(it.settlement_id not in seen, f"items[{i}].settlement_id", "listed twice")
        seen.add(it.settlement_id)
        out.append(Item(it.settlement_id, it.medical_total_fen, it.fund_total_fen, it.personal_account_fen))
    return out


def _totals_out(t: Totals) -> pb.Totals:
    return pb.Totals(
        category=CATEGORY_OUT[t.category] if t.category else types_pb2.CLEARING_CATEGORY_UNSPECIFIED,
        count=t.count,
        medical_total_fen=t.medical_total_fen,
        fund_total_fen=t.fund_total_fen,
        personal_account_fen=t.personal_account_fen,
        **{f: getattr(t, f) for f in FUND_FIELDS if getattr(t, f) is not None},
    )


def _difference_out(d: Difference) -> pb.Difference:
    return pb.Difference(
        kind=KIND_OUT[d.kind],
        settlement_id=d.settlement_id,
        category=CATEGORY_OUT[d.category] if d.category else types_pb2.CLEARING_CATEGORY_UNSPECIFIED,
        expected_fen=d.expected_fen,
        actual_fen=d.actual_fen,
        field=d.field,
    )


def prepayment_to_proto(p: PrepaymentView) -> pb.Prepayment:
    return pb.Prepayment(
        insured_province_code=p.insured_province,
        treatment_province_code=p.treatment_province,
        year=p.year,
        annual_prepayment_fen=p.annual_prepayment_fen,
        top_ups_fen=p.top_ups_fen,
        drawn_fen=p.drawn_fen,
        replenished_fen=p.replenished_fen,
        available_fen=p.available_fen,
    )


def verification_to_proto(vr: Verification) -> pb.VerificationRequest:
    msg = pb.VerificationRequest(
        verification_id=vr.verification_id,
        settlement_id=vr.settlement_id,
        reason=vr.reason,
        answered=vr.answered,
        rejected_fen=vr.rejected_fen,
        answer=vr.answer,
        insured_province_code=vr.insured_province,
        treatment_province_code=vr.treatment_province,
        deducted_in_statement_id=vr.deducted_in_statement_id,
        questioned_fen=vr.questioned_fen,
        deducted_without_answer=vr.deducted_without_answer,
        reinstated_in_statement_id=vr.reinstated_in_statement_id,
    )
    date_to_proto(vr.answer_deadline, msg.answer_deadline)
    msg.create_time.CopyFrom(timestamp(vr.created_at))
    return msg


PAYER_OUT = {
    Payer.POOLED_FUND: pb.PAYER_POOLED_FUND,
    Payer.LARGE_AMOUNT: pb.PAYER_LARGE_AMOUNT,
    Payer.CRITICAL_ILLNESS: pb.PAYER_CRITICAL_ILLNESS,
    Payer.ASSISTANCE: pb.PAYER_ASSISTANCE,
    Payer.OTHER_FUND: pb.PAYER_OTHER_FUND,
    Payer.PERSONAL_ACCOUNT: pb.PAYER_PERSONAL_ACCOUNT,
}


def _owed(owed: tuple[Owed, ...]) -> list[pb.OwedAmount]:
    return [
        pb.OwedAmount(
            payer=PAYER_OUT[o.payer],
            settled_fen=o.settled_fen,
            adjustment_fen=o.adjustment_fen,
            deducted_fen=o.deducted_fen,
            due_fen=o.due_fen,
        )
        for o in owed
    ]


TOP_UP_STATUS_OUT = {
    TopUpStatus.REQUESTED: pb.TOP_UP_STATUS_REQUESTED,
    TopUpStatus.APPROVED: pb.TOP_UP_STATUS_APPROVED,
    TopUpStatus.REFUSED: pb.TOP_UP_STATUS_REFUSED,
    TopUpStatus.DISBURSED: pb.TOP_UP_STATUS_DISBURSED,
}


def top_up_to_proto(t: TopUpView) -> pb.TopUp:
    msg = pb.TopUp(
        top_up_id=t.top_up_id,
        insured_province_code=t.insured_province,
        treatment_province_code=t.treatment_province,
        amount_fen=t.amount_fen,
        status=TOP_UP_STATUS_OUT[t.status],
        review_note=t.review_note,
    )
    msg.month.year, msg.month.month = t.year, t.month
    msg.request_time.CopyFrom(timestamp(t.requested_at))
    if t.reviewed_at is not None:
        msg.review_time.CopyFrom(timestamp(t.reviewed_at))
    date_to_proto(t.disbursement_date, msg.disbursement_date)
    return msg


def statement_to_proto(st: Statement) -> pb.Statement:
    msg = pb.Statement(
        statement_id=st.statement_id,
        insured_province_code=st.insured_province,
        treatment_province_code=st.treatment_province,
        status=STATUS_OUT[st.status],
        amount_due_fen=st.amount_due_fen,
        settlement_count=st.settlement_count,
        lines=[
            pb.StatementLine(
                category=CATEGORY_OUT[ln.category],
                count=ln.count,
                medical_total_fen=ln.medical_total_fen,
                pooled_fund_fen=ln.pooled_fund_fen,
                large_amount_fen=ln.large_amount_fen,
                critical_illness_fen=ln.critical_illness_fen,
                assistance_fen=ln.assistance_fen,
                other_fund_fen=ln.other_fund_fen,
                fund_total_fen=ln.fund_total_fen,
                personal_account_fen=ln.personal_account_fen,
                adjustment_fen=ln.adjustment_fen,
                rejected_fen=ln.rejected_fen,
                amount_due_fen=ln.due_fen,
                owed=_owed(ln.owed),
            )
            for ln in st.lines
        ],
        owed=_owed(st.owed),
    )
    msg.month.year, msg.month.month = st.year, st.month
    msg.through_position = st.through_position
    msg.bank_charge_fen = st.bank_charge_fen
    if st.updated_at is not None:
        msg.update_time.CopyFrom(timestamp(st.updated_at))
    if st.treatment_confirmed_at is not None:
        msg.treatment_confirm_time.CopyFrom(timestamp(st.treatment_confirmed_at))
    if st.insured_confirmed_at is not None:
        msg.insured_confirm_time.CopyFrom(timestamp(st.insured_confirmed_at))
    date_to_proto(st.disbursement_date, msg.disbursement_date)
    if st.signing_date is not None:
        date_to_proto(st.signing_date, msg.signing_date)
        due = st.due_date or payment_deadline(st.signing_date)
        date_to_proto(due, msg.institution_payment_deadline)
        date_to_proto(due, msg.disbursement_deadline)
    return msg


def _own_side(st: Statement, side: Side) -> None:
    """A bureau confirms (or pays) only its own side of its own province's statement; the
    operator acts for either."""
    _acting_for(side)(st.insured_province if side is Side.INSURED else st.treatment_province)


def _acting_for(side: Side) -> Callable[[str], None]:
    """A check that the caller is the ``side`` bureau of a province (or the operator)."""

    def check(province: str) -> None:
        who = caller()
        if who is not None and who.role is Role.OPERATOR:
            return
        role = Role.INSURED_BUREAU if side is Side.INSURED else Role.TREATMENT_BUREAU
        if who is not None and who.role is role and who.covers_region(province):
            return
        raise DomainError(
            Reason.NOT_AUTHORISED_FOR_REGION,
            f"only the {side.value} side's bureau of province {province} may do this",
            metadata={"role": who.role.value if who else "", "region_code": province},
        )

    return check


class ClearingServicer(clearing_pb2_grpc.ClearingServiceServicer):
    def __init__(self, service: ClearingService) -> None:
        self.service = service
        self.institutions = InstitutionViews(service.store)

    async def GetIngestStatus(self, request: pb.GetIngestStatusRequest, context: Any) -> pb.GetIngestStatusResponse:
        position, count = await self.service.ingest_status()
        out = pb.GetIngestStatusResponse(position=position, settlements_ingested=count)
        if self.service.last_event_time is not None:
            out.last_event_time.CopyFrom(timestamp(self.service.last_event_time))
        return out

    async def RunMonthlyClearing(
        self, request: pb.RunMonthlyClearingRequest, context: Any
    ) -> pb.RunMonthlyClearingResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        year, month = _month(request.month, "month", v)
        signing = date_from_proto(
            request.signing_date if request.HasField("signing_date") else None, "signing_date", v, required=False
        )
        if 1 <= month <= 12:
            _business_date(signing, "signing_date", v, not_before=dt.date(max(year, 1), month, 1))
        v.raise_if_any()
        out = await self.service.run_monthly(
            scoped_request_id(request.request_id), fingerprint(request), year, month, signing
        )
        return pb.RunMonthlyClearingResponse(statements=[statement_to_proto(s) for s in out])

    async def GetStatement(self, request: pb.GetStatementRequest, context: Any) -> pb.GetStatementResponse:
        v = Violations()
        v.check(len(request.insured_province_code) == 2, "insured_province_code", "2 digits")
        v.check(len(request.treatment_province_code) == 2, "treatment_province_code", "2 digits")
        year, month = _month(request.month, "month", v)
        v.raise_if_any()
        st = await self.service.statement(request.insured_province_code, request.treatment_province_code, year, month)
        return pb.GetStatementResponse(statement=statement_to_proto(st))

    async def ListStatements(self, request: pb.ListStatementsRequest, context: Any) -> pb.ListStatementsResponse:
        v = Violations()
        year, month = _month(request.month, "month", v)
        v.raise_if_any()
        out = await self.service.statements(year, month, request.province_code)
        return pb.ListStatementsResponse(statements=[statement_to_proto(s) for s in out])

    async def GetLedgerBalances(
        self, request: pb.GetLedgerBalancesRequest, context: Any
    ) -> pb.GetLedgerBalancesResponse:
        rows = await self.service.balances(request.prefix)
        return pb.GetLedgerBalancesResponse(
            balances=[pb.LedgerBalance(account=a, balance_fen=b) for a, b in rows], total_fen=sum(b for _, b in rows)
        )

    async def ConfirmStatement(self, request: pb.ConfirmStatementRequest, context: Any) -> pb.ConfirmStatementResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.statement_id), "statement_id", "required")
        v.check(request.side in SIDE_IN, "side", "SIDE_TREATMENT or SIDE_INSURED")
        v.raise_if_any()
        _own_side(await self.service.statement_by_id(request.statement_id), SIDE_IN[request.side])
        st = await self.service.confirm(
            scoped_request_id(request.request_id), fingerprint(request), request.statement_id, SIDE_IN[request.side]
        )
        return pb.ConfirmStatementResponse(statement=statement_to_proto(st))

    async def RecordDisbursement(
        self, request: pb.RecordDisbursementRequest, context: Any
    ) -> pb.RecordDisbursementResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.statement_id), "statement_id", "required")
        on = date_from_proto(
            request.disbursement_date if request.HasField("disbursement_date") else None, "disbursement_date", v
        )
        _amount(request.bank_charge_fen, "bank_charge_fen", v, zero=True)
        _business_date(on, "disbursement_date", v)
        v.raise_if_any()
        assert on is not None
        _own_side(await self.service.statement_by_id(request.statement_id), Side.INSURED)  # the payer
        st = await self.service.disburse(
            scoped_request_id(request.request_id),
            fingerprint(request),
            request.statement_id,
            on,
            request.bank_charge_fen,
        )
        return pb.RecordDisbursementResponse(statement=statement_to_proto(st))

    async def ReconcileDaily(self, request: pb.ReconcileDailyRequest, context: Any) -> pb.ReconcileDailyResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        inst, prov = request.institution_code, request.treatment_province_code
        v.check(bool(inst) != bool(prov), "institution_code", "give an institution_code or a treatment_province_code")
        if prov:
            _province(prov, "treatment_province_code", v)
        day = date_from_proto(request.date if request.HasField("date") else None, "date", v)
        totals = [_totals_in(t, f"totals[{i}]", v) for i, t in enumerate(request.totals)]
        cats = [t.category for t in totals]
        v.check(len(cats) == len(set(cats)), "totals", "one entry per category")
        v.check(bool(totals) or bool(request.items), "totals", "required")
        items = _items_in(request.items, v)
        v.raise_if_any()
        assert day is not None
        a = await self.service.reconciliation.daily(
            scoped_request_id(request.request_id), fingerprint(request), inst, prov, day, totals, items
        )
        return pb.ReconcileDailyResponse(
            matched=a.matched,
            our_totals=[_totals_out(t) for t in a.our_totals],
            differences=[_difference_out(d) for d in a.differences],
        )

    async def ReconcileDetail(self, request: pb.ReconcileDetailRequest, context: Any) -> pb.ReconcileDetailResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.institution_code), "institution_code", "required")
        day = date_from_proto(request.date if request.HasField("date") else None, "date", v)
        items = _items_in(request.items, v)
        v.raise_if_any()
        assert day is not None
        a = await self.service.reconciliation.detail(
            scoped_request_id(request.request_id), fingerprint(request), request.institution_code, day, items
        )
        return pb.ReconcileDetailResponse(matched=a.matched, differences=[_difference_out(d) for d in a.differences])

    async def ComputeAnnualPrepayment(
        self, request: pb.ComputeAnnualPrepaymentRequest, context: Any
    ) -> pb.ComputeAnnualPrepaymentResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        ip = _province(request.insured_province_code, "insured_province_code", v)
        tp = _province(request.treatment_province_code, "treatment_province_code", v)
        year = _year(request.year, "year", v)
        v.check(ip != tp, "treatment_province_code", "must differ from the insured province")
        v.raise_if_any()
        p = await self.service.funds.compute_annual_prepayment(
            scoped_request_id(request.request_id), fingerprint(request), ip, tp, year
        )
        return pb.ComputeAnnualPrepaymentResponse(
            prepayment=prepayment_to_proto(p), previous_q4_clearing_fen=p.previous_q4_clearing_fen
        )

    async def GetPrepayment(self, request: pb.GetPrepaymentRequest, context: Any) -> pb.GetPrepaymentResponse:
        v = Violations()
        ip = _province(request.insured_province_code, "insured_province_code", v)
        tp = _province(request.treatment_province_code, "treatment_province_code", v)
        year = _year(request.year, "year", v)
        v.raise_if_any()
        return pb.GetPrepaymentResponse(
            prepayment=prepayment_to_proto(await self.service.funds.prepayment(ip, tp, year))
        )

    async def RequestEmergencyTopUp(
        self, request: pb.RequestEmergencyTopUpRequest, context: Any
    ) -> pb.RequestEmergencyTopUpResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        ip = _province(request.insured_province_code, "insured_province_code", v)
        tp = _province(request.treatment_province_code, "treatment_province_code", v)
        year, month = _month(request.month, "month", v)
        _amount(request.amount_fen, "amount_fen", v)
        v.raise_if_any()
        r = await self.service.funds.request_top_up(
            scoped_request_id(request.request_id), fingerprint(request), ip, tp, year, month, request.amount_fen
        )
        out = pb.RequestEmergencyTopUpResponse(
            prepayment=prepayment_to_proto(r.prepayment),
            cap_fen=r.cap_fen,
            month_clearing_fen=r.month_clearing_fen,
            month_top_ups_fen=r.month_top_ups_fen,
        )
        if r.top_up is not None:
            out.top_up.CopyFrom(top_up_to_proto(r.top_up))
        return out

    async def SetSigningCalendar(
        self, request: pb.SetSigningCalendarRequest, context: Any
    ) -> pb.SetSigningCalendarResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        year = _year(request.year, "year", v)
        dates: list[dt.date] = []
        for i, d in enumerate(request.signing_dates):
            day = date_from_proto(d, f"signing_dates[{i}]", v)
            if day is not None:
                v.check(day.year == year, f"signing_dates[{i}]", f"must be in {year}")
                v.check(day.month not in {x.month for x in dates}, f"signing_dates[{i}]", "one signing date per month")
                dates.append(day)
        v.raise_if_any()
        out = await self.service.funds.set_calendar(
            scoped_request_id(request.request_id), fingerprint(request), year, dates
        )
        resp = pb.SetSigningCalendarResponse()
        for day in out:
            date_to_proto(day, resp.signing_dates.add())
        return resp

    async def ListOverduePayments(
        self, request: pb.ListOverduePaymentsRequest, context: Any
    ) -> pb.ListOverduePaymentsResponse:
        v = Violations()
        as_of = date_from_proto(request.as_of if request.HasField("as_of") else None, "as_of", v)
        v.raise_if_any()
        assert as_of is not None
        resp = pb.ListOverduePaymentsResponse()
        for o in await self.service.funds.overdue(as_of):
            item = resp.overdue.add(
                kind=pb.OVERDUE_KIND_DISBURSEMENT if o.kind == "disbursement" else pb.OVERDUE_KIND_INSTITUTION_PAYMENT,
                subject=o.subject,
                province_code=o.province,
                amount_fen=o.amount_fen,
            )
            date_to_proto(o.due_date, item.due_date)
        return resp

    async def GetTopUpAllowance(
        self, request: pb.GetTopUpAllowanceRequest, context: Any
    ) -> pb.GetTopUpAllowanceResponse:
        v = Violations()
        ip = _province(request.insured_province_code, "insured_province_code", v)
        tp = _province(request.treatment_province_code, "treatment_province_code", v)
        year, month = _month(request.month, "month", v)
        v.raise_if_any()
        a = await self.service.funds.top_up_allowance(ip, tp, year, month)
        return pb.GetTopUpAllowanceResponse(
            month_clearing_fen=a.month_clearing_fen,
            annual_prepayment_fen=a.annual_prepayment_fen,
            threshold_met=a.threshold_met,
            cap_fen=a.cap_fen,
            taken_fen=a.taken_fen,
            allowed_fen=a.allowed_fen,
            statement_closed=a.statement_closed,
        )

    async def ReviewEmergencyTopUp(
        self, request: pb.ReviewEmergencyTopUpRequest, context: Any
    ) -> pb.ReviewEmergencyTopUpResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(0 < len(request.top_up_id) <= 128, "top_up_id", "required")
        v.check(len(request.note) <= 2000, "note", "at most 2000 characters")
        v.raise_if_any()
        t = await self.service.funds.review_top_up(
            scoped_request_id(request.request_id),
            fingerprint(request),
            request.top_up_id,
            request.approve,
            request.note,
        )
        return pb.ReviewEmergencyTopUpResponse(top_up=top_up_to_proto(t))

    async def RecordTopUpDisbursement(
        self, request: pb.RecordTopUpDisbursementRequest, context: Any
    ) -> pb.RecordTopUpDisbursementResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(0 < len(request.top_up_id) <= 128, "top_up_id", "required")
        on = date_from_proto(
            request.disbursement_date if request.HasField("disbursement_date") else None, "disbursement_date", v
        )
        v.raise_if_any()
        assert on is not None
        t, p = await self.service.funds.disburse_top_up(
            scoped_request_id(request.request_id), fingerprint(request), request.top_up_id, on
        )
        return pb.RecordTopUpDisbursementResponse(top_up=top_up_to_proto(t), prepayment=prepayment_to_proto(p))

    async def RecordPrepaymentInterest(
        self, request: pb.RecordPrepaymentInterestRequest, context: Any
    ) -> pb.RecordPrepaymentInterestResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        ip = _province(request.insured_province_code, "insured_province_code", v)
        tp = _province(request.treatment_province_code, "treatment_province_code", v)
        year = _year(request.year, "year", v)
        _amount(request.amount_fen, "amount_fen", v)
        v.raise_if_any()
        balance = await self.service.funds.record_interest(
            scoped_request_id(request.request_id), fingerprint(request), ip, tp, year, request.amount_fen
        )
        return pb.RecordPrepaymentInterestResponse(interest_income_fen=balance)

    async def RecordInstitutionPayment(
        self, request: pb.RecordInstitutionPaymentRequest, context: Any
    ) -> pb.RecordInstitutionPaymentResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(0 < len(request.institution_code) <= 32, "institution_code", "required, 1-32 characters")
        _amount(request.amount_fen, "amount_fen", v)
        on = date_from_proto(request.payment_date if request.HasField("payment_date") else None, "payment_date", v)
        _business_date(on, "payment_date", v)
        v.raise_if_any()
        assert on is not None
        r = await self.service.funds.pay_institution(
            scoped_request_id(request.request_id),
            fingerprint(request),
            request.institution_code,
            request.amount_fen,
            on,
        )
        out = pb.RecordInstitutionPaymentResponse(
            treatment_province_code=r.treatment_province, outstanding_fen=r.outstanding_fen, late=r.late
        )
        date_to_proto(r.deadline, out.payment_deadline)
        return out

    async def CreateVerificationRequest(
        self, request: pb.CreateVerificationRequestRequest, context: Any
    ) -> pb.CreateVerificationRequestResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(0 < len(request.settlement_id) <= 40, "settlement_id", "required, 1-40 characters")
        v.check(0 < len(request.reason) <= 2000, "reason", "required, at most 2000 characters")
        v.check(request.amount_fen >= 0, "amount_fen", "must not be negative (0: all the funds have left)")
        v.raise_if_any()
        vr = await self.service.funds.create_verification(
            scoped_request_id(request.request_id),
            fingerprint(request),
            request.settlement_id,
            request.reason,
            request.amount_fen,
            may_act_for=_acting_for(Side.INSURED),
        )
        return pb.CreateVerificationRequestResponse(verification=verification_to_proto(vr))

    async def AnswerVerificationRequest(
        self, request: pb.AnswerVerificationRequestRequest, context: Any
    ) -> pb.AnswerVerificationRequestResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.verification_id), "verification_id", "required")
        v.check(0 < len(request.answer) <= 2000, "answer", "required, at most 2000 characters")
        _amount(request.rejected_fen, "rejected_fen", v, zero=True)
        v.raise_if_any()
        vr = await self.service.funds.answer_verification(
            scoped_request_id(request.request_id),
            fingerprint(request),
            request.verification_id,
            request.answer,
            request.rejected_fen,
            may_act_for=_acting_for(Side.TREATMENT),
        )
        return pb.AnswerVerificationRequestResponse(verification=verification_to_proto(vr))

    # -- an institution's own (national 3203/3204); the access table scopes institution_code ------
    async def GetInstitutionClearing(
        self, request: pb.GetInstitutionClearingRequest, context: Any
    ) -> pb.GetInstitutionClearingResponse:
        v = Violations()
        v.check(0 < len(request.institution_code) <= 32, "institution_code", "required, 1-32 characters")
        year, month = _month(request.month, "month", v)
        v.raise_if_any()
        m = await self.institutions.month(request.institution_code, year, month)
        return pb.GetInstitutionClearingResponse(
            institution_code=m.institution_code,
            treatment_province_code=m.treatment_province,
            month=types_pb2.Month(year=m.year, month=m.month),
            lines=[
                pb.InstitutionClearingLine(
                    insured_province_code=ln.insured_province,
                    category=CATEGORY_OUT[ln.line.category],
                    count=ln.line.count,
                    medical_total_fen=ln.line.medical_total_fen,
                    pooled_fund_fen=ln.line.pooled_fund_fen,
                    large_amount_fen=ln.line.large_amount_fen,
                    critical_illness_fen=ln.line.critical_illness_fen,
                    assistance_fen=ln.line.assistance_fen,
                    other_fund_fen=ln.line.other_fund_fen,
                    fund_total_fen=ln.line.fund_total_fen,
                    personal_account_fen=ln.line.personal_account_fen,
                    statement_id=ln.statement_id if ln.statement_status else "",
                    statement_status=STATUS_OUT[ln.statement_status]
                    if ln.statement_status
                    else pb.STATEMENT_STATUS_UNSPECIFIED,
                )
                for ln in m.lines
            ],
            settlement_count=m.total("count"),
            medical_total_fen=m.total("medical_total_fen"),
            fund_total_fen=m.total("fund_total_fen"),
            personal_account_fen=m.total("personal_account_fen"),
        )

    async def ListInstitutionPayments(
        self, request: pb.ListInstitutionPaymentsRequest, context: Any
    ) -> pb.ListInstitutionPaymentsResponse:
        v = Violations()
        v.check(0 < len(request.institution_code) <= 32, "institution_code", "required, 1-32 characters")
        v.raise_if_any()
        p = await self.institutions.payments(request.institution_code)
        return pb.ListInstitutionPaymentsResponse(
            institution_code=p.institution_code,
            payments=[
                pb.InstitutionPaymentRecord(
                    payment_id=x.payment_id, amount_fen=x.amount_fen, record_time=timestamp(x.recorded_at)
                )
                for x in p.payments
            ],
            owed_fen=p.owed_fen,
            paid_fen=p.paid_fen,
            outstanding_fen=p.outstanding_fen,
        )


def register(server: grpc.aio.Server, servicer: ClearingServicer) -> None:
    clearing_pb2_grpc.add_ClearingServiceServicer_to_server(servicer, server)
