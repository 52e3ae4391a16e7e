"""The settlement use cases against in-memory fakes (tests/unit/settlement/fakes.py): no server,
no database, milliseconds each. What a caller of the gRPC API sees is tested in
tests/integration/settlement; these name the rule that broke."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

import pytest

from libs.core.errors import DomainError, Reason
from libs.platform.clock import ShiftedClock
from libs.policy import FilingType, InsuranceType, PersonType, ServiceType
from libs.policy.loader import PolicyStore, parse_dirs
from services.settlement.application.commands import (
    CancelSettlementCommand,
    CancelVisitCommand,
    OpenVisitCommand,
    Request,
    ReverseCommand,
    SettleCommand,
    SettleOutpatientCommand,
    SubmitClaimCommand,
    UpdateVisitCommand,
    UploadFeesCommand,
)
from services.settlement.application.service import SettlementService
from services.settlement.domain.model import CredentialRef, Decision, VisitRecord, VisitStatus
from services.settlement.server import build_service
from tests.dates import TEST_DAY
from tests.unit.settlement.fakes import FakeEligibility, FakeStore, fee

HOSPITAL = "H31010100001"
OTHER = "H31010400002"
CARD = "110100C0001"
PERSON = "P110100000001"
BALANCE = 268_450
GLUCOSE, CT, BED, SELF_PAY = "000075162166718", "000551614022277", "001061526412244", "001572181023777"

_POLICIES = PolicyStore(parse_dirs("@samples"))


def _decision(**changes: object) -> Decision:
    d = Decision(
        eligible=True,
        reasons=(),
        guidance="",
        person_no=PERSON,
        insured_region="110100",
        treatment_region="310100",
        insurance_type=InsuranceType.EMPLOYEE,
        person_type=PersonType.RETIRED,
        filing_id="F1",
        filing_type=FilingType.RELOCATED_RETIREE,
        emergency_deemed_filed=False,
        hospital_level=3,
        assistance_category="",
        hardship=False,
        has_personal_account=True,
        sex="F",
        birth_date=dt.date(1956, 3, 1),
        retro_filing=False,
        account_balance_fen=BALANCE,
    )
    return replace(d, **changes)  # type: ignore[arg-type]


class World:
    def __init__(self, *, max_batch: int = 64) -> None:
        self.store = FakeStore()
        self.eligibility = FakeEligibility()
        self.eligibility.decisions[CARD] = _decision()
        self.clock = ShiftedClock.at_cst(TEST_DAY)
        self.app: SettlementService = build_service(
            self.store, self.eligibility, _POLICIES, clock=self.clock, max_batch=max_batch, writers=1
        )
        self._n = 0

    def req(self, request_id: str, fp: str = "fp", caller: str | None = HOSPITAL) -> Request:
        return Request(request_id, fp, caller)

    def visit_cmd(self, visit_no: str = "HV1", **changes: object) -> OpenVisitCommand:
        cmd = OpenVisitCommand(
            institution_code=HOSPITAL,
            hospital_visit_no=visit_no,
            credential=CredentialRef(card_number=CARD),
            service_type=ServiceType.INPATIENT,
            admission_date=TEST_DAY - dt.timedelta(days=5),
            diagnosis_codes=("I10",),
        )
        return replace(cmd, **changes)  # type: ignore[arg-type]

    async def open_with_fees(self, tag: str, visit_no: str = "HV1") -> VisitRecord:
        visit = await self.app.visits.open_visit(self.req(f"{tag}-open"), self.visit_cmd(visit_no))
        lines = (fee(1, BED, 5000, 12_000), fee(2, CT, 1000, 80_000), fee(3, SELF_PAY, 2000, 2_000))
        await self.app.visits.upload_fees(self.req(f"{tag}-fees"), UploadFeesCommand(visit.visit_id, lines))
        return visit


def _final(visit: VisitRecord) -> SettleCommand:
    return SettleCommand(visit.visit_id, use_account=True, discharge_date=TEST_DAY)


async def test_a_settlement_writes_every_table_once_and_its_event_is_on_the_feed() -> None:
    w = World()
    visit = await w.open_with_fees("a")
    c = await w.app.settle(w.req("a-settle"), _final(visit))
    t = w.store.state
    assert list(t.settlements) == [c.record.settlement_id]
    assert {u.settlement_id for u in t.lines[visit.visit_id].values()} == {c.record.settlement_id}
    acc = t.accumulators[(PERSON, TEST_DAY.year)]
    assert acc.admissions == 1 and acc.pooled_paid_fen == c.result.pooled_fund_fen > 0
    assert t.accounts[PERSON] == BALANCE - c.result.personal_account_fen
    assert t.visits[visit.visit_id].status is VisitStatus.SETTLED and t.visits[visit.visit_id].settled_stays == 1
    assert t.visits[visit.visit_id].discharge_date == TEST_DAY
    assert t.keys["a-settle"] == ("settle", "fp", c.record.settlement_id)
    assert [e.entity_id for e in w.store.positions] == [c.record.settlement_id]
    assert c.result.total_fen == c.result.fund_total_fen + c.result.personal_account_fen + c.result.cash_fen


async def test_the_same_request_replays_its_answer_and_another_payload_is_refused() -> None:
    w = World()
    visit = await w.open_with_fees("r")
    first = await w.app.settle(w.req("r-settle"), _final(visit))
    again = await w.app.settle(w.req("r-settle"), _final(visit))
    assert again.record == first.record and len(w.store.state.settlements) == 1
    with pytest.raises(DomainError) as err:
        await w.app.settle(w.req("r-settle", fp="other"), _final(visit))
    assert err.value.reason is Reason.REQUEST_ID_REUSED
    with pytest.raises(DomainError) as err:  # the key is the request's, whatever the operation
        await w.app.visits.cancel_visit(w.req("r-settle"), CancelVisitCommand(visit.visit_id))
    assert err.value.reason is Reason.REQUEST_ID_REUSED


async def test_concurrent_duplicates_in_one_batch_settle_once() -> None:
    w = World()
    visit = await w.open_with_fees("d")
    w.app.settle_queue.start()
    try:
        answers = await asyncio.gather(*(w.app.settle(w.req("d-settle"), _final(visit)) for _ in range(4)))
    finally:
        await w.app.settle_queue.stop()
    assert len({a.record.settlement_id for a in answers}) == 1
    assert len(w.store.state.settlements) == 1 and w.store.state.accumulators[(PERSON, TEST_DAY.year)].admissions == 1


async def test_a_refused_settle_writes_nothing_not_even_the_persons_first_accumulators() -> None:
    w = World()
    visit = await w.app.visits.open_visit(w.req("n-open"), w.visit_cmd())
    for queued in (False, True):
        if queued:
            w.app.settle_queue.start()
        with pytest.raises(DomainError) as err:
            await w.app.settle(w.req(f"n-settle-{queued}"), _final(visit))
        assert err.value.reason is Reason.VISIT_HAS_NO_FEES
    await w.app.settle_queue.stop()
    assert not w.store.state.accumulators and not w.store.state.accounts and not w.store.state.settlements
    assert set(w.store.state.keys) == {"n-open"}


async def test_the_batch_and_the_one_at_a_time_path_write_the_same() -> None:
    """Four visits of two persons settled one at a time and as one batch: the same money, lines,
    accumulators, balances, statuses and keys (the ids and times differ)."""

    async def run(batched: bool) -> FakeStore:
        w = World()
        w.eligibility.decisions["510100C0002"] = _decision(
            person_no="P510100000002", insured_region="510100", account_balance_fen=0, has_personal_account=False
        )
        cmds = []
        for i, card in enumerate((CARD, CARD, "510100C0002", "510100C0002")):
            v = await w.app.visits.open_visit(
                w.req(f"o{i}"),
                w.visit_cmd(
                    f"HV{i}", credential=CredentialRef(card_number=card), service_type=ServiceType.GENERAL_OUTPATIENT
                ),
            )
            await w.app.visits.upload_fees(
                w.req(f"f{i}"), UploadFeesCommand(v.visit_id, (fee(1, GLUCOSE, 1000 + i, 3000),))
            )
            cmds.append(SettleCommand(v.visit_id, use_account=True, interim=i == 0))
        if batched:
            w.app.settle_queue.start()
        await asyncio.gather(*(w.app.settle(w.req(f"s{i}"), c) for i, c in enumerate(cmds)))
        await w.app.settle_queue.stop()
        return w.store

    one, batch = await run(False), await run(True)

    def view(store: FakeStore) -> object:
        t = store.state
        by_request = {s.request_id: s for s in t.settlements.values()}
        visit_no = {v.visit_id: v.hospital_visit_no for v in t.visits.values()}
        return (
            sorted((r, s.result_json, s.flags, s.interim, visit_no[s.visit_id]) for r, s in by_request.items()),
            sorted(
                (visit_no[v], sorted((n, bool(u.settlement_id)) for n, u in ls.items())) for v, ls in t.lines.items()
            ),
            t.accumulators,
            t.accounts,
            sorted((v.hospital_visit_no, v.status, v.settled_stays, v.discharge_date) for v in t.visits.values()),
            sorted((k, op) for k, (op, _, _) in t.keys.items()),
        )

    assert view(one) == view(batch)
    assert len(batch.state.settlements) == 4


async def test_a_cancellation_mirrors_the_settlement_and_only_once() -> None:
    w = World()
    visit = await w.open_with_fees("c")
    s = await w.app.settle(w.req("c-settle"), _final(visit))
    c = await w.app.settling.cancel(w.req("c-cancel"), CancelSettlementCommand(s.record.settlement_id))
    t = w.store.state
    assert c.result.total_fen == -s.result.total_fen and c.record.cancels_settlement_id == s.record.settlement_id
    assert t.accumulators[(PERSON, TEST_DAY.year)].pooled_paid_fen == 0 and t.accounts[PERSON] == BALANCE
    assert t.visits[visit.visit_id].status is VisitStatus.OPEN and t.visits[visit.visit_id].settled_stays == 0
    assert not any(u.settlement_id for u in t.lines[visit.visit_id].values())  # its lines can be settled again
    with pytest.raises(DomainError) as err:
        await w.app.settling.cancel(w.req("c-cancel-2"), CancelSettlementCommand(s.record.settlement_id))
    assert err.value.reason is Reason.SETTLEMENT_ALREADY_REVERSED
    with pytest.raises(DomainError) as err:
        await w.app.settling.cancel(w.req("c-cancel-3", caller=OTHER), CancelSettlementCommand(s.record.settlement_id))
    assert err.value.reason is Reason.NOT_AUTHORISED_FOR_INSTITUTION


async def test_reversing_a_request_that_never_arrived_refuses_it_when_it_arrives() -> None:
    w = World()
    undone, cancellation = await w.app.settling.reverse_transaction(w.req("x-rev"), ReverseCommand("x-open"))
    assert (undone, cancellation) == (False, None)
    with pytest.raises(DomainError) as err:
        await w.app.visits.open_visit(w.req("x-open"), w.visit_cmd())
    assert err.value.reason is Reason.REQUEST_ID_REUSED
    assert not w.store.state.visits
    visit = await w.app.visits.open_visit(w.req("x-open-2"), w.visit_cmd())
    undone, _ = await w.app.settling.reverse_transaction(w.req("x-rev-2"), ReverseCommand("x-open-2"))
    assert undone and w.store.state.visits[visit.visit_id].status is VisitStatus.CANCELLED


async def test_the_visit_lifecycle_rules() -> None:
    w = World()
    visit = await w.open_with_fees("l")
    with pytest.raises(DomainError) as err:  # a second visit with the hospital's number
        await w.app.visits.open_visit(w.req("l-open-2"), w.visit_cmd())
    assert err.value.reason is Reason.VISIT_STATE_INVALID
    with pytest.raises(DomainError) as err:  # no discharge in the future
        await w.app.settle(w.req("l-future"), replace(_final(visit), discharge_date=TEST_DAY + dt.timedelta(days=1)))
    assert err.value.reason is Reason.VALIDATION_FAILED and err.value.violations[0].field == "discharge_date"
    with pytest.raises(DomainError) as err:  # trauma needs the declaration made at opening
        await w.app.visits.update_visit(w.req("l-up"), UpdateVisitCommand(visit.visit_id, diagnosis_codes=("S72.0",)))
    assert err.value.reason is Reason.TRAUMA_DECLARATION_REQUIRED
    await w.app.settle(w.req("l-interim"), SettleCommand(visit.visit_id, use_account=False, interim=True))
    with pytest.raises(DomainError) as err:  # the admission date is fixed once a stay settled
        await w.app.visits.update_visit(
            w.req("l-up-2"), UpdateVisitCommand(visit.visit_id, admission_date=TEST_DAY - dt.timedelta(days=9))
        )
    assert err.value.reason is Reason.VISIT_STATE_INVALID
    with pytest.raises(DomainError) as err:  # no cancelling a visit with a live settlement
        await w.app.visits.cancel_visit(w.req("l-cancel"), CancelVisitCommand(visit.visit_id))
    assert err.value.reason is Reason.VISIT_STATE_INVALID
    with pytest.raises(DomainError) as err:  # a settled line cannot be replaced
        await w.app.visits.upload_fees(w.req("l-fees-2"), UploadFeesCommand(visit.visit_id, (fee(1, BED, 1000, 1),)))
    assert err.value.reason is Reason.VISIT_STATE_INVALID
    assert w.store.state.visits[visit.visit_id].diagnosis_codes == ("I10",)  # none of the refusals wrote


async def test_a_declared_trauma_visit_keeps_its_declaration_and_emergency_flag() -> None:
    w = World()
    visit = await w.app.visits.open_visit(
        w.req("t-open"), w.visit_cmd(diagnosis_codes=("S72.0",), trauma=True, emergency=True)
    )
    stored = w.store.state.visits[visit.visit_id]
    assert stored.trauma_declared and stored.emergency
    updated = await w.app.visits.update_visit(
        w.req("t-up"), UpdateVisitCommand(visit.visit_id, diagnosis_codes=("S72.0", "S82.1"))
    )
    assert updated.diagnosis_codes == ("S72.0", "S82.1")


async def test_an_ineligible_person_opens_no_visit_and_the_key_stays_free() -> None:
    w = World()
    w.eligibility.decisions[CARD] = _decision(eligible=False, reasons=(Reason.FILING_REQUIRED.value,), guidance="file")
    with pytest.raises(DomainError) as err:
        await w.app.visits.open_visit(w.req("i-open"), w.visit_cmd())
    assert err.value.reason is Reason.FILING_REQUIRED
    assert not w.store.state.visits and not w.store.state.keys


async def test_a_failed_commit_leaves_nothing_behind() -> None:
    w = World()
    visit = await w.open_with_fees("f")
    w.store.fail_commits = 1
    with pytest.raises(ConnectionError):
        await w.app.settle(w.req("f-settle"), _final(visit))
    assert not w.store.state.settlements and "f-settle" not in w.store.state.keys
    again = await w.app.settle(w.req("f-settle"), _final(visit))  # the retry settles, once
    assert list(w.store.state.settlements) == [again.record.settlement_id]


async def test_outpatient_in_one_round_trip_and_no_manual_claim_of_a_stay_settled_directly() -> None:
    w = World()
    cmd = w.visit_cmd("OP1", service_type=ServiceType.GENERAL_OUTPATIENT, admission_date=TEST_DAY)
    c = await w.app.settling.settle_outpatient(
        w.req("o-settle"), SettleOutpatientCommand(cmd, (fee(1, GLUCOSE, 1000, 3000, TEST_DAY),), use_account=True)
    )
    assert c.visit.status is VisitStatus.SETTLED and c.visit.fee_line_count == 1
    assert w.eligibility.calls == 1
    with pytest.raises(DomainError) as err:
        await w.app.claims.submit_claim(
            w.req("o-claim"), SubmitClaimCommand(cmd, TEST_DAY, (fee(1, GLUCOSE, 1000, 3000),), "card reader down")
        )
    assert err.value.reason is Reason.STAY_ALREADY_PAID
    assert err.value.metadata["settlement_id"] == c.record.settlement_id
    assert not w.store.state.claims


async def test_the_feed_streams_settlements_in_commit_order() -> None:
    w = World()
    ids = []
    for i in range(3):
        visit = await w.open_with_fees(f"s{i}", visit_no=f"HV{i}")
        ids.append((await w.app.settle(w.req(f"s{i}-settle"), _final(visit))).record.settlement_id)
    seen = [(pos, rec.settlement_id) async for pos, rec, _ in w.app.feed.stream(1, False, None)]
    assert seen == [(2, ids[1]), (3, ids[2])]
