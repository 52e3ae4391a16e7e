"""WatchFilings across restarts, each service in its own OS process: restart filing (eligibility
resumes from its cursor), restart eligibility (it rebuilds its index from position 0 before it
serves). No change is lost and none is applied twice: eligibility logs, at every catch-up, its
position and how many changes it applied; with positions 1..N these must be equal."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.eligibility.v1 import eligibility_pb2_grpc
from medsettle.filing.v1 import filing_pb2_grpc
from services.demo import SyncActingParties
from tests.conftest import ServiceProcesses, wait_serving
from tests.dates import TEST_DAY
from tests.integration.test_filing_rules import d, request

pytestmark = [pytest.mark.db, pytest.mark.slow]
HOSPITAL = "H31010400001"


def decision(stub: eligibility_pb2_grpc.EligibilityServiceStub, n: int) -> el.EligibilityDecision:
    req = el.CheckEligibilityRequest(
        credential=types_pb2.Credential(card=types_pb2.SocialSecurityCard(card_number=f"C{n}", card_serial=f"S{n}")),
        institution_code=HOSPITAL,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        service_date=d(TEST_DAY),
    )
    return stub.CheckEligibility(req, timeout=5).decision


def eventually_eligible(stub: eligibility_pb2_grpc.EligibilityServiceStub, n: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if decision(stub, n).eligible:
                return
        except grpc.RpcError as exc:  # not ready yet after a restart
            if exc.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, f"person {n} never became eligible"
        time.sleep(0.05)


def catch_ups(processes: ServiceProcesses) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for line in processes.logs["eligibility"].read_text().splitlines():
        if "filing_feed_caught_up" in line:
            out.append(json.loads(line[line.index("{") :]))
    return out


def test_watch_survives_restarts_of_filing_and_of_eligibility(processes: ServiceProcesses) -> None:
    processes.start("filing")
    processes.start("eligibility")
    wait_serving(processes.targets["filing"])
    wait_serving(processes.targets["eligibility"])
    fch = grpc.intercept_channel(grpc.insecure_channel(processes.targets["filing"]), SyncActingParties())
    ech = grpc.intercept_channel(grpc.insecure_channel(processes.targets["eligibility"]), SyncActingParties())
    try:
        filing = filing_pb2_grpc.FilingServiceStub(fch)
        elig = eligibility_pb2_grpc.EligibilityServiceStub(ech)
        elig.UpsertInstitution(
            el.UpsertInstitutionRequest(
                request_id="inst",
                institution=el.Institution(
                    institution_code=HOSPITAL,
                    name="H",
                    region_code="310100",
                    level=el.INSTITUTION_LEVEL_TIER_3,
                    networked_services=[types_pb2.SERVICE_TYPE_INPATIENT],
                ),
            )
        )
        for n in range(1, 5):
            elig.UpsertInsuredPerson(
                el.UpsertInsuredPersonRequest(
                    request_id=f"p{n}",
                    person=el.InsuredPerson(
                        person_no=f"P{n}",
                        id_number=f"11010519540312{n:04d}",
                        insured_region_code="110100",
                        insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                        person_type=types_pb2.PERSON_TYPE_RETIRED,
                        status=el.PERSON_STATUS_ACTIVE,
                        card_number=f"C{n}",
                        card_serial=f"S{n}",
                    ),
                )
            )

        filing.CreateFiling(request("f1", person="P1"), timeout=10)
        eventually_eligible(elig, 1)

        # restart filing: eligibility reconnects and resumes after its position
        assert processes.stop("filing") == 0
        processes.start("filing")
        wait_serving(processes.targets["filing"])
        filing.CreateFiling(request("f2", person="P2"), timeout=10)
        filing.CreateFiling(request("f2b", person="P1", treatment_region_code="440100"), timeout=10)  # supersedes
        eventually_eligible(elig, 2)
        assert list(decision(elig, 1).reasons) == ["REASON_FILING_NOT_VALID_ON_DATE"]

        # restart eligibility while a filing is made: it rebuilds from 0 before it serves
        assert processes.stop("eligibility") == 0
        filing.CreateFiling(request("f3", person="P3"), timeout=10)
        processes.start("eligibility")
        wait_serving(processes.targets["eligibility"])
        assert decision(elig, 3).eligible and decision(elig, 2).eligible  # at once, no waiting
        filing.CreateFiling(request("f4", person="P4"), timeout=10)
        eventually_eligible(elig, 4)
    finally:
        fch.close()
        ech.close()
    seen = catch_ups(processes)
    assert len(seen) >= 3  # first start, after the filing restart, after the eligibility restart
    assert all(c["applied"] == c["position"] for c in seen), seen
    # positions: f1, f2, (superseded f1, f2b), f3 -> 5 before the last start
    assert seen[-1]["position"] == 5
