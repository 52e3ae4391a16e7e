"""The visit lifecycle rules (services/settlement/domain/visits.py), pure: no storage at all."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from libs.core.errors import DomainError, Reason
from services.settlement.domain import visits as rules
from services.settlement.domain.model import VisitStatus
from tests.unit.settlement.fakes import fee
from tests.unit.settlement.test_schema import _visit

TODAY = dt.date(2026, 7, 1)


def _reason(call: object) -> Reason:
    with pytest.raises(DomainError) as err:
        call()  # type: ignore[operator]
    return err.value.reason


def test_only_the_callers_open_visit_is_writable() -> None:
    v = _visit()
    assert rules.writable(v, v.visit_id, v.institution_code) is v
    assert _reason(lambda: rules.writable(None, "V9", "H1")) is Reason.VISIT_NOT_FOUND
    assert _reason(lambda: rules.writable(v, v.visit_id, "H2")) is Reason.NOT_AUTHORISED_FOR_INSTITUTION
    assert _reason(lambda: rules.writable(v, v.visit_id, None)) is Reason.INSTITUTION_IDENTITY_MISSING
    settled = replace(v, status=VisitStatus.SETTLED)
    assert _reason(lambda: rules.writable(settled, v.visit_id, v.institution_code)) is Reason.VISIT_STATE_INVALID


def test_the_settle_day_lies_within_the_stay_and_not_after_today() -> None:
    v = _visit()  # admitted 2026-06-01
    assert rules.settle_day(v, None, TODAY) == TODAY
    assert rules.settle_day(v, dt.date(2026, 6, 20), TODAY) == dt.date(2026, 6, 20)
    assert _reason(lambda: rules.settle_day(v, dt.date(2026, 5, 31), TODAY)) is Reason.VALIDATION_FAILED
    assert _reason(lambda: rules.settle_day(v, dt.date(2026, 7, 2), TODAY)) is Reason.VALIDATION_FAILED


def test_changes_to_an_open_visit() -> None:
    v = replace(_visit(), settled_stays=0, trauma_declared=False, diagnosis_codes=("I10",))
    assert rules.visit_changes(v, ("I11",), None, TODAY) == {"diagnosis_codes": ("I11",)}
    assert rules.visit_changes(v, None, v.admission_date, TODAY) == {}  # the same date: no change
    assert rules.visit_changes(v, None, dt.date(2026, 6, 3), TODAY) == {"admission_date": dt.date(2026, 6, 3)}
    assert _reason(lambda: rules.visit_changes(v, ("T14.0",), None, TODAY)) is Reason.TRAUMA_DECLARATION_REQUIRED
    assert rules.visit_changes(replace(v, trauma_declared=True), ("T14.0",), None, TODAY)
    assert _reason(lambda: rules.visit_changes(v, None, dt.date(2026, 7, 2), TODAY)) is Reason.VALIDATION_FAILED
    interim = replace(v, settled_stays=1)
    assert _reason(lambda: rules.visit_changes(interim, None, dt.date(2026, 6, 3), TODAY)) is Reason.VISIT_STATE_INVALID
    assert _reason(lambda: rules.require_cancellable(interim)) is Reason.VISIT_STATE_INVALID
    rules.require_cancellable(v)


def test_an_upload_keeps_the_unsettled_lines_and_never_replaces_a_settled_one() -> None:
    existing = [fee(1, "A", 1000, 10), replace(fee(2, "B", 1000, 20), settlement_id="S1"), fee(3, "C", 1000, 30)]
    merged = rules.require_lines_replaceable([fee(3, "C2", 2000, 30), fee(4, "D", 1000, 40)], existing)
    assert [(ln.line_no, ln.item_code) for ln in merged] == [(3, "C2"), (4, "D"), (1, "A")]
    with pytest.raises(DomainError) as err:
        rules.require_lines_replaceable([fee(4, "D", 1000, 40), fee(2, "B2", 1000, 20)], existing)
    assert err.value.reason is Reason.VISIT_STATE_INVALID
    assert [v.field for v in err.value.violations] == ["lines[1].line_no"]
