"""Hostile input over real gRPC: each defect found by the fuzzing of issue #15 item 4, as a call
a caller can make. Every refusal is INVALID_ARGUMENT (or the method's own refusal) with
ErrorInfo, never INTERNAL or UNKNOWN, quotes no more than a short prefix of the input, and
changes no table (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.clearing.v1 import clearing_pb2 as cl
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL, Clients
from tests.integration.hostile import Tables, call_raw, method_descriptor
from tests.integration.settlement.helpers import RETIREE_CARD, date, setup_world, today
from tests.integration.test_access_matrix import PRINCIPALS
from tests.unit.test_access import all_methods

pytestmark = pytest.mark.db

OPERATOR = PRINCIPALS[next(r for r in PRINCIPALS if r.value == "operator")]
BUREAU = (("x-medsettle-principal", "urn:medsettle:bureau:insured:110100"),)
HOSPITAL_MD = (("x-medsettle-institution", HOSPITAL),)


@pytest.fixture
async def world(suite: Host) -> AsyncIterator[Clients]:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    yield w.c
    await w.c.close()


@pytest.fixture
async def tables(db_urls: dict[str, str]) -> AsyncIterator[Tables]:
    async with Tables(db_urls) as t:
        yield t


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    return exc.value


def _invalid_utf8_in_first_string(method: str) -> bytes | None:
    """The wire bytes of a request whose first string field holds invalid UTF-8."""
    d = method_descriptor(method).input_type
    f = next((f for f in d.fields if f.type == FieldDescriptor.TYPE_STRING), None)
    if f is None:
        return None
    value = b"ok\xff\xfe"
    return bytes([f.number << 3 | 2, len(value)]) + value


async def test_bytes_that_do_not_parse_are_invalid_argument_on_every_method(suite: Host, tables: Tables) -> None:
    before = await tables.dump()
    seen = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}") as ch:
        for method in all_methods():
            payloads = [b"\xff\xff\xff\xff", b"\x0a\xff"]  # a bad tag; a length beyond the end
            if (bad := _invalid_utf8_in_first_string(method)) is not None:
                payloads.append(bad)
            for payload in payloads:
                err = await call_raw(ch, method, payload, OPERATOR)
                assert err is not None, (method, payload)
                d = error_details(err)
                assert (err.code(), d.reason) == (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "REASON_REQUEST_UNPARSEABLE",
                ), (method, payload, err.code(), d)
                seen += 1
    assert seen > 2 * len(all_methods())
    assert await tables.dump() == before


async def test_a_deeply_nested_ecert_token_is_refused_before_it_is_parsed(world: Clients, tables: Tables) -> None:
    before = await tables.dump()
    nested = base64.urlsafe_b64encode(b"[" * 300 + b"]" * 300).rstrip(b"=").decode() + "." + "A" * 86
    deep = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode() + "." + "A" * 86
    for token, want in (
        (nested, (grpc.StatusCode.FAILED_PRECONDITION, "REASON_CREDENTIAL_TAMPERED")),
        (deep, (grpc.StatusCode.INVALID_ARGUMENT, "REASON_VALIDATION_FAILED")),
    ):
        err = await refused(
            world.eligibility.CheckEligibility(
                el.CheckEligibilityRequest(
                    credential=types_pb2.Credential(ecert_token=token),
                    institution_code=HOSPITAL,
                    service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                )
            )
        )
        assert (err.code(), error_details(err).reason) == want
    assert await tables.dump() == before


async def test_a_huge_ledger_prefix_is_out_of_bounds_not_internal(world: Clients) -> None:
    err = await refused(world.clearing.GetLedgerBalances(cl.GetLedgerBalancesRequest(prefix="a" * 50_000)))
    d = error_details(err)
    assert (err.code(), d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REASON_VALIDATION_FAILED")
    assert [v.field for v in d.violations] == ["prefix"] and d.metadata == {"field": "prefix"}
    assert "50000" in d.violations[0].description and "aaaa" not in d.message


async def test_nul_characters_and_strings_longer_than_their_column_are_refused(world: Clients, tables: Tables) -> None:
    before = await tables.dump()
    region = el.Region(region_code="310100", name="Shang\x00hai")
    err = await refused(world.eligibility.UpsertRegion(el.UpsertRegionRequest(request_id="nul", region=region)))
    d = error_details(err)
    assert (err.code(), d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REASON_VALIDATION_FAILED")
    assert d.violations[0].field == "region.name" and "NUL" in d.violations[0].description
    long_name = el.Institution(institution_code=HOSPITAL, name="n" * 201, region_code="310100")
    err = await refused(
        world.eligibility.UpsertInstitution(el.UpsertInstitutionRequest(request_id="long", institution=long_name))
    )
    assert error_details(err).violations[0].field == "institution.name"
    err = await refused(
        world.settlement.GetVisit(st.GetVisitRequest(institution_code=HOSPITAL, visit_id="v\x00"), metadata=HOSPITAL_MD)
    )
    assert error_details(err).reason == "REASON_VALIDATION_FAILED"
    assert await tables.dump() == before


async def test_a_huge_id_is_not_echoed_into_error_metadata(world: Clients) -> None:
    huge = "S" * 20_000
    for call in (
        world.settlement.GetSettlement(st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id=huge)),
        world.settlement.CancelSettlement(
            st.CancelSettlementRequest(request_id=huge, institution_code=HOSPITAL, settlement_id="x")
        ),
        world.settlement.GetVisit(st.GetVisitRequest(institution_code=huge, visit_id="v"), metadata=HOSPITAL_MD),
    ):
        err = await refused(call)
        d = error_details(err)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, d
        trailers = sum(len(k) + len(v) for k, v in (err.trailing_metadata() or ()))
        assert trailers < 2048 and len(d.message) <= 512, (trailers, d)
        assert all(len(v) <= 128 for v in d.metadata.values())


async def test_a_megabyte_name_and_100000_diagnoses_are_refused(world: Clients, tables: Tables) -> None:
    before = await tables.dump()
    person = el.InsuredPerson(person_no="P9", id_number="110105195403120027", name="n" * 1_000_000)
    err = await refused(
        world.eligibility.UpsertInsuredPerson(el.UpsertInsuredPersonRequest(request_id="mb", person=person))
    )
    d = error_details(err)
    assert (err.code(), d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REASON_VALIDATION_FAILED")
    assert d.violations[0].field == "person.name" and "1000000" in d.violations[0].description
    visit = st.OpenVisitRequest(
        request_id="dx",
        institution_code=HOSPITAL,
        hospital_visit_no="HV-1",
        credential=RETIREE_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(today()),
        diagnosis_codes=[f"K{n}" for n in range(100_000)],
    )
    err = await refused(world.settlement.OpenVisit(visit))
    d = error_details(err)
    assert (err.code(), d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REASON_VALIDATION_FAILED")
    assert [v.field for v in d.violations] == ["diagnosis_codes"]
    assert await tables.dump() == before


async def test_fee_lines_whose_amount_would_overflow_are_refused(world: Clients, tables: Tables) -> None:
    before = await tables.dump()
    line = st.FeeLine(line_no=1, item_code="X", quantity_milli=2**62, unit_price_fen=2**62, fee_date=date(today()))
    err = await refused(
        world.settlement.UploadFees(
            st.UploadFeesRequest(request_id="of", institution_code=HOSPITAL, visit_id="v", lines=[line])
        )
    )
    d = error_details(err)
    assert d.reason == "REASON_VALIDATION_FAILED"
    assert {v.field for v in d.violations} == {"lines[0].quantity_milli", "lines[0].unit_price_fen"}
    assert await tables.dump() == before


async def test_prepayment_interest_of_int64_max_is_refused(world: Clients, tables: Tables) -> None:
    before = await tables.dump()
    for amount in (2**63 - 1, -(2**63)):
        err = await refused(
            world.clearing.RecordPrepaymentInterest(
                cl.RecordPrepaymentInterestRequest(
                    request_id=f"i{amount}",
                    insured_province_code="11",
                    treatment_province_code="31",
                    year=today().year,
                    amount_fen=amount,
                )
            )
        )
        d = error_details(err)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and d.reason, d
        assert [v.field for v in d.violations] == ["amount_fen"]
    assert await tables.dump() == before
