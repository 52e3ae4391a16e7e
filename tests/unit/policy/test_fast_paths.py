"""The engine's fast paths give exactly what their plain reference gives.

- the fast line split (``engine._split_fast``) against the reference split
  (``engine._split_checked``), on well-formed and on adversarial visits and catalogues;
- the inline half-up rounding against :func:`libs.policy.money.round_half_up`;
- ``slot_builder`` and the spelled-out ``Accumulators`` arithmetic against plain construction;
- the field-by-field accumulator identity in ``check_identities`` against ``before.plus(delta)``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from libs.policy import (
    Accumulators,
    Catalogue,
    FeeLine,
    InsuranceType,
    SettlementResult,
    Visit,
    check_identities,
    default_books,
    engine,
    generate_catalogue,
    generate_visit,
    reverse,
    settle,
)
from libs.policy.model import ACCUMULATOR_FIELDS, NO_CEILING, ItemClass, make_split_table, slot_builder
from libs.policy.money import BPS_ONE, HALF_BPS, HALF_MILLI, INT64_MAX, MILLI, round_half_up, yuan

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")


@functools.cache
def plain_catalogue(seed: int) -> Catalogue:
    return generate_catalogue("990100", seed=seed, n_items=60)


@functools.cache
def odd_catalogue(seed: int) -> Catalogue:
    """A catalogue built directly (not through the schema), with entries the schema would refuse:
    zero, negative and huge ceilings, self-pay-first ratios of 0, 1, 100%, above 100% and negative,
    and ratios on class A/C items."""
    base = plain_catalogue(seed)
    ceilings = [None, 0, 1, -5, 10**19, INT64_MAX]
    ratios = [0, 1, 9_999, 10_000, 15_000, -100, -1]
    items = {}
    for i, (code, item) in enumerate(sorted(base.items.items())):
        if i % 2:
            item = dataclasses.replace(
                item,
                ceiling_fen=ceilings[(i + seed) % len(ceilings)] if i % 3 else item.ceiling_fen,
                self_pay_first_bps=ratios[(i * 3 + seed) % len(ratios)],
            )
        items[code] = item
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init and f.name != "table"}
    return Catalogue(**{**fields, "items": items})


CATALOGUES = [plain_catalogue(0), plain_catalogue(1), odd_catalogue(0), odd_catalogue(1)]
ODD_VALUES: list[Any] = [
    0,
    -1,
    1,
    True,
    1.0,
    1000.0,
    0.5,
    "7",
    None,
    500,
    999,
    1000,
    -1000,
    -500,
    INT64_MAX,
    INT64_MAX + 1,
    -INT64_MAX,
    -INT64_MAX - 1,
    10**25,
]
ODD_CODES: list[Any] = ["XZ99ZZZ999Z000000000002", "not a code", "", 5, None]


@st.composite
def visits(draw: Any, *, mutate: bool) -> tuple[Catalogue, Visit, bool]:
    cat = draw(st.sampled_from(CATALOGUES))
    v = generate_visit(
        cat,
        seed=draw(st.integers(0, 10_000)),
        n_lines=draw(st.integers(1, 14)),
        n_refunds=draw(st.integers(0, 4)),
        n_unknown=draw(st.integers(0, 2)),
    )
    lines = list(v.lines)
    for _ in range(draw(st.integers(0, 3)) if mutate else 0):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        kind = draw(st.sampled_from(["field", "code", "copy", "refund", "refund", "refund", "swap", "drop"]))
        if kind == "field":
            name = draw(st.sampled_from(["line_no", "quantity_milli", "unit_price_fen", "refund_of_line_no"]))
            lines[i] = dataclasses.replace(line, **{name: draw(st.sampled_from(ODD_VALUES))})
        elif kind == "code":
            codes = sorted(cat.items)
            lines[i] = dataclasses.replace(line, item_code=draw(st.sampled_from(ODD_CODES + codes[:5])))
        elif kind == "copy":
            lines.append(line)
        elif kind == "refund":  # of all, part, or more than what the line charged
            qty = abs(line.quantity_milli) if type(line.quantity_milli) is int else 1000
            lines.append(
                FeeLine(
                    draw(st.sampled_from([len(lines) + 1, len(lines) + 1, line.line_no, 0])),
                    line.item_code,
                    -draw(st.sampled_from([1, 499, 500, qty, qty, qty + 1, 10**6])),
                    draw(st.sampled_from([line.unit_price_fen, line.unit_price_fen, 7])),
                    draw(st.sampled_from([line.line_no, line.line_no, line.line_no, 99, None, True])),
                )
            )
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif len(lines) > 1:
            del lines[i]
    return cat, dataclasses.replace(v, lines=tuple(lines)), draw(st.sampled_from([True, True, True, False]))


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except DomainError as e:
        return ("error", e.reason, str(e), [(v.field, v.description) for v in e.violations])


@FAST
@given(visits(mutate=True))
def test_the_fast_line_split_agrees_with_the_reference_split(case: tuple[Catalogue, Visit, bool]) -> None:
    cat, v, allow_unknown = case
    reference = outcome(engine._split_checked, v, cat, allow_unknown)
    fast = engine._split_fast(v.lines, cat, allow_unknown)
    if fast is not None:  # the fast path only ever answers for a visit without a problem
        assert fast == reference
        assert [type(s) for s in fast[0]] == [type(s) for s in reference[0]]
    assert outcome(engine._split_lines, v, cat, allow_unknown) == reference


@FAST
@given(visits(mutate=False))
def test_the_fast_line_split_takes_every_well_formed_visit(case: tuple[Catalogue, Visit, bool]) -> None:
    cat, v, _ = case
    if cat in (odd_catalogue(0), odd_catalogue(1)):
        return  # entries with a negative ratio are left to the reference split by design
    reference = engine._split_checked(v, cat, True)
    assert engine._split_fast(v.lines, cat, True) == reference
    shuffled = dataclasses.replace(v, lines=tuple(reversed(v.lines)))  # line numbers out of order
    assert engine._split_fast(shuffled.lines, cat, True) == engine._split_checked(shuffled, cat, True)


@st.composite
def refund_visits(draw: Any) -> tuple[Catalogue, Visit]:
    """Charge lines, then refunds of random size against random lines: part, all, more."""
    cat = draw(st.sampled_from(CATALOGUES))
    v = generate_visit(cat, seed=draw(st.integers(0, 10_000)), n_lines=draw(st.integers(1, 8)))
    lines = list(v.lines)
    for _ in range(draw(st.integers(1, 5))):
        orig = draw(st.sampled_from(v.lines))
        lines.append(
            FeeLine(
                len(lines) + 1,
                orig.item_code,
                -draw(st.integers(1, orig.quantity_milli + 1)),
                orig.unit_price_fen,
                orig.line_no,
            )
        )
    if draw(st.booleans()):
        lines.reverse()
    return cat, dataclasses.replace(v, lines=tuple(lines))


@FAST
@given(refund_visits())
def test_the_fast_split_of_refund_lines_agrees_with_the_reference(case: tuple[Catalogue, Visit]) -> None:
    cat, v = case
    reference = outcome(engine._split_checked, v, cat, True)
    fast = engine._split_fast(v.lines, cat, True)
    if cat in CATALOGUES[:2]:  # the odd ones may leave a valid visit to the reference split
        assert fast == (None if reference[0] == "error" else reference)
    else:
        assert fast is None or fast == reference
    assert outcome(engine._split_lines, v, cat, True) == reference


def _grid_visit(cat: Catalogue) -> Visit:
    """A valid visit over the catalogue's first items (plus one unknown item) with two refunds."""
    codes = sorted(cat.items)[:4]
    lines = [FeeLine(i + 1, code, 1000 * (i + 1) + 500 * (i % 2), 1_234 + 4_321 * i) for i, code in enumerate(codes)]
    lines.append(FeeLine(5, "XZ99ZZZ999Z000000000001", 2000, 999))
    lines.append(FeeLine(6, codes[1], -500, lines[1].unit_price_fen, 2))
    lines.append(FeeLine(7, codes[1], -1000, lines[1].unit_price_fen, 2))
    return Visit(**{**_visit_fields(cat), "lines": tuple(lines)})


def _visit_fields(cat: Catalogue) -> dict[str, Any]:
    v = generate_visit(cat, seed=0, n_lines=1)
    return {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}


def _edits(v: Visit, cat: Catalogue) -> list[tuple[FeeLine, ...]]:
    """Every one-field edit of every line of ``v`` to an odd value, and odd refunds."""
    lines = list(v.lines)
    reference_only = sorted(set(cat.table) - set(cat.split_table))[:1]
    out = []
    for i, line in enumerate(lines):
        for name in ("line_no", "quantity_milli", "unit_price_fen", "refund_of_line_no"):
            for value in [*ODD_VALUES, 2, 6, 7]:
                out.append((*lines[:i], dataclasses.replace(line, **{name: value}), *lines[i + 1 :]))
        for code in [*ODD_CODES, *reference_only, lines[(i + 1) % len(lines)].item_code]:
            out.append((*lines[:i], dataclasses.replace(line, item_code=code), *lines[i + 1 :]))
    two = lines[1]
    for qty in (-1, -500, -2500, -2501, -(INT64_MAX + 1)):
        for price in (two.unit_price_fen, two.unit_price_fen + 1, 0):
            for ref in (1, 2, 5, 6, 8, None):
                out.append((*lines, FeeLine(8, two.item_code, qty, price, ref)))
    out.append((*lines, FeeLine(8, lines[0].item_code, 1000, INT64_MAX + 1)))
    out.append((*lines, FeeLine(8, lines[0].item_code, INT64_MAX + 1, 0)))
    out.append((*lines, FeeLine(8, lines[0].item_code, INT64_MAX, 1)))
    out.append(tuple(reversed(lines)))
    out.append(())
    return out


@pytest.mark.parametrize("cat", CATALOGUES, ids=["plain0", "plain1", "odd0", "odd1"])
def test_every_one_field_edit_is_split_as_the_reference_splits_it(cat: Catalogue) -> None:
    base = _grid_visit(cat)
    assert engine._split_fast(base.lines, cat, True) is not None or cat not in CATALOGUES[:2]
    for lines in _edits(base, cat):
        v = dataclasses.replace(base, lines=lines)
        for allow_unknown in (True, False):
            reference = outcome(engine._split_checked, v, cat, allow_unknown)
            fast = engine._split_fast(v.lines, cat, allow_unknown)
            assert fast is None or fast == reference, lines
            assert outcome(engine._split_lines, v, cat, allow_unknown) == reference, lines


def test_the_split_table_keeps_only_entries_the_fast_split_takes_exactly() -> None:
    table = {
        "a": (ItemClass.A, -1, 0),
        "a_with_ratio": (ItemClass.A, 500, 300),
        "b": (ItemClass.B, 1000, 2000),
        "b_negative_ratio": (ItemClass.B, 1000, -1),
        "c": (ItemClass.C, -7, 0),
        "float_ceiling": (ItemClass.A, 1.5, 0),
    }
    assert make_split_table(table) == {  # type: ignore[arg-type]
        "a": (ItemClass.A, NO_CEILING, 0),
        "a_with_ratio": (ItemClass.A, 500, 0),
        "b": (ItemClass.B, 1000, 2000),
        "c": (ItemClass.C, NO_CEILING, 0),
    }


@given(st.integers(0, 10**40))
def test_round_half_up_inline_form(n: int) -> None:
    assert (n + HALF_MILLI) // MILLI == round_half_up(n, MILLI)
    assert (n + HALF_BPS) // BPS_ONE == round_half_up(n, BPS_ONE)


@given(st.integers(-(10**25), 10**25))
def test_yuan_formats_fen_as_before(fen: int) -> None:
    expected = f"{fen // 100}.{fen % 100:02d}" if fen >= 0 else f"-{-fen // 100}.{-fen % 100:02d}"
    assert yuan(fen) == expected


accumulators = st.builds(
    Accumulators,
    st.sampled_from([2025, 2026]),
    *[st.integers(-(10**12), 10**12) for _ in ACCUMULATOR_FIELDS],
)


@given(accumulators, accumulators)
def test_accumulator_arithmetic_covers_every_field(a: Accumulators, b: Accumulators) -> None:
    if a.year != b.year:
        with pytest.raises(ValueError, match="years differ"):
            a.plus(b)
        with pytest.raises(ValueError, match="years differ"):
            a.minus(b)
        return
    plain = {f.name: getattr(a, f.name) for f in dataclasses.fields(a)}
    other = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    assert a.plus(b) == Accumulators(**{k: v if k == "year" else v + other[k] for k, v in plain.items()})
    assert a.minus(b) == Accumulators(**{k: v if k == "year" else v - other[k] for k, v in plain.items()})
    assert a.negated() == Accumulators(**{k: v if k == "year" else -v for k, v in plain.items()})
    assert a.delta_to(b) == b.minus(a)
    for made in (a.plus(b), a.minus(b), a.negated()):
        assert type(made) is Accumulators
        assert hash(made) == hash(Accumulators(*(getattr(made, f.name) for f in dataclasses.fields(made))))
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.year = 1  # type: ignore[misc]


@given(accumulators, accumulators, accumulators)
def test_the_accumulator_identity_is_after_equals_before_plus_delta(
    after: Accumulators, before: Accumulators, delta: Accumulators
) -> None:
    if before.year != delta.year:
        with pytest.raises(ValueError, match="years differ"):
            engine._not_sum(after, before, delta)
        return
    assert engine._not_sum(after, before, delta) == (after != before.plus(delta))
    assert not engine._not_sum(before.plus(delta), before, delta)
    assert engine._not_sum(dataclasses.replace(before.plus(delta), year=before.year + 1), before, delta)


def test_slot_builder_makes_the_same_frozen_instance_as_the_constructor() -> None:
    values = tuple(range(13))
    built = slot_builder(Accumulators)(values)
    assert type(built) is Accumulators
    assert built == Accumulators(*values)
    assert repr(built) == repr(Accumulators(*values))
    assert dataclasses.replace(built, year=9).year == 9
    with pytest.raises(ValueError):  # every field, no more, no less
        slot_builder(Accumulators)(values[:-1])
    with pytest.raises(TypeError):
        slot_builder(Catalogue)  # has a __post_init__
    names = [f.name for f in dataclasses.fields(SettlementResult)]
    assert type(slot_builder(SettlementResult)(range(len(names)))) is SettlementResult


def test_check_identities_still_checks_every_line_and_every_accumulator() -> None:
    policies, catalogues = default_books()
    day = datetime.date(2026, 6, 1)
    policy = policies.find("110100", InsuranceType.EMPLOYEE, day)
    cat = catalogues.find("110100", day)
    v = generate_visit(cat, seed=3, n_lines=8, n_refunds=2, settle_date=day, use_personal_account=True)
    result = settle(policy, cat, v, Accumulators(2026, account_balance_fen=10_000))
    for r in (result, reverse(result)):
        check_identities(r)
        for i, line in enumerate(r.lines):
            for j in range(3, 8):  # amount, full self-pay, over-limit, pre-self-pay, in scope
                bumped = list(r.lines)
                bumped[i] = line._replace(**{line._fields[j]: line[j] + 1})
                fields = _violations(dataclasses.replace(r, lines=tuple(bumped)))
                assert f"lines[{i}]" in fields and "lines" in fields
        for name in [f.name for f in dataclasses.fields(Accumulators)]:
            after = dataclasses.replace(r.accumulators_after, **{name: getattr(r.accumulators_after, name) + 1})
            assert "accumulators_after" in _violations(dataclasses.replace(r, accumulators_after=after))


def _violations(r: SettlementResult) -> list[str]:
    with pytest.raises(DomainError) as info:
        check_identities(r)
    assert info.value.reason is Reason.INVARIANT_VIOLATED
    return [v.field for v in info.value.violations]
