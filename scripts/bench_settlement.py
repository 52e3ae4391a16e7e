"""Settle under load, against a bare grpc.aio echo server measured in the same run.

    .venv/bin/python scripts/bench_settlement.py [--visits 2000] [--inflight 64] [--pg URL]

Starts the services as separate processes (settlement alone in its own, as deployed; filing and
eligibility in theirs; or all in one with --all-in-one), on PostgreSQL with durable commits
(PostgreSQL's default synchronous_commit=on), prepares 50-line visits for many persons (not
timed), then:
  1. unloaded Settle latency (one call in flight),
  2. Settle at --inflight calls in flight: calls/s, p50, p99,
  3. PreSettle at --inflight (nothing persisted),
  4. an echo server in its own process answering with a message of the Settle response's size,
     driven by the same client the same way;
  5. a *floor* server in its own process (FLOOR_SERVER below): the least work any correct
     implementation must do on this stack (grpc.aio, asyncpg, the same PostgreSQL). Its PreSettle
     parses the request, reads what the real PreSettle statement reads (concurrent calls share
     one statement, two statements at once) and answers with the bytes of a real response,
     computing nothing; its Settle reads the visits' lines through group commit (two batches at
     once, like the service) and writes one narrow row per call, durably. What it leaves out --
     the policy engine, the response built from the result, the settlement row with its result,
     the lines marked, the accumulators, the idempotency key, the outbox, monitoring,
     interceptors -- every correct Settle must still do, so the floor's ratio to the echo bounds
     what any implementation can reach here.
Reports each target of issue #17 as a ratio to the floor's figure of the same run (calls/s, server
and PostgreSQL CPU per call, unloaded latency), and the ratios to the echo. Noisy machines:
compare ratios, not absolutes. CPU is counted over process trees, so PostgreSQL backends (and
settlement workers, with --workers N) that end during a phase are still counted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "libs" / "contracts")]

from medsettle.common.v1 import types_pb2  # noqa: E402
from medsettle.eligibility.v1 import eligibility_pb2 as el  # noqa: E402
from medsettle.filing.v1 import filing_pb2  # noqa: E402
from medsettle.settlement.v1 import settlement_pb2 as st  # noqa: E402
from services.demo import CST, HOSPITAL, Clients, fee_lines, seed_registry  # noqa: E402

ECHO_SERVER = r"""
import asyncio, sys, grpc
size = int(sys.argv[2])
payload = b"x" * size
async def main():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", {
        "Call": grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=None, response_serializer=None)})])
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
async def echo(req, ctx):
    return payload
asyncio.run(main())
"""


FLOOR_SERVER = r"""
import asyncio, datetime as dt, sys, asyncpg, grpc
from medsettle.settlement.v1 import settlement_pb2 as st
from services.settlement.adapters.hot import _PG_PRESETTLE
dsn, port = sys.argv[1], sys.argv[2]
settle_answer, presettle_answer = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
LINES = ("SELECT visit_id, line_no, item_code, quantity_milli, unit_price_fen FROM fee_lines "
         "WHERE visit_id = ANY($1::text[])")
PRESETTLE_MANY = _PG_PRESETTLE.replace("v.visit_id = $1::text", "v.visit_id = ANY($1::text[])")
assert PRESETTLE_MANY != _PG_PRESETTLE
WRITE = ("INSERT INTO floor_settlements SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) "
         "ON CONFLICT DO NOTHING")
async def main():
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4)
    await pool.execute("CREATE TABLE IF NOT EXISTS floor_settlements "
                       "(request_id text PRIMARY KEY, visit_id text NOT NULL, total_fen int8 NOT NULL)")
    def grouped(run):  # calls queued while two batches run go together in the next (at most 64)
        queue, slots = asyncio.Queue(), asyncio.Semaphore(2)
        async def loop():
            while True:
                calls = [await queue.get()]
                await slots.acquire()
                while len(calls) < 64 and not queue.empty():
                    calls.append(queue.get_nowait())
                asyncio.create_task(run([c for c, _ in calls], [f for _, f in calls])).add_done_callback(
                    lambda t: slots.release())
        async def submit(request):
            fut = asyncio.get_running_loop().create_future()
            queue.put_nowait((request, fut))
            await fut
        asyncio.create_task(loop())
        return submit
    async def settle_batch(reqs, futs):  # group commit
        async with pool.acquire() as con, con.transaction():
            rows = await con.fetch(LINES, [r.visit_id for r in reqs])
            total = sum(r["unit_price_fen"] for r in rows)
            await con.execute(WRITE, [r.request_id for r in reqs], [r.visit_id for r in reqs], [total] * len(reqs))
        for fut in futs:
            fut.set_result(None)
    async def presettle_batch(reqs, futs):  # concurrent PreSettles share one statement
        async with pool.acquire() as con:
            await con.fetch(PRESETTLE_MANY, [r.visit_id for r in reqs], dt.date.today().year)
        for fut in futs:
            fut.set_result(None)
    settles, presettles = grouped(settle_batch), grouped(presettle_batch)
    async def settle(raw, ctx):
        await settles(st.SettleRequest.FromString(raw))
        return settle_answer
    async def presettle(raw, ctx):
        await presettles(st.PreSettleRequest.FromString(raw))
        return presettle_answer
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Floor", {
        "Settle": grpc.unary_unary_rpc_method_handler(settle),
        "PreSettle": grpc.unary_unary_rpc_method_handler(presettle)})])
    server.add_insecure_port("127.0.0.1:" + port)
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def _proc_stats() -> dict[int, tuple[str, int, float, float]]:
    """pid -> (command, parent pid, own CPU seconds, CPU seconds of its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        f = stat[stat.rindex(")") + 2 :].split()
        out[int(proc.name)] = (comm, int(f[1]), (int(f[11]) + int(f[12])) / tick, (int(f[13]) + int(f[14])) / tick)
    return out


def _tree_cpu(stats: dict[int, tuple[str, int, float, float]], root: int) -> float:
    """CPU of ``root`` and of every process under it, the ones that ended included: a process
    that ended was reaped by its parent, whose children's time (cutime + cstime) then holds it.
    So the total never goes down while the tree lives, whatever started or ended meanwhile."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            _, _, own, reaped = stats[pid]
            total += own + reaped
            todo.extend(children.get(pid, ()))
    return total


def _postmasters(stats: dict[int, tuple[str, int, float, float]]) -> list[int]:
    """PostgreSQL's root processes: postgres processes whose parent is not one."""
    return [
        p
        for p, (comm, ppid, _, _) in stats.items()
        if comm.startswith("postgres") and not stats.get(ppid, ("",))[0].startswith("postgres")
    ]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU used so far by process ``pid`` with its workers, and by PostgreSQL (every process of
    the cluster, also the backends that ended: see _tree_cpu). Linux /proc."""
    stats = _proc_stats()
    return _tree_cpu(stats, pid), sum(_tree_cpu(stats, root) for root in _postmasters(stats))


class Cpu:
    """CPU per call of one server (with its workers) and of PostgreSQL over the phases measured."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float, float]] = {}

    async def measure(self, name: str, pid: int, calls: int, run):  # type: ignore[no-untyped-def]
        before, client = cpu_seconds(pid), time.process_time()
        out = await run()
        after, client = cpu_seconds(pid), time.process_time() - client
        server, pg = ((b - a) / calls * 1000 for a, b in zip(before, after, strict=True))
        self.rows[name] = (server, pg, client / calls * 1000)
        return out

    def report(self) -> None:
        print("\nCPU per call (ms): the server's processes, PostgreSQL (all its processes), this client:")
        for name, (server, pg, client) in self.rows.items():
            print(f"  {name:<28}server {server:5.2f}   PostgreSQL {pg:5.2f}   client {client:5.2f}")


def verdicts(rows: list[tuple[str, float, str, float]]) -> None:
    """Each target: the measured ratio to the floor's figure of the same run, and whether it holds."""
    print("\nagainst the floor, same run (targets of issue #17):")
    for name, ratio, op, target in rows:
        ok = ratio >= target if op == ">=" else ratio <= target
        print(f"  {name:<34}{ratio:6.2f}   target {op} {target:<5}  {'met' if ok else 'MISSED'}")


def _profile(out: str | None, pid: int) -> subprocess.Popen[bytes] | None:
    if not out:
        return None
    cmd = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "-o", out, "--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the phase starts
    return proc


def _stop_profile(proc: subprocess.Popen[bytes] | None, out: str | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    print(f"  profile of the loaded Settle phase written to {out}")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


async def drive(call, n: int, inflight: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            t = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return n / (time.perf_counter() - start), latencies


def report(name: str, rate: float, lat: list[float]) -> None:
    print(f"  {name:<28}{rate:>10.0f} calls/s   p50 {pct(lat, 50):6.2f} ms   p99 {pct(lat, 99):6.2f} ms")


async def prepare(targets: str | dict[str, str], persons: int, visits: int) -> list[str]:
    c = Clients(targets)
    day = dt.datetime.now(CST).date()
    md = (("x-medsettle-institution", HOSPITAL),)
    await seed_registry(c, "bench")
    sem = asyncio.Semaphore(32)

    async def person(i: int) -> None:
        async with sem:
            pno = f"PB{i:08d}"
            await c.eligibility.UpsertInsuredPerson(
                el.UpsertInsuredPersonRequest(
                    request_id=f"bp-{i}",
                    person=el.InsuredPerson(
                        person_no=pno,
                        id_number=f"11010519800101{i % 10000:04d}",
                        name="bench",
                        insured_region_code="110100",
                        insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                        person_type=types_pb2.PERSON_TYPE_IN_SERVICE,
                        status=el.PERSON_STATUS_ACTIVE,
                        has_personal_account=True,
                        account_balance_fen=500_000,
                        card_number=f"BC{i:08d}",
                        card_serial="S1",
                    ),
                )
            )
            await c.filing.CreateFiling(
                filing_pb2.CreateFilingRequest(
                    request_id=f"bf-{i}",
                    person_no=pno,
                    insured_region_code="110100",
                    treatment_region_code="310100",
                    filing_type=types_pb2.FILING_TYPE_LONG_TERM_RESIDENT,
                    insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                    channel=filing_pb2.CHANNEL_APP,
                    commitment_signed=True,
                    start_date=types_pb2.Date(year=day.year, month=day.month, day=day.day),
                )
            )

    await asyncio.gather(*(person(i) for i in range(persons)))
    await asyncio.sleep(1.0)  # let the filings reach eligibility's index
    ids: list[str] = []

    async def visit(j: int) -> None:
        async with sem:
            cred = types_pb2.Credential(
                card=types_pb2.SocialSecurityCard(card_number=f"BC{j % persons:08d}", card_serial="S1")
            )
            v = (
                await c.settlement.OpenVisit(
                    st.OpenVisitRequest(
                        request_id=f"bo-{j}",
                        institution_code=HOSPITAL,
                        hospital_visit_no=f"BV{j}",
                        credential=cred,
                        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                        admission_date=types_pb2.Date(year=day.year, month=day.month, day=day.day),
                    ),
                    metadata=md,
                )
            ).visit
            await c.settlement.UploadFees(
                st.UploadFeesRequest(
                    request_id=f"bu-{j}",
                    institution_code=HOSPITAL,
                    visit_id=v.visit_id,
                    lines=fee_lines(50, j, "310100", day),
                ),
                metadata=md,
            )
            ids.append(v.visit_id)

    await asyncio.gather(*(visit(j) for j in range(visits)))
    await c.close()
    return ids


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=2000)
    # Concurrent settlements of one person serialise on their accumulator row: realistic load has
    # few of them, so by default nearly every visit is of its own person.
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument(
        "--all-in-one",
        action="store_true",
        help="serve every service from one process (default: settlement in its own process, as deployed)",
    )
    ap.add_argument(
        "--profile",
        metavar="OUT",
        help="record the settlement process with py-spy (on PATH) during the loaded Settle phase, "
        "as collapsed stacks (py-spy --format raw) in OUT",
    )
    ap.add_argument("--workers", type=int, default=1, help="settlement worker processes (medsettle serve --workers N)")
    ap.add_argument("--pg", default=os.environ.get("MEDSETTLE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432"))
    args = ap.parse_args()

    import asyncpg

    admin = await asyncpg.connect(args.pg.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    names = {s: f"medsettle_bench_{s}" for s in ("filing", "eligibility", "settlement", "clearing")}
    for n in names.values():
        await admin.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{n}"')
    sync = await admin.fetchval("SHOW synchronous_commit")
    await admin.close()
    env = {
        **os.environ,
        "MEDSETTLE_LOG_LEVEL": "WARNING",
        "MEDSETTLE_CLEARING_FOLLOW_FEED": "false",
        "MEDSETTLE_DB_POOL_SIZE": "20",
        "MEDSETTLE_DRAIN_SECONDS": "0",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'libs' / 'contracts'}",
    }
    for s, n in names.items():
        env[f"MEDSETTLE_{s.upper()}_DATABASE_URL"] = f"{args.pg}/{n}"
    subprocess.run(
        [sys.executable, "-m", "services.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    port, echo_port, floor_port = 50951, 50952, 50955
    if args.all_in_one:
        ports = {"all": port}
        targets: str | dict[str, str] = f"127.0.0.1:{port}"
    else:  # as deployed: settlement alone in its process (its peers elsewhere)
        ports = {"settlement": port, "filing": 50953, "eligibility": 50954}
        targets = {name: f"127.0.0.1:{p}" for name, p in ports.items()}
        targets["clearing"] = targets["settlement"]  # not called
        for name, p in ports.items():
            env[f"MEDSETTLE_{name.upper()}_TARGET"] = f"127.0.0.1:{p}"

    def serve(name: str, p: int) -> subprocess.Popen[bytes]:
        which = ["--all"] if name == "all" else [name]
        cmd = ["serve", *which, "--port", str(p), "--host", "127.0.0.1", "--no-migrate"]
        if name in ("all", "settlement") and args.workers > 1:
            cmd += ["--workers", str(args.workers)]
        return subprocess.Popen([sys.executable, "-m", "services.cli", *cmd], cwd=ROOT, env=env)

    servers = [serve(name, p) for name, p in ports.items()]
    echo = floor = None
    try:
        target = f"127.0.0.1:{port}"
        for p in ports.values():
            for _ in range(100):
                try:
                    async with grpc.aio.insecure_channel(f"127.0.0.1:{p}") as ch:
                        await asyncio.wait_for(ch.channel_ready(), 0.5)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        print(
            f"PostgreSQL synchronous_commit={sync}; preparing {args.visits} 50-line visits "
            f"for {args.persons} persons ..."
        )
        t = time.perf_counter()
        ids = await prepare(targets, args.persons, args.visits + 400)
        print(f"  prepared in {time.perf_counter() - t:.1f} s\n")
        md = (("x-medsettle-institution", HOSPITAL),)
        async with grpc.aio.insecure_channel(target) as ch:
            stub = st_grpc(ch)
            sample = await stub.PreSettle(st.PreSettleRequest(visit_id=ids[0], use_personal_account=True), metadata=md)
            settle_req_size = st.SettleRequest(
                request_id="x" * 20, institution_code=HOSPITAL, visit_id=ids[0], use_personal_account=True
            ).ByteSize()

            async def settle_call(i: int, offset: int = 0) -> None:
                await stub.Settle(
                    st.SettleRequest(
                        request_id=f"bs-{i + offset}",
                        institution_code=HOSPITAL,
                        visit_id=ids[i + offset],
                        use_personal_account=True,
                    ),
                    metadata=md,
                )

            cpu, pid = Cpu(), servers[0].pid
            rate, lat = await cpu.measure(
                "Settle unloaded", pid, 300, lambda: drive(lambda i: settle_call(i, 0), 300, 1)
            )
            print("Settle (one call in flight)")
            report("Settle unloaded", rate, lat)
            unloaded = lat
            profiler = _profile(args.profile, pid)
            rate_s, lat_s = await cpu.measure(
                "Settle", pid, args.visits, lambda: drive(lambda i: settle_call(i, 300), args.visits, args.inflight)
            )
            _stop_profile(profiler, args.profile)
            last = await stub.Settle(
                st.SettleRequest(
                    request_id="bs-0", institution_code=HOSPITAL, visit_id=ids[0], use_personal_account=True
                ),
                metadata=md,
            )
            resp_size = last.ByteSize()
            spare = ids[300 + args.visits :]
            rate_p, lat_p = await cpu.measure(
                "PreSettle",
                pid,
                args.visits,
                lambda: drive(
                    lambda i: stub.PreSettle(
                        st.PreSettleRequest(visit_id=spare[i % len(spare)], use_personal_account=True), metadata=md
                    ),
                    args.visits,
                    args.inflight,
                ),
            )
        answers = []
        for name, message in (("settle", last), ("presettle", sample)):
            path = Path(tempfile.gettempdir()) / f"medsettle-bench-{name}.bin"
            path.write_bytes(message.SerializeToString())
            answers.append(str(path))
        dsn = args.pg.replace("postgresql+asyncpg://", "postgresql://") + "/" + names["settlement"]
        floor = subprocess.Popen(
            [sys.executable, "-c", FLOOR_SERVER, dsn, str(floor_port), *answers], cwd=ROOT, env=env
        )
        echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(echo_port), str(resp_size)])
        await asyncio.sleep(1.0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}") as ch:
            call = ch.unary_unary("/bench.Echo/Call")
            payload = b"y" * settle_req_size
            await call(payload)
            rate_e, lat_e = await cpu.measure(
                "echo (Settle-sized)",
                echo.pid,
                args.visits,
                lambda: drive(lambda i: call(payload), args.visits, args.inflight),
            )
            presettle_payload = b"y" * st.PreSettleRequest(visit_id=ids[0], use_personal_account=True).ByteSize()
            call_p = ch.unary_unary("/bench.Echo/Call")
            rate_ep, lat_ep = await drive(lambda i: call_p(presettle_payload), args.visits, args.inflight)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{floor_port}") as ch:
            await asyncio.wait_for(ch.channel_ready(), 10)
            floor_settle = ch.unary_unary("/bench.Floor/Settle", request_serializer=st.SettleRequest.SerializeToString)
            floor_presettle = ch.unary_unary(
                "/bench.Floor/PreSettle", request_serializer=st.PreSettleRequest.SerializeToString
            )

            def fsettle(i: int):  # type: ignore[no-untyped-def]
                return floor_settle(
                    st.SettleRequest(
                        request_id=f"fs-{i}", institution_code=HOSPITAL, visit_id=ids[i], use_personal_account=True
                    )
                )

            _, lat_fu = await cpu.measure("floor Settle unloaded", floor.pid, 300, lambda: drive(fsettle, 300, 1))
            rate_f, lat_f = await cpu.measure(
                "floor Settle",
                floor.pid,
                args.visits,
                lambda: drive(lambda i: fsettle(300 + i), args.visits, args.inflight),
            )
            rate_fp, lat_fp = await cpu.measure(
                "floor PreSettle",
                floor.pid,
                args.visits,
                lambda: drive(
                    lambda i: floor_presettle(
                        st.PreSettleRequest(visit_id=spare[i % len(spare)], use_personal_account=True)
                    ),
                    args.visits,
                    args.inflight,
                ),
            )
        print(
            f"\nAt {args.inflight} calls in flight (Settle response {resp_size} B, PreSettle response "
            f"{sample.ByteSize()} B):"
        )
        report("Settle", rate_s, lat_s)
        report("PreSettle", rate_p, lat_p)
        report("echo (Settle-sized)", rate_e, lat_e)
        report("echo (PreSettle-sized)", rate_ep, lat_ep)
        report("floor Settle", rate_f, lat_f)
        report("floor PreSettle", rate_fp, lat_fp)
        print(
            f"\necho ratios: Settle/echo = {rate_s / rate_e:.2f}; PreSettle/echo = {rate_p / rate_ep:.2f}; "
            f"floor Settle/echo = {rate_f / rate_e:.2f}; floor PreSettle/echo = {rate_fp / rate_ep:.2f}"
        )
        print(
            f"unloaded Settle: p50 {pct(unloaded, 50):.2f} ms, p99 {pct(unloaded, 99):.2f} ms; "
            f"floor p50 {pct(lat_fu, 50):.2f} ms, p99 {pct(lat_fu, 99):.2f} ms"
        )
        print(f"median Settle latency under load: {statistics.median(lat_s) * 1000:.2f} ms")
        cpu.report()
        server_s, pg_s, _ = cpu.rows["Settle"]
        server_f, pg_f, _ = cpu.rows["floor Settle"]
        verdicts(
            [
                ("Settle calls/s", rate_s / rate_f, ">=", 0.6),
                ("PreSettle calls/s", rate_p / rate_fp, ">=", 0.7),
                ("server CPU per Settle", server_s / server_f, "<=", 2.0),
                ("PostgreSQL CPU per Settle", pg_s / pg_f, "<=", 1.5),
                ("unloaded Settle p50", pct(unloaded, 50) / pct(lat_fu, 50), "<=", 2.0),
                ("unloaded Settle p99", pct(unloaded, 99) / pct(lat_fu, 99), "<=", 3.0),
            ]
        )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(15)
        for helper in (echo, floor):
            if helper is not None:
                helper.terminate()
                helper.wait(5)


def st_grpc(ch: grpc.aio.Channel):  # type: ignore[no-untyped-def]
    from medsettle.settlement.v1 import settlement_pb2_grpc

    return settlement_pb2_grpc.SettlementServiceStub(ch)


if __name__ == "__main__":
    asyncio.run(main())
