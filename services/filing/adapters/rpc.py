"""FilingService servicer: proto -> command -> use case -> proto. No rules here."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc

from libs.core.errors import DomainError, Reason, Violations
from libs.platform import enums
from libs.platform.convert import check_request_id, date_from_proto, date_to_proto, fingerprint, timestamp
from libs.platform.host import Runtime
from libs.platform.identity import Role, caller, scoped_request_id
from medsettle.common.v1 import types_pb2
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from services.filing.application.service import CaughtUp, FilingService
from services.filing.domain.model import (
    Channel,
    Filing,
    FilingStatus,
    FilingType,
    NewFiling,
    SpecialDisease,
    is_region_code,
)

FILING_TYPE_IN = {n: FilingType(s) for n, s in enums.FILING_TYPES.items()}
FILING_TYPE_OUT = {v: types_pb2.FilingType.ValueType(k) for k, v in FILING_TYPE_IN.items()}
CHANNEL_IN = {
    filing_pb2.CHANNEL_APP: Channel.APP,
    filing_pb2.CHANNEL_MINI_PROGRAM: Channel.MINI_PROGRAM,
    filing_pb2.CHANNEL_WINDOW: Channel.WINDOW,
    filing_pb2.CHANNEL_OTHER: Channel.OTHER,
}
CHANNEL_OUT = {v: k for k, v in CHANNEL_IN.items()}
STATUS_OUT = {
    FilingStatus.ACTIVE: filing_pb2.FILING_STATUS_ACTIVE,
    FilingStatus.SUPERSEDED: filing_pb2.FILING_STATUS_SUPERSEDED,
    FilingStatus.CANCELLED: filing_pb2.FILING_STATUS_CANCELLED,
}
STATUS_IN = {v: k for k, v in STATUS_OUT.items()}
INSURANCE_IN = enums.INSURANCE_TYPES
INSURANCE_OUT = {v: types_pb2.InsuranceType.ValueType(k) for k, v in INSURANCE_IN.items()}
EVENT_OUT = {
    "created": filing_pb2.FILING_EVENT_TYPE_CREATED,
    "superseded": filing_pb2.FILING_EVENT_TYPE_SUPERSEDED,
    "cancelled": filing_pb2.FILING_EVENT_TYPE_CANCELLED,
    "updated": filing_pb2.FILING_EVENT_TYPE_UPDATED,
}


def new_filing_from_proto(
    req: filing_pb2.CreateFilingRequest, v: Violations, prefix: str = "", *, today: dt.date
) -> NewFiling | None:
    """A pure mapping; an unset start_date is the registration date (today)."""
    p = prefix
    ftype = FILING_TYPE_IN.get(req.filing_type)
    v.check(ftype is not None, f"{p}filing_type", "required")
    channel = CHANNEL_IN.get(req.channel)
    v.check(channel is not None, f"{p}channel", "required")
    sd = req.start_date
    given = req.HasField("start_date") and bool(sd.year or sd.month or sd.day)
    start = date_from_proto(sd, f"{p}start_date", v) if given else today
    end = date_from_proto(req.end_date if req.HasField("end_date") else None, f"{p}end_date", v, required=False)
    treat = date_from_proto(
        req.treatment_start_date if req.HasField("treatment_start_date") else None,
        f"{p}treatment_start_date",
        v,
        required=False,
    )
    if ftype is None or channel is None or start is None:
        # report the format problems of the other fields too, so the caller sees them all at once
        for name in ("insured_region_code", "treatment_region_code"):
            v.check(is_region_code(getattr(req, name)), f"{p}{name}", "must be a 6-digit region code")
        v.check(bool(req.person_no), f"{p}person_no", "required")
        return None
    return NewFiling(
        person_no=req.person_no,
        insured_region=req.insured_region_code,
        treatment_region=req.treatment_region_code,
        filing_type=ftype,
        insurance_type=INSURANCE_IN.get(req.insurance_type, ""),
        channel=channel,
        commitment_signed=req.commitment_signed,
        start_date=start,
        end_date=end,
        treatment_start_date=treat,
        special_diseases=tuple(
            SpecialDisease(sd.disease_code, tuple(sd.institution_codes)) for sd in req.special_diseases
        ),
        trauma_declared=req.trauma_no_third_party_declared,
        employer_name=req.employer_name,
        self_paid_discharged=req.self_paid_discharged,
    )


def filing_to_proto(f: Filing) -> filing_pb2.Filing:
    msg = filing_pb2.Filing(
        filing_id=f.filing_id,
        person_no=f.person_no,
        insured_region_code=f.insured_region,
        treatment_region_code=f.treatment_region,
        filing_type=FILING_TYPE_OUT[f.filing_type],
        insurance_type=INSURANCE_OUT.get(f.insurance_type, types_pb2.INSURANCE_TYPE_UNSPECIFIED),
        channel=CHANNEL_OUT[f.channel],
        commitment_signed=f.commitment_signed,
        status=STATUS_OUT[f.status],
        retro=f.retro,
        special_diseases=[
            filing_pb2.SpecialDiseaseFiling(disease_code=s.disease_code, institution_codes=list(s.institution_codes))
            for s in f.special_diseases
        ],
        trauma_no_third_party_declared=f.trauma_declared,
        employer_name=f.employer_name,
        superseded_by_filing_id=f.superseded_by,
        create_time=timestamp(f.created_at),
        update_time=timestamp(f.updated_at),
        revision=f.revision,
        manual_reimbursement=f.manual_reimbursement,
    )
    date_to_proto(f.start_date, msg.start_date)
    if f.end_date is not None:
        date_to_proto(f.end_date, msg.end_date)
    if f.end_effective_date is not None:
        date_to_proto(f.end_effective_date, msg.end_effective_date)
    if f.treatment_start_date is not None:
        date_to_proto(f.treatment_start_date, msg.treatment_start_date)
    return msg


def _visible(filing: Filing, *, insured_only: bool) -> bool:
    """A filing is its insured region's (which files and changes it) and, to read, its treatment
    region's too."""
    who = caller()
    return who is not None and (
        (who.role is Role.INSURED_BUREAU and who.covers_region(filing.insured_region))
        or (not insured_only and who.role is Role.TREATMENT_BUREAU and who.covers_region(filing.treatment_region))
    )


def _own(filing: Filing, *, insured_only: bool) -> Filing:
    """The filing, or NOT_AUTHORISED_FOR_REGION for any other bureau."""
    if _visible(filing, insured_only=insured_only):
        return filing
    who = caller()
    raise DomainError(
        Reason.NOT_AUTHORISED_FOR_REGION,
        "this filing is another region's",
        metadata={"role": who.role.value if who else "", "region_code": filing.insured_region},
    )


class FilingServicer(filing_pb2_grpc.FilingServiceServicer):
    def __init__(self, service: FilingService, runtime_ref: list[Runtime]) -> None:
        self.service = service
        self._runtime = runtime_ref

    async def CreateFiling(
        self, request: filing_pb2.CreateFilingRequest, context: Any
    ) -> filing_pb2.CreateFilingResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        new = new_filing_from_proto(request, v, today=self.service.today())
        v.raise_if_any()
        assert new is not None
        f = await self.service.create(scoped_request_id(request.request_id), fingerprint(request), new)
        return filing_pb2.CreateFilingResponse(filing=filing_to_proto(f))

    async def ChangeFiling(
        self, request: filing_pb2.ChangeFilingRequest, context: Any
    ) -> filing_pb2.ChangeFilingResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.filing_id), "filing_id", "required")
        v.check(request.HasField("new_filing"), "new_filing", "required")
        new = new_filing_from_proto(request.new_filing, v, "new_filing.", today=self.service.today())
        v.raise_if_any()
        assert new is not None
        _own(await self.service.get_required(request.filing_id), insured_only=True)
        old, created = await self.service.change(
            scoped_request_id(request.request_id), fingerprint(request), request.filing_id, new
        )
        return filing_pb2.ChangeFilingResponse(old_filing=filing_to_proto(old), new_filing=filing_to_proto(created))

    async def CancelFiling(
        self, request: filing_pb2.CancelFilingRequest, context: Any
    ) -> filing_pb2.CancelFilingResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.filing_id), "filing_id", "required")
        day = date_from_proto(
            request.cancel_date if request.HasField("cancel_date") else None, "cancel_date", v, required=False
        )
        v.raise_if_any()
        _own(await self.service.get_required(request.filing_id), insured_only=True)
        f = await self.service.cancel(
            scoped_request_id(request.request_id), fingerprint(request), request.filing_id, day
        )
        return filing_pb2.CancelFilingResponse(filing=filing_to_proto(f))

    async def GetFiling(self, request: filing_pb2.GetFilingRequest, context: Any) -> filing_pb2.GetFilingResponse:
        v = Violations()
        v.check(bool(request.filing_id), "filing_id", "required")
        v.raise_if_any()
        filing = _own(await self.service.get_required(request.filing_id), insured_only=False)
        return filing_pb2.GetFilingResponse(filing=filing_to_proto(filing))

    async def ListFilings(self, request: filing_pb2.ListFilingsRequest, context: Any) -> filing_pb2.ListFilingsResponse:
        v = Violations()
        v.check(0 <= request.page_size <= 1000, "page_size", "0..1000")
        v.raise_if_any()
        size = request.page_size or 100
        items = await self.service.list(
            person_no=request.person_no,
            treatment_region=request.treatment_region_code,
            status=STATUS_IN[request.status].value if request.status in STATUS_IN else "",
            insured_region=request.insured_region_code,
            after_id=request.page_token,
            limit=size + 1,
        )
        token = items[size - 1].filing_id if len(items) > size else ""
        mine = [f for f in items[:size] if _visible(f, insured_only=False)]
        return filing_pb2.ListFilingsResponse(filings=[filing_to_proto(f) for f in mine], next_page_token=token)

    async def GetFilingHistory(
        self, request: filing_pb2.GetFilingHistoryRequest, context: Any
    ) -> filing_pb2.GetFilingHistoryResponse:
        v = Violations()
        v.check(bool(request.filing_id), "filing_id", "required")
        v.raise_if_any()
        revs = await self.service.history(request.filing_id)
        for f in revs:
            _own(f, insured_only=False)
        return filing_pb2.GetFilingHistoryResponse(revisions=[filing_to_proto(f) for f in revs])

    async def WatchFilings(
        self, request: filing_pb2.WatchFilingsRequest, context: Any
    ) -> AsyncIterator[filing_pb2.WatchFilingsResponse]:
        v = Violations()
        v.check(request.after_position >= 0, "after_position", "must be >= 0")
        v.raise_if_any()
        stopping = self._runtime[0].stopping if self._runtime else None
        async for ev in self.service.watch(request.after_position, stopping, mark_caught_up=request.mark_caught_up):
            if isinstance(ev, CaughtUp):
                yield filing_pb2.WatchFilingsResponse(position=ev.position, caught_up=True)
                continue
            yield filing_pb2.WatchFilingsResponse(
                position=ev.position, event_type=EVENT_OUT[ev.event_type], filing=filing_to_proto(ev.filing)
            )


def register(server: grpc.aio.Server, servicer: FilingServicer) -> None:
    filing_pb2_grpc.add_FilingServiceServicer_to_server(servicer, server)
