"""Identity and logs (#15 item 7): no line at any level carries SQL parameters (SQLite at DEBUG),
the standard library's lines (alembic, SQLAlchemy, grpc) are JSON like structlog's, start-up
included, and every line a call writes, deep inside its use case too, names its request id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import text

from libs.platform.db import Database
from libs.platform.host import Host
from libs.platform.logs import configure_logging
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import RETIREE_CARD, date, md, setup_world

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parents[2]
SECRET = "PARAM-7f3a9c"  # a value that must never reach a log line


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    structlog.reset_defaults()
    logging.basicConfig(force=True, level=logging.WARNING)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("echo", [False, True])
async def test_no_sql_parameter_reaches_a_log_line_even_at_debug_on_sqlite(
    captured: io.StringIO, tmp_path: Path, echo: bool
) -> None:
    configure_logging("DEBUG", json=True, stream=captured)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", echo=echo)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x TEXT)"))
            await conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": SECRET})
            assert (await conn.execute(text("SELECT x FROM t WHERE x = :x"), {"x": SECRET})).scalar() == SECRET
    finally:
        await db.engine.dispose()
    lines = _lines(captured)  # every line parses as JSON
    assert any("INSERT INTO t" in str(line["event"]) for line in lines), "statements are logged at DEBUG"
    assert SECRET not in captured.getvalue()


def test_standard_library_lines_are_json_with_their_logger(captured: io.StringIO) -> None:
    configure_logging("INFO", json=True, stream=captured)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s -> %s", "0001", "0002")
    logging.getLogger("grpc._cython.cygrpc").error("card 110105195403120027 refused")
    first, second = _lines(captured)
    assert first["event"] == "Running upgrade 0001 -> 0002" and first["logger"] == "alembic.runtime.migration"
    assert second["level"] == "error" and second["event"] == "card 110105********0027 refused"


def test_migrate_at_start_up_writes_only_json_lines(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MEDSETTLE_DATA_DIR": str(tmp_path),
        "MEDSETTLE_LOG_LEVEL": "DEBUG",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "libs" / "contracts")]),
    }
    for s in ("filing", "eligibility", "settlement", "clearing"):
        env.pop(f"MEDSETTLE_{s.upper()}_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "migrate", "filing"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert any("Running upgrade" in line for line in lines), done.stderr
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    assert not bad, bad[:5]


async def test_every_line_of_a_call_names_its_request_id(suite: Host, captured: io.StringIO) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    configure_logging("INFO", json=True, stream=captured)
    try:
        visit = await w.c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id="rid-open-1",
                institution_code=HOSPITAL,
                hospital_visit_no="HV-LOG-1",
                credential=RETIREE_CARD,
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=date(w.day),
                diagnosis_codes=["K35.800"],
            ),
            metadata=md(),
        )
        await w.c.settlement.CancelVisit(
            st.CancelVisitRequest(request_id="rid-cancel-1", institution_code=HOSPITAL, visit_id=visit.visit.visit_id),
            metadata=md(),
        )
    finally:
        await w.c.close()
    lines = _lines(captured)
    opened = [line for line in lines if line["event"] == "visit_opened"]  # written inside the use case
    assert opened and all(line["request_id"] == "rid-open-1" for line in opened), opened
    of_calls = [line for line in lines if str(line.get("rpc_method", "")).endswith(("/OpenVisit", "/CancelVisit"))]
    assert of_calls and all(line.get("request_id") in ("rid-open-1", "rid-cancel-1") for line in of_calls), of_calls


async def test_a_settle_committed_in_a_group_commit_batch_names_its_request_id(
    suite: Host, captured: io.StringIO
) -> None:
    """Settle calls arriving together commit in one batch, logged from the batch's own task: each
    line still names its own call's request id."""
    import asyncio

    from tests.integration.settlement.helpers import lines, open_visit, upload

    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    visits = []
    for i in range(6):
        v = await open_visit(w, f"gl-open-{i}", service=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT)
        await upload(w, f"gl-up-{i}", v.visit_id, lines(3, i + 1, w.day))
        visits.append(v.visit_id)
    configure_logging("INFO", json=True, stream=captured)
    try:
        settled = await asyncio.gather(
            *(
                w.c.settlement.Settle(
                    st.SettleRequest(request_id=f"gl-settle-{i}", institution_code=HOSPITAL, visit_id=vid),
                    metadata=md(),
                )
                for i, vid in enumerate(visits)
            )
        )
    finally:
        await w.c.close()
    by_id = {s.settlement.settlement_id: s.settlement.request_id for s in settled}
    committed = [line for line in _lines(captured) if line["event"] == "settlement_committed"]
    assert len(committed) == len(visits)
    assert all(line["request_id"] == by_id[line["settlement_id"]] for line in committed), committed
