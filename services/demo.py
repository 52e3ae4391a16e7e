"""``medsettle demo``: start the whole suite (all-in-one, SQLite) and drive a realistic run.

Every step is a real gRPC call on a real socket; every write lands in the owning service's own
database. The story: a retiree insured in Beijing lives with her daughter in Shanghai (long-term
filing), is admitted to a tier-3 hospital there, and settles at the desk; a Chengdu resident on a
referral gets outpatient care in the same hospital; clearing ingests both through the feed and
the month's statements show what Beijing and Sichuan owe Shanghai.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

import grpc

from libs.platform.clock import CST, Clock, ShiftedClock, clock_for, today_cst
from libs.platform.identity import IDENTITY_HEADERS, INSTITUTION_HEADER, PRINCIPAL_HEADER
from libs.platform.settings import Settings
from libs.policy import CatalogueBook, default_books
from medsettle.clearing.v1 import clearing_pb2, clearing_pb2_grpc
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.eligibility.v1 import eligibility_pb2_grpc
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from medsettle.settlement.v1 import home_pb2_grpc, settlement_pb2_grpc
from medsettle.settlement.v1 import settlement_pb2 as st

HOSPITAL = "H31010400001"
PROVINCES = {"11": "Beijing", "31": "Shanghai", "44": "Guangdong", "51": "Sichuan", "42": "Hubei"}
REGIONS = {"110100": "Beijing", "310100": "Shanghai", "440100": "Guangzhou", "510100": "Chengdu", "420100": "Wuhan"}


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def _date(d: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=d.year, month=d.month, day=d.day)


OPERATOR = "urn:medsettle:operator:national"


def acting_party(method: str, request: Any) -> str:
    """Who makes this call in the story (the demo plays every party): the identity it presents
    in ``x-medsettle-principal``. Over plaintext the suite trusts that header from loopback only;
    over TLS only from the gateway's certificate (docs/access.md)."""
    name = method.rsplit("/", 1)[-1]
    if name == "WatchFilings":
        return "urn:medsettle:service:eligibility"
    if name == "StreamSettlements":
        return "urn:medsettle:service:clearing"
    if name == "UpsertInstitution":
        return f"urn:medsettle:bureau:treatment:{request.institution.region_code}"
    if name == "UpsertInsuredPerson":
        return f"urn:medsettle:bureau:insured:{request.person.insured_region_code}"
    if name == "CreateFiling":
        return f"urn:medsettle:bureau:insured:{request.insured_region_code}"
    if name == "ChangeFiling":
        return f"urn:medsettle:bureau:insured:{request.new_filing.insured_region_code}"
    if name == "ListFilings" and request.insured_region_code:
        return f"urn:medsettle:bureau:insured:{request.insured_region_code}"
    if name == "ListFilings" and request.treatment_region_code:
        return f"urn:medsettle:bureau:treatment:{request.treatment_region_code}"
    if name in ("CancelFiling", "GetFiling", "GetFilingHistory", "ListFilings"):
        return "urn:medsettle:bureau:insured:11"  # the story's filings are Beijing's
    if name in ("IssueECertificate",):
        return f"urn:medsettle:app:{request.person_no}"
    if name == "GetInsuredPerson" and request.person_no[1:7].isdigit() and len(request.person_no) > 7:
        # the story's person numbers start with their insured region: P110100...
        return f"urn:medsettle:bureau:insured:{request.person_no[1:7]}"
    if name in ("GetInsuredPerson", "RevokeECertificate"):
        return "urn:medsettle:bureau:insured:11"
    if name in ("ListManualClaims", "ReportHomeMovements", "GetPersonYear"):
        return f"urn:medsettle:bureau:insured:{request.insured_region_code}"
    if name in ("ProcessManualClaim", "GetManualClaim"):
        return "urn:medsettle:bureau:insured:51"  # the demo's manual claims are Chengdu residents'
    code = getattr(request, "institution_code", "")
    clearing_but_not_reconciliation = "ClearingService" in method and not name.startswith("Reconcile")
    if isinstance(code, str) and code and not clearing_but_not_reconciliation:
        return f"urn:medsettle:hospital:{code}"
    return OPERATOR


def _has_identity(metadata: Any) -> bool:
    return any(k in IDENTITY_HEADERS for k, _ in (metadata or ()))


def _acting(details: Any, request: Any) -> Any:
    if _has_identity(details.metadata):
        return details
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())))
    metadata[PRINCIPAL_HEADER] = acting_party(method, request)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class ActingParties(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds :func:`acting_party` to a call that names no caller itself."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_acting(details, request), request)


class ActingPartiesOnStreams(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_acting(details, request), request)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, details: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class SyncActingParties(grpc.UnaryUnaryClientInterceptor):
    """:class:`ActingParties` for blocking channels: ``grpc.intercept_channel(ch, SyncActingParties())``."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if _has_identity(details.metadata):
            return continuation(details, request)
        metadata = [*(details.metadata or ()), (PRINCIPAL_HEADER, acting_party(details.method, request))]
        return continuation(_SyncDetails(details, metadata), request)


def acting_parties() -> list[grpc.aio.ClientInterceptor]:
    """The interceptors of a channel that plays every party (grpc.aio files an interceptor under
    one kind only, so one per kind)."""
    return [ActingParties(), ActingPartiesOnStreams()]


class Clients:
    """Stubs for the four services: one target for all (all-in-one) or one per service. Each
    call presents the identity of the party that makes it (:func:`acting_party`) unless it
    names one in its own metadata; ``parties=False`` sends none."""

    def __init__(self, targets: str | dict[str, str], *, parties: bool = True) -> None:
        if isinstance(targets, str):
            targets = dict.fromkeys(("filing", "eligibility", "settlement", "clearing"), targets)
        interceptors = acting_parties() if parties else []
        self._channels = {name: grpc.aio.insecure_channel(t, interceptors=interceptors) for name, t in targets.items()}
        self.filing = filing_pb2_grpc.FilingServiceStub(self._channels["filing"])
        self.eligibility = eligibility_pb2_grpc.EligibilityServiceStub(self._channels["eligibility"])
        self.settlement = settlement_pb2_grpc.SettlementServiceStub(self._channels["settlement"])
        self.claims = settlement_pb2_grpc.ManualClaimServiceStub(self._channels["settlement"])
        self.home = home_pb2_grpc.HomeMovementServiceStub(self._channels["settlement"])
        self.clearing = clearing_pb2_grpc.ClearingServiceStub(self._channels["clearing"])

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()


async def seed_registry(c: Clients, tag: str) -> None:
    for code, name in REGIONS.items():
        await c.eligibility.UpsertRegion(
            el.UpsertRegionRequest(request_id=f"{tag}-region-{code}", region=el.Region(region_code=code, name=name))
        )
    await c.eligibility.UpsertInstitution(
        el.UpsertInstitutionRequest(
            request_id=f"{tag}-inst",
            institution=el.Institution(
                institution_code=HOSPITAL,
                name="Shanghai Renji Hospital (demo)",
                region_code="310100",
                level=el.INSTITUTION_LEVEL_TIER_3,
                networked_services=[
                    types_pb2.SERVICE_TYPE_INPATIENT,
                    types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
                    types_pb2.SERVICE_TYPE_CHRONIC_OUTPATIENT,
                ],
                special_disease_codes=["M03900"],
            ),
        )
    )
    await c.eligibility.UpsertInsuredPerson(
        el.UpsertInsuredPersonRequest(
            request_id=f"{tag}-p1",
            person=el.InsuredPerson(
                person_no="P110100000001",
                id_number="110105195403120027",
                name="Wang Fang",
                insured_region_code="110100",
                insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                person_type=types_pb2.PERSON_TYPE_RETIRED,
                status=el.PERSON_STATUS_ACTIVE,
                has_personal_account=True,
                account_balance_fen=268_450,
                card_number="110100C0001",
                card_serial="S9A1B2C3",
                sex="F",
                birth_date=types_pb2.Date(year=1954, month=3, day=12),
            ),
        )
    )
    await c.eligibility.UpsertInsuredPerson(
        el.UpsertInsuredPersonRequest(
            request_id=f"{tag}-p2",
            person=el.InsuredPerson(
                person_no="P510100000002",
                id_number="510104198811230016",
                name="Li Wei",
                insured_region_code="510100",
                insurance_type=types_pb2.INSURANCE_TYPE_RESIDENT,
                person_type=types_pb2.PERSON_TYPE_RESIDENT_ADULT,
                status=el.PERSON_STATUS_ACTIVE,
                card_number="510100C0002",
                card_serial="S7F6E5D4",
                sex="M",
                birth_date=types_pb2.Date(year=1988, month=11, day=23),
            ),
        )
    )


async def wait_eligible(
    c: Clients, req: el.CheckEligibilityRequest, wait_seconds: float = 10.0
) -> el.EligibilityDecision:
    """The filing reaches eligibility's in-memory index through WatchFilings; wait for it."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        d: el.EligibilityDecision = (await c.eligibility.CheckEligibility(req)).decision
        if d.eligible or asyncio.get_running_loop().time() > deadline:
            return d
        await asyncio.sleep(0.05)


def fee_lines(
    n: int, seed: int, treatment_region: str, day: dt.date, catalogues: CatalogueBook | None = None
) -> list[st.FeeLine]:
    """``n`` realistic lines of the treatment place's catalogue in effect on ``day`` (the shipped
    samples unless ``catalogues`` is given)."""
    cat = (catalogues or default_books()[1]).find(treatment_region, day)
    # mostly covered items (class A and B), the occasional self-pay (class C) one
    covered = sorted(code for code, item in cat.items.items() if item.item_class.value in ("A", "B"))
    self_pay = sorted(code for code, item in cat.items.items() if item.item_class.value == "C")
    lines = []
    for i in range(n):
        pool = self_pay if i % 8 == 7 and self_pay else covered
        item = cat.items[pool[(seed * 7919 + i * 104729) % len(pool)]]
        ceiling = item.ceiling_fen or 5_000
        price = max(1, ceiling + (ceiling // 10 if i % 5 == 0 else -(ceiling // 20)))
        lines.append(
            st.FeeLine(
                line_no=i + 1,
                item_code=item.code,
                item_name=item.name,
                quantity_milli=1000 * (1 + i % 3),
                unit_price_fen=price,
                fee_date=_date(day),
            )
        )
    return lines


def print_breakdown(title: str, b: st.Breakdown) -> None:
    print(f"  {title}")
    rows = [
        ("total", b.total_fen),
        ("  full self-pay", b.full_self_pay_fen),
        ("  over-limit", b.over_limit_fen),
        ("  pre-self-pay", b.pre_self_pay_fen),
        ("  in scope", b.in_scope_fen),
        ("deductible borne", b.deductible_fen),
        ("pooled fund", b.pooled_fund_fen),
        ("large-amount subsidy", b.large_amount_fen),
        ("critical illness", b.critical_illness_fen),
        ("medical assistance", b.assistance_fen),
        ("fund total", b.fund_total_fen),
        ("personal account", b.personal_account_fen),
        ("cash at the desk", b.cash_fen),
    ]
    for name, fen in rows:
        print(f"    {name:<22}{yuan(fen):>14}")
    print(f"    policy {b.policy_version}; catalogue {b.catalogue_version}")


async def drive(
    targets: str | dict[str, str],
    *,
    tag: str = "demo",
    out: Any = print,
    today: dt.date | None = None,
    catalogues: CatalogueBook | None = None,
) -> dict[str, Any]:
    """The scripted run; returns what it saw (the tests assert on it). ``today`` is the
    hospital's date (it must be the suite's date; default: today in China Standard Time)."""
    c = Clients(targets)
    try:
        return await _drive(c, tag, out, today or dt.datetime.now(CST).date(), catalogues)
    finally:
        await c.close()


async def _drive(c: Clients, tag: str, out: Any, today: dt.date, catalogues: CatalogueBook | None) -> dict[str, Any]:
    md = ((INSTITUTION_HEADER, HOSPITAL),)
    await seed_registry(c, tag)
    out("1. registry: 5 coordinating regions, 1 tier-3 hospital in Shanghai, 2 insured persons")

    filing = (
        await c.filing.CreateFiling(
            filing_pb2.CreateFilingRequest(
                request_id=f"{tag}-filing-1",
                person_no="P110100000001",
                insured_region_code="110100",
                treatment_region_code="310100",
                filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
                insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                channel=filing_pb2.CHANNEL_APP,
                commitment_signed=True,
                start_date=_date(today),
            )
        )
    ).filing
    referral = (
        await c.filing.CreateFiling(
            filing_pb2.CreateFilingRequest(
                request_id=f"{tag}-filing-2",
                person_no="P510100000002",
                insured_region_code="510100",
                treatment_region_code="310100",
                filing_type=types_pb2.FILING_TYPE_REFERRAL,
                insurance_type=types_pb2.INSURANCE_TYPE_RESIDENT,
                channel=filing_pb2.CHANNEL_WINDOW,
                commitment_signed=True,
                start_date=_date(today),
                end_date=_date(today + dt.timedelta(days=200)),
            )
        )
    ).filing
    out(
        f"2. filings: {filing.filing_id} (relocated retiree, Beijing -> Shanghai), "
        f"{referral.filing_id} (referral, Chengdu -> Shanghai)"
    )

    cert = await c.eligibility.IssueECertificate(
        el.IssueECertificateRequest(
            request_id=f"{tag}-ecert-1", person_no="P110100000001", id_number="110105195403120027"
        )
    )
    decision = await wait_eligible(
        c,
        el.CheckEligibilityRequest(
            credential=types_pb2.Credential(ecert_token=cert.token),
            institution_code=HOSPITAL,
            service_type=types_pb2.SERVICE_TYPE_INPATIENT,
            service_date=_date(today),
        ),
    )
    out(f"3. e-certificate checked at the desk: eligible={decision.eligible}, filing {decision.filing_id}")
    if not decision.eligible:
        raise RuntimeError(f"not eligible: {list(decision.reasons)}")
    second = await wait_eligible(
        c,
        el.CheckEligibilityRequest(
            credential=types_pb2.Credential(
                card=types_pb2.SocialSecurityCard(card_number="510100C0002", card_serial="S7F6E5D4")
            ),
            institution_code=HOSPITAL,
            service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
            service_date=_date(today),
        ),
    )
    if not second.eligible:
        raise RuntimeError(f"the referral filing never reached eligibility: {list(second.reasons)}")

    visit = (
        await c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id=f"{tag}-open-1",
                institution_code=HOSPITAL,
                hospital_visit_no=f"{tag}-ZY0001",
                credential=types_pb2.Credential(ecert_token=cert.token),
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=_date(today),
                diagnosis_codes=["I63.900"],
            ),
            metadata=md,
        )
    ).visit
    lines = fee_lines(24, 1, "310100", today, catalogues)
    await c.settlement.UploadFees(
        st.UploadFeesRequest(
            request_id=f"{tag}-fees-1", institution_code=HOSPITAL, visit_id=visit.visit_id, lines=lines
        ),
        metadata=md,
    )
    pre = (
        await c.settlement.PreSettle(
            st.PreSettleRequest(institution_code=HOSPITAL, visit_id=visit.visit_id, use_personal_account=True),
            metadata=md,
        )
    ).breakdown
    settled = (
        await c.settlement.Settle(
            st.SettleRequest(
                request_id=f"{tag}-settle-1",
                institution_code=HOSPITAL,
                visit_id=visit.visit_id,
                use_personal_account=True,
                discharge_date=_date(today),
            ),
            metadata=md,
        )
    ).settlement
    out(
        f"4. inpatient visit {visit.visit_id}: {len(lines)} fee lines uploaded, pre-settled "
        f"{yuan(pre.total_fen)}, settled as {settled.settlement_id}"
    )
    if out is print:
        print_breakdown("settlement (yuan):", settled.breakdown)

    outpatient = (
        await c.settlement.SettleOutpatient(
            st.SettleOutpatientRequest(
                request_id=f"{tag}-op-1",
                institution_code=HOSPITAL,
                hospital_visit_no=f"{tag}-MZ0001",
                credential=types_pb2.Credential(
                    card=types_pb2.SocialSecurityCard(card_number="510100C0002", card_serial="S7F6E5D4")
                ),
                service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
                visit_date=_date(today),
                diagnosis_codes=["J06.900"],
                lines=fee_lines(5, 2, "310100", today, catalogues),
            ),
            metadata=md,
        )
    ).settlement
    out(
        f"5. outpatient (card, one round trip): {outpatient.settlement_id}, total "
        f"{yuan(outpatient.breakdown.total_fen)}, funds {yuan(outpatient.breakdown.fund_total_fen)}, "
        f"cash {yuan(outpatient.breakdown.cash_fen)}"
    )

    expected = 2
    deadline = asyncio.get_running_loop().time() + 10
    status = await c.clearing.GetIngestStatus(clearing_pb2.GetIngestStatusRequest())
    while status.settlements_ingested < expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        status = await c.clearing.GetIngestStatus(clearing_pb2.GetIngestStatusRequest())
    out(f"6. clearing ingested {status.settlements_ingested} settlements from the feed (position {status.position})")

    month = types_pb2.Month(year=today.year, month=today.month)
    run = await c.clearing.RunMonthlyClearing(
        clearing_pb2.RunMonthlyClearingRequest(request_id=f"{tag}-clearing-{today:%Y%m}-{status.position}", month=month)
    )
    statements = []
    for ip, tp in (("11", "31"), ("51", "31")):
        stmt = (
            await c.clearing.GetStatement(
                clearing_pb2.GetStatementRequest(insured_province_code=ip, treatment_province_code=tp, month=month)
            )
        ).statement
        statements.append(stmt)
    out(f"7. monthly clearing {today:%Y-%m}: {len(run.statements)} statement(s)")
    for stmt in statements:
        out(
            f"   {stmt.statement_id}: {stmt.settlement_count} settlement(s), "
            f"{PROVINCES.get(stmt.insured_province_code, stmt.insured_province_code)} owes "
            f"{PROVINCES.get(stmt.treatment_province_code, stmt.treatment_province_code)} "
            f"{yuan(stmt.amount_due_fen)} yuan"
        )
        for ln in stmt.lines:
            out(
                f"     {types_pb2.ClearingCategory.Name(ln.category).removeprefix('CLEARING_CATEGORY_').lower():<11}"
                f" count {ln.count}  medical {yuan(ln.medical_total_fen):>12}  fund {yuan(ln.fund_total_fen):>12}"
                f"  personal account {yuan(ln.personal_account_fen):>10}  due {yuan(ln.amount_due_fen):>12}"
            )
        for owed in stmt.owed:
            if owed.settled_fen or owed.adjustment_fen or owed.deducted_fen:
                payer = clearing_pb2.Payer.Name(owed.payer).removeprefix("PAYER_").lower().replace("_", " ")
                out(f"       {payer:<17} {yuan(owed.due_fen):>12}")
    owed_to = (
        await c.clearing.GetLedgerBalances(clearing_pb2.GetLedgerBalancesRequest(prefix="institution:"))
    ).balances
    for bal in owed_to:
        code = bal.account.split(":")[1]
        out(
            f"   {PROVINCES.get(code[1:3], code[1:3])} owes {code} {yuan(-bal.balance_fen)} yuan "
            "(what it advanced: funds and personal account)"
        )
    return {
        "settlement": settled,
        "outpatient": outpatient,
        "statements": statements,
        "ingested": status.settlements_ingested,
    }


async def run_demo(settings: Settings, *, port: int = 0, keep_data: bool = False, on: dt.date | None = None) -> int:
    """The scripted run against a fresh all-in-one suite; ``on`` runs the suite's clock from
    that day (09:00 China Standard Time), else from ``MEDSETTLE_TEST_CLOCK_START`` or now."""
    from libs.platform import policies
    from libs.platform.settings import SERVICES
    from services.suite import start

    clock: Clock = ShiftedClock.at_cst(on) if on is not None else clock_for(settings.test_clock_start)

    data_dir = Path(tempfile.mkdtemp(prefix="medsettle-demo-")) if not keep_data else settings.data_dir
    settings = settings.model_copy(update={"data_dir": data_dir, "drain_seconds": 0.0, "grace_seconds": 2.0})
    print(f"medsettle demo: all four services in one process, SQLite databases in {data_dir}")
    host = await start(settings, SERVICES, port=port, clock=clock)
    try:
        day = today_cst(clock)
        print(f"serving on 127.0.0.1:{host.port} (health + reflection on); the suite's date is {day}\n")
        await drive(f"127.0.0.1:{host.port}", today=day, catalogues=policies.store_for(settings).current.catalogues)
        print("\ndone: a settled visit and the clearing statement that contains it.")
        return 0
    finally:
        await host.stop(drain=False)
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
