"""The settlement feed, read over gRPC (StreamSettlements with follow)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc

from libs.platform import enums
from medsettle.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from services.clearing.domain.model import Category, FeedSettlement

CATEGORY_IN = {n: Category(s) for n, s in enums.CLEARING_CATEGORIES.items()}


def feed_settlement(position: int, s: settlement_pb2.Settlement) -> FeedSettlement:
    b = s.breakdown
    return FeedSettlement(
        position=position,
        settlement_id=s.settlement_id,
        kind="cancellation" if s.kind == settlement_pb2.SETTLEMENT_KIND_CANCELLATION else "settlement",
        cancels_settlement_id=s.cancels_settlement_id,
        institution_code=s.institution_code,
        insured_region=s.insured_region_code,
        treatment_region=s.treatment_region_code,
        category=CATEGORY_IN[s.clearing_category],
        settle_date=dt.date(s.settle_date.year, s.settle_date.month, s.settle_date.day),
        total_fen=b.total_fen,
        pooled_fund_fen=b.pooled_fund_fen,
        large_amount_fen=b.large_amount_fen,
        critical_illness_fen=b.critical_illness_fen,
        assistance_fen=b.assistance_fen,
        other_fund_fen=b.other_fund_fen,
        fund_total_fen=b.fund_total_fen,
        personal_account_fen=b.personal_account_fen,
        cash_fen=b.cash_fen,
        settled_at=s.settle_time.ToDatetime(tzinfo=dt.UTC) if s.HasField("settle_time") else None,
    )


class GrpcSettlementFeed:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = settlement_pb2_grpc.SettlementServiceStub(channel)

    async def __call__(self, after: int) -> AsyncIterator[FeedSettlement]:
        call = self._stub.StreamSettlements(settlement_pb2.StreamSettlementsRequest(after_position=after, follow=True))
        async for ev in call:
            yield feed_settlement(ev.position, ev.settlement)
