"""Fault run: the suite one service per process on PostgreSQL, under load, with kill -9 of every
service and immediate stops of PostgreSQL at random; then the books are checked.

Not a test (it takes minutes and kills processes). What it does:

1. a PostgreSQL cluster: by default a private one (initdb in a temporary folder, its own port),
   so other users of the machine's server are never hit; ``--pg system`` uses the machine's
   cluster instead (``pg_ctlcluster <version> main stop -m immediate`` / ``start``, restored
   even when the run fails);
2. four fresh databases, migrated; filing, eligibility, settlement and clearing each in its own
   process (``medsettle serve <service>``), clearing following settlement's feed;
3. load: workers open inpatient visits, upload fees and settle them, settle outpatient visits in
   one call, and cancel some settlements; every call is retried with the SAME request_id until
   it is answered (any code but a definite refusal is retried), as the contracts say;
4. chaos for ``--seconds``: every few seconds one of the four services gets SIGKILL (and is
   restarted), or PostgreSQL is stopped immediately (and started again);
5. then, with everything up again: every request still open is retried until answered, clearing
   catches up, and the checks run:

   - acknowledged = stored: each acknowledged settlement and cancellation is stored once, with
     the acknowledged amounts, and nothing is stored that was never acknowledged;
   - stored = cleared: clearing holds exactly the stored settlements, to the fen;
   - the ledger sums to zero, and the fund expense it holds equals the cleared fund total;
   - every person-year accumulator is within its policy's caps; no account is negative.

Prints the figures and exits 0 when every check holds. Example::

    .venv/bin/python scripts/fault_run.py --seconds 180 --workers 6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "libs" / "contracts")]

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from libs.platform.errors import error_details  # noqa: E402
from medsettle.common.v1 import types_pb2  # noqa: E402
from medsettle.eligibility.v1 import eligibility_pb2 as el  # noqa: E402
from medsettle.filing.v1 import filing_pb2  # noqa: E402
from medsettle.settlement.v1 import settlement_pb2 as st  # noqa: E402
from services.demo import HOSPITAL, Clients, fee_lines, seed_registry  # noqa: E402

SERVICES = ("filing", "eligibility", "settlement", "clearing")
DAY = dt.date(2026, 7, 1)
CLOCK_START = "2026-07-01T09:00:00+08:00"
RETIREE = (
    "P110100000001",
    types_pb2.Credential(card=types_pb2.SocialSecurityCard(card_number="110100C0001", card_serial="S9A1B2C3")),
)
RESIDENT = (
    "P510100000002",
    types_pb2.Credential(card=types_pb2.SocialSecurityCard(card_number="510100C0002", card_serial="S7F6E5D4")),
)
# answered for good: retrying the same request cannot change the answer
DEFINITE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
MD = (("x-medsettle-institution", HOSPITAL),)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- PostgreSQL --------------------------------------------------------------------------------
class Postgres:
    """The cluster the run kills: private (default) or the machine's (``--pg system``)."""

    def __init__(self, mode: str, work: Path) -> None:
        self.mode = mode
        self.version = self._version()
        self.bin = Path(f"/usr/lib/postgresql/{self.version}/bin")
        self.data = work / "pg"
        self.port = free_port() if mode == "private" else 5432
        self.stops = 0

    @staticmethod
    def _version() -> str:
        out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout.split()
        if out:
            return out[0]
        return sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())[-1]

    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    @property
    def base_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"

    def create(self) -> None:
        if self.mode != "private":
            return
        self.data.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres")
        subprocess.run(
            self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"),
            check=True,
            capture_output=True,
        )
        self.start()

    def start(self) -> None:
        if self.mode == "private":
            opts = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c max_connections=200"
            subprocess.run(
                self._as_postgres(
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-l",
                    str(self.data.parent / "pg.log"),
                    "-w",
                    "start",
                ),
                check=True,
                capture_output=True,
            )
        else:
            subprocess.run(["pg_ctlcluster", self.version, "main", "start"], check=True, capture_output=True)

    def stop_immediate(self) -> None:
        self.stops += 1
        if self.mode == "private":
            cmd = self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        else:
            cmd = ["pg_ctlcluster", self.version, "main", "stop", "-m", "immediate"]
        subprocess.run(cmd, check=False, capture_output=True)

    def is_up(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def restore(self) -> None:
        """Up again, whatever happened (called in a finally)."""
        if not self.is_up():
            with contextlib.suppress(Exception):
                self.start()

    def destroy(self) -> None:
        if self.mode == "private":
            subprocess.run(
                self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                check=False,
                capture_output=True,
            )


async def pg_exec(base_url: str, statements: list[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(base_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres", timeout=10)
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


# -- the services --------------------------------------------------------------------------------
class Suite:
    def __init__(self, urls: dict[str, str], work: Path) -> None:
        self.ports = {s: free_port() for s in SERVICES}
        self.targets = {s: f"127.0.0.1:{p}" for s, p in self.ports.items()}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = {s: work / f"{s}.log" for s in SERVICES}
        self.kills: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.held: set[str] = set()  # killed on purpose, restarted by the chaos itself
        env = {
            **os.environ,
            "MEDSETTLE_DATA_DIR": str(work),
            "MEDSETTLE_DRAIN_SECONDS": "0.2",
            "MEDSETTLE_GRACE_SECONDS": "3",
            "MEDSETTLE_LOG_LEVEL": "WARNING",
            "MEDSETTLE_TEST_CLOCK_START": CLOCK_START,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "libs" / "contracts")]),
        }
        for s in SERVICES:
            env[f"MEDSETTLE_{s.upper()}_DATABASE_URL"] = urls[s]
            env[f"MEDSETTLE_{s.upper()}_TARGET"] = self.targets[s]
        self.env = env

    def start(self, service: str) -> None:
        self.procs[service] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "serve",
                service,
                "--port",
                str(self.ports[service]),
                "--host",
                "127.0.0.1",
                "--no-migrate",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.logs[service].open("ab"),
            stderr=subprocess.STDOUT,
        )

    def kill9(self, service: str) -> None:
        proc = self.procs.get(service)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.kills[service] += 1

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restarts a service that died (killed, or exited because its database was down)."""
        while not stop.is_set():
            for s in SERVICES:
                proc = self.procs.get(s)
                if s not in self.held and (proc is None or proc.poll() is not None):
                    self.start(s)
                    self.restarts[s] += 1
            await asyncio.sleep(0.5)

    async def serving(self, service: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                async with grpc.aio.insecure_channel(self.targets[service]) as ch:
                    resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{service} not serving after {within}s")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- load ------------------------------------------------------------------------------------
@dataclass
class Books:
    """What the clients were told."""

    acknowledged: dict[str, tuple[str, int]] = field(default_factory=dict)  # settlement_id -> (kind, fund fen)
    codes: Counter[str] = field(default_factory=Counter)  # every answer that was not OK, by code/reason
    retries: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0


class Load:
    def __init__(self, c: Clients, books: Books, deadline: list[float], n: int) -> None:
        self.c, self.books = c, books
        self.deadline = deadline  # [time after which a request still open is given up]
        retirees, residents = people(n)
        self.retirees = [RETIREE, *retirees]
        self.residents = [RESIDENT, *residents]

    async def call(self, name: str, fn: Any, req: Any, **kw: Any) -> Any | None:
        """Until answered; the same request (and request_id) every time."""
        pause = 0.05
        while True:
            try:
                return await fn(req, timeout=15, **kw)
            except grpc.aio.AioRpcError as exc:
                d = error_details(exc)
                self.books.codes[f"{name}:{exc.code().name}:{d.reason or '-'}"] += 1
                if exc.code() in DEFINITE:
                    self.books.refused[f"{name}:{d.reason}"] += 1
                    return None
                self.books.retries += 1
                if time.monotonic() > self.deadline[0]:
                    self.books.gave_up += 1
                    return None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    def ack(self, s: st.Settlement) -> None:
        kind = "cancellation" if s.cancels_settlement_id else "settlement"
        self.books.acknowledged[s.settlement_id] = (kind, s.breakdown.fund_total_fen)

    async def inpatient(self, tag: str, seed: int) -> None:
        opened = await self.call(
            "OpenVisit",
            self.c.settlement.OpenVisit,
            st.OpenVisitRequest(
                request_id=f"{tag}-open",
                institution_code=HOSPITAL,
                hospital_visit_no=tag,
                credential=self.retirees[seed // 2 % len(self.retirees)][1],
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=_date(DAY),
                diagnosis_codes=["I63.900"],
            ),
            metadata=MD,
        )
        if opened is None:
            return
        vid = opened.visit.visit_id
        up = st.UploadFeesRequest(
            request_id=f"{tag}-up", institution_code=HOSPITAL, visit_id=vid, lines=fee_lines(6, seed, "310100", DAY)
        )
        if await self.call("UploadFees", self.c.settlement.UploadFees, up, metadata=MD) is None:
            return
        req = st.SettleRequest(
            request_id=f"{tag}-settle", institution_code=HOSPITAL, visit_id=vid, use_personal_account=True
        )
        req.discharge_date.CopyFrom(_date(DAY))
        done = await self.call("Settle", self.c.settlement.Settle, req, metadata=MD)
        if done is None:
            return
        self.ack(done.settlement)
        if seed % 5 == 0:
            cancel = st.CancelSettlementRequest(
                request_id=f"{tag}-cancel", institution_code=HOSPITAL, settlement_id=done.settlement.settlement_id
            )
            cancelled = await self.call("CancelSettlement", self.c.settlement.CancelSettlement, cancel, metadata=MD)
            if cancelled is not None:
                self.ack(cancelled.cancellation)

    async def outpatient(self, tag: str, seed: int) -> None:
        req = st.SettleOutpatientRequest(
            request_id=f"{tag}-op",
            institution_code=HOSPITAL,
            hospital_visit_no=tag,
            credential=self.residents[seed // 2 % len(self.residents)][1],
            service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
            visit_date=_date(DAY),
            lines=fee_lines(3, seed, "310100", DAY),
        )
        done = await self.call("SettleOutpatient", self.c.settlement.SettleOutpatient, req, metadata=MD)
        if done is not None:
            self.ack(done.settlement)

    async def worker(self, n: int, stop: asyncio.Event, counter: list[int]) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            counter[0] += 1
            tag = f"f{n}-{i}"
            if i % 2:
                await self.outpatient(tag, n * 1000 + i)
            else:
                await self.inpatient(tag, n * 1000 + i)


def _date(d: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=d.year, month=d.month, day=d.day)


def people(n: int) -> tuple[list[tuple[str, types_pb2.Credential]], list[tuple[str, types_pb2.Credential]]]:
    """``n`` more Beijing retirees (inpatient visits) and ``n`` Chengdu residents (outpatient),
    so that the funds' annual caps are not all reached in the first minute."""

    def card(number: str, serial: str) -> types_pb2.Credential:
        return types_pb2.Credential(card=types_pb2.SocialSecurityCard(card_number=number, card_serial=serial))

    retirees = [(f"P1101001{k:05d}", card(f"110100C1{k:04d}", f"SR{k:06d}")) for k in range(n)]
    residents = [(f"P5101002{k:05d}", card(f"510100C2{k:04d}", f"SD{k:06d}")) for k in range(n)]
    return retirees, residents


async def seed(c: Clients, n: int) -> None:
    await seed_registry(c, "fault")
    retirees, residents = people(n)
    employee, resident = types_pb2.INSURANCE_TYPE_EMPLOYEE, types_pb2.INSURANCE_TYPE_RESIDENT
    for k, ((rp, rc), (dp, dc)) in enumerate(zip(retirees, residents, strict=True)):
        for person, cred, region, itype, ptype, idn, balance in (
            (rp, rc, "110100", employee, types_pb2.PERSON_TYPE_RETIRED, f"1101051954{k:07d}0", 500_000),
            (dp, dc, "510100", resident, types_pb2.PERSON_TYPE_RESIDENT_ADULT, f"5101041988{k:07d}0", 0),
        ):
            await c.eligibility.UpsertInsuredPerson(
                el.UpsertInsuredPersonRequest(
                    request_id=f"fault-person-{person}",
                    person=el.InsuredPerson(
                        person_no=person,
                        id_number=idn,
                        name=f"Person {person}",
                        insured_region_code=region,
                        insurance_type=itype,
                        person_type=ptype,
                        status=el.PERSON_STATUS_ACTIVE,
                        has_personal_account=balance > 0,
                        account_balance_fen=balance,
                        card_number=cred.card.card_number,
                        card_serial=cred.card.card_serial,
                        sex="F",
                        birth_date=types_pb2.Date(year=1954 if balance else 1988, month=3, day=12),
                    ),
                )
            )
    retiree_filing = ("110100", types_pb2.FILING_TYPE_RELOCATED_RETIREE, employee, None)
    resident_filing = ("510100", types_pb2.FILING_TYPE_REFERRAL, resident, DAY + dt.timedelta(days=200))
    filings = [((p, cred), retiree_filing) for p, cred in [RETIREE, *retirees]]
    filings += [((p, cred), resident_filing) for p, cred in [RESIDENT, *residents]]
    for (person, _), (region, ftype, itype, end) in filings:
        req = filing_pb2.CreateFilingRequest(
            request_id=f"fault-filing-{person}",
            person_no=person,
            insured_region_code=region,
            treatment_region_code="310100",
            filing_type=ftype,
            insurance_type=itype,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=_date(DAY - dt.timedelta(days=30)),
        )
        if end:
            req.end_date.CopyFrom(_date(end))
        await c.filing.CreateFiling(req)
    for (_, cred), _kind in filings:
        for _ in range(400):
            d = (
                await c.eligibility.CheckEligibility(
                    el.CheckEligibilityRequest(
                        credential=cred,
                        institution_code=HOSPITAL,
                        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                        service_date=_date(DAY),
                    )
                )
            ).decision
            if d.eligible:
                break
            await asyncio.sleep(0.05)


# -- chaos -----------------------------------------------------------------------------------
async def chaos(suite: Suite, pg: Postgres, stop: asyncio.Event, rng: random.Random, events: list[str]) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(3, 8))
        if stop.is_set():
            return
        target = rng.choice([*SERVICES, "postgres"])
        down = rng.uniform(0.5, 3.0)
        if target == "postgres":
            log(f"chaos: PostgreSQL stop -m immediate for {down:.1f}s")
            await asyncio.to_thread(pg.stop_immediate)
            await asyncio.sleep(down)
            await asyncio.to_thread(pg.restore)
        else:
            log(f"chaos: kill -9 {target}, restarted after {down:.1f}s")
            suite.held.add(target)
            suite.kill9(target)
            await asyncio.sleep(down)
            suite.held.discard(target)
        events.append(target)


# -- checks ----------------------------------------------------------------------------------
async def fetch(url: str, sql: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def checks(urls: dict[str, str], books: Books) -> dict[str, Any]:
    from libs.policy.model import Pool
    from libs.policy.tools import default_books

    stored = {
        r["settlement_id"]: (r["kind"], int(r["fund_total_fen"]))
        for r in await fetch(urls["settlement"], "SELECT settlement_id, kind, fund_total_fen FROM settlements")
    }
    # clearing catches up with settlement's feed
    cleared: dict[str, tuple[str, int]] = {}
    for _ in range(240):
        cleared = {
            r["settlement_id"]: (r["kind"], int(r["fund_total_fen"]))
            for r in await fetch(
                urls["clearing"], "SELECT settlement_id, kind, fund_total_fen FROM cleared_settlements"
            )
        }
        if cleared.keys() >= stored.keys():
            break
        await asyncio.sleep(0.5)
    ack = books.acknowledged
    ledger = await fetch(urls["clearing"], "SELECT account, sum(amount_fen) AS s FROM ledger_entries GROUP BY account")
    ledger_total = sum(int(r["s"]) for r in ledger)
    fund_expense = sum(int(r["s"]) for r in ledger if ":fund_expense:" in r["account"])  # one per fund
    policies, _ = default_books()
    over_caps: list[str] = []
    rows = await fetch(urls["settlement"], "SELECT * FROM person_year_accumulators")
    for r in rows:
        region, itype = ("110100", "employee") if r["person_no"].startswith("P1101") else ("510100", "resident")
        policy = policies.find(region, itype, dt.date(r["year"], 7, 1))
        caps = policy.pool_caps_fen
        if r["pooled_paid_fen"] > caps.get(Pool.INPATIENT, 1 << 62):
            over_caps.append(f"{r['person_no']} inpatient pool {r['pooled_paid_fen']}")
        if r["outpatient_pooled_paid_fen"] > caps.get(Pool.OUTPATIENT, 1 << 62):
            over_caps.append(f"{r['person_no']} outpatient pool {r['outpatient_pooled_paid_fen']}")
        sup = policy.supplementary
        if sup is not None and sup.annual_cap_fen is not None:
            cap = max(sup.annual_cap_fen, sup.hardship_annual_cap_fen or 0)
            if r["ci_paid_fen"] > cap:
                over_caps.append(f"{r['person_no']} supplementary {r['ci_paid_fen']}")
    negative = [
        r["person_no"]
        for r in await fetch(urls["settlement"], "SELECT * FROM personal_accounts")
        if r["balance_fen"] < 0
    ]
    result = {
        "person_years_checked": len(rows),
        "acknowledged": len(ack),
        "stored": len(stored),
        "cleared": len(cleared),
        "acknowledged_fund_fen": sum(f for _, f in ack.values()),
        "stored_fund_fen": sum(f for _, f in stored.values()),
        "cleared_fund_fen": sum(f for _, f in cleared.values()),
        "acknowledged_not_stored": sorted(set(ack) - set(stored))[:10],
        "stored_not_acknowledged": sorted(set(stored) - set(ack))[:10],
        "amount_mismatches": sorted(k for k in ack.keys() & stored.keys() if ack[k] != stored[k])[:10],
        "stored_not_cleared": sorted(set(stored) - set(cleared))[:10],
        "cleared_not_stored": sorted(set(cleared) - set(stored))[:10],
        "cleared_amount_mismatches": sorted(k for k in stored.keys() & cleared.keys() if stored[k] != cleared[k])[:10],
        "ledger_total_fen": ledger_total,
        "ledger_fund_expense_fen": fund_expense,
        "accumulators_over_caps": over_caps,
        "negative_accounts": negative,
    }
    result["ok"] = (
        not result["acknowledged_not_stored"]
        and not result["stored_not_acknowledged"]
        and not result["amount_mismatches"]
        and not result["stored_not_cleared"]
        and not result["cleared_not_stored"]
        and not result["cleared_amount_mismatches"]
        and result["acknowledged_fund_fen"] == result["stored_fund_fen"] == result["cleared_fund_fen"]
        and ledger_total == 0
        and fund_expense == result["cleared_fund_fen"]
        and not over_caps
        and not negative
    )
    return result


# -- the run ---------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="medsettle-fault-"))
    pg = Postgres(args.pg, work)
    suite: Suite | None = None
    try:
        log(f"PostgreSQL {pg.version} ({args.pg}) on port {pg.port}; work folder {work}")
        await asyncio.to_thread(pg.create)
        names = {s: f"medsettle_fault_{os.getpid()}_{s}" for s in SERVICES}
        await pg_exec(pg.base_url, [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values()])
        await pg_exec(pg.base_url, [f'CREATE DATABASE "{n}"' for n in names.values()])
        urls = {s: f"{pg.base_url}/{n}" for s, n in names.items()}
        from libs.platform import migrate

        for s, url in urls.items():
            await asyncio.to_thread(migrate.upgrade, s, url)
        suite = Suite(urls, work)
        for s in SERVICES:
            suite.start(s)
        for s in SERVICES:
            await suite.serving(s)
        c = Clients(suite.targets)
        await seed(c, args.persons)
        log("seeded; load and chaos start")

        books = Books()
        deadline = [float("inf")]
        load = Load(c, books, deadline, args.persons)
        stop_load, stop_chaos, stop_supervisor = asyncio.Event(), asyncio.Event(), asyncio.Event()
        events: list[str] = []
        counter = [0]
        supervisor = asyncio.create_task(suite.supervise(stop_supervisor))
        workers = [asyncio.create_task(load.worker(n, stop_load, counter)) for n in range(args.workers)]
        chaos_task = asyncio.create_task(chaos(suite, pg, stop_chaos, rng, events))
        await asyncio.sleep(args.seconds)
        stop_chaos.set()
        await chaos_task
        await asyncio.to_thread(pg.restore)
        log("chaos over; finishing every open request")
        stop_load.set()
        deadline[0] = time.monotonic() + args.finish_seconds
        await asyncio.gather(*workers)
        for s in SERVICES:
            await suite.serving(s)
        stop_supervisor.set()
        await supervisor
        result = await checks(urls, books)
        result.update(
            {
                "seconds": args.seconds,
                "workers": args.workers,
                "visits_started": counter[0],
                "kills": dict(suite.kills),
                "restarts": dict(suite.restarts),
                "postgres_stops": pg.stops,
                "retries": books.retries,
                "gave_up": books.gave_up,
                "refused": dict(books.refused),
                "failed_answers": dict(books.codes.most_common(25)),
            }
        )
        await c.close()
        print(json.dumps(result, indent=2, sort_keys=True))
        log("CHECKS HOLD" if result["ok"] else "CHECKS FAILED")
        with contextlib.suppress(Exception):
            await pg_exec(pg.base_url, [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values()])
        return 0 if result["ok"] else 1
    finally:
        if suite is not None:
            suite.stop_all()
        pg.restore()  # the machine's cluster is always left running
        pg.destroy()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=180, help="how long the chaos lasts (180)")
    p.add_argument("--workers", type=int, default=6, help="concurrent clients (6)")
    p.add_argument("--finish-seconds", type=float, default=120, help="time to finish open requests after (120)")
    p.add_argument("--pg", choices=("private", "system"), default="private", help="which cluster to kill (private)")
    p.add_argument("--persons", type=int, default=30, help="more insured persons of each kind (30)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    sys.exit(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
