"""Intelligent monitoring rules run at settle time. They never block a settlement; they raise
flags (reason codes) that clearing and auditors read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from libs.policy import Catalogue, FeeLine, LineSplit
from services.settlement.domain.model import MonitoringFlag

# Per-line quantity above which a line is flagged (units x 1000): 200 units of anything in one
# line is beyond what a single visit plausibly uses.
QUANTITY_LIMIT_MILLI = 200_000

DUPLICATE_LINE = "MON_DUPLICATE_LINE"
QUANTITY_BEYOND_LIMIT = "MON_QUANTITY_BEYOND_LIMIT"
OVERLAPPING_INPATIENT_STAY = "MON_OVERLAPPING_INPATIENT_STAY"
ITEM_RESTRICTED = "MON_ITEM_RESTRICTED"
ITEM_NOT_IN_CATALOGUE = "MON_ITEM_NOT_IN_CATALOGUE"


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


# (visit_id, institution_code, admission_date, discharge_date or None while in hospital)
Stay = tuple[str, str, dt.date, dt.date | None]


def overlap_flags(stays: list[Stay], visit_id: str, start: dt.date, end: dt.date) -> list[MonitoringFlag]:
    """The same person in two inpatient stays at once: another stay overlapping [start, end]."""
    return [
        MonitoringFlag(OVERLAPPING_INPATIENT_STAY, f"overlaps inpatient visit {other} at {institution}")
        for other, institution, admitted, discharged in stays
        if other != visit_id and admitted <= end and (discharged is None or discharged >= start)
    ]


def age_on(birth: dt.date | None, day: dt.date) -> int | None:
    if birth is None:
        return None
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def restriction_flags(
    lines: tuple[FeeLine, ...] | list[FeeLine], catalogue: Catalogue, sex: str, birth: dt.date | None, day: dt.date
) -> list[MonitoringFlag]:
    """Items restricted by sex or age (catalogue notes) used for someone outside the restriction."""
    age = age_on(birth, day)
    flags = []
    for ln in lines:
        item = catalogue.lookup(ln.item_code)
        if item is not None and item.restriction is not None and not item.restriction.allows(sex, age):
            r = item.restriction
            limits = ", ".join(
                part
                for part in (
                    f"sex {r.sex}" if r.sex else "",
                    f"age >= {r.min_age}" if r.min_age is not None else "",
                    f"age <= {r.max_age}" if r.max_age is not None else "",
                )
                if part
            )
            flags.append(MonitoringFlag(ITEM_RESTRICTED, f"{item.code} is restricted to {limits}", ln.line_no))
    return flags


def catalogue_flags(splits: Iterable[LineSplit]) -> list[MonitoringFlag]:
    """Lines whose (well-formed) item code is not in the treatment-place catalogue: split as full
    self-pay, and flagged so that neither the hospital nor an auditor mistakes it for a C item."""
    return [
        MonitoringFlag(
            ITEM_NOT_IN_CATALOGUE,
            f"{s.item_code} is not in catalogue {s.catalogue_version}: full self-pay",
            s.line_no,
        )
        for s in splits
        if s.item_class is None
    ]
