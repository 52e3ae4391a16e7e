"""The access table: who may call every RPC of every service, in one place.

The server interceptor looks the method up here before the handler runs. A method without a
rule cannot be called (PERMISSION_DENIED, REASON_METHOD_NOT_OPEN); a caller whose role the rule
does not name is refused (PERMISSION_DENIED, REASON_ROLE_NOT_ALLOWED); no identity at all is
UNAUTHENTICATED. A rule may also name request fields the caller must own, checked on the
request before the handler sees it:

* ``institution=``  an institution caller must be the institution in that field;
* ``insured=``      an insured-place bureau must cover the region (or province) in that field;
* ``treatment=``    a treatment-place bureau must cover the region (or province) in that field;
* ``person=``       the insured person's app must be the person in that field.

Ownership that needs stored data (the visit of a settlement, the region of a filing) is checked
by the service, next to the data. ``tests/unit/test_access.py`` fails if a method of any service
has no rule; ``tests/integration/test_access_matrix.py`` calls every method as every role; the
table is rendered in docs/access.md and routed by the gateways (``scripts/gen_access.py``,
checked by tests).

Adding a method is one line below, then ``scripts/gen_access.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.core.errors import DomainError, Reason
from libs.platform.identity import Principal, Role

I = Role.INSTITUTION  # noqa: E741 - short names keep the table one line per method
TB = Role.TREATMENT_BUREAU
IB = Role.INSURED_BUREAU
OP = Role.OPERATOR
SVC = Role.SERVICE
APP = Role.APP

CALLER_ROLES = (I, TB, IB, OP, SVC, APP)  # every role that can be a caller (not the gateway)
PARTNER_ROLES = frozenset((TB, IB, OP))  # reach the suite through the gateway's partner listener


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    institution: str = ""
    insured: str = ""
    treatment: str = ""
    person: str = ""
    note: str = ""

    @property
    def hospital_facing(self) -> bool:
        """Routed to hospitals by the gateway."""
        return I in self.roles

    @property
    def partner_facing(self) -> bool:
        """Routed to the bureaus and the operator by the gateway's partner listener."""
        return bool(self.roles & PARTNER_ROLES)

    def scope_fields(self) -> dict[Role, str]:
        fields = {I: self.institution, IB: self.insured, TB: self.treatment, APP: self.person}
        return {role: f for role, f in fields.items() if f}


def allow(
    *roles: Role, institution: str = "", insured: str = "", treatment: str = "", person: str = "", note: str = ""
) -> Rule:
    return Rule(frozenset(roles), institution, insured, treatment, person, note)


FILING = "/medsettle.filing.v1.FilingService/"
ELIGIBILITY = "/medsettle.eligibility.v1.EligibilityService/"
SETTLEMENT = "/medsettle.settlement.v1.SettlementService/"
CLAIMS = "/medsettle.settlement.v1.ManualClaimService/"
CATALOGUE = "/medsettle.settlement.v1.CatalogueService/"
HOME = "/medsettle.settlement.v1.HomeMovementService/"
CLEARING = "/medsettle.clearing.v1.ClearingService/"
# Which service process hosts each gRPC service: where the gateways send its methods.
HOSTED_BY = {
    "medsettle.filing.v1.FilingService": "filing",
    "medsettle.eligibility.v1.EligibilityService": "eligibility",
    "medsettle.settlement.v1.SettlementService": "settlement",
    "medsettle.settlement.v1.ManualClaimService": "settlement",
    "medsettle.settlement.v1.CatalogueService": "settlement",
    "medsettle.settlement.v1.HomeMovementService": "settlement",
    "medsettle.clearing.v1.ClearingService": "clearing",
}

RULES: dict[str, Rule] = {
    # filing: the insured place files its own persons; both places read
    FILING + "CreateFiling": allow(IB, insured="insured_region_code"),
    FILING + "ChangeFiling": allow(IB, insured="new_filing.insured_region_code", note="and the old filing's region"),
    FILING + "CancelFiling": allow(IB, note="the filing's insured region"),
    FILING + "GetFiling": allow(IB, TB, note="the filing's insured or treatment region"),
    FILING + "ListFilings": allow(IB, TB, note="only the filings of the caller's region"),
    FILING + "GetFilingHistory": allow(IB, TB, note="the filing's insured or treatment region"),
    FILING + "WatchFilings": allow(SVC, note="eligibility's feed"),
    # eligibility
    ELIGIBILITY + "CheckEligibility": allow(I, SVC, institution="institution_code"),
    ELIGIBILITY + "IssueECertificate": allow(APP, person="person_no"),
    ELIGIBILITY + "RevokeECertificate": allow(IB, note="the person's insured region"),
    ELIGIBILITY + "GetInstitution": allow(I, TB, IB, OP, SVC),
    ELIGIBILITY + "UpsertRegion": allow(OP),
    ELIGIBILITY + "UpsertInstitution": allow(TB, treatment="institution.region_code"),
    ELIGIBILITY + "UpsertInsuredPerson": allow(IB, insured="person.insured_region_code"),
    ELIGIBILITY + "GetInsuredPerson": allow(TB, IB, SVC, note="full ID number only to the insured-place bureau"),
    # settlement: the hospital's desk; a visit is its institution's own
    SETTLEMENT + "OpenVisit": allow(I, institution="institution_code"),
    SETTLEMENT + "UploadFees": allow(I, note="own visits"),
    SETTLEMENT + "PreSettle": allow(I, note="own visits"),
    SETTLEMENT + "Settle": allow(I, note="own visits"),
    SETTLEMENT + "CancelSettlement": allow(I, note="own settlements"),
    SETTLEMENT + "ReverseTransaction": allow(I, note="own request ids"),
    SETTLEMENT + "SettleOutpatient": allow(I, institution="institution_code"),
    SETTLEMENT + "GetVisit": allow(I, note="own visits"),
    SETTLEMENT + "GetSettlement": allow(I, note="own settlements"),
    SETTLEMENT + "StreamSettlements": allow(SVC, note="clearing's feed"),
    SETTLEMENT + "UpdateVisit": allow(I, note="own visits"),
    SETTLEMENT + "CancelVisit": allow(I, note="own visits"),
    SETTLEMENT + "SubmitManualClaim": allow(I, institution="institution_code"),
    SETTLEMENT + "RecomputeSettlement": allow(I, note="own settlements"),
    SETTLEMENT + "ListSettlements": allow(
        I, IB, insured="insured_region_code", note="a hospital its own; a bureau its region's persons"
    ),
    SETTLEMENT + "ListVisitFees": allow(I, note="own visits"),
    SETTLEMENT + "GetAccumulators": allow(I, note="persons with a visit at the caller"),
    CATALOGUE + "ListCatalogueItems": allow(I, TB, note="the treatment place's catalogue (public to its users)"),
    CATALOGUE + "GetCatalogueItem": allow(I, TB, note="the treatment place's catalogue (public to its users)"),
    # manual claims: the insured place processes its own persons' claims
    CLAIMS + "ProcessManualClaim": allow(IB, note="the claim's insured region"),
    CLAIMS + "GetManualClaim": allow(IB, note="the claim's insured region"),
    CLAIMS + "ListManualClaims": allow(IB, insured="insured_region_code"),
    # home movements: the insured place reports its own persons' spending at home
    HOME + "ReportHomeMovements": allow(IB, insured="insured_region_code"),
    HOME + "GetPersonYear": allow(IB, insured="insured_region_code"),
    # clearing: the national operator, the provinces, and hospitals for their own reconciliation,
    # clearing results and payments (national 3201-3204)
    CLEARING + "GetIngestStatus": allow(OP, SVC),
    CLEARING + "ReconcileDaily": allow(I, TB, OP, institution="institution_code", treatment="treatment_province_code"),
    CLEARING + "ReconcileDetail": allow(I, OP, institution="institution_code"),
    CLEARING + "RunMonthlyClearing": allow(OP),
    CLEARING + "GetStatement": allow(OP, IB, TB, insured="insured_province_code", treatment="treatment_province_code"),
    CLEARING + "ListStatements": allow(OP, IB, TB, insured="province_code", treatment="province_code"),
    CLEARING + "ConfirmStatement": allow(IB, TB, OP, note="the side named in the request"),
    CLEARING + "RecordDisbursement": allow(IB, OP),
    CLEARING + "ComputeAnnualPrepayment": allow(OP),
    CLEARING + "GetTopUpAllowance": allow(TB, OP, treatment="treatment_province_code"),
    CLEARING + "RequestEmergencyTopUp": allow(TB, OP, treatment="treatment_province_code"),
    CLEARING + "ReviewEmergencyTopUp": allow(OP, note="the national operator reviews"),
    CLEARING + "RecordTopUpDisbursement": allow(IB, OP, note="the insured place pays the approved top-up"),
    CLEARING + "SetSigningCalendar": allow(OP),
    CLEARING + "ListOverduePayments": allow(OP),
    CLEARING + "GetLedgerBalances": allow(OP),
    CLEARING + "CreateVerificationRequest": allow(IB, OP, note="the settlement's insured province"),
    CLEARING + "AnswerVerificationRequest": allow(TB, OP, note="the settlement's treatment province"),
    CLEARING + "GetPrepayment": allow(OP, IB, TB, insured="insured_province_code", treatment="treatment_province_code"),
    CLEARING + "RecordInstitutionPayment": allow(TB, OP),
    CLEARING + "RecordPrepaymentInterest": allow(TB, OP, treatment="treatment_province_code"),
    CLEARING + "GetInstitutionClearing": allow(I, OP, institution="institution_code"),
    CLEARING + "ListInstitutionPayments": allow(I, OP, institution="institution_code"),
}

# Served by every host to anyone: health checks and reflection carry no data.
OPEN_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

ROLE_TITLES = {
    I: "hospital / pharmacy",
    TB: "treatment-place bureau",
    IB: "insured-place bureau",
    OP: "national clearing operator",
    SVC: "suite service",
    APP: "insured person's app",
}


def rule_for(method: str) -> Rule | None:
    return RULES.get(method)


def _field(request: Any, path: str) -> str:
    value: Any = request
    for part in path.split("."):
        value = getattr(value, part, "")
    return value if isinstance(value, str) else ""


def authorise(method: str, principal: Principal | None, request: Any) -> None:
    """Raises unless ``principal`` may call ``method`` with ``request`` (deny by default)."""
    rule = RULES.get(method)
    if rule is None:
        raise DomainError(Reason.METHOD_NOT_OPEN, "this method is not open to any caller", metadata={"method": method})
    if principal is None:
        raise DomainError(
            Reason.INSTITUTION_IDENTITY_MISSING, "the caller is not authenticated", metadata={"method": method}
        )
    if principal.role not in rule.roles:
        raise DomainError(
            Reason.ROLE_NOT_ALLOWED,
            f"a caller of role {principal.role.value} may not call {method.rsplit('/', 1)[-1]}",
            metadata={"method": method, "role": principal.role.value},
        )
    field = rule.scope_fields().get(principal.role)
    if not field:
        return
    value = _field(request, field)
    if principal.role is Role.INSTITUTION and value != principal.id:
        raise DomainError(
            Reason.NOT_AUTHORISED_FOR_INSTITUTION,
            f"{field} must be the calling institution",
            metadata={"method": method, "field": field},
        )
    if principal.role in (Role.INSURED_BUREAU, Role.TREATMENT_BUREAU) and not principal.covers_region(value):
        raise DomainError(
            Reason.NOT_AUTHORISED_FOR_REGION,
            f"{field} is not the calling bureau's region",
            metadata={"method": method, "field": field, "role": principal.role.value, "region_code": value},
        )
    if principal.role is Role.APP and value != principal.id:
        raise DomainError(
            Reason.NOT_AUTHORISED_FOR_PERSON,
            f"{field} must be the person the app belongs to",
            metadata={"method": method, "field": field, "role": principal.role.value},
        )


def render_markdown() -> str:
    """The table as docs/access.md shows it (a test keeps the doc equal to this)."""
    heads = [r.value for r in CALLER_ROLES]
    lines = [
        "| method | " + " | ".join(heads) + " | scoped to |",
        "|---|" + "---|" * len(heads) + "---|",
    ]
    for method, rule in RULES.items():
        service, name = method.strip("/").split("/")
        cells = ["✔" if role in rule.roles else "" for role in CALLER_ROLES]
        scope = [f"{role.value}: `{field}`" for role, field in rule.scope_fields().items()]
        if rule.note:
            scope.append(rule.note)
        lines.append(f"| `{service.split('.')[-1]}/{name}` | " + " | ".join(cells) + " | " + "; ".join(scope) + " |")
    return "\n".join(lines) + "\n"


START, END = "<!-- access-table:start -->\n", "<!-- access-table:end -->"


def write_doc(path: str) -> None:
    """Replaces the table between the markers of ``path`` with :func:`render_markdown`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + START + render_markdown() + END + tail)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_doc(sys.argv[2])
    else:
        print(render_markdown(), end="")
