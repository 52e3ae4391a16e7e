"""Benchmark the policy engine: median and p99 time of settle() for 50- and 200-line visits.

Plain script (not a test):  .venv/bin/python scripts/bench_policy.py [--rounds N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from libs.policy import Accumulators, InsuranceType, default_books, generate_catalogue, generate_visit, reverse, settle


def _measure(fn, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    for _ in range(min(200, rounds)):
        fn()
    samples = []
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.99) - 1] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    policies, _ = default_books()
    catalogue = generate_catalogue("110100", seed=7, n_items=5000)
    import datetime

    day = datetime.date(2026, 6, 1)
    policy = policies.find("110100", InsuranceType.EMPLOYEE, day)
    acc = Accumulators(2026, account_balance_fen=500_000)
    rows = []
    for n in (50, 200):
        visit = generate_visit(
            catalogue,
            seed=n,
            n_lines=n,
            n_refunds=n // 25,
            settle_date=day,
            use_personal_account=True,
            assistance_category="low_income",
        )
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(2000):
                settle(policy, catalogue, visit, acc)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        med, p99 = _measure(lambda v=visit: settle(policy, catalogue, v, acc), args.rounds)
        rows.append((f"settle {n} lines", med, p99))
        result = settle(policy, catalogue, visit, acc)
        med, p99 = _measure(lambda r=result: reverse(r), args.rounds)
        rows.append((f"reverse {n} lines", med, p99))
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds each, catalogue {len(catalogue.items)} items")
    print(f"{'case':<20} {'median µs':>10} {'p99 µs':>10}")
    for name, med, p99 in rows:
        print(f"{name:<20} {med:>10.1f} {p99:>10.1f}")


if __name__ == "__main__":
    main()
