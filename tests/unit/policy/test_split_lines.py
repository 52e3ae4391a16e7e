"""``split_lines``: the line split alone equals the lines of the settlement ``settle`` computes."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from libs.core.errors import DomainError, Reason
from libs.policy import (
    Accumulators,
    FeeLine,
    InsuranceType,
    default_books,
    generate_visit,
    settle,
    split_lines,
)

DAY = datetime.date(2026, 7, 1)


@pytest.mark.parametrize("seed", range(12))
def test_split_equals_the_settlement_lines(seed: int) -> None:
    policies, catalogues = default_books()
    catalogue = catalogues.find("310100", DAY)
    policy = policies.find("110100", InsuranceType.EMPLOYEE, DAY)
    visit = generate_visit(
        catalogue, seed=seed, n_lines=30, n_refunds=4, n_unknown=seed % 3, settle_date=DAY, use_personal_account=True
    )
    result = settle(policy, catalogue, visit, Accumulators(year=2026, account_balance_fen=100_000))
    split = split_lines(visit, catalogue)
    assert split == result.lines
    assert sum(s.amount_fen for s in split) == result.total_fen
    assert [s.item_class is None for s in split] == [ln.item_code not in catalogue.items for ln in visit.lines]


def test_refunds_telescope_in_the_order_given() -> None:
    _, catalogues = default_books()
    catalogue = catalogues.find("310100", DAY)
    code = next(c for c, i in sorted(catalogue.items.items()) if i.item_class.value == "A")
    base = generate_visit(catalogue, seed=1, n_lines=1, settle_date=DAY)
    lines = (
        FeeLine(1, code, 3000, 333),  # 9.99 yuan: two half refunds must still sum to the whole
        FeeLine(2, code, -1500, 333, 1),
        FeeLine(3, code, -1500, 333, 1),
    )
    split = split_lines(dataclasses.replace(base, lines=lines), catalogue)
    assert split[0].amount_fen == 999 and split[1].amount_fen + split[2].amount_fen == -999


def test_malformed_code_is_refused_as_before() -> None:
    _, catalogues = default_books()
    catalogue = catalogues.find("310100", DAY)
    base = generate_visit(catalogue, seed=1, n_lines=1, settle_date=DAY)
    bad = dataclasses.replace(base, lines=(FeeLine(1, "??", 1000, 1),))
    with pytest.raises(DomainError) as exc:
        split_lines(bad, catalogue)
    assert exc.value.reason is Reason.ITEM_CODE_INVALID
