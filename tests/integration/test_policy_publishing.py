"""Publishing policies to a running suite: a bureau's own folder (MEDSETTLE_POLICY_DIRS) is watched;
a new valid file takes effect without a restart and is named by its version in the next
settlement; a broken one is refused and nothing changes; every settlement can be recomputed
with exactly the versions it used, also after the files changed."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.platform import policies as policy_sources
from libs.platform.clock import ShiftedClock
from libs.platform.settings import SERVICES, Settings
from libs.policy.loader import DATA_DIR, PolicyStore
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from services.suite import start
from tests.integration.settlement.helpers import (
    RETIREE_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    rpc_error,
    settle,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db

DAY = dt.date(2027, 3, 1)
SAMPLE = DATA_DIR / "policies" / "110100-employee-2027.yaml"


def publish(folder: Path, name: str, text: str) -> None:
    """As a bureau's deployment would: write aside, then rename into place (atomic)."""
    tmp = folder / "policies" / f".{name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(folder / "policies" / name)


def version_2(effective_from: dt.date, retired_tier3_bps: int) -> str:
    text = SAMPLE.read_text(encoding="utf-8")
    text = text.replace("version: 110100-employee-2027.1", "version: 110100-employee-2027.2")
    text = text.replace("effective_from: 2027-01-01", f"effective_from: {effective_from.isoformat()}")
    old = "        retired: [9400, 9400, 9220, 9100]\n"
    assert old in text
    return text.replace(old, f"        retired: [9400, 9400, 9220, {retired_tier3_bps}]\n", 1)


@pytest.fixture
async def published(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[World, ShiftedClock, Path, PolicyStore]]:
    folder = tmp_path / "beijing-bureau"
    shutil.copytree(DATA_DIR, folder)
    clock = ShiftedClock.at_cst(DAY)
    ours = settings.model_copy(update={"policy_dirs": str(folder), "policy_poll_seconds": 0.05})
    host = await start(ours, SERVICES, port=0, run_migrations=False, clock=clock)
    w = await setup_world(f"127.0.0.1:{host.port}", day=DAY, file_resident=False)
    try:
        yield w, clock, folder, policy_sources.store_for(ours)
    finally:
        await w.c.close()
        await host.stop(drain=False)


async def settle_one(w: World, tag: str, day: dt.date) -> st.Settlement:
    w.day = day
    visit = await open_visit(w, f"{tag}-open", visit_no=f"HV-{tag}")
    await upload(w, f"{tag}-fees", visit.visit_id, lines(8, len(tag), day))
    return await settle(w, f"{tag}-settle", visit.visit_id)


async def policy_named_for(w: World, day: dt.date) -> str:
    req = el.CheckEligibilityRequest(
        credential=RETIREE_CARD, institution_code=HOSPITAL, service_type=1, service_date=date(day)
    )
    return (await w.c.eligibility.CheckEligibility(req)).decision.policy_version


async def wait_for(w: World, day: dt.date, prefix: str) -> str:
    for _ in range(200):
        version = await policy_named_for(w, day)
        if version.startswith(prefix):
            return version
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prefix} never took effect")


async def recompute(w: World, settlement_id: str) -> st.RecomputeSettlementResponse:
    return await w.c.settlement.RecomputeSettlement(
        st.RecomputeSettlementRequest(institution_code=HOSPITAL, settlement_id=settlement_id), metadata=md()
    )


async def test_a_published_policy_takes_effect_on_its_date_and_every_settlement_recomputes(
    published: tuple[World, ShiftedClock, Path, PolicyStore],
    capfd: pytest.CaptureFixture[str],
) -> None:
    w, clock, folder, store = published
    before = await settle_one(w, "a", DAY)
    assert before.breakdown.policy_version.startswith("110100-employee-2027.1@")

    # The Beijing bureau publishes 2027.2, effective tomorrow, into its own folder.
    publish(folder, "110100-employee-2027.2.yaml", version_2(DAY + dt.timedelta(days=1), 9600))
    v2 = await wait_for(w, DAY + dt.timedelta(days=1), "110100-employee-2027.2@")
    today = await settle_one(w, "b", DAY)
    assert today.breakdown.policy_version == before.breakdown.policy_version  # not yet in effect

    clock.advance(dt.timedelta(days=1))
    tomorrow = await settle_one(w, "c", DAY + dt.timedelta(days=1))
    assert tomorrow.breakdown.policy_version == v2
    ratio_step = next(t for t in tomorrow.breakdown.trace if t.step == "pooled_fund")
    assert "96%" in ratio_step.parameter  # retired, tier 3, first band: the new ratio

    for s in (before, today, tomorrow):
        again = await recompute(w, s.settlement_id)
        assert again.identical
        assert again.recomputed.policy_version == s.breakdown.policy_version
        assert again.recomputed.fund_total_fen == s.breakdown.fund_total_fen

    # A broken file is refused with a log line naming its problem; the set in force stays.
    in_force = store.current.versions
    capfd.readouterr()
    publish(
        folder, "110100-employee-2027.3.yaml", version_2(DAY + dt.timedelta(days=2), 9600).replace("9600]", "0.96]")
    )
    for _ in range(100):
        logged = capfd.readouterr()
        if "policy_set_refused" in logged.out + logged.err:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the broken file was not refused in the log")
    assert "110100-employee-2027.3.yaml:services.inpatient.segments[0].ratio_bps.retired[3]" in logged.out + logged.err
    assert store.current.versions == in_force
    after_broken = await settle_one(w, "d", DAY + dt.timedelta(days=1))
    assert after_broken.breakdown.policy_version == v2

    # The bureau corrects 2027.2 in place (same label, new content): a new version by content
    # hash; the settlements made under the old content still recompute with it.
    (folder / "policies" / "110100-employee-2027.3.yaml").unlink()
    publish(folder, "110100-employee-2027.2.yaml", version_2(DAY + dt.timedelta(days=1), 9700))
    v2b = await wait_for(w, DAY + dt.timedelta(days=1), "110100-employee-2027.2@")
    for _ in range(200):
        if v2b != v2:
            break
        await asyncio.sleep(0.05)
        v2b = await policy_named_for(w, DAY + dt.timedelta(days=1))
    assert v2b != v2 and v2b.split("@")[0] == v2.split("@")[0]
    corrected = await settle_one(w, "e", DAY + dt.timedelta(days=1))
    assert corrected.breakdown.policy_version == v2b
    again = await recompute(w, tomorrow.settlement_id)
    assert again.identical and again.recomputed.policy_version == v2


async def test_recompute_refusals(published: tuple[World, ShiftedClock, Path, PolicyStore]) -> None:
    w, _, _, _ = published
    s = await settle_one(w, "a", DAY)
    exc = await rpc_error(
        w.c.settlement.RecomputeSettlement(
            st.RecomputeSettlementRequest(institution_code="H31010400002", settlement_id=s.settlement_id),
            metadata=md("H31010400002"),
        )
    )
    assert exc.code().name == "PERMISSION_DENIED"
    exc = await rpc_error(recompute(w, "S-NOPE"))
    assert exc.code().name == "NOT_FOUND"
    exc = await rpc_error(recompute(w, ""))
    assert exc.code().name == "INVALID_ARGUMENT"


async def test_a_version_stays_addressable_after_its_file_changed_and_the_service_restarted(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "beijing-bureau"
    shutil.copytree(DATA_DIR, folder)
    publish(folder, "110100-employee-2027.2.yaml", version_2(DAY, 9600))
    ours = settings.model_copy(update={"policy_dirs": str(folder), "policy_poll_seconds": 60.0})
    host = await start(ours, SERVICES, port=0, run_migrations=False, clock=ShiftedClock.at_cst(DAY))
    w = await setup_world(f"127.0.0.1:{host.port}", day=DAY, file_resident=False)
    try:
        s = await settle_one(w, "a", DAY)
        assert s.breakdown.policy_version.startswith("110100-employee-2027.2@")
    finally:
        await w.c.close()
        await host.stop(drain=False)

    # The file is corrected in place and the service restarts: the old content is in no file.
    publish(folder, "110100-employee-2027.2.yaml", version_2(DAY, 9700))
    policy_sources.forget_stores()
    host = await start(ours, SERVICES, port=0, run_migrations=False, clock=ShiftedClock.at_cst(DAY))
    w.c = type(w.c)(f"127.0.0.1:{host.port}")
    try:
        assert s.breakdown.policy_version not in policy_sources.store_for(ours).current.versions
        again = await recompute(w, s.settlement_id)
        assert again.identical and again.recomputed.policy_version == s.breakdown.policy_version
    finally:
        await w.c.close()
        await host.stop(drain=False)
