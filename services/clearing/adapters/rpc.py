"""ClearingService servicer: proto -> command -> use case -> proto."""

from __future__ import annotations

from typing import Any

import grpc

from libs.core.errors import Violations
from libs.platform.convert import date_from_proto, date_to_proto, fingerprint, timestamp
from medsettle.clearing.v1 import clearing_pb2 as pb
from medsettle.clearing.v1 import clearing_pb2_grpc
from services.clearing.adapters.peers import CATEGORY_IN
from services.clearing.application.service import ClearingService
from services.clearing.domain.model import Statement, StatementStatus, payment_deadline

CATEGORY_OUT = {v: k for k, v in CATEGORY_IN.items()}
STATUS_OUT = {
    StatementStatus.DRAFT: pb.STATEMENT_STATUS_DRAFT,
    StatementStatus.CONFIRMED_BY_TREATMENT_SIDE: pb.STATEMENT_STATUS_CONFIRMED_BY_TREATMENT_SIDE,
    StatementStatus.CONFIRMED_BY_INSURED_SIDE: pb.STATEMENT_STATUS_CONFIRMED_BY_INSURED_SIDE,
    StatementStatus.DISBURSED: pb.STATEMENT_STATUS_DISBURSED,
}


def _rid(request_id: str, v: Violations) -> None:
    v.check(0 < len(request_id) <= 128, "request_id", "required, 1-128 characters (the idempotency key)")


def _month(m: Any, field: str, v: Violations) -> tuple[int, int]:
    v.check(2000 <= m.year <= 2100, f"{field}.year", "2000..2100")
    v.check(1 <= m.month <= 12, f"{field}.month", "1..12")
    return m.year, m.month


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
            )
            for ln in st.lines
        ],
    )
    msg.month.year, msg.month.month = st.year, st.month
    if st.signing_date is not None:
        date_to_proto(st.signing_date, msg.signing_date)
        date_to_proto(payment_deadline(st.signing_date), msg.institution_payment_deadline)
    return msg


class ClearingServicer(clearing_pb2_grpc.ClearingServiceServicer):
    def __init__(self, service: ClearingService) -> None:
        self.service = service

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
        _rid(request.request_id, v)
        year, month = _month(request.month, "month", v)
        signing = date_from_proto(
            request.signing_date if request.HasField("signing_date") else None, "signing_date", v, required=False
        )
        v.raise_if_any()
        out = await self.service.run_monthly(request.request_id, fingerprint(request), year, month, signing)
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


def register(server: grpc.aio.Server, servicer: ClearingServicer) -> None:
    clearing_pb2_grpc.add_ClearingServiceServicer_to_server(servicer, server)
