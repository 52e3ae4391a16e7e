"""Eligibility over real gRPC (all-in-one host): credentials refused with distinct reasons, the
decision from memory fed by WatchFilings, the registry and its bulk loader."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from libs.platform.host import Host
from libs.platform.settings import Settings
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.filing.v1 import filing_pb2 as fp
from services.demo import acting_parties
from services.eligibility.domain.credentials import TokenSigner
from services.eligibility.load import main as load_main
from services.filing.domain.model import temporary_min_end
from tests.dates import TEST_DAY
from tests.integration.test_filing_rules import Stubs, d, refused, request

pytestmark = pytest.mark.db
HOSPITAL = "H31010400001"
SAMPLES = Path(__file__).resolve().parents[2] / "services" / "eligibility" / "samples"
ID1 = "110105195403120027"


@pytest.fixture
async def stubs(suite: Host) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}", interceptors=acting_parties()) as ch:
        yield Stubs(ch)


async def seed(stubs: Stubs) -> None:
    await stubs.eligibility.UpsertInstitution(
        el.UpsertInstitutionRequest(
            request_id="i1",
            institution=el.Institution(
                institution_code=HOSPITAL,
                name="Shanghai hospital",
                region_code="310100",
                level=el.INSTITUTION_LEVEL_TIER_3,
                networked_services=[types_pb2.SERVICE_TYPE_INPATIENT, types_pb2.SERVICE_TYPE_CHRONIC_OUTPATIENT],
                special_disease_codes=["M03900"],
            ),
        )
    )
    await stubs.eligibility.UpsertInstitution(
        el.UpsertInstitutionRequest(
            request_id="i2",
            institution=el.Institution(
                institution_code="H11010500009",
                name="Beijing hospital",
                region_code="110105",
                level=el.INSTITUTION_LEVEL_TIER_2,
                networked_services=[types_pb2.SERVICE_TYPE_INPATIENT],
            ),
        )
    )
    for n, (pno, idn, card) in enumerate([("P1", ID1, "C1"), ("P2", "110105196001010011", "C2")]):
        await stubs.eligibility.UpsertInsuredPerson(
            el.UpsertInsuredPersonRequest(
                request_id=f"p{n}",
                person=el.InsuredPerson(
                    person_no=pno,
                    id_number=idn,
                    name=pno,
                    insured_region_code="110100",
                    insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                    person_type=types_pb2.PERSON_TYPE_RETIRED,
                    status=el.PERSON_STATUS_ACTIVE,
                    card_number=card,
                    card_serial=f"S{card}",
                ),
            )
        )


def check(cred: types_pb2.Credential, **kw: object) -> el.CheckEligibilityRequest:
    base: dict[str, object] = dict(
        credential=cred,
        institution_code=HOSPITAL,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        service_date=d(TEST_DAY),
    )
    base.update(kw)
    return el.CheckEligibilityRequest(**base)  # type: ignore[arg-type]


def card(number: str = "C1", serial: str = "SC1") -> types_pb2.Credential:
    return types_pb2.Credential(card=types_pb2.SocialSecurityCard(card_number=number, card_serial=serial))


async def decision_when(stubs: Stubs, req: el.CheckEligibilityRequest, want: bool = True) -> el.EligibilityDecision:
    """The filing reaches the in-memory index through WatchFilings (milliseconds)."""
    async with asyncio.timeout(10):
        while True:
            dec = (await stubs.eligibility.CheckEligibility(req)).decision
            if dec.eligible == want:
                return dec
            await asyncio.sleep(0.02)


async def test_filing_reaches_the_decision_with_everything_settlement_needs(stubs: Stubs) -> None:
    await seed(stubs)
    refused_first = (await stubs.eligibility.CheckEligibility(check(card()))).decision
    assert not refused_first.eligible and list(refused_first.reasons) == ["REASON_FILING_REQUIRED"]
    assert "file" in refused_first.guidance
    f = (await stubs.filing.CreateFiling(request("f1", trauma_no_third_party_declared=True))).filing
    dec = await decision_when(stubs, check(card()))
    assert dec.person_no == "P1" and dec.insured_region_code == "110100" and dec.treatment_region_code == "310100"
    assert dec.filing_id == f.filing_id and dec.filing_type == types_pb2.FILING_TYPE_REFERRAL
    assert dec.institution_level == el.INSTITUTION_LEVEL_TIER_3 and dec.trauma_no_third_party_declared
    assert dec.filing_start_date == d(TEST_DAY) and dec.filing_end_date == d(temporary_min_end(TEST_DAY))
    assert dec.policy_version.startswith("110100-employee")  # the insured place's policy in effect
    # the index also answers "which filings does this person hold"
    held = (await stubs.eligibility.GetInsuredPerson(el.GetInsuredPersonRequest(person_no="P1"))).active_filings
    assert [x.filing_id for x in held] == [f.filing_id]
    # not networked for general outpatient; intra-province is not cross-province
    out = (
        await stubs.eligibility.CheckEligibility(check(card(), service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT))
    ).decision
    assert list(out.reasons) == ["REASON_INSTITUTION_NOT_NETWORKED"]
    home = (await stubs.eligibility.CheckEligibility(check(card(), institution_code="H11010500009"))).decision
    assert list(home.reasons) == ["REASON_INTRA_PROVINCE_NOT_CROSS_PROVINCE"]
    # the day after the temporary filing ends it no longer covers
    late = check(card(), service_date=d(temporary_min_end(TEST_DAY) + dt.timedelta(days=1)))
    assert list((await stubs.eligibility.CheckEligibility(late)).decision.reasons) == [
        "REASON_FILING_NOT_VALID_ON_DATE"
    ]


async def test_emergency_counts_as_filed_and_special_disease_needs_its_filing(stubs: Stubs) -> None:
    await seed(stubs)
    em = (await stubs.eligibility.CheckEligibility(check(card("C2", "SC2"), emergency=True))).decision
    assert em.eligible and em.emergency_deemed_filed and em.filing_type == types_pb2.FILING_TYPE_EMERGENCY
    chronic = check(card(), service_type=types_pb2.SERVICE_TYPE_CHRONIC_OUTPATIENT, special_disease_code="M03900")
    await stubs.filing.CreateFiling(request("f-plain"))
    dec = await decision_when(stubs, check(card()))
    assert dec.eligible
    assert list((await stubs.eligibility.CheckEligibility(chronic)).decision.reasons) == [
        "REASON_SPECIAL_DISEASE_NOT_FILED"
    ]
    await stubs.filing.CreateFiling(
        request(
            "f-sd",
            special_diseases=[fp.SpecialDiseaseFiling(disease_code="M03900", institution_codes=[HOSPITAL])],
        )
    )
    assert (await decision_when(stubs, chronic)).eligible


async def test_retro_filing_after_self_paid_discharge_is_flagged_for_manual_reimbursement(stubs: Stubs) -> None:
    await seed(stubs)
    treated = TEST_DAY - dt.timedelta(days=10)
    await stubs.filing.CreateFiling(request("retro", treatment_start_date=d(treated), self_paid_discharged=True))
    dec = await decision_when(stubs, check(card(), service_date=d(treated)))
    assert dec.retro_filing and dec.manual_reimbursement
    assert not (await stubs.eligibility.CheckEligibility(check(card()))).decision.manual_reimbursement


async def test_credentials_forged_expired_revoked_or_for_another_person_are_refused(
    stubs: Stubs, settings: Settings
) -> None:
    await seed(stubs)
    await stubs.filing.CreateFiling(request("f1"))
    issued = await stubs.eligibility.IssueECertificate(
        el.IssueECertificateRequest(request_id="e1", person_no="P1", id_number=ID1)
    )
    again = await stubs.eligibility.IssueECertificate(
        el.IssueECertificateRequest(request_id="e1", person_no="P1", id_number=ID1)
    )
    assert again.token == issued.token and again.token_id == issued.token_id
    token = issued.token
    assert (await decision_when(stubs, check(types_pb2.Credential(ecert_token=token)))).person_no == "P1"

    async def reason(req: el.CheckEligibilityRequest) -> tuple[grpc.StatusCode, str]:
        code, why, _ = await refused(stubs.eligibility.CheckEligibility(req))
        return code, why

    pre = grpc.StatusCode.FAILED_PRECONDITION
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert await reason(check(types_pb2.Credential(ecert_token=forged))) == (pre, "REASON_CREDENTIAL_TAMPERED")
    key_file = Path(settings.data_dir) / "ecert-signing-key.pem"
    key = load_pem_private_key(await asyncio.to_thread(key_file.read_bytes), None)
    expired, _ = TokenSigner(key).issue("P1", ID1, 1_700_000_000, 300)  # type: ignore[arg-type]
    assert await reason(check(types_pb2.Credential(ecert_token=expired))) == (pre, "REASON_CREDENTIAL_EXPIRED")
    replayed = check(types_pb2.Credential(ecert_token=token), expected_person_no="P2")
    assert await reason(replayed) == (pre, "REASON_CREDENTIAL_PERSON_MISMATCH")
    assert await reason(check(card("C1", "wrong"))) == (pre, "REASON_CARD_SERIAL_MISMATCH")
    assert await reason(check(card("C1", "SC1"), expected_person_no="P2")) == (pre, "REASON_CREDENTIAL_PERSON_MISMATCH")
    assert await reason(check(card("C9", "SC9"))) == (grpc.StatusCode.NOT_FOUND, "REASON_PERSON_NOT_FOUND")
    _, why, _ = await refused(
        stubs.eligibility.IssueECertificate(
            el.IssueECertificateRequest(request_id="e2", person_no="P1", id_number="110105196001010011")
        )
    )
    assert why == "REASON_CREDENTIAL_PERSON_MISMATCH"
    # another province's bureau cannot revoke a Beijing person's e-certificate, and changes nothing
    chengdu = (("x-medsettle-principal", "urn:medsettle:bureau:insured:510100"),)
    code, why, _ = await refused(
        stubs.eligibility.RevokeECertificate(
            el.RevokeECertificateRequest(request_id="r0", token_id=issued.token_id), metadata=chengdu
        )
    )
    assert (code, why) == (grpc.StatusCode.PERMISSION_DENIED, "REASON_NOT_AUTHORISED_FOR_REGION")
    still = await stubs.eligibility.CheckEligibility(check(types_pb2.Credential(ecert_token=token)))
    assert still.decision.person_no == "P1"
    await stubs.eligibility.RevokeECertificate(el.RevokeECertificateRequest(request_id="r1", token_id=issued.token_id))
    assert await reason(check(types_pb2.Credential(ecert_token=token))) == (pre, "REASON_CREDENTIAL_REVOKED")


async def test_a_card_or_id_number_of_another_person_is_a_conflict(stubs: Stubs) -> None:
    await seed(stubs)
    p = (await stubs.eligibility.GetInsuredPerson(el.GetInsuredPersonRequest(person_no="P2"))).person
    p.card_number = "C1"
    code, why, fields = await refused(
        stubs.eligibility.UpsertInsuredPerson(el.UpsertInsuredPersonRequest(request_id="dup", person=p))
    )
    assert (code, why, fields) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "REASON_PERSON_IDENTITY_CONFLICT",
        ["person.card_number"],
    )


async def test_bulk_loader_fills_the_registry_idempotently(suite: Host, stubs: Stubs, tmp_path: Path) -> None:
    files = [str(SAMPLES / n) for n in ("registry.yaml", "persons.csv", "institutions.csv")]
    target = f"127.0.0.1:{suite.port}"
    assert await asyncio.to_thread(load_main, [*files, "--target", target]) == 0
    assert await asyncio.to_thread(load_main, [*files, "--target", target]) == 0  # same content: no-op
    inst = (
        await stubs.eligibility.GetInstitution(el.GetInstitutionRequest(institution_code="H31010400003"))
    ).institution
    assert inst.level == el.INSTITUTION_LEVEL_TIER_2
    person = (await stubs.eligibility.GetInsuredPerson(el.GetInsuredPersonRequest(person_no="P510100900003"))).person
    assert person.assistance_category == "low_income" and person.hardship
    bad = tmp_path / "bad.csv"
    await asyncio.to_thread(bad.write_text, "institution_code,region_code,level\nH9,31010,tier_3\n")
    assert await asyncio.to_thread(load_main, [str(bad), "--target", target]) == 2
    code, _, _ = await refused(stubs.eligibility.GetInstitution(el.GetInstitutionRequest(institution_code="H9")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_change_of_employer_needs_a_new_filing(stubs: Stubs) -> None:
    await seed(stubs)

    async def employ(rid: str, employer: str) -> None:
        await stubs.eligibility.UpsertInsuredPerson(
            el.UpsertInsuredPersonRequest(
                request_id=rid,
                person=el.InsuredPerson(
                    person_no="P1",
                    id_number=ID1,
                    name="P1",
                    insured_region_code="110100",
                    insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                    person_type=types_pb2.PERSON_TYPE_IN_SERVICE,
                    status=el.PERSON_STATUS_ACTIVE,
                    card_number="C1",
                    card_serial="SC1",
                    employer_name=employer,
                ),
            )
        )

    await employ("e1", "Acme Beijing")
    await stubs.filing.CreateFiling(request("fe", employer_name="Acme Beijing"))
    await decision_when(stubs, check(card()))
    await employ("e2", "Other Works")  # the insured place reports a new employer
    dec = await decision_when(stubs, check(card()), want=False)
    assert list(dec.reasons) == ["REASON_FILING_INSURED_RELATION_CHANGED"] and "employer" in dec.guidance
