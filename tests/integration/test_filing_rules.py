"""Filing over real gRPC (all-in-one host, SQLite or PostgreSQL): periods at their edges, the
automatic expiry of the old filing, special diseases checked against eligibility's registry,
retro-filing, queries, history, the resumable watch, and racing filings."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.eligibility.v1 import eligibility_pb2_grpc
from medsettle.filing.v1 import filing_pb2 as fp
from medsettle.filing.v1 import filing_pb2_grpc
from services.demo import acting_parties
from services.filing.domain.model import add_months, temporary_min_end
from tests.dates import TEST_DAY

pytestmark = pytest.mark.db


def d(day: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=day.year, month=day.month, day=day.day)


def request(rid: str, person: str = "P1", **kw: object) -> fp.CreateFilingRequest:
    today = TEST_DAY
    base: dict[str, object] = dict(
        request_id=rid,
        person_no=person,
        insured_region_code="110100",
        treatment_region_code="310100",
        filing_type=types_pb2.FILING_TYPE_REFERRAL,
        insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
        channel=fp.CHANNEL_APP,
        commitment_signed=True,
        start_date=d(today),
        end_date=d(temporary_min_end(today)),
    )
    base.update(kw)
    return fp.CreateFilingRequest(**base)  # type: ignore[arg-type]


class Stubs:
    def __init__(self, ch: grpc.aio.Channel) -> None:
        self.filing = filing_pb2_grpc.FilingServiceStub(ch)
        self.eligibility = eligibility_pb2_grpc.EligibilityServiceStub(ch)


@pytest.fixture
async def stubs(suite: Host) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}", interceptors=acting_parties()) as ch:
        yield Stubs(ch)


async def refused(call: object) -> tuple[grpc.StatusCode, str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    e = error_details(exc.value)
    return e.code, e.reason, [v.field for v in e.violations]


async def test_long_term_filing_changes_from_the_minimum_period_and_the_old_one_expires(stubs: Stubs) -> None:
    today = TEST_DAY
    first = (
        await stubs.filing.CreateFiling(
            request("lt-1", filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE, end_date=None)
        )
    ).filing
    assert first.status == fp.FILING_STATUS_ACTIVE and not first.HasField("end_date")
    earliest = add_months(today, 6)
    early = request(
        "lt-2",
        treatment_region_code="440100",
        filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
        end_date=None,
        start_date=d(earliest - dt.timedelta(days=1)),
    )
    code, reason, _ = await refused(
        stubs.filing.ChangeFiling(
            fp.ChangeFilingRequest(request_id="ch-1", filing_id=first.filing_id, new_filing=early)
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REASON_FILING_MIN_PERIOD_NOT_REACHED")
    code, reason, _ = await refused(stubs.filing.CreateFiling(early))  # a plain new filing obeys it too
    assert reason == "REASON_FILING_MIN_PERIOD_NOT_REACHED"

    on_time = fp.CreateFilingRequest()
    on_time.CopyFrom(early)
    on_time.start_date.CopyFrom(d(earliest))
    changed = await stubs.filing.ChangeFiling(
        fp.ChangeFilingRequest(request_id="ch-2", filing_id=first.filing_id, new_filing=on_time)
    )
    old, new = changed.old_filing, changed.new_filing
    assert old.status == fp.FILING_STATUS_SUPERSEDED and old.superseded_by_filing_id == new.filing_id
    assert old.end_effective_date == d(earliest) and new.start_date == d(earliest)
    history = (await stubs.filing.GetFilingHistory(fp.GetFilingHistoryRequest(filing_id=first.filing_id))).revisions
    assert [r.status for r in history] == [fp.FILING_STATUS_ACTIVE, fp.FILING_STATUS_SUPERSEDED]
    assert [r.revision for r in history] == [1, 2]
    # the superseded filing can no longer be changed or cancelled
    _, reason, _ = await refused(
        stubs.filing.CancelFiling(fp.CancelFilingRequest(request_id="c-1", filing_id=first.filing_id))
    )
    assert reason == "REASON_FILING_NOT_ACTIVE"


async def test_temporary_filing_period_edges_and_a_refusal_writes_nothing(stubs: Stubs) -> None:
    today = TEST_DAY
    code, reason, fields = await refused(
        stubs.filing.CreateFiling(request("t-1", end_date=d(temporary_min_end(today) - dt.timedelta(days=1))))
    )
    assert (code, reason, fields) == (grpc.StatusCode.INVALID_ARGUMENT, "REASON_FILING_PERIOD_INVALID", ["end_date"])
    assert not (await stubs.filing.ListFilings(fp.ListFilingsRequest(person_no="P1"))).filings
    ok = (await stubs.filing.CreateFiling(request("t-2"))).filing
    assert ok.end_date == d(temporary_min_end(today))
    # unset start date = the registration date (today)
    no_start = request("t-3", person="P2")
    no_start.ClearField("start_date")
    assert (await stubs.filing.CreateFiling(no_start)).filing.start_date == d(today)
    # cancelling in the past is refused; today is fine for a temporary filing
    _, reason, fields = await refused(
        stubs.filing.CancelFiling(
            fp.CancelFilingRequest(request_id="c-2", filing_id=ok.filing_id, cancel_date=d(today - dt.timedelta(1)))
        )
    )
    assert (reason, fields) == ("REASON_VALIDATION_FAILED", ["cancel_date"])
    cancelled = (
        await stubs.filing.CancelFiling(fp.CancelFilingRequest(request_id="c-3", filing_id=ok.filing_id))
    ).filing
    assert cancelled.status == fp.FILING_STATUS_CANCELLED and cancelled.end_effective_date == d(today)


async def test_same_request_id_replays_and_another_payload_is_refused(stubs: Stubs) -> None:
    a = (await stubs.filing.CreateFiling(request("idem-1"))).filing
    b = (await stubs.filing.CreateFiling(request("idem-1"))).filing
    assert a == b
    _, reason, _ = await refused(stubs.filing.CreateFiling(request("idem-1", treatment_region_code="440100")))
    assert reason == "REASON_REQUEST_ID_REUSED"


async def upsert_hospital(stubs: Stubs, code: str, region: str, services: list[int], diseases: list[str]) -> None:
    await stubs.eligibility.UpsertInstitution(
        el.UpsertInstitutionRequest(
            request_id=f"inst-{code}",
            institution=el.Institution(
                institution_code=code,
                name=code,
                region_code=region,
                level=el.INSTITUTION_LEVEL_TIER_3,
                networked_services=services,
                special_disease_codes=diseases,
            ),
        )
    )


async def test_special_disease_filing_is_checked_against_the_institution_registry(stubs: Stubs) -> None:
    chronic = [types_pb2.SERVICE_TYPE_CHRONIC_OUTPATIENT]
    await upsert_hospital(stubs, "H1", "310100", chronic, ["M03900"])
    await upsert_hospital(stubs, "H2", "310100", chronic, ["M03900"])
    await upsert_hospital(stubs, "H3", "310100", chronic, ["E11900"])
    await upsert_hospital(stubs, "H4", "310100", [types_pb2.SERVICE_TYPE_INPATIENT], ["M03900"])
    await upsert_hospital(stubs, "H5", "440100", chronic, ["M03900"])

    def sd(*codes: str) -> list[fp.SpecialDiseaseFiling]:
        return [fp.SpecialDiseaseFiling(disease_code="M03900", institution_codes=list(codes))]

    cases = {
        ("H1", "H2", "H3"): (grpc.StatusCode.FAILED_PRECONDITION, "REASON_SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS"),
        ("H1", "H9"): (grpc.StatusCode.NOT_FOUND, "REASON_INSTITUTION_NOT_FOUND"),
        ("H3",): (grpc.StatusCode.FAILED_PRECONDITION, "REASON_SPECIAL_DISEASE_NOT_OPENED"),
        ("H4",): (grpc.StatusCode.FAILED_PRECONDITION, "REASON_INSTITUTION_NOT_NETWORKED"),
        ("H5",): (grpc.StatusCode.FAILED_PRECONDITION, "REASON_INSTITUTION_REGION_MISMATCH"),
    }
    for i, (codes, expected) in enumerate(cases.items()):
        code, reason, _ = await refused(stubs.filing.CreateFiling(request(f"sd-{i}", special_diseases=sd(*codes))))
        assert (code, reason) == expected, codes
    ok = (await stubs.filing.CreateFiling(request("sd-ok", special_diseases=sd("H1", "H2")))).filing
    assert list(ok.special_diseases[0].institution_codes) == ["H1", "H2"]
    assert len((await stubs.filing.ListFilings(fp.ListFilingsRequest(person_no="P1"))).filings) == 1


async def test_retro_filing_after_a_self_paid_discharge_enables_manual_reimbursement(stubs: Stubs) -> None:
    today = TEST_DAY
    f = (
        await stubs.filing.CreateFiling(
            request(
                "retro-1",
                treatment_start_date=d(today - dt.timedelta(days=20)),
                self_paid_discharged=True,
                trauma_no_third_party_declared=True,
            )
        )
    ).filing
    assert f.retro and f.manual_reimbursement and f.trauma_no_third_party_declared
    plain = (
        await stubs.filing.CreateFiling(
            request("retro-2", person="P2", treatment_start_date=d(today - dt.timedelta(days=3)))
        )
    ).filing
    assert plain.retro and not plain.manual_reimbursement
    _, reason, fields = await refused(
        stubs.filing.CreateFiling(request("retro-3", person="P3", self_paid_discharged=True))
    )
    assert (reason, fields) == ("REASON_VALIDATION_FAILED", ["self_paid_discharged"])


async def test_queries_by_person_region_status_and_pages(stubs: Stubs) -> None:
    for i in range(5):
        await stubs.filing.CreateFiling(
            request(f"q-{i}", person=f"Q{i}", treatment_region_code="310100" if i % 2 else "440100")
        )
    await stubs.filing.CreateFiling(
        request("q-x", person="Q0", treatment_region_code="510100", insured_region_code="120100")
    )
    list_ = stubs.filing.ListFilings
    beijing = (("x-medsettle-principal", "urn:medsettle:bureau:insured:110100"),)
    tianjin = (("x-medsettle-principal", "urn:medsettle:bureau:insured:12"),)
    # a bureau sees only its own region's filings of a person insured in two places over time
    assert len((await list_(fp.ListFilingsRequest(person_no="Q0"), metadata=beijing)).filings) == 1
    active = (
        await list_(fp.ListFilingsRequest(person_no="Q0", status=fp.FILING_STATUS_ACTIVE), metadata=tianjin)
    ).filings
    assert [f.treatment_region_code for f in active] == ["510100"]
    assert not (
        await list_(fp.ListFilingsRequest(person_no="Q0", status=fp.FILING_STATUS_ACTIVE), metadata=beijing)
    ).filings
    assert len((await list_(fp.ListFilingsRequest(treatment_region_code="310100"))).filings) == 2
    assert len((await list_(fp.ListFilingsRequest(insured_region_code="120100"))).filings) == 1
    seen: list[str] = []
    token = ""
    while True:
        page = await list_(fp.ListFilingsRequest(page_size=2, page_token=token), metadata=beijing)
        seen += [f.filing_id for f in page.filings]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5


async def read_events(stub: filing_pb2_grpc.FilingServiceStub, after: int, n: int) -> list[fp.WatchFilingsResponse]:
    call = stub.WatchFilings(fp.WatchFilingsRequest(after_position=after, mark_caught_up=True))
    out: list[fp.WatchFilingsResponse] = []
    try:
        async with asyncio.timeout(10):
            async for ev in call:
                out.append(ev)
                if ev.caught_up and len([e for e in out if not e.caught_up]) >= n:
                    break
    finally:
        call.cancel()
    return out


async def test_watch_resumes_from_a_cursor_without_losing_or_repeating_a_change(stubs: Stubs) -> None:
    a = (await stubs.filing.CreateFiling(request("w-1"))).filing
    await stubs.filing.CreateFiling(request("w-2", treatment_region_code="440100"))  # supersedes a
    events = [e for e in await read_events(stubs.filing, 0, 3) if not e.caught_up]
    assert [e.position for e in events] == [1, 2, 3]
    assert [e.event_type for e in events] == [
        fp.FILING_EVENT_TYPE_CREATED,
        fp.FILING_EVENT_TYPE_SUPERSEDED,
        fp.FILING_EVENT_TYPE_CREATED,
    ]
    assert events[1].filing.filing_id == a.filing_id and events[1].filing.status == fp.FILING_STATUS_SUPERSEDED
    await stubs.filing.CreateFiling(request("w-3", person="P9"))
    resumed = await read_events(stubs.filing, 2, 2)
    assert [e.position for e in resumed if not e.caught_up] == [3, 4]
    assert resumed[-1].caught_up and resumed[-1].position == 4


async def test_racing_filings_for_one_person_leave_exactly_one_active(stubs: Stubs) -> None:
    rounds = 12
    for r in range(rounds):
        person = f"RACE{r}"
        long_term = r % 2 == 0
        kw: dict[str, object] = (
            {"filing_type": types_pb2.FILING_TYPE_STATIONED_STAFF, "end_date": None} if long_term else {}
        )
        results = await asyncio.gather(
            stubs.filing.CreateFiling(request(f"race-{r}-a", person=person, treatment_region_code="310100", **kw)),
            stubs.filing.CreateFiling(request(f"race-{r}-b", person=person, treatment_region_code="440100", **kw)),
            return_exceptions=True,
        )
        for res in results:
            if isinstance(res, BaseException):
                assert isinstance(res, grpc.aio.AioRpcError)
                # a long-term filing cannot be replaced the same day: the loser is refused
                assert long_term and error_details(res).reason == "REASON_FILING_MIN_PERIOD_NOT_REACHED"
        active = (
            await stubs.filing.ListFilings(fp.ListFilingsRequest(person_no=person, status=fp.FILING_STATUS_ACTIVE))
        ).filings
        assert len(active) == 1, (r, active)
        everything = (await stubs.filing.ListFilings(fp.ListFilingsRequest(person_no=person))).filings
        assert len(everything) == sum(not isinstance(x, BaseException) for x in results)


async def test_a_backdated_start_is_a_retro_filing_and_long_term_filings_may_end(stubs: Stubs) -> None:
    today = TEST_DAY
    f = (
        await stubs.filing.CreateFiling(
            request("bd-1", start_date=d(today - dt.timedelta(days=10)), end_date=d(today + dt.timedelta(days=200)))
        )
    ).filing
    # it starts on its registration day; the days before are covered as a retro-filing, flagged
    assert f.start_date == d(today) and f.retro and f.treatment_start_date == d(today - dt.timedelta(days=10))
    lt = (
        await stubs.filing.CreateFiling(
            request(
                "bd-2",
                person="P2",
                filing_type=types_pb2.FILING_TYPE_LONG_TERM_RESIDENT,
                end_date=d(today + dt.timedelta(days=400)),
            )
        )
    ).filing
    assert lt.end_date == d(today + dt.timedelta(days=400))
    # a change cannot take effect in the past
    _code, reason, fields = await refused(
        stubs.filing.ChangeFiling(
            fp.ChangeFilingRequest(
                request_id="bd-3",
                filing_id=lt.filing_id,
                new_filing=request("bd-3n", person="P2", start_date=d(today - dt.timedelta(days=1))),
            )
        )
    )
    assert (reason, fields) == ("REASON_VALIDATION_FAILED", ["new_filing.start_date"])
