"""Shared set-up for the settlement tests: registry, filings and stubs over real gRPC."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import grpc

from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL, Clients, fee_lines, seed_registry
from tests.dates import TEST_DAY

OTHER_HOSPITAL = "H31010400002"
RETIREE = "P110100000001"  # Beijing employee, retired, personal account 2,684.50
RESIDENT = "P510100000002"  # Chengdu resident
RETIREE_CARD = types_pb2.Credential(
    card=types_pb2.SocialSecurityCard(card_number="110100C0001", card_serial="S9A1B2C3")
)
RESIDENT_CARD = types_pb2.Credential(
    card=types_pb2.SocialSecurityCard(card_number="510100C0002", card_serial="S7F6E5D4")
)


def md(institution: str = HOSPITAL) -> tuple[tuple[str, str], ...]:
    return (("x-medsettle-institution", institution),)


def date(d: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=d.year, month=d.month, day=d.day)


def today() -> dt.date:
    """The suites' date in the tests (tests/dates.py)."""
    return TEST_DAY


@dataclass
class World:
    c: Clients
    day: dt.date


async def setup_world(target: str, *, file_resident: bool = True, day: dt.date | None = None) -> World:
    """The registry and filings, as of ``day`` (the suite's date; default TEST_DAY)."""
    c = Clients(target)
    day = day or today()
    await seed_registry(c, "t")
    await c.eligibility.UpsertInstitution(
        el.UpsertInstitutionRequest(
            request_id="t-inst-2",
            institution=el.Institution(
                institution_code=OTHER_HOSPITAL,
                name="Second hospital",
                region_code="310100",
                level=el.INSTITUTION_LEVEL_TIER_2,
                networked_services=[types_pb2.SERVICE_TYPE_INPATIENT, types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT],
            ),
        )
    )
    await c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id="t-filing-1",
            person_no=RETIREE,
            insured_region_code="110100",
            treatment_region_code="310100",
            filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
            insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=date(day - dt.timedelta(days=30)),
        )
    )
    if file_resident:
        await c.filing.CreateFiling(
            filing_pb2.CreateFilingRequest(
                request_id="t-filing-2",
                person_no=RESIDENT,
                insured_region_code="510100",
                treatment_region_code="310100",
                filing_type=types_pb2.FILING_TYPE_REFERRAL,
                insurance_type=types_pb2.INSURANCE_TYPE_RESIDENT,
                channel=filing_pb2.CHANNEL_WINDOW,
                commitment_signed=True,
                start_date=date(day - dt.timedelta(days=30)),
                end_date=date(day + dt.timedelta(days=200)),
            )
        )
    await wait_filed(c, RETIREE_CARD, day)
    if file_resident:
        await wait_filed(c, RESIDENT_CARD, day)
    return World(c, day)


async def wait_filed(c: Clients, cred: types_pb2.Credential, day: dt.date) -> None:
    for _ in range(200):
        d = (
            await c.eligibility.CheckEligibility(
                el.CheckEligibilityRequest(
                    credential=cred,
                    institution_code=HOSPITAL,
                    service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                    service_date=date(day),
                )
            )
        ).decision
        if d.eligible:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("filing never reached eligibility")


async def open_visit(
    w: World,
    rid: str,
    *,
    cred: types_pb2.Credential = RETIREE_CARD,
    institution: str = HOSPITAL,
    visit_no: str | None = None,
    service: int = types_pb2.SERVICE_TYPE_INPATIENT,
) -> st.Visit:
    resp = await w.c.settlement.OpenVisit(
        st.OpenVisitRequest(
            request_id=rid,
            institution_code=institution,
            hospital_visit_no=visit_no or rid,
            credential=cred,
            service_type=service,
            admission_date=date(w.day),
            diagnosis_codes=["I63.900"],
        ),
        metadata=md(institution),
    )
    return resp.visit


async def upload(w: World, rid: str, visit_id: str, lines: list[st.FeeLine], institution: str = HOSPITAL) -> None:
    await w.c.settlement.UploadFees(
        st.UploadFeesRequest(request_id=rid, institution_code=institution, visit_id=visit_id, lines=lines),
        metadata=md(institution),
    )


async def settle(
    w: World,
    rid: str,
    visit_id: str,
    *,
    interim: bool = False,
    account: bool = True,
    institution: str = HOSPITAL,
    include_lines: bool = False,
) -> st.Settlement:
    req = st.SettleRequest(
        request_id=rid,
        institution_code=institution,
        visit_id=visit_id,
        use_personal_account=account,
        interim=interim,
        include_lines=include_lines,
    )
    if not interim:
        req.discharge_date.CopyFrom(date(w.day))
    return (await w.c.settlement.Settle(req, metadata=md(institution))).settlement


def lines(n: int, seed: int, day: dt.date) -> list[st.FeeLine]:
    return fee_lines(n, seed, "310100", day)


async def rpc_error(coro) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    try:
        await coro
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded but should have failed")
