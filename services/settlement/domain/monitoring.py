"""Intelligent monitoring rules run at settle time. They never block a settlement; they raise
flags (reason codes) that clearing and auditors read."""

from __future__ import annotations

from libs.policy import FeeLine
from services.settlement.domain.model import MonitoringFlag

# Per-line quantity above which a line is flagged (units x 1000): 200 units of anything in one
# line is beyond what a single visit plausibly uses.
QUANTITY_LIMIT_MILLI = 200_000

DUPLICATE_LINE = "MON_DUPLICATE_LINE"
QUANTITY_BEYOND_LIMIT = "MON_QUANTITY_BEYOND_LIMIT"
OVERLAPPING_INPATIENT_STAY = "MON_OVERLAPPING_INPATIENT_STAY"


def line_flags(lines: tuple[FeeLine, ...] | list[FeeLine]) -> list[MonitoringFlag]:
    flags: list[MonitoringFlag] = []
    seen: dict[tuple[str, int, int], int] = {}
    for ln in lines:
        if ln.quantity_milli > QUANTITY_LIMIT_MILLI:
            flags.append(MonitoringFlag(QUANTITY_BEYOND_LIMIT, f"quantity {ln.quantity_milli / 1000:g}", ln.line_no))
        if ln.quantity_milli > 0:
            key = (ln.item_code, ln.quantity_milli, ln.unit_price_fen)
            if key in seen:
                flags.append(
                    MonitoringFlag(DUPLICATE_LINE, f"same item, quantity and price as line {seen[key]}", ln.line_no)
                )
            else:
                seen[key] = ln.line_no
    return flags
