"""Operator reports: ``python -m services.clearing.report REPORT --month YYYY-MM [--png FILE]``.

Reads through the clearing service's own application layer, read-only, against its database
(``--database-url``, else ``MEDSETTLE_CLEARING_DATABASE_URL``, else the local SQLite default), so
it works on a database copy or replica without a running server and without new RPCs.

Reports:
  statements   the month's statements per province pair; PNG: heat map insured x treatment
  fund-use     fund use by insured province and category, flagging outliers; PNG: bar chart
  direct       direct-settlement figures per pair and category (funds, ratios)
  ledger       ledger balances (optionally --prefix province:11:)
  verifications  expense verification requests and their deadlines
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from libs.platform.clock import system_clock, today_cst
from libs.platform.db import Database
from services.clearing.adapters.db import SqlClearingStore
from services.clearing.application.reports import PairFigures, Reports
from services.clearing.domain.model import Category, Statement, payment_deadline

# Outlier rule for "fund use": a pair's average fund payment per settlement above this multiple
# of the national average for the same category is flagged for an expense verification.
OUTLIER_FACTOR = 1.5


def yuan(fen: int) -> str:
    """Exact yuan with thousands separators (no float)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 2) -> str:
    """A plain text table; the first ``left`` columns are text (left-aligned), the rest figures."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = "  ".join(f"{{:{'<' if i < left else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in cells[1:]]
    return "\n".join(lines)


def statements_table(sts: Sequence[Statement]) -> str:
    rows = []
    for s in sts:
        adj = sum(ln.adjustment_fen for ln in s.lines)
        rej = sum(ln.rejected_fen for ln in s.lines)
        fund = sum(ln.fund_total_fen for ln in s.lines)
        account = sum(ln.personal_account_fen for ln in s.lines)
        rows.append(
            (
                s.insured_province,
                s.treatment_province,
                s.status.value,
                s.settlement_count,
                yuan(fund),
                yuan(account),
                yuan(adj),
                yuan(rej),
                yuan(s.amount_due_fen),
                s.signing_date or "-",
                payment_deadline(s.signing_date) if s.signing_date else "-",
            )
        )
    total = sum(s.amount_due_fen for s in sts)
    out = table(
        (
            "insured",
            "treatment",
            "status",
            "count",
            "fund",
            "account",
            "adjust",
            "rejected",
            "due",
            "signed",
            "pay inst. by",
        ),
        rows,
        left=3,
    )
    return f"{out}\n{len(sts)} statement(s), total due {yuan(total)} yuan"


def fund_use(figs: Sequence[PairFigures]) -> tuple[str, list[tuple[str, str, Category, float, float]]]:
    national: dict[Category, list[int]] = defaultdict(lambda: [0, 0])
    per_ip: dict[tuple[str, Category], list[int]] = defaultdict(lambda: [0, 0, 0])
    for f in figs:
        national[f.category][0] += f.line.fund_total_fen
        national[f.category][1] += f.line.count
        acc = per_ip[(f.insured_province, f.category)]
        acc[0] += f.line.count
        acc[1] += f.line.medical_total_fen
        acc[2] += f.line.fund_total_fen
    avg = {c: (v[0] / v[1] if v[1] else 0.0) for c, v in national.items()}
    rows = []
    for (ip, cat), (n, med, fund) in sorted(per_ip.items()):
        per = fund / n if n else 0.0
        ratio = fund / med if med else 0.0
        rows.append(
            (
                ip,
                cat.value,
                n,
                yuan(med),
                yuan(fund),
                f"{ratio:.1%}",
                yuan(round(per)),
                f"{per / avg[cat]:.2f}" if avg[cat] else "-",
            )
        )
    flagged = [
        (f.insured_province, f.treatment_province, f.category, f.line.fund_total_fen / f.line.count, avg[f.category])
        for f in figs
        if f.line.count > 0
        and avg[f.category]
        and f.line.fund_total_fen / f.line.count > OUTLIER_FACTOR * avg[f.category]
    ]
    text = table(
        ("insured", "category", "count", "medical", "fund", "fund/medical", "fund/settl.", "vs national"), rows
    )
    if flagged:
        text += f"\n\npairs paying over {OUTLIER_FACTOR}x the national average fund per settlement (verify):\n"
        text += table(
            ("insured", "treatment", "category", "fund/settl.", "national"),
            [(ip, tp, c.value, yuan(round(p)), yuan(round(a))) for ip, tp, c, p, a in flagged],
        )
    return text, flagged


def direct_table(figs: Sequence[PairFigures]) -> str:
    rows = [
        (
            f.insured_province,
            f.treatment_province,
            f.category.value,
            f.line.count,
            yuan(f.line.medical_total_fen),
            yuan(f.line.pooled_fund_fen),
            yuan(f.line.large_amount_fen + f.line.critical_illness_fen),
            yuan(f.line.assistance_fen),
            yuan(f.line.fund_total_fen),
            yuan(f.line.personal_account_fen),
            f"{f.line.fund_total_fen / f.line.medical_total_fen:.1%}" if f.line.medical_total_fen else "-",
        )
        for f in figs
    ]
    return table(
        (
            "insured",
            "treatment",
            "category",
            "count",
            "medical",
            "pooled",
            "large+critical",
            "assistance",
            "fund",
            "account",
            "reimb.",
        ),
        rows,
    )


def heat_map(sts: Sequence[Statement], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    ips = sorted({s.insured_province for s in sts})
    tps = sorted({s.treatment_province for s in sts})
    grid = np.full((len(ips), len(tps)), np.nan)
    for s in sts:
        grid[ips.index(s.insured_province), tps.index(s.treatment_province)] = s.amount_due_fen / 100 / 10_000
    positive = grid[np.isfinite(grid) & (grid > 0)]
    # a log scale: a few pairs carry most of the money; linear would leave the rest blank
    norm = LogNorm(vmin=max(positive.min(), 0.01), vmax=positive.max()) if positive.size else None
    cmap = plt.get_cmap("YlOrRd").with_extremes(bad="#e8e8e8")  # grey: nothing due for the pair
    fig, ax = plt.subplots(figsize=(max(6, 0.38 * len(tps) + 3), max(5, 0.34 * len(ips) + 2)))
    im = ax.imshow(np.ma.masked_where(~(grid > 0), grid), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(tps)), tps, fontsize=8)
    ax.set_yticks(range(len(ips)), ips, fontsize=8)
    ax.set_xlabel("treatment province (is owed)")
    ax.set_ylabel("insured province (owes)")
    ax.set_title(f"{title}\n(log colour scale; grey: nothing due)")
    fig.colorbar(im, ax=ax, label="amount due (10k yuan)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fund_chart(figs: Sequence[PairFigures], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    ips = sorted({f.insured_province for f in figs})
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(ips) + 2), 4.5))
    bottom = [0.0] * len(ips)
    for cat in Category:
        vals = [
            sum(f.line.fund_total_fen for f in figs if f.insured_province == ip and f.category is cat) / 100 / 10_000
            for ip in ips
        ]
        ax.bar(ips, vals, bottom=bottom, label=cat.value)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xlabel("insured province")
    ax.set_ylabel("fund paid out of province (10k yuan)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title(title)
    ax.legend()
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _month(text: str) -> tuple[int, int]:
    d = dt.datetime.strptime(text, "%Y-%m")
    return d.year, d.month


async def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.clearing.report", description=__doc__.split("\n")[0])
    p.add_argument("report", choices=("statements", "fund-use", "direct", "ledger", "verifications"))
    p.add_argument("--month", default=today_cst(system_clock).strftime("%Y-%m"), help="YYYY-MM")
    p.add_argument("--province", default="", help="statements of one province (either side)")
    p.add_argument("--prefix", default="", help="ledger account prefix")
    p.add_argument("--png", type=Path, help="also write a chart")
    p.add_argument("--database-url", default="", help="the clearing database (default: from settings)")
    args = p.parse_args(argv)
    url = args.database_url
    if not url:
        from libs.platform.settings import Settings

        url = Settings().database_url("clearing")
    db = Database(url)
    r = Reports(SqlClearingStore(db))
    year, month = _month(args.month)
    try:
        if args.report == "statements":
            sts = await r.statements(year, month, args.province)
            print(statements_table(sts))
            if args.png and sts:
                heat_map(sts, f"Inter-province clearing {args.month}: amount due", args.png)
        elif args.report == "fund-use":
            figs = await r.direct_settlement(year, month)
            print(fund_use(figs)[0])
            if args.png and figs:
                fund_chart(figs, f"Out-of-province fund use {args.month}", args.png)
        elif args.report == "direct":
            print(direct_table(await r.direct_settlement(year, month)))
        elif args.report == "ledger":
            rows = await r.balances(args.prefix)
            print(table(("account", "", "balance"), [(a, "", yuan(b)) for a, b in rows]))
            print(f"sum {yuan(sum(b for _, b in rows))}")
        else:
            vs = await r.verifications()
            today = today_cst(system_clock)
            print(
                table(
                    ("id", "settlement", "pair", "deadline", "state", "rejected", "deducted in"),
                    [
                        (
                            v.verification_id,
                            v.settlement_id,
                            f"{v.insured_province}->{v.treatment_province}",
                            v.answer_deadline,
                            "answered" if v.answered else ("OVERDUE" if today > v.answer_deadline else "open"),
                            yuan(v.rejected_fen),
                            v.deducted_in_statement_id or "-",
                        )
                        for v in vs
                    ],
                )
            )
        if args.png:
            print(f"chart written to {args.png}", file=sys.stderr)
    finally:
        await db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
