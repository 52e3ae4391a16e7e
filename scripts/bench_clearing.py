"""Clearing at national scale (a benchmark script, not a test).

    .venv/bin/python scripts/bench_clearing.py [--rows 10000000] [--ingest-rows 200000] [--batch 2000]

1. creates a fresh PostgreSQL database (MEDSETTLE_TEST_PG server), migrates the clearing schema;
2. bulk-loads a month of settlements across all 31 provinces straight into the sub-ledger with
   COPY (asyncpg copy_records_to_table), about 1% of them cancellations;
3. times the plain SQL aggregate over the month and the monthly clearing (RunMonthlyClearing's
   use case) over the same rows, in the same run, and checks they agree to the fen;
4. times the feed ingest path (``ClearingService.ingest`` with batches, as the follower calls it)
   on fresh rows of another month.
Both are timed best of three, alternating (the first clearing run inserts the statements,
later ones rebuild the drafts). Targets: clearing <= 1.5 x the plain aggregate; ingest >= 20,000 settlements/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import time

import asyncpg

from libs.platform import migrate
from libs.platform.db import Database
from services.clearing.adapters.db import SqlClearingStore, cleared_settlements
from services.clearing.application.service import ClearingService
from services.clearing.domain.model import Category, FeedSettlement

PG = os.environ.get("MEDSETTLE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
PROVINCES = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
             "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65"]  # fmt: skip
CATS = [Category.OUTPATIENT, Category.INPATIENT, Category.PHARMACY]
COLUMNS = [c.name for c in cleared_settlements.columns]


def settlement(i: int, rnd: random.Random, year: int, month: int) -> FeedSettlement:
    ip = PROVINCES[int(rnd.paretovariate(1.2)) % 31]  # a few provinces send most patients
    tp = PROVINCES[(PROVINCES.index(ip) + 1 + int(rnd.paretovariate(1.0)) % 30) % 31]  # never ip itself
    cat = CATS[i % 7 % 3]
    total = rnd.randint(2_000, 2_000_000 if cat is Category.INPATIENT else 60_000)
    pooled = total * rnd.randint(30, 80) // 100
    large = total // 20 if cat is Category.INPATIENT else 0
    account = min(total - pooled - large, rnd.randint(0, 5_000))
    cancel = i % 100 == 99
    sign = -1 if cancel else 1
    return FeedSettlement(
        position=i, settlement_id=f"{'C' if cancel else 'S'}{year}{month:02d}{i:010d}",
        kind="cancellation" if cancel else "settlement",
        cancels_settlement_id=f"S{year}{month:02d}{i - 1:010d}" if cancel else "",
        institution_code=f"H{tp}{i % 500:05d}", insured_region=ip + "0100", treatment_region=tp + "0100", category=cat,
        settle_date=dt.date(year, month, 1 + i % 28), total_fen=sign * total, pooled_fund_fen=sign * pooled,
        large_amount_fen=sign * large, critical_illness_fen=0, assistance_fen=0, other_fund_fen=0,
        fund_total_fen=sign * (pooled + large), personal_account_fen=sign * account,
        cash_fen=sign * (total - pooled - large - account),
    )  # fmt: skip


def record(s: FeedSettlement, month_key: int) -> tuple[object, ...]:
    d = {
        "settlement_id": s.settlement_id, "position": s.position, "kind": s.kind,
        "cancels_settlement_id": s.cancels_settlement_id or None, "institution_code": s.institution_code,
        "insured_province": s.insured_province, "treatment_province": s.treatment_province,
        "insured_region": s.insured_region, "treatment_region": s.treatment_region, "category": s.category.value,
        "settle_date": s.settle_date, "total_fen": s.total_fen, "pooled_fund_fen": s.pooled_fund_fen,
        "large_amount_fen": s.large_amount_fen, "critical_illness_fen": 0, "assistance_fen": 0, "other_fund_fen": 0,
        "fund_total_fen": s.fund_total_fen, "personal_account_fen": s.personal_account_fen, "cash_fen": s.cash_fen,
        "clearing_month": month_key,
    }  # fmt: skip
    return tuple(d[c] for c in COLUMNS)


PLAIN = """
SELECT insured_province, treatment_province, category,
       SUM(CASE WHEN kind = 'settlement' THEN 1 ELSE -1 END), SUM(total_fen), SUM(pooled_fund_fen),
       SUM(large_amount_fen), SUM(critical_illness_fen), SUM(assistance_fen), SUM(other_fund_fen),
       SUM(fund_total_fen), SUM(personal_account_fen), SUM(cash_fen)
FROM cleared_settlements WHERE clearing_month = $1
GROUP BY insured_province, treatment_province, category
"""


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--ingest-rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--database", default="medsettle_bench_clearing")
    ap.add_argument("--keep", action="store_true", help="keep the loaded database (default: reload)")
    args = ap.parse_args()
    year, month = 2026, 10
    admin = PG.replace("postgresql+asyncpg://", "postgresql://")
    url = f"{PG}/{args.database}"
    dsn = f"{admin}/{args.database}"
    conn = await asyncpg.connect(f"{admin}/postgres")
    await conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{args.database}"')
    await conn.close()
    await asyncio.to_thread(migrate.upgrade, "clearing", url)

    conn = await asyncpg.connect(dsn)
    rnd = random.Random(7)
    t0 = time.perf_counter()
    chunk = 250_000
    for start in range(1, args.rows + 1, chunk):
        recs = [
            record(settlement(i, rnd, year, month), year * 100 + month)
            for i in range(start, min(start + chunk, args.rows + 1))
        ]
        await conn.copy_records_to_table("cleared_settlements", records=recs, columns=COLUMNS)
    await conn.execute(
        "INSERT INTO feed_cursor (feed, position, updated_at) VALUES ('settlements', $1, now())", args.rows
    )
    await conn.execute("VACUUM ANALYZE cleared_settlements")
    load = time.perf_counter() - t0
    print(f"loaded {args.rows:,} settlements with COPY in {load:.1f} s ({args.rows / load:,.0f}/s)")

    # best of three for each, alternating, so both see the same cache state
    db = Database(url)
    svc = ClearingService(SqlClearingStore(db))
    t_plain = t_run = float("inf")
    for k in range(3):
        t0 = time.perf_counter()
        plain = await conn.fetch(PLAIN, year * 100 + month)
        t_plain = min(t_plain, time.perf_counter() - t0)
        t0 = time.perf_counter()
        statements = await svc.run_monthly(f"bench-run-{k}", "fp", year, month, None)
        t_run = min(t_run, time.perf_counter() - t0)
    await conn.close()
    plain_due = sum(int(r[10]) for r in plain)
    assert sum(s.amount_due_fen for s in statements) == plain_due, "clearing disagrees with the plain aggregate"
    print(f"plain SQL aggregate:   {t_plain:.2f} s ({len(plain)} groups)")
    print(
        f"monthly clearing:      {t_run:.2f} s ({len(statements)} statements) = {t_run / t_plain:.2f} x the aggregate"
    )
    print(f"  total due {plain_due / 100:,.2f} yuan, identical to the aggregate")

    n = args.ingest_rows
    rnd = random.Random(11)
    items = [settlement(args.rows + i, rnd, year, month + 1) for i in range(1, n + 1)]
    t0 = time.perf_counter()
    for k in range(0, n, args.batch):
        await svc.ingest(items[k : k + args.batch])
    t_ing = time.perf_counter() - t0
    print(f"feed ingest:           {n:,} settlements in {t_ing:.2f} s = {n / t_ing:,.0f}/s (batches of {args.batch})")
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
