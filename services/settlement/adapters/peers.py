"""Eligibility over gRPC: the one call settlement makes, before its transaction."""

from __future__ import annotations

import datetime as dt

import grpc

from libs.platform import enums
from libs.platform.convert import date_to_proto
from libs.platform.errors import peer_error
from libs.policy import FilingType, InsuranceType, PersonType, ServiceType
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2, eligibility_pb2_grpc
from services.settlement.domain.model import CredentialRef, Decision

SERVICE_OUT: dict[ServiceType, types_pb2.ServiceType.ValueType] = {
    ServiceType(s): types_pb2.ServiceType.ValueType(n) for n, s in enums.SERVICE_TYPES.items()
}
INSURANCE_IN = {n: InsuranceType(s) for n, s in enums.INSURANCE_TYPES.items()}
PERSON_IN = {n: PersonType(s) for n, s in enums.PERSON_TYPES.items()}
FILING_IN = {n: FilingType(s) for n, s in enums.FILING_TYPES.items()}
LEVEL_IN = enums.INSTITUTION_LEVELS
TIMEOUT_SECONDS = 2.0


def credential_to_proto(cred: CredentialRef) -> types_pb2.Credential:
    if cred.ecert_token:
        return types_pb2.Credential(ecert_token=cred.ecert_token)
    return types_pb2.Credential(
        card=types_pb2.SocialSecurityCard(card_number=cred.card_number, card_serial=cred.card_serial)
    )


class GrpcEligibility:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)

    async def check(
        self,
        cred: CredentialRef,
        institution_code: str,
        service: ServiceType,
        day: dt.date,
        *,
        special_disease_code: str,
        emergency: bool,
        trauma: bool,
    ) -> Decision:
        req = eligibility_pb2.CheckEligibilityRequest(
            credential=credential_to_proto(cred),
            institution_code=institution_code,
            service_type=SERVICE_OUT[service],
            special_disease_code=special_disease_code,
            emergency=emergency,
            trauma_no_third_party_declared=trauma,
        )
        date_to_proto(day, req.service_date)
        try:
            resp = await self._stub.CheckEligibility(req, timeout=TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            raise peer_error(exc, "eligibility", "eligibility is unavailable; retry") from exc
        return decision_from_proto(resp.decision)

    async def filing_type_on(self, person_no: str, treatment_region: str, day: dt.date) -> FilingType | None:
        try:
            resp = await self._stub.GetInsuredPerson(
                eligibility_pb2.GetInsuredPersonRequest(person_no=person_no), timeout=TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            raise peer_error(exc, "eligibility", "eligibility is unavailable; retry") from exc
        for f in resp.active_filings:
            start = _date(f.start_date)
            treat = _date(f.treatment_start_date)
            begin = min(start, treat) if (f.retro and start and treat) else start
            end = _date(f.end_date)
            if f.treatment_region_code == treatment_region and begin and begin <= day and (end is None or day <= end):
                return FILING_IN.get(f.filing_type)
        return None


def _date(d: types_pb2.Date) -> dt.date | None:
    return dt.date(d.year, d.month, d.day) if d.year else None


def decision_from_proto(d: eligibility_pb2.EligibilityDecision) -> Decision:
    return Decision(
        eligible=d.eligible,
        reasons=tuple(d.reasons),
        guidance=d.guidance,
        person_no=d.person_no,
        insured_region=d.insured_region_code,
        treatment_region=d.treatment_region_code,
        insurance_type=INSURANCE_IN.get(d.insurance_type),
        person_type=PERSON_IN.get(d.person_type),
        filing_id=d.filing_id,
        filing_type=FILING_IN.get(d.filing_type),
        emergency_deemed_filed=d.emergency_deemed_filed,
        hospital_level=LEVEL_IN.get(d.institution_level, 0),
        assistance_category=d.assistance_category,
        hardship=d.hardship,
        has_personal_account=d.has_personal_account,
        sex=d.sex,
        birth_date=_date(d.birth_date),
        retro_filing=d.retro_filing,
        account_balance_fen=d.account_balance_fen,
        manual_reimbursement=d.manual_reimbursement,
    )
