"""A month through the whole suite over gRPC: settlements with personal-account payments,
cancellations within the month and after its statement closed, an expense verification and a
manual claim; clearing follows the settlement feed. For every province pair and month the
statements equal Σ settled (funds + account) − Σ cancelled ± adjustments − deductions, to the
fen, per payer, and the ledger sums to zero. Runs on SQLite or PostgreSQL (--db)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict

import pytest

from libs.platform.host import Host
from medsettle.clearing.v1 import clearing_pb2 as cl
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import (
    OTHER_HOSPITAL,
    RESIDENT_CARD,
    RETIREE_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    settle,
    setup_world,
    upload,
    wait_filed,
)

pytestmark = pytest.mark.db

PAYERS = ("pooled_fund_fen", "large_amount_fen", "critical_illness_fen", "assistance_fen", "other_fund_fen")
PAYER_OF = {
    cl.PAYER_POOLED_FUND: 0,
    cl.PAYER_LARGE_AMOUNT: 1,
    cl.PAYER_CRITICAL_ILLNESS: 2,
    cl.PAYER_ASSISTANCE: 3,
    cl.PAYER_OTHER_FUND: 4,
    cl.PAYER_PERSONAL_ACCOUNT: 5,
}


def owed(s: st.Settlement) -> list[int]:
    b = s.breakdown
    return [*(getattr(b, f) for f in PAYERS), b.personal_account_fen]


async def add_employee(w: World, person_no: str, region: str, card: str, balance: int) -> types_pb2.Credential:
    await w.c.eligibility.UpsertInsuredPerson(
        el.UpsertInsuredPersonRequest(
            request_id=f"m-{person_no}",
            person=el.InsuredPerson(
                person_no=person_no,
                id_number=f"{region}19700101{person_no[-4:]}",
                name="Employee " + person_no[-2:],
                insured_region_code=region,
                insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                person_type=types_pb2.PERSON_TYPE_IN_SERVICE,
                status=el.PERSON_STATUS_ACTIVE,
                has_personal_account=True,
                account_balance_fen=balance,
                card_number=card,
                card_serial="S" + card[-7:],
                sex="M",
                birth_date=types_pb2.Date(year=1970, month=1, day=1),
            ),
        )
    )
    await w.c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id=f"m-filing-{person_no}",
            person_no=person_no,
            insured_region_code=region,
            treatment_region_code="310100",
            filing_type=types_pb2.FILING_TYPE_STATIONED_STAFF,
            insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=date(w.day - dt.timedelta(days=30)),
        )
    )
    cred = types_pb2.Credential(card=types_pb2.SocialSecurityCard(card_number=card, card_serial="S" + card[-7:]))
    await wait_filed(w.c, cred, w.day)
    return cred


async def outpatient(w: World, rid: str, cred: types_pb2.Credential, seed: int, inst: str = HOSPITAL) -> st.Settlement:
    resp = await w.c.settlement.SettleOutpatient(
        st.SettleOutpatientRequest(
            request_id=rid,
            institution_code=inst,
            hospital_visit_no=rid,
            credential=cred,
            service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
            visit_date=date(w.day),
            diagnosis_codes=["J06.900"],
            lines=lines(4, seed, w.day),
            use_personal_account=True,
        ),
        metadata=md(inst),
    )
    return resp.settlement


async def cancel(w: World, rid: str, s: st.Settlement) -> st.Settlement:
    resp = await w.c.settlement.CancelSettlement(
        st.CancelSettlementRequest(request_id=rid, institution_code=s.institution_code, settlement_id=s.settlement_id),
        metadata=md(s.institution_code),
    )
    return resp.cancellation


async def ingested(w: World, n: int) -> None:
    for _ in range(400):
        status = await w.c.clearing.GetIngestStatus(cl.GetIngestStatusRequest())
        if status.settlements_ingested >= n:
            assert status.settlements_ingested == n
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"clearing never ingested {n} rows")


async def test_a_month_of_settlements_conserves_every_fen_per_province_pair(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    bj2 = await add_employee(w, "P110100000003", "110100", "110100C0003", 50_000)
    gz = await add_employee(w, "P440100000004", "440100", "440100C0004", 80_000)
    july = (w.day.year, w.day.month)
    rows: list[tuple[int, st.Settlement]] = []  # (clearing month index: 0 = July, 1 = next), row

    # an inpatient stay of the Beijing retiree: pooled fund and her whole account, 2,684.50
    stay = await open_visit(w, "m-stay-1")
    await upload(w, "m-up-1", stay.visit_id, lines(24, 1, w.day))
    s_stay = await settle(w, "m-settle-1", stay.visit_id)
    assert s_stay.breakdown.personal_account_fen == 268_450
    rows.append((0, s_stay))
    # the Chengdu resident's stay at the second hospital
    stay2 = await open_visit(w, "m-stay-2", cred=RESIDENT_CARD, institution=OTHER_HOSPITAL)
    await upload(w, "m-up-2", stay2.visit_id, lines(18, 2, w.day), institution=OTHER_HOSPITAL)
    rows.append((0, await settle(w, "m-settle-2", stay2.visit_id, institution=OTHER_HOSPITAL)))
    # outpatient visits of everyone, with account payments where there is an account
    seed = 10
    for cred, n in ((bj2, 4), (gz, 4), (RESIDENT_CARD, 3), (RETIREE_CARD, 2)):
        for i in range(n):
            seed += 1
            inst = HOSPITAL if i % 2 == 0 else OTHER_HOSPITAL
            rows.append((0, await outpatient(w, f"m-op-{seed}", cred, seed, inst)))
    assert sum(1 for _, s in rows if s.breakdown.personal_account_fen > 0) >= 6
    # cancelled within the month
    cancelled = [rows[3][1], rows[8][1]]
    for i, s in enumerate(cancelled):
        rows.append((0, await cancel(w, f"m-cancel-{i}", s)))
    # a manual claim: the insured place reimburses the person itself; nothing to clear
    claim = (
        await w.c.settlement.SubmitManualClaim(
            st.SubmitManualClaimRequest(
                request_id="m-claim",
                institution_code=HOSPITAL,
                hospital_visit_no="m-claim",
                credential=RESIDENT_CARD,  # her stay at the other hospital is another stay
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=date(w.day),
                discharge_date=date(w.day),
                diagnosis_codes=["K35.800"],
                lines=lines(24, 99, w.day),
                failure_reason="REASON_DEPENDENCY_UNAVAILABLE",
            ),
            metadata=md(),
        )
    ).claim
    processed = (
        await w.c.claims.ProcessManualClaim(
            st.ProcessManualClaimRequest(request_id="m-claim-p", claim_id=claim.claim_id)
        )
    ).claim
    assert processed.reimbursed_fen > 0
    await ingested(w, len(rows))

    # an expense verification of the retiree's stay, answered: part of the pooled fund rejected
    vr = (
        await w.c.clearing.CreateVerificationRequest(
            cl.CreateVerificationRequestRequest(request_id="m-vr", settlement_id=s_stay.settlement_id, reason="length")
        )
    ).verification
    rejected = s_stay.breakdown.pooled_fund_fen // 7
    await w.c.clearing.AnswerVerificationRequest(
        cl.AnswerVerificationRequestRequest(
            request_id="m-vr-a", verification_id=vr.verification_id, answer="partly", rejected_fen=rejected
        )
    )

    month = types_pb2.Month(year=july[0], month=july[1])
    run = await w.c.clearing.RunMonthlyClearing(cl.RunMonthlyClearingRequest(request_id="m-run-7", month=month))
    for s in run.statements:
        await w.c.clearing.ConfirmStatement(
            cl.ConfirmStatementRequest(
                request_id=f"m-t-{s.statement_id}", statement_id=s.statement_id, side=cl.SIDE_TREATMENT
            )
        )
    # cancelled after July's statement closed: a late row, an adjustment of the next month
    late = rows[5][1]
    rows.append((1, await cancel(w, "m-cancel-late", late)))
    await ingested(w, len(rows))
    nxt = types_pb2.Month(year=july[0] + (july[1] == 12), month=july[1] % 12 + 1)
    await w.c.clearing.RunMonthlyClearing(cl.RunMonthlyClearingRequest(request_id="m-run-8", month=nxt))

    expected: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * 6)
    for m, s in rows:
        acc = expected[(s.insured_region_code[:2], s.treatment_region_code[:2], m)]
        for i, a in enumerate(owed(s)):
            acc[i] += a
    expected[("11", "31", 0)][0] -= rejected  # all of it from the pooled fund (it paid more)
    assert {k[:2] for k in expected} == {("11", "31"), ("51", "31"), ("44", "31")}

    got: dict[tuple[str, str, int], list[int]] = {}
    for m, mon in ((0, month), (1, nxt)):
        for s in (await w.c.clearing.ListStatements(cl.ListStatementsRequest(month=mon))).statements:
            per = [0] * 6
            for o in s.owed:
                per[PAYER_OF[o.payer]] = o.due_fen
            got[(s.insured_province_code, s.treatment_province_code, m)] = per
            assert s.amount_due_fen == sum(per)
    assert got == dict(expected)
    # the manual claim is in no statement: everything on them came from the direct settlements
    total = sum(sum(v) for v in got.values())
    assert total == sum(sum(owed(s)) for _, s in rows) - rejected
    led = {
        b.account: b.balance_fen for b in (await w.c.clearing.GetLedgerBalances(cl.GetLedgerBalancesRequest())).balances
    }
    assert sum(led.values()) == 0
    for ip in ("11", "51", "44"):
        due = sum(sum(v) for (i, _, _), v in expected.items() if i == ip)
        assert led[f"province:{ip}:payable:31"] == -due
        assert led.get(f"province:{ip}:account_expense", 0) == sum(v[5] for (i, _, _), v in expected.items() if i == ip)
    assert led[f"institution:{HOSPITAL}:receivable"] + led[f"institution:{OTHER_HOSPITAL}:receivable"] == -total
