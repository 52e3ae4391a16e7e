"""SettlementService servicer: proto -> command -> use case -> proto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from libs.core.errors import DomainError, Reason, Violations
from libs.platform import enums
from libs.platform.convert import check_request_id, date_from_proto, date_to_proto, fingerprint, timestamp
from libs.platform.host import Runtime
from libs.platform.identity import Role, caller, caller_institution, scoped_request_id, unscoped_request_id
from libs.policy import Accumulators, FeeLine, Fund, InsuranceType, ItemClass, LineSplit, ServiceType, SettlementResult
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as pb
from medsettle.settlement.v1 import settlement_pb2_grpc
from services.settlement.adapters.peers import FILING_IN, SERVICE_OUT
from services.settlement.application import queries
from services.settlement.application.commands import (
    CancelSettlementCommand,
    CancelVisitCommand,
    Committed,
    OpenVisitCommand,
    ProcessClaimCommand,
    Request,
    ReverseCommand,
    SettleCommand,
    SettleOutpatientCommand,
    SubmitClaimCommand,
    UpdateVisitCommand,
    UploadFeesCommand,
)
from services.settlement.application.service import SettlementService
from services.settlement.domain import results
from services.settlement.domain.model import (
    ClaimStatus,
    ClearingCategory,
    CredentialRef,
    ManualClaim,
    SettlementKind,
    SettlementRecord,
    UploadedLine,
    VisitRecord,
    VisitStatus,
)

SERVICE_IN = {v: k for k, v in SERVICE_OUT.items()}
FILING_OUT = {v: types_pb2.FilingType.ValueType(k) for k, v in FILING_IN.items()}
STATUS_OUT = {
    VisitStatus.OPEN: pb.VISIT_STATUS_OPEN,
    VisitStatus.SETTLED: pb.VISIT_STATUS_SETTLED,
    VisitStatus.CANCELLED: pb.VISIT_STATUS_CANCELLED,
}
KIND_OUT = {
    SettlementKind.SETTLEMENT: pb.SETTLEMENT_KIND_SETTLEMENT,
    SettlementKind.CANCELLATION: pb.SETTLEMENT_KIND_CANCELLATION,
}
CATEGORY_OUT = {
    ClearingCategory(s): types_pb2.ClearingCategory.ValueType(n) for n, s in enums.CLEARING_CATEGORIES.items()
}
INSURANCE_OUT = {InsuranceType(s): types_pb2.InsuranceType.ValueType(n) for n, s in enums.INSURANCE_TYPES.items()}
KIND_IN = {v: k for k, v in KIND_OUT.items()}
# The enums beside the string fields item_class and fund (both are filled).
ITEM_CLASS_OUT = {c: types_pb2.ItemClass.Value(f"ITEM_CLASS_{c.name}") for c in ItemClass}
ITEM_CLASS_IN = {v: k for k, v in ITEM_CLASS_OUT.items()}
FUND_OUT = {f.value: types_pb2.Fund.Value(f"FUND_{f.name}") for f in Fund}
MAX_LINES_PER_UPLOAD = 2000
MAX_SETTLEMENTS_PAGE = 500
MAX_FEES_PAGE = 2000


def _credential(c: types_pb2.Credential, v: Violations) -> CredentialRef:
    kind = c.WhichOneof("kind")
    if kind == "ecert_token":
        return CredentialRef(ecert_token=c.ecert_token)
    if kind == "card":
        v.check(bool(c.card.card_number), "credential.card.card_number", "required")
        return CredentialRef(card_number=c.card.card_number, card_serial=c.card.card_serial)
    v.add("credential", "an e-certificate token or a social security card is required")
    return CredentialRef()


def lines_from_proto(lines: Any, v: Violations, prefix: str = "lines") -> list[UploadedLine]:
    v.check(0 < len(lines) <= MAX_LINES_PER_UPLOAD, prefix, f"1 to {MAX_LINES_PER_UPLOAD} lines")
    seen: set[int] = set()
    out = []
    for i, ln in enumerate(lines):
        f = f"{prefix}[{i}]"
        v.check(ln.line_no > 0, f"{f}.line_no", "must be > 0")
        v.check(ln.line_no not in seen, f"{f}.line_no", "duplicate line number in this upload")
        seen.add(ln.line_no)
        v.check(bool(ln.item_code), f"{f}.item_code", "required")
        v.check(ln.quantity_milli != 0, f"{f}.quantity_milli", "must not be zero")
        v.check(ln.unit_price_fen >= 0, f"{f}.unit_price_fen", "must be >= 0")
        v.check(
            ln.quantity_milli > 0 or ln.refund_of_line_no > 0,
            f"{f}.refund_of_line_no",
            "a refund line (negative quantity) must name the line it refunds",
        )
        fee_date = date_from_proto(ln.fee_date if ln.HasField("fee_date") else None, f"{f}.fee_date", v, required=False)
        out.append(
            UploadedLine(
                FeeLine(ln.line_no, ln.item_code, ln.quantity_milli, ln.unit_price_fen, ln.refund_of_line_no or None),
                ln.item_name,
                fee_date,
            )
        )
    return out


def visit_to_proto(v: VisitRecord) -> pb.Visit:
    d = v.decision
    msg = pb.Visit(
        visit_id=v.visit_id,
        institution_code=v.institution_code,
        hospital_visit_no=v.hospital_visit_no,
        service_type=SERVICE_OUT[v.service_type],
        status=STATUS_OUT[v.status],
        person_no=d.person_no,
        insured_region_code=d.insured_region,
        treatment_region_code=d.treatment_region,
        filing_id=d.filing_id,
        filing_type=FILING_OUT[d.filing_type] if d.filing_type else types_pb2.FILING_TYPE_UNSPECIFIED,
        diagnosis_codes=list(v.diagnosis_codes),
        fee_line_count=v.fee_line_count,
        fee_total_fen=v.fee_total_fen,
        open_time=timestamp(v.opened_at),
    )
    date_to_proto(v.admission_date, msg.admission_date)
    date_to_proto(v.discharge_date, msg.discharge_date)
    return msg


def line_split_to_proto(ln: LineSplit) -> pb.LineSplit:
    """One line's split as the engine computed it (class, amounts, catalogue version)."""
    return pb.LineSplit(
        line_no=ln.line_no,
        item_code=ln.item_code,
        item_class=ln.item_class.value if ln.item_class else "",
        item_class_enum=ITEM_CLASS_OUT[ln.item_class] if ln.item_class else types_pb2.ITEM_CLASS_UNSPECIFIED,
        amount_fen=ln.amount_fen,
        full_self_pay_fen=ln.full_self_pay_fen,
        over_limit_fen=ln.over_limit_fen,
        pre_self_pay_fen=ln.pre_self_pay_fen,
        in_scope_fen=ln.in_scope_fen,
        catalogue_version=ln.catalogue_version,
        in_catalogue=ln.item_class is not None,
    )


def breakdown_to_proto(r: SettlementResult, *, lines: bool = True) -> pb.Breakdown:
    return pb.Breakdown(
        total_fen=r.total_fen,
        full_self_pay_fen=r.full_self_pay_fen,
        over_limit_fen=r.over_limit_fen,
        pre_self_pay_fen=r.pre_self_pay_fen,
        in_scope_fen=r.in_scope_fen,
        deductible_fen=r.deductible_fen,
        pooled_fund_fen=r.pooled_fund_fen,
        large_amount_fen=r.large_amount_fen,
        critical_illness_fen=r.critical_illness_fen,
        assistance_fen=r.assistance_fen,
        other_fund_fen=r.other_fund_fen,
        fund_total_fen=r.fund_total_fen,
        hospital_borne_fen=r.hospital_borne_fen,
        personal_part_fen=r.personal_part_fen,
        personal_account_fen=r.personal_account_fen,
        cash_fen=r.cash_fen,
        lines=[line_split_to_proto(ln) for ln in (r.lines if lines else ())],
        funds=[
            pb.FundDetail(
                fund=f.fund,
                fund_enum=FUND_OUT.get(f.fund, types_pb2.FUND_UNSPECIFIED),
                base_fen=f.base_fen,
                remaining_limit_before_fen=f.remaining_limit_before_fen or 0,
                paid_fen=f.paid_fen,
            )
            for f in r.funds
        ],
        trace=[
            pb.TraceStep(
                step=t.step,
                rule=t.rule,
                parameter=t.parameter,
                amount_fen=t.amount_fen,
                note=t.note,
                bands=[
                    pb.TraceBand(
                        from_fen=b.from_fen,
                        to_fen=b.to_fen,
                        ratio_bps=b.ratio_bps,
                        base_fen=b.base_fen,
                        paid_fen=b.paid_fen,
                    )
                    for b in t.bands
                ],
                base_start_fen=t.base_start_fen,
            )
            for t in r.trace
        ],
        policy_version=r.policy_version,
        catalogue_version=r.catalogue_version,
        account_balance_after_fen=r.accumulators_after.account_balance_fen,
    )


def settlement_to_proto(rec: SettlementRecord, result: SettlementResult, *, lines: bool = True) -> pb.Settlement:
    msg = pb.Settlement(
        settlement_id=rec.settlement_id,
        visit_id=rec.visit_id,
        kind=KIND_OUT[rec.kind],
        cancels_settlement_id=rec.cancels_settlement_id,
        institution_code=rec.institution_code,
        person_no=rec.person_no,
        insured_region_code=rec.insured_region,
        treatment_region_code=rec.treatment_region,
        service_type=SERVICE_OUT[rec.service_type],
        clearing_category=CATEGORY_OUT[rec.category],
        breakdown=breakdown_to_proto(result, lines=lines),
        settle_time=timestamp(rec.settled_at),
        interim=rec.interim,
        flags=[pb.MonitoringFlag(code=f.code, detail=f.detail, line_no=f.line_no) for f in rec.flags],
        request_id=unscoped_request_id(rec.request_id),
        cancelled_by_settlement_id=rec.cancelled_by,
    )
    date_to_proto(rec.settle_date, msg.settle_date)
    return msg


def _committed(c: Committed, *, lines: bool = True) -> pb.Settlement:
    return settlement_to_proto(c.record, c.result, lines=lines)


def split_line_to_proto(sl: queries.SplitLine) -> pb.LineSplit:
    """A line's split with what the catalogue says of its item (national 2301's output)."""
    item = sl.item
    msg = line_split_to_proto(sl.split)
    msg.settlement_id = sl.uploaded.settlement_id
    if item is not None:
        msg.self_pay_first_bps = item.self_pay_first_bps
        if item.ceiling_fen is not None:
            msg.ceiling_fen = item.ceiling_fen
    return msg


def fee_line_to_proto(u: UploadedLine, target: pb.FeeLine) -> None:
    target.line_no = u.line.line_no
    target.item_code = u.line.item_code
    target.item_name = u.item_name
    target.quantity_milli = u.line.quantity_milli
    target.unit_price_fen = u.line.unit_price_fen
    target.refund_of_line_no = u.line.refund_of_line_no or 0
    date_to_proto(u.fee_date, target.fee_date)


def flags_to_proto(flags: Any) -> list[pb.MonitoringFlag]:
    return [pb.MonitoringFlag(code=f.code, detail=f.detail, line_no=f.line_no) for f in flags]


def _page_size(size: int, default: int, limit: int, v: Violations) -> int:
    v.check(0 <= size <= limit, "page_size", f"0..{limit} (0 = {default})")
    return size or default


def _scope(institution_code: str, v: Violations) -> queries.Scope:
    """The caller's scope; the request's institution must be the caller's (checked after the
    field checks, so bad input is INVALID_ARGUMENT first)."""
    v.check(0 < len(institution_code) <= 32, "institution_code", "required, at most 32 characters")
    v.raise_if_any()
    return queries.hospital_scope(institution_code, caller_institution())


def _list_scope(request: pb.ListSettlementsRequest, v: Violations) -> queries.Scope:
    """A hospital lists its own settlements; an insured-place bureau those of the persons insured
    in a region of its own (the access table checks that the region is the caller's)."""
    p = caller()
    if p is not None and p.role is Role.INSURED_BUREAU:
        v.check(
            is_region_code(request.insured_region_code),
            "insured_region_code",
            "required for a bureau: a 6-digit region of its own",
        )
        v.raise_if_any()
        return queries.Scope(insured_region=request.insured_region_code)
    return _scope(request.institution_code, v)


def _request(request: Any) -> Request:
    """The idempotency key (scoped to the caller), the payload's fingerprint and the caller."""
    return Request(
        scoped_request_id(request.request_id), fingerprint(request, ignore=_VIEW_FIELDS), caller_institution()
    )


# What a request asks to see, not what it asks to do: left out of the idempotency fingerprint.
_VIEW_FIELDS = ("request_id", "include_lines")


def accumulators_to_proto(a: Accumulators) -> pb.Accumulators:
    return pb.Accumulators(
        year=a.year,
        inpatient_deductible_borne_fen=a.inpatient_deductible_borne_fen,
        outpatient_deductible_borne_fen=a.outpatient_deductible_borne_fen,
        pooled_base_fen=a.pooled_base_fen,
        pooled_paid_fen=a.pooled_paid_fen,
        outpatient_pooled_base_fen=a.outpatient_pooled_base_fen,
        outpatient_pooled_paid_fen=a.outpatient_pooled_paid_fen,
        supplementary_burden_fen=a.ci_burden_fen,
        supplementary_paid_fen=a.ci_paid_fen,
        assistance_base_fen=a.assistance_base_fen,
        assistance_paid_fen=a.assistance_paid_fen,
        admissions=a.admissions,
        account_balance_fen=a.account_balance_fen,
    )


def accumulators_from_proto(m: pb.Accumulators, year: int) -> Accumulators:
    """The year totals (or deltas) of a message; ``year`` given, the balance left at 0."""
    return Accumulators(
        year=year,
        inpatient_deductible_borne_fen=m.inpatient_deductible_borne_fen,
        outpatient_deductible_borne_fen=m.outpatient_deductible_borne_fen,
        pooled_base_fen=m.pooled_base_fen,
        pooled_paid_fen=m.pooled_paid_fen,
        outpatient_pooled_base_fen=m.outpatient_pooled_base_fen,
        outpatient_pooled_paid_fen=m.outpatient_pooled_paid_fen,
        ci_burden_fen=m.supplementary_burden_fen,
        ci_paid_fen=m.supplementary_paid_fen,
        assistance_base_fen=m.assistance_base_fen,
        assistance_paid_fen=m.assistance_paid_fen,
        admissions=m.admissions,
    )


class SettlementServicer(settlement_pb2_grpc.SettlementServiceServicer):
    def __init__(self, service: SettlementService, runtime_ref: list[Runtime]) -> None:
        self.service = service
        self._runtime = runtime_ref

    def _open_command(self, req: Any, v: Violations, date_field: str) -> OpenVisitCommand | None:
        v.check(bool(req.institution_code), "institution_code", "required")
        v.check(0 < len(req.hospital_visit_no) <= 64, "hospital_visit_no", "required, at most 64 characters")
        cred = _credential(req.credential, v)
        service = SERVICE_IN.get(req.service_type)
        v.check(service is not None, "service_type", "required")
        special_disease = getattr(req, "special_disease_code", "")
        if service is ServiceType.CHRONIC_OUTPATIENT:
            v.check(bool(special_disease), "special_disease_code", "required for chronic outpatient")
        day = date_from_proto(getattr(req, date_field) if req.HasField(date_field) else None, date_field, v)
        if service is None or day is None:
            return None
        return OpenVisitCommand(
            institution_code=req.institution_code,
            hospital_visit_no=req.hospital_visit_no,
            credential=cred,
            service_type=service,
            admission_date=day,
            diagnosis_codes=tuple(req.diagnosis_codes),
            special_disease_code=special_disease,
            emergency=getattr(req, "emergency", False),
            trauma=getattr(req, "trauma_no_third_party_declared", False),
        )

    async def OpenVisit(self, request: pb.OpenVisitRequest, context: Any) -> pb.OpenVisitResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        cmd = self._open_command(request, v, "admission_date")
        v.raise_if_any()
        assert cmd is not None
        visit = await self.service.visits.open_visit(_request(request), cmd)
        return pb.OpenVisitResponse(visit=visit_to_proto(visit))

    async def UploadFees(self, request: pb.UploadFeesRequest, context: Any) -> pb.UploadFeesResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.visit_id), "visit_id", "required")
        lines = lines_from_proto(request.lines, v)
        v.raise_if_any()
        visit, n, split = await self.service.visits.upload_fees(
            _request(request), UploadFeesCommand(request.visit_id, tuple(lines))
        )
        return pb.UploadFeesResponse(
            visit=visit_to_proto(visit),
            lines_accepted=n,
            lines=[split_line_to_proto(sl) for sl in split.lines],
            flags=flags_to_proto(split.flags),
            catalogue_version=split.catalogue_version,
        )

    async def PreSettle(self, request: pb.PreSettleRequest, context: Any) -> pb.PreSettleResponse:
        v = Violations()
        v.check(bool(request.visit_id), "visit_id", "required")
        v.raise_if_any()
        result = await self.service.settling.pre_settle(
            caller_institution(), request.visit_id, request.use_personal_account
        )
        return pb.PreSettleResponse(breakdown=breakdown_to_proto(result, lines=request.include_lines))

    async def Settle(self, request: pb.SettleRequest, context: Any) -> pb.SettleResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.visit_id), "visit_id", "required")
        discharge = date_from_proto(
            request.discharge_date if request.HasField("discharge_date") else None, "discharge_date", v, required=False
        )
        v.raise_if_any()
        c = await self.service.settle(
            _request(request),
            SettleCommand(
                request.visit_id,
                use_account=request.use_personal_account,
                interim=request.interim,
                discharge_date=discharge,
            ),
        )
        return pb.SettleResponse(settlement=_committed(c, lines=request.include_lines))

    async def CancelSettlement(self, request: pb.CancelSettlementRequest, context: Any) -> pb.CancelSettlementResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.settlement_id), "settlement_id", "required")
        v.raise_if_any()
        c = await self.service.settling.cancel(_request(request), CancelSettlementCommand(request.settlement_id))
        return pb.CancelSettlementResponse(cancellation=_committed(c))

    async def ReverseTransaction(
        self, request: pb.ReverseTransactionRequest, context: Any
    ) -> pb.ReverseTransactionResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(0 < len(request.original_request_id) <= 128, "original_request_id", "required")
        v.check(request.original_request_id != request.request_id, "original_request_id", "must differ from request_id")
        v.raise_if_any()
        undone, c = await self.service.settling.reverse_transaction(
            _request(request), ReverseCommand(scoped_request_id(request.original_request_id))
        )
        out = pb.ReverseTransactionResponse(reversed=undone)
        if c is not None:
            out.cancellation.CopyFrom(_committed(c))
        return out

    async def SettleOutpatient(self, request: pb.SettleOutpatientRequest, context: Any) -> pb.SettleOutpatientResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        cmd = self._open_command(request, v, "visit_date")
        if cmd is not None and cmd.service_type is ServiceType.INPATIENT:
            v.add("service_type", "SettleOutpatient is for outpatient, chronic outpatient and pharmacy visits")
        lines = lines_from_proto(request.lines, v)
        v.raise_if_any()
        assert cmd is not None
        c = await self.service.settling.settle_outpatient(
            _request(request), SettleOutpatientCommand(cmd, tuple(lines), use_account=request.use_personal_account)
        )
        return pb.SettleOutpatientResponse(
            visit=visit_to_proto(c.visit), settlement=_committed(c, lines=request.include_lines)
        )

    async def GetVisit(self, request: pb.GetVisitRequest, context: Any) -> pb.GetVisitResponse:
        visit, lines = await self.service.visits.get_visit(caller_institution(), request.visit_id)
        out = pb.GetVisitResponse(visit=visit_to_proto(visit))
        for u in lines:
            ln = out.lines.add(
                line_no=u.line.line_no,
                item_code=u.line.item_code,
                item_name=u.item_name,
                quantity_milli=u.line.quantity_milli,
                unit_price_fen=u.line.unit_price_fen,
                refund_of_line_no=u.line.refund_of_line_no or 0,
            )
            date_to_proto(u.fee_date, ln.fee_date)
        return out

    async def GetSettlement(self, request: pb.GetSettlementRequest, context: Any) -> pb.GetSettlementResponse:
        c = await self.service.settling.get_settlement(caller_institution(), request.settlement_id)
        return pb.GetSettlementResponse(settlement=_committed(c))

    async def RecomputeSettlement(
        self, request: pb.RecomputeSettlementRequest, context: Any
    ) -> pb.RecomputeSettlementResponse:
        v = Violations()
        v.check(0 < len(request.settlement_id) <= 40, "settlement_id", "required, at most 40 characters")
        v.raise_if_any()
        c, again = await self.service.recompute.recompute(caller_institution(), request.settlement_id)
        return pb.RecomputeSettlementResponse(
            settlement=_committed(c), recomputed=breakdown_to_proto(again), identical=again == c.result
        )

    async def StreamSettlements(
        self, request: pb.StreamSettlementsRequest, context: Any
    ) -> AsyncIterator[pb.StreamSettlementsResponse]:
        v = Violations()
        v.check(request.after_position >= 0, "after_position", "must be >= 0")
        v.raise_if_any()
        stopping = self._runtime[0].stopping if self._runtime else None
        async for position, rec, result in self.service.feed.stream(request.after_position, request.follow, stopping):
            yield pb.StreamSettlementsResponse(position=position, settlement=settlement_to_proto(rec, result))

    async def UpdateVisit(self, request: pb.UpdateVisitRequest, context: Any) -> pb.UpdateVisitResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.visit_id), "visit_id", "required")
        day = date_from_proto(
            request.admission_date if request.HasField("admission_date") else None, "admission_date", v, required=False
        )
        v.raise_if_any()
        visit = await self.service.visits.update_visit(
            _request(request),
            UpdateVisitCommand(
                request.visit_id, diagnosis_codes=tuple(request.diagnosis_codes) or None, admission_date=day
            ),
        )
        return pb.UpdateVisitResponse(visit=visit_to_proto(visit))

    async def CancelVisit(self, request: pb.CancelVisitRequest, context: Any) -> pb.CancelVisitResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.visit_id), "visit_id", "required")
        v.raise_if_any()
        visit = await self.service.visits.cancel_visit(_request(request), CancelVisitCommand(request.visit_id))
        return pb.CancelVisitResponse(visit=visit_to_proto(visit))

    async def SubmitManualClaim(
        self, request: pb.SubmitManualClaimRequest, context: Any
    ) -> pb.SubmitManualClaimResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        cmd = self._open_command(request, v, "admission_date")
        discharge = date_from_proto(
            request.discharge_date if request.HasField("discharge_date") else None, "discharge_date", v
        )
        lines = lines_from_proto(request.lines, v)
        v.check(len(request.failure_reason) <= 200, "failure_reason", "at most 200 characters")
        v.raise_if_any()
        assert cmd is not None and discharge is not None
        claim = await self.service.claims.submit_claim(
            _request(request), SubmitClaimCommand(cmd, discharge, tuple(lines), request.failure_reason)
        )
        return pb.SubmitManualClaimResponse(claim=claim_to_proto(claim))

    async def ListSettlements(self, request: pb.ListSettlementsRequest, context: Any) -> pb.ListSettlementsResponse:
        v = Violations()
        v.check(len(request.person_no) <= 40, "person_no", "at most 40 characters")
        v.check(
            not request.insured_region_code or is_region_code(request.insured_region_code),
            "insured_region_code",
            "a 6-digit region code",
        )
        start = date_from_proto(
            request.settle_date_from if request.HasField("settle_date_from") else None,
            "settle_date_from",
            v,
            required=False,
        )
        to = date_from_proto(
            request.settle_date_to if request.HasField("settle_date_to") else None, "settle_date_to", v, required=False
        )
        v.check(request.kind == 0 or request.kind in KIND_IN, "kind", "unknown settlement kind")
        size = _page_size(request.page_size, 100, MAX_SETTLEMENTS_PAGE, v)
        v.check(len(request.page_token) <= 512, "page_token", "at most 512 characters")
        scope = _list_scope(request, v)
        found, token = await queries.list_settlements(
            self.service.ctx,
            scope,
            queries.SettlementFilter(
                person_no=request.person_no or None,
                insured_region=request.insured_region_code or None,
                date_from=start,
                date_to=to,
                kind=KIND_IN.get(request.kind),
            ),
            page_size=size,
            page_token=request.page_token,
        )
        return pb.ListSettlementsResponse(
            settlements=[
                settlement_to_proto(rec, results.load(rec.result_json), lines=request.include_lines) for rec in found
            ],
            next_page_token=token,
        )

    async def ListVisitFees(self, request: pb.ListVisitFeesRequest, context: Any) -> pb.ListVisitFeesResponse:
        v = Violations()
        v.check(0 < len(request.visit_id) <= 40, "visit_id", "required, at most 40 characters")
        size = _page_size(request.page_size, 500, MAX_FEES_PAGE, v)
        v.check(len(request.page_token) <= 512, "page_token", "at most 512 characters")
        scope = _scope(request.institution_code, v)
        visit, split, token = await queries.visit_fees(
            self.service.ctx, scope, request.visit_id, page_size=size, page_token=request.page_token
        )
        out = pb.ListVisitFeesResponse(
            visit=visit_to_proto(visit),
            flags=flags_to_proto(split.flags),
            catalogue_version=split.catalogue_version,
            next_page_token=token,
        )
        for sl in split.lines:
            row = out.lines.add()
            fee_line_to_proto(sl.uploaded, row.line)
            row.split.CopyFrom(split_line_to_proto(sl))
        return out

    async def GetAccumulators(self, request: pb.GetAccumulatorsRequest, context: Any) -> pb.GetAccumulatorsResponse:
        v = Violations()
        v.check(0 < len(request.person_no) <= 40, "person_no", "required, at most 40 characters")
        v.check(2000 <= request.year <= 2100, "year", "required, 2000..2100")
        as_of = date_from_proto(
            request.as_of_date if request.HasField("as_of_date") else None, "as_of_date", v, required=False
        )
        if as_of is not None:
            v.check(as_of.year == request.year, "as_of_date", "must be in the requested year")
        scope = _scope(request.institution_code, v)
        view = await queries.accumulators(self.service.ctx, scope, request.person_no, request.year, as_of)
        a, d = view.accumulators, view.visit.decision
        out = pb.GetAccumulatorsResponse(
            person_no=request.person_no,
            insured_region_code=d.insured_region,
            insurance_type=INSURANCE_OUT[d.insurance_type]
            if d.insurance_type
            else types_pb2.INSURANCE_TYPE_UNSPECIFIED,
            accumulators=accumulators_to_proto(a),
            policy_version=view.policy.version,
        )
        for cap in view.caps:
            row = out.caps.add(cap=cap.cap, used_fen=cap.used_fen)
            if cap.limit_fen is not None:
                row.limit_fen = cap.limit_fen
            if cap.remaining_fen is not None:
                row.remaining_fen = cap.remaining_fen
        date_to_proto(view.as_of, out.as_of_date)
        return out


def is_region_code(code: str) -> bool:
    return len(code) == 6 and code.isascii() and code.isdigit()


CLAIM_STATUS_OUT = {
    ClaimStatus.SUBMITTED: pb.MANUAL_CLAIM_STATUS_SUBMITTED,
    ClaimStatus.PROCESSED: pb.MANUAL_CLAIM_STATUS_PROCESSED,
}
CLAIM_STATUS_IN = {v: k for k, v in CLAIM_STATUS_OUT.items()}


def claim_to_proto(c: ManualClaim) -> pb.ManualClaim:
    d = c.decision
    msg = pb.ManualClaim(
        claim_id=c.claim_id,
        institution_code=c.institution_code,
        hospital_visit_no=c.hospital_visit_no,
        person_no=d.person_no,
        insured_region_code=d.insured_region,
        treatment_region_code=d.treatment_region,
        service_type=SERVICE_OUT[c.service_type],
        diagnosis_codes=list(c.diagnosis_codes),
        failure_reason=c.failure_reason,
        status=CLAIM_STATUS_OUT[c.status],
        submit_time=timestamp(c.submitted_at),
    )
    date_to_proto(c.admission_date, msg.admission_date)
    date_to_proto(c.discharge_date, msg.discharge_date)
    for u in c.lines:
        ln = msg.lines.add(
            line_no=u.line.line_no,
            item_code=u.line.item_code,
            item_name=u.item_name,
            quantity_milli=u.line.quantity_milli,
            unit_price_fen=u.line.unit_price_fen,
            refund_of_line_no=u.line.refund_of_line_no or 0,
        )
        date_to_proto(u.fee_date, ln.fee_date)
    if c.result_json:
        result = results.load(c.result_json)
        msg.reimbursement.CopyFrom(breakdown_to_proto(result))
        msg.reimbursed_fen = result.fund_total_fen
    if c.processed_at is not None:
        msg.process_time.CopyFrom(timestamp(c.processed_at))
    return msg


def _own_region(claim: ManualClaim) -> ManualClaim:
    """A manual claim is the insured place's: only its bureau reads or processes it."""
    who = caller()
    region = claim.decision.insured_region
    if who is None or not who.covers_region(region):
        raise DomainError(
            Reason.NOT_AUTHORISED_FOR_REGION,
            "this claim is another region's",
            metadata={"role": who.role.value if who else "", "region_code": region},
        )
    return claim


class ManualClaimServicer(settlement_pb2_grpc.ManualClaimServiceServicer):
    """The insured place's side; not routed to hospitals by the gateway."""

    def __init__(self, service: SettlementService) -> None:
        self.service = service

    async def ProcessManualClaim(
        self, request: pb.ProcessManualClaimRequest, context: Any
    ) -> pb.ProcessManualClaimResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.claim_id), "claim_id", "required")
        v.raise_if_any()
        _own_region(await self.service.claims.get_claim(request.claim_id))
        claim, _ = await self.service.claims.process_claim(
            Request(scoped_request_id(request.request_id), fingerprint(request), None),
            ProcessClaimCommand(request.claim_id),
        )
        return pb.ProcessManualClaimResponse(claim=claim_to_proto(claim))

    async def GetManualClaim(self, request: pb.GetManualClaimRequest, context: Any) -> pb.GetManualClaimResponse:
        return pb.GetManualClaimResponse(
            claim=claim_to_proto(_own_region(await self.service.claims.get_claim(request.claim_id)))
        )

    async def ListManualClaims(self, request: pb.ListManualClaimsRequest, context: Any) -> pb.ListManualClaimsResponse:
        v = Violations()
        v.check(0 <= request.page_size <= 1000, "page_size", "0..1000")
        v.raise_if_any()
        size = request.page_size or 100
        status = CLAIM_STATUS_IN[request.status].value if request.status in CLAIM_STATUS_IN else ""
        items = await self.service.claims.list_claims(request.insured_region_code, status, request.page_token, size + 1)
        token = items[size - 1].claim_id if len(items) > size else ""
        return pb.ListManualClaimsResponse(claims=[claim_to_proto(c) for c in items[:size]], next_page_token=token)


def register(server: grpc.aio.Server, servicer: SettlementServicer, claims: ManualClaimServicer) -> None:
    settlement_pb2_grpc.add_SettlementServiceServicer_to_server(servicer, server)
    settlement_pb2_grpc.add_ManualClaimServiceServicer_to_server(claims, server)
