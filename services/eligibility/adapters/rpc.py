"""EligibilityService servicer: proto -> command -> use case -> proto."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from libs.core.errors import DomainError, Reason, Violations
from libs.platform import enums
from libs.platform.convert import check_request_id, date_from_proto, date_to_proto, fingerprint, timestamp
from libs.platform.identity import Role, caller, mask_id_number, scoped_request_id
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as pb
from medsettle.eligibility.v1 import eligibility_pb2_grpc
from medsettle.filing.v1 import filing_pb2
from services.eligibility.application.service import CredentialInput, EligibilityService
from services.eligibility.domain.model import (
    FilingView,
    Institution,
    InsuredPerson,
    PersonStatus,
    Region,
    ServiceType,
)

SERVICE_IN = {n: ServiceType(s) for n, s in enums.SERVICE_TYPES.items()}
SERVICE_OUT = {v: types_pb2.ServiceType.ValueType(k) for k, v in SERVICE_IN.items()}
LEVEL_IN = enums.INSTITUTION_LEVELS
LEVEL_OUT = {v: k for k, v in LEVEL_IN.items()}
INSURANCE_IN = enums.INSURANCE_TYPES
INSURANCE_OUT = {v: types_pb2.InsuranceType.ValueType(k) for k, v in INSURANCE_IN.items()}
PERSON_TYPE_IN = enums.PERSON_TYPES
PERSON_TYPE_OUT = {v: types_pb2.PersonType.ValueType(k) for k, v in PERSON_TYPE_IN.items()}
FILING_TYPE_OUT = {v: types_pb2.FilingType.ValueType(k) for k, v in enums.FILING_TYPES.items()}
STATUS_IN = {pb.PERSON_STATUS_ACTIVE: PersonStatus.ACTIVE, pb.PERSON_STATUS_SUSPENDED: PersonStatus.SUSPENDED}
STATUS_OUT = {v: k for k, v in STATUS_IN.items()}


def credential_from_proto(c: types_pb2.Credential) -> CredentialInput:
    kind = c.WhichOneof("kind")
    if kind == "ecert_token":
        return CredentialInput(ecert_token=c.ecert_token)
    if kind == "card":
        return CredentialInput(card_number=c.card.card_number, card_serial=c.card.card_serial)
    return CredentialInput()


def institution_to_proto(i: Institution) -> pb.Institution:
    return pb.Institution(
        institution_code=i.institution_code,
        name=i.name,
        region_code=i.region_code,
        level=LEVEL_OUT[i.level],
        networked_services=sorted(SERVICE_OUT[s] for s in i.networked_services),
        special_disease_codes=sorted(i.special_disease_codes),
    )


def person_to_proto(p: InsuredPerson) -> pb.InsuredPerson:
    msg = pb.InsuredPerson(
        person_no=p.person_no,
        id_number=p.id_number,
        name=p.name,
        insured_region_code=p.insured_region,
        insurance_type=INSURANCE_OUT.get(p.insurance_type, types_pb2.INSURANCE_TYPE_UNSPECIFIED),
        person_type=PERSON_TYPE_OUT.get(p.person_type, types_pb2.PERSON_TYPE_UNSPECIFIED),
        status=STATUS_OUT[p.status],
        assistance_category=p.assistance_category,
        hardship=p.hardship,
        has_personal_account=p.has_personal_account,
        card_number=p.card_number,
        card_serial=p.card_serial,
        sex=p.sex,
        account_balance_fen=p.account_balance_fen,
        employer_name=p.employer_name,
    )
    date_to_proto(p.birth_date, msg.birth_date)
    return msg


def filing_view_to_proto(f: FilingView) -> filing_pb2.Filing:
    """The part of a filing eligibility keeps (from the WatchFilings stream)."""
    msg = filing_pb2.Filing(
        filing_id=f.filing_id,
        person_no=f.person_no,
        insured_region_code=f.insured_region,
        treatment_region_code=f.treatment_region,
        filing_type=FILING_TYPE_OUT[f.filing_type],
        insurance_type=INSURANCE_OUT.get(f.insurance_type, types_pb2.INSURANCE_TYPE_UNSPECIFIED),
        status=filing_pb2.FILING_STATUS_ACTIVE if f.active else filing_pb2.FILING_STATUS_UNSPECIFIED,
        retro=f.retro,
        special_diseases=[
            filing_pb2.SpecialDiseaseFiling(disease_code=code, institution_codes=list(insts))
            for code, insts in sorted(f.special_diseases.items())
        ],
        trauma_no_third_party_declared=f.trauma_declared,
        manual_reimbursement=f.manual_reimbursement,
    )
    date_to_proto(f.start_date, msg.start_date)
    date_to_proto(f.end_date, msg.end_date)
    date_to_proto(f.end_effective_date, msg.end_effective_date)
    if f.covers_from != f.start_date:
        date_to_proto(f.covers_from, msg.treatment_start_date)
    return msg


def _insured_bureau_of(region: str) -> None:
    """Only the bureau of the person's insured region acts on the person's e-certificates."""
    who = caller()
    if who is not None and who.role is Role.INSURED_BUREAU and who.covers_region(region):
        return
    raise DomainError(
        Reason.NOT_AUTHORISED_FOR_REGION,
        "only the bureau of the person's insured region may revoke the e-certificate",
        metadata={"role": who.role.value if who else "", "region_code": region},
    )


class EligibilityServicer(eligibility_pb2_grpc.EligibilityServiceServicer):
    def __init__(self, service: EligibilityService) -> None:
        self.service = service

    async def CheckEligibility(self, request: pb.CheckEligibilityRequest, context: Any) -> pb.CheckEligibilityResponse:
        v = Violations()
        v.check(
            request.HasField("credential") and request.credential.WhichOneof("kind") is not None,
            "credential",
            "an e-certificate token or a social security card is required",
        )
        v.check(bool(request.institution_code), "institution_code", "required")
        service = SERVICE_IN.get(request.service_type)
        v.check(service is not None, "service_type", "required")
        day = (
            date_from_proto(
                request.service_date if request.HasField("service_date") else None, "service_date", v, required=False
            )
            or self.service.today()
        )
        if service is ServiceType.CHRONIC_OUTPATIENT:
            v.check(bool(request.special_disease_code), "special_disease_code", "required for chronic outpatient")
        v.raise_if_any()
        assert service is not None
        d, policy_version = await self.service.check(
            credential_from_proto(request.credential),
            request.institution_code,
            service,
            day,
            special_disease_code=request.special_disease_code,
            emergency=request.emergency,
            trauma_declared=request.trauma_no_third_party_declared,
            expected_person_no=request.expected_person_no,
        )
        out = pb.EligibilityDecision(
            eligible=d.eligible,
            reasons=[r.value for r in d.reasons],
            guidance=d.guidance,
            treatment_region_code=d.treatment_region,
            emergency_deemed_filed=d.emergency_deemed_filed,
            decision_time=timestamp(self.service.now()),
            policy_version=policy_version,
            manual_reimbursement=d.manual_reimbursement,
            trauma_no_third_party_declared=d.trauma_declared,
        )
        if d.person is not None:
            p = d.person
            out.person_no, out.insured_region_code = p.person_no, p.insured_region
            out.insurance_type = INSURANCE_OUT.get(p.insurance_type, types_pb2.INSURANCE_TYPE_UNSPECIFIED)
            out.person_type = PERSON_TYPE_OUT.get(p.person_type, types_pb2.PERSON_TYPE_UNSPECIFIED)
            out.assistance_category, out.hardship = p.assistance_category, p.hardship
            out.has_personal_account, out.sex = p.has_personal_account, p.sex
            out.account_balance_fen = p.account_balance_fen
            date_to_proto(p.birth_date, out.birth_date)
        if d.institution is not None:
            out.institution_level = LEVEL_OUT[d.institution.level]
        if d.filing is not None:
            out.filing_id, out.filing_type = d.filing.filing_id, FILING_TYPE_OUT[d.filing.filing_type]
            out.retro_filing = d.filing.retro
            date_to_proto(d.filing.start_date, out.filing_start_date)
            date_to_proto(d.filing.end_date, out.filing_end_date)
        elif d.emergency_deemed_filed:
            out.filing_type = types_pb2.FILING_TYPE_EMERGENCY
        return pb.CheckEligibilityResponse(decision=out)

    async def IssueECertificate(
        self, request: pb.IssueECertificateRequest, context: Any
    ) -> pb.IssueECertificateResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.person_no), "person_no", "required")
        v.check(len(request.id_number) == 18, "id_number", "an 18-character ID number")
        v.raise_if_any()
        token, claims = await self.service.issue_ecert(
            scoped_request_id(request.request_id), request.person_no, request.id_number
        )
        return pb.IssueECertificateResponse(
            token=token,
            token_id=claims.token_id,
            expire_time=timestamp(dt.datetime.fromtimestamp(claims.expires_at, dt.UTC)),
        )

    async def RevokeECertificate(
        self, request: pb.RevokeECertificateRequest, context: Any
    ) -> pb.RevokeECertificateResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        v.check(bool(request.token_id), "token_id", "required")
        v.raise_if_any()
        await self.service.revoke_ecert(request.token_id, _insured_bureau_of)
        return pb.RevokeECertificateResponse()

    async def GetInstitution(self, request: pb.GetInstitutionRequest, context: Any) -> pb.GetInstitutionResponse:
        v = Violations()
        v.check(bool(request.institution_code), "institution_code", "required")
        v.raise_if_any()
        return pb.GetInstitutionResponse(
            institution=institution_to_proto(self.service.institution(request.institution_code))
        )

    async def UpsertRegion(self, request: pb.UpsertRegionRequest, context: Any) -> pb.UpsertRegionResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        r = request.region
        v.check(len(r.region_code) == 6 and r.region_code.isdigit(), "region.region_code", "6 digits")
        v.check(bool(r.name), "region.name", "required")
        v.raise_if_any()
        region = await self.service.upsert_region(
            scoped_request_id(request.request_id), fingerprint(request), Region(r.region_code, r.name)
        )
        return pb.UpsertRegionResponse(
            region=pb.Region(region_code=region.region_code, name=region.name, province_code=region.province_code)
        )

    async def UpsertInstitution(
        self, request: pb.UpsertInstitutionRequest, context: Any
    ) -> pb.UpsertInstitutionResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        i = request.institution
        v.check(
            bool(i.institution_code) and len(i.institution_code) <= 32,
            "institution.institution_code",
            "required, at most 32 characters",
        )
        v.check(len(i.region_code) == 6 and i.region_code.isdigit(), "institution.region_code", "6 digits")
        v.check(i.level in LEVEL_IN, "institution.level", "required")
        v.check(
            all(s in SERVICE_IN for s in i.networked_services), "institution.networked_services", "unknown service type"
        )
        v.raise_if_any()
        inst = Institution(
            institution_code=i.institution_code,
            name=i.name,
            region_code=i.region_code,
            level=LEVEL_IN[i.level],
            networked_services=frozenset(SERVICE_IN[s] for s in i.networked_services),
            special_disease_codes=frozenset(i.special_disease_codes),
        )
        saved = await self.service.upsert_institution(scoped_request_id(request.request_id), fingerprint(request), inst)
        return pb.UpsertInstitutionResponse(institution=institution_to_proto(saved))

    async def UpsertInsuredPerson(
        self, request: pb.UpsertInsuredPersonRequest, context: Any
    ) -> pb.UpsertInsuredPersonResponse:
        v = Violations()
        check_request_id(request.request_id, v)
        p = request.person
        v.check(bool(p.person_no) and len(p.person_no) <= 40, "person.person_no", "required")
        v.check(len(p.id_number) == 18, "person.id_number", "an 18-character ID number")
        v.check(
            len(p.insured_region_code) == 6 and p.insured_region_code.isdigit(),
            "person.insured_region_code",
            "6 digits",
        )
        v.check(p.insurance_type in INSURANCE_IN, "person.insurance_type", "required")
        v.check(p.person_type in PERSON_TYPE_IN, "person.person_type", "required")
        v.check(p.status in STATUS_IN, "person.status", "required")
        v.check(p.sex in ("", "F", "M"), "person.sex", "F, M or empty")
        v.check(len(p.employer_name) <= 200, "person.employer_name", "at most 200 characters")
        v.check(p.account_balance_fen >= 0, "person.account_balance_fen", "must be >= 0")
        birth = date_from_proto(
            p.birth_date if p.HasField("birth_date") else None, "person.birth_date", v, required=False
        )
        v.raise_if_any()
        person = InsuredPerson(
            person_no=p.person_no,
            id_number=p.id_number.upper(),
            name=p.name,
            insured_region=p.insured_region_code,
            insurance_type=INSURANCE_IN[p.insurance_type],
            person_type=PERSON_TYPE_IN[p.person_type],
            status=STATUS_IN[p.status],
            assistance_category=p.assistance_category,
            hardship=p.hardship,
            has_personal_account=p.has_personal_account,
            card_number=p.card_number,
            card_serial=p.card_serial,
            sex=p.sex,
            birth_date=birth,
            account_balance_fen=p.account_balance_fen,
            employer_name=p.employer_name.strip(),
        )
        saved = await self.service.upsert_person(scoped_request_id(request.request_id), fingerprint(request), person)
        return pb.UpsertInsuredPersonResponse(person=person_to_proto(saved))

    async def GetInsuredPerson(self, request: pb.GetInsuredPersonRequest, context: Any) -> pb.GetInsuredPersonResponse:
        v = Violations()
        v.check(bool(request.person_no), "person_no", "required")
        v.raise_if_any()
        person = self.service.person(request.person_no)
        who = caller()
        full = who is not None and who.role is Role.INSURED_BUREAU
        if full and who is not None and not who.covers_region(person.insured_region):
            raise DomainError(
                Reason.NOT_AUTHORISED_FOR_REGION,
                "this person is insured in another region",
                metadata={"role": who.role.value, "region_code": person.insured_region},
            )
        out = person_to_proto(person)
        if not full:
            # full ID numbers and the card's secret serial go only to the insured-place bureau
            out.id_number = mask_id_number(out.id_number)
            out.card_serial = ""
        return pb.GetInsuredPersonResponse(
            person=out,
            active_filings=[filing_view_to_proto(f) for f in self.service.filings_of(person.person_no) if f.active],
        )


def register(server: grpc.aio.Server, servicer: EligibilityServicer) -> None:
    eligibility_pb2_grpc.add_EligibilityServiceServicer_to_server(servicer, server)
