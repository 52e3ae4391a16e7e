"""Monitoring rules are pure: flags, never refusals."""

from __future__ import annotations

import datetime as dt

from libs.policy import Catalogue, FeeLine, generate_catalogue
from services.settlement.domain import monitoring

CATALOGUE: Catalogue = generate_catalogue("310100", seed=11, n_items=2000)


def _restricted_item(kind: dict[str, object]) -> str:
    cat = CATALOGUE
    for code, item in sorted(cat.items.items()):
        r = item.restriction
        if r is not None and all(getattr(r, k) == v for k, v in kind.items()):
            return code
    raise AssertionError(f"no item restricted like {kind} in the synthetic catalogue")


def test_item_for_women_used_for_a_man_is_flagged_and_not_for_a_woman() -> None:
    cat = CATALOGUE
    code = _restricted_item({"sex": "F"})
    lines = [FeeLine(1, code, 1000, 100)]
    day = dt.date(2026, 6, 1)
    flags = monitoring.restriction_flags(lines, cat, "M", dt.date(1980, 1, 1), day)
    assert [(f.code, f.line_no) for f in flags] == [(monitoring.ITEM_RESTRICTED, 1)]
    assert monitoring.restriction_flags(lines, cat, "F", dt.date(1980, 1, 1), day) == []


def test_child_only_item_is_flagged_for_an_adult_on_the_birthday_edge() -> None:
    cat = CATALOGUE
    code = _restricted_item({"max_age": 14})
    lines = [FeeLine(1, code, 1000, 100)]
    birth = dt.date(2012, 6, 2)
    assert monitoring.restriction_flags(lines, cat, "F", birth, dt.date(2026, 6, 1)) == []  # still 13
    assert monitoring.restriction_flags(lines, cat, "F", birth, dt.date(2027, 6, 2)) != []  # 15 today


def test_duplicates_and_quantities() -> None:
    lines = [
        FeeLine(1, "A", 1000, 5),
        FeeLine(2, "A", 1000, 5),
        FeeLine(3, "B", 250_000, 5),
        FeeLine(4, "A", -1000, 5, 1),
    ]
    codes = sorted((f.code, f.line_no) for f in monitoring.line_flags(lines))
    assert codes == [(monitoring.DUPLICATE_LINE, 2), (monitoring.QUANTITY_BEYOND_LIMIT, 3)]


def test_trauma_codes_need_a_declaration() -> None:
    import pytest

    from libs.core.errors import DomainError, Reason
    from services.settlement.domain.model import is_trauma, require_trauma_declaration

    assert is_trauma("S72.001") and is_trauma("t14.900") and not is_trauma("T50.900") and not is_trauma("I63.900")
    with pytest.raises(DomainError) as exc:
        require_trauma_declaration(("I10", "S72.001"), declared=False)
    assert exc.value.reason is Reason.TRAUMA_DECLARATION_REQUIRED
    require_trauma_declaration(("S72.001",), declared=True)
    require_trauma_declaration(("I10",), declared=False)


def test_overlapping_stays_are_flagged_at_the_edges() -> None:
    day = dt.date
    stays = [
        ("V-self", "H1", day(2026, 3, 1), None),
        ("V-before", "H2", day(2026, 2, 1), day(2026, 2, 28)),  # discharged the day before: no overlap
        ("V-touch", "H3", day(2026, 2, 20), day(2026, 3, 1)),  # discharged on our admission day
        ("V-open", "H4", day(2026, 3, 5), None),  # still in hospital elsewhere
        ("V-after", "H5", day(2026, 3, 11), None),  # admitted after our discharge
    ]
    flags = monitoring.overlap_flags(stays, "V-self", day(2026, 3, 1), day(2026, 3, 10))
    assert [f.detail.split()[3] for f in flags] == ["V-touch", "V-open"]
    assert all(f.code == monitoring.OVERLAPPING_INPATIENT_STAY for f in flags)
