"""One schema source: the rows the adapters write and the hot path's column lists come from the
SQLAlchemy tables (services/settlement/adapters/db.py), so a column added to a table and not to
its mapper fails here, not in production."""

from __future__ import annotations

import datetime as dt

from libs.policy import ServiceType
from services.settlement.adapters import hot
from services.settlement.adapters.db import settlement_row, settlements, visit_from_row, visit_row, visits
from services.settlement.domain.model import (
    ClearingCategory,
    SettlementKind,
    SettlementRecord,
    VisitRecord,
    VisitStatus,
)
from tests.unit.settlement.test_use_cases import _decision


def _visit() -> VisitRecord:
    return VisitRecord(
        visit_id="V1",
        institution_code="H1",
        hospital_visit_no="HV1",
        service_type=ServiceType.INPATIENT,
        status=VisitStatus.OPEN,
        decision=_decision(),
        admission_date=dt.date(2026, 6, 1),
        discharge_date=None,
        diagnosis_codes=("S72.0",),
        special_disease_code="",
        opened_at=dt.datetime(2026, 6, 1, 1, tzinfo=dt.UTC),
        fee_line_count=3,
        fee_total_fen=12_345,
        settled_stays=1,
        emergency=True,
        trauma_declared=True,
    )


def test_a_visit_row_has_every_column_and_reads_back_as_the_same_record() -> None:
    row = visit_row(_visit())
    assert list(row) == [c.name for c in visits.columns]
    assert visit_from_row(row) == _visit()  # emergency and trauma_declared included


def test_a_settlement_row_has_every_column_and_the_batch_inserts_them_all() -> None:
    rec = SettlementRecord(
        settlement_id="S1",
        request_id="r1",
        visit_id="V1",
        kind=SettlementKind.SETTLEMENT,
        cancels_settlement_id="",
        institution_code="H1",
        person_no="P1",
        insured_region="110100",
        treatment_region="310100",
        service_type=ServiceType.INPATIENT,
        category=ClearingCategory.INPATIENT,
        settle_date=dt.date(2026, 6, 2),
        settled_at=dt.datetime(2026, 6, 2, 1, tzinfo=dt.UTC),
        interim=False,
        result_json="{}",
    )

    class _Money:  # the money columns settlement_row reads from a SettlementResult
        total_fen, deductible_fen, fund_total_fen, personal_account_fen, cash_fen = 5, 1, 2, 1, 2

    row = settlement_row(rec, _Money())  # type: ignore[arg-type]
    assert (row["total_fen"], row["cash_fen"], row["cancels_settlement_id"]) == (5, 2, None)
    assert list(row) == [c.name for c in settlements.columns]
    assert [c for c, _ in hot._SETTLEMENT_COLUMNS] == list(row)
    assert dict(hot._SETTLEMENT_COLUMNS)["settled_at"] == "timestamptz"
    assert dict(hot._SETTLEMENT_COLUMNS)["interim"] == "bool"
    assert hot._VISIT_COLUMNS.split(", ") == [c.name for c in visits.columns]
