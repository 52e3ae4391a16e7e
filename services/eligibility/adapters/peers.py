"""The filing feed, read over gRPC (WatchFilings)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc

from libs.platform import enums
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from services.eligibility.application.service import FeedCaughtUp, FilingChange
from services.eligibility.domain.model import FilingView

_FILING_TYPE = enums.FILING_TYPES


_INSURANCE = enums.INSURANCE_TYPES


def _date(d: object) -> dt.date | None:
    y, m, day = d.year, d.month, d.day  # type: ignore[attr-defined]
    return dt.date(y, m, day) if y else None


def filing_view(f: filing_pb2.Filing) -> FilingView:
    start = _date(f.start_date)
    assert start is not None
    treat = _date(f.treatment_start_date)
    return FilingView(
        filing_id=f.filing_id,
        person_no=f.person_no,
        treatment_region=f.treatment_region_code,
        filing_type=_FILING_TYPE[f.filing_type],
        active=f.status == filing_pb2.FILING_STATUS_ACTIVE,
        start_date=start,
        end_date=_date(f.end_date),
        covers_from=min(start, treat) if (f.retro and treat) else start,
        end_effective_date=_date(f.end_effective_date),
        special_diseases={sd.disease_code: tuple(sd.institution_codes) for sd in f.special_diseases},
        trauma_declared=f.trauma_no_third_party_declared,
        retro=f.retro,
        insured_region=f.insured_region_code,
        insurance_type=_INSURANCE.get(f.insurance_type, ""),
        manual_reimbursement=f.manual_reimbursement,
        employer_name=f.employer_name,
    )


class GrpcFilingFeed:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = filing_pb2_grpc.FilingServiceStub(channel)

    async def __call__(self, after: int) -> AsyncIterator[FilingChange | FeedCaughtUp]:
        call = self._stub.WatchFilings(filing_pb2.WatchFilingsRequest(after_position=after, mark_caught_up=True))
        try:
            async for ev in call:
                if ev.caught_up:
                    yield FeedCaughtUp(ev.position)
                else:
                    yield FilingChange(ev.position, filing_view(ev.filing))
        finally:
            call.cancel()
