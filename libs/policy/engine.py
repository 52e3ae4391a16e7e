"""The settlement engine: line split, funds in order, accumulators, identities, trace.

Pure: no I/O. Follows POLICY.md §1-§4. Money is int fen, ratios int bps, and every non-whole
value goes through :func:`libs.policy.money.round_half_up` exactly once per fund (or per line
component for the line split); the fast line split writes that same rounding inline for its
non-negative numerators (``(n + d // 2) // d``, see ``libs/policy/money.py``).

Speed (README.md "Benchmark"): the line split has a fast path (:func:`_split_fast`) that takes
a well-formed visit in one tight loop over a per-catalogue precomputed table and gives up on the
first thing that is not plainly valid; the reference split (:func:`_split_checked`) then redoes
the visit and classifies every problem. Both give identical splits
(``tests/unit/policy/test_fast_paths.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import add, attrgetter, neg

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy.codes import is_well_formed
from libs.policy.model import (
    AMOUNT_FIELDS,
    Accumulators,
    AssistanceRule,
    Catalogue,
    DeductibleMode,
    FeeLine,
    FilingType,
    Fund,
    FundDetail,
    ItemClass,
    LineSplit,
    PersonType,
    Policy,
    Pool,
    SegmentScope,
    ServiceBenefit,
    ServiceType,
    SettlementResult,
    Supplementary,
    TraceStep,
    Visit,
    slot_builder,
)
from libs.policy.money import BPS_ONE, HALF_BPS, HALF_MILLI, INT64_MAX, MILLI, pct, round_half_up, yuan

_INF = 1 << 100  # stands for an open upper band edge; larger than any int64 amount
_A, _B, _C = ItemClass.A, ItemClass.B, ItemClass.C
# Hot-path constructors (README.md "Benchmark"): a NamedTuple from a tuple without its Python
# __new__, and the frozen dataclasses without their per-field __init__ (model.slot_builder).
_new = tuple.__new__
_new_acc = slot_builder(Accumulators)
_new_result = slot_builder(SettlementResult)
_amounts_of = attrgetter(*AMOUNT_FIELDS)  # the 16 amounts of a result, in AMOUNT_FIELDS order
# Enum members and values looked up once (``Fund.POOLED.value`` is a Python-level property call).
_INPATIENT = ServiceType.INPATIENT
_INPATIENT_POOL = Pool.INPATIENT
_PER_ADMISSION = DeductibleMode.PER_ADMISSION
_ANNUAL = DeductibleMode.ANNUAL
_PER_YEAR = SegmentScope.PER_YEAR
_LARGE_AMOUNT = Fund.LARGE_AMOUNT
_POOLED = Fund.POOLED.value
_ASSISTANCE = Fund.ASSISTANCE.value
_PERSONAL_ACCOUNT = Fund.PERSONAL_ACCOUNT.value


class _Problems:
    """Collects classified field problems; raises them together with the first one's reason."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[Reason, FieldViolation]] = []

    def add(self, reason: Reason, field: str, description: str) -> None:
        self.items.append((reason, FieldViolation(field, description)))

    def raise_if_any(self) -> None:
        if self.items:
            reason, first = self.items[0]
            more = f" (+{len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise DomainError(
                reason,
                f"{first.field}: {first.description}{more}",
                violations=[v for _, v in self.items],
            )


# ------------------------------------------------------------------------------ line split


_AMOUNT_LIMIT = INT64_MAX * MILLI + MILLI // 2 - 1  # |price x qty| above this rounds past int64
_line_no_of = attrgetter("line_no")


def _split_lines(
    visit: Visit, catalogue: Catalogue, allow_unknown_items: bool
) -> tuple[tuple[LineSplit, ...], tuple[int, int, int, int, int]]:
    """Validate and split every line. Returns the splits and the five totals (amount, full
    self-pay, over-limit, pre-self-pay, in scope); raises the classified problems of a bad visit.

    The fast path takes every visit the reference split would accept without a problem (it may
    give up on rarer valid ones too); whatever it gives up on, the reference split redoes."""
    got = _split_fast(visit.lines, catalogue, allow_unknown_items)
    if got is None:
        got = _split_checked(visit, catalogue, allow_unknown_items)
    return got


def _split_fast(
    lines: tuple[FeeLine, ...], catalogue: Catalogue, allow_unknown_items: bool
) -> tuple[tuple[LineSplit, ...], tuple[int, int, int, int, int]] | None:
    """The line split of a visit with no problem, or None to hand over to :func:`_split_checked`.

    One pass with only the checks a valid line needs: exact int/str types, price and quantity
    within int64, and line numbers that increase (so positive and unique; out-of-order numbers
    are checked after the loop). Refund lines (quantity < 0) take a rarer branch and are split
    after the loop. Each charge line's amount is at most the visit's total of charge lines, so
    one bound on that total covers price x quantity. Splits as POLICY.md §1 and
    :func:`_components`, with the table of :func:`libs.policy.model.make_split_table` and the
    inline half-up rounding of non-negative numerators."""
    if not lines:
        return None
    split_table = catalogue.split_table
    version = catalogue.version
    new = _new
    c_class = _C
    int_ = int
    str_ = str
    type_ = type
    max_ = INT64_MAX
    out: list[LineSplit] = []
    append = out.append
    refunds: list[tuple[int, FeeLine, tuple[ItemClass, int, int] | None]] = []
    # the non-zero parts of each total, summed in C after the loop
    amounts: list[int] = []
    fulls: list[int] = []
    overs: list[int] = []
    pres: list[int] = []
    ins: list[int] = []
    prev = 0
    in_order = True
    for line in lines:
        qty = line.quantity_milli
        price = line.unit_price_fen
        code = line.item_code
        line_no = line.line_no
        if not (
            type_(qty) is int_
            and type_(price) is int_
            and type_(line_no) is int_
            and type_(code) is str_
            and 0 <= price <= max_
            and qty <= max_
        ):
            return None
        if line_no <= prev:
            in_order = False
        prev = line_no
        try:
            entry = split_table[code]
        except KeyError:
            if not allow_unknown_items or code in catalogue.table or not is_well_formed(code):
                return None  # not in the catalogue and not accepted, or an entry only the reference takes
            entry = None
        if qty <= 0:
            if qty == 0 or qty < -max_ or price * qty < -_AMOUNT_LIMIT:
                return None
            refunds.append((len(out), line, entry))  # split below, against what is left of its original
            append(None)  # type: ignore[arg-type]
            continue
        if line.refund_of_line_no is not None:
            return None
        amount = price if qty == MILLI else (price * qty + HALF_MILLI) // MILLI
        amounts.append(amount)
        if entry is None:  # an accepted unknown item: full self-pay
            fulls.append(amount)
            append(new(LineSplit, (line_no, code, None, amount, amount, 0, 0, 0, version)))
            continue
        cls, ceiling, spf_bps = entry
        if cls is c_class:
            fulls.append(amount)
            append(new(LineSplit, (line_no, code, cls, amount, amount, 0, 0, 0, version)))
            continue
        if ceiling < price:
            within = ceiling if qty == MILLI else (ceiling * qty + HALF_MILLI) // MILLI
            over = amount - within
            overs.append(over)
        else:
            within = amount
            over = 0
        if spf_bps:
            pre = (within * spf_bps + HALF_BPS) // BPS_ONE
            pres.append(pre)
            within -= pre
        else:
            pre = 0
        ins.append(within)
        append(new(LineSplit, (line_no, code, cls, amount, 0, over, pre, within, version)))
    t_amount = sum(amounts)
    if t_amount > max_:  # bounds every charge line's amount, so price x quantity
        return None
    t_full = sum(fulls)
    t_over = sum(overs)
    t_pre = sum(pres)
    t_in = sum(ins)
    if not in_order:
        numbers = list(map(_line_no_of, lines))
        if min(numbers) < 1 or len(set(numbers)) != len(numbers):
            return None
    if refunds:  # as _split_refunds: the difference of the original's split before and after
        left: dict[int, int] = {}
        for pos, line, entry in refunds:
            ref = line.refund_of_line_no
            if type(ref) is not int:
                return None
            orig = _line_numbered(lines, ref)  # line numbers are unique: *the* original, or None
            if (
                orig is None
                or orig.quantity_milli < 0
                or orig.item_code != line.item_code
                or orig.unit_price_fen != line.unit_price_fen
            ):
                return None
            before = left.get(ref, orig.quantity_milli)
            after = before + line.quantity_milli
            if after < 0:
                return None
            left[ref] = after
            price = line.unit_price_fen
            a_hi = (price * before + HALF_MILLI) // MILLI
            a_lo = (price * after + HALF_MILLI) // MILLI
            amount = a_lo - a_hi
            t_amount += amount
            if entry is None or entry[0] is _C:
                t_full += amount
                full_cls = None if entry is None else entry[0]
                out[pos] = new(LineSplit, (line.line_no, line.item_code, full_cls, amount, amount, 0, 0, 0, version))
                continue
            cls, ceiling, spf_bps = entry
            if ceiling < price:
                w_hi = (ceiling * before + HALF_MILLI) // MILLI
                w_lo = (ceiling * after + HALF_MILLI) // MILLI
            else:
                w_hi = a_hi
                w_lo = a_lo
            within = w_lo - w_hi
            over = amount - within
            if spf_bps:
                pre = (w_lo * spf_bps + HALF_BPS) // BPS_ONE - (w_hi * spf_bps + HALF_BPS) // BPS_ONE
            else:
                pre = 0
            within -= pre
            t_over += over
            t_pre += pre
            t_in += within
            out[pos] = new(LineSplit, (line.line_no, line.item_code, cls, amount, 0, over, pre, within, version))
        if t_amount > max_:
            return None
    return tuple(out), (t_amount, t_full, t_over, t_pre, t_in)


def _line_numbered(lines: tuple[FeeLine, ...], line_no: int) -> FeeLine | None:
    """The line numbered ``line_no`` of a visit whose line numbers are unique (usually 1..n)."""
    if 0 < line_no <= len(lines):
        line = lines[line_no - 1]
        if line.line_no == line_no:
            return line
    for line in lines:
        if line.line_no == line_no:
            return line
    return None


def _split_checked(
    visit: Visit, catalogue: Catalogue, allow_unknown_items: bool
) -> tuple[tuple[LineSplit, ...], tuple[int, int, int, int, int]]:
    """The reference line split: validates and splits every line in one pass, collecting every
    problem. Used for whatever :func:`_split_fast` gives up on (and by the tests as the
    reference it must agree with).

    One combined guard for a well-formed line, then the split; the detailed classification of a
    bad line happens only on the slow path (:func:`_line_problems`)."""
    lines = visit.lines
    problems = _Problems()
    if not lines:
        problems.add(Reason.VISIT_HAS_NO_FEES, "lines", "a visit needs at least one fee line")
        problems.raise_if_any()
    table_get = catalogue.table.get
    version = catalogue.version
    rhu = round_half_up
    new = tuple.__new__
    out: list[LineSplit] = []
    append = out.append
    seen: dict[int, FeeLine] = {}
    refunds: list[tuple[int, int, FeeLine, tuple[ItemClass, int, int] | None]] = []
    t_amount = t_full = t_over = t_pre = t_in = 0
    limit = _AMOUNT_LIMIT
    i = -1
    for line in lines:
        i += 1
        qty = line.quantity_milli
        price = line.unit_price_fen
        code = line.item_code
        line_no = line.line_no
        if not (
            type(qty) is int
            and type(price) is int
            and type(line_no) is int
            and type(code) is str
            and qty
            and line_no > 0
            and 0 <= price <= INT64_MAX
            and -INT64_MAX <= qty <= INT64_MAX
            and -limit <= price * qty <= limit
            and line_no not in seen
        ):
            _line_problems(i, line, seen, problems)
            continue
        seen[line_no] = line
        entry = table_get(code)
        if entry is None:
            if not is_well_formed(code):
                problems.add(Reason.ITEM_CODE_INVALID, f"lines[{i}].item_code", f"malformed item code {code!r}")
                continue
            if not allow_unknown_items:
                problems.add(
                    Reason.ITEM_CODE_INVALID,
                    f"lines[{i}].item_code",
                    f"item {code} is not in catalogue {version}",
                )
                continue
        if qty < 0:  # a refund line: split later, against what is left of its original
            refunds.append((len(out), i, line, entry))
            out.append(None)  # type: ignore[arg-type]
            continue
        if line.refund_of_line_no is not None:
            problems.add(
                Reason.FEE_LINE_INVALID,
                f"lines[{i}].refund_of_line_no",
                "only a refund line (negative quantity) may point at another line",
            )
        # ---- split (POLICY.md §1); whole amounts need no rounding (most lines are whole units)
        n = price * qty
        amount = n // MILLI if n % MILLI == 0 else rhu(n, MILLI)
        t_amount += amount
        if entry is None:
            append(new(LineSplit, (line_no, code, None, amount, amount, 0, 0, 0, version)))
            t_full += amount
            continue
        cls, ceiling, spf_bps = entry
        if cls is _C:
            append(new(LineSplit, (line_no, code, cls, amount, amount, 0, 0, 0, version)))
            t_full += amount
            continue
        if 0 <= ceiling < price:
            n = ceiling * qty
            within = n // MILLI if n % MILLI == 0 else rhu(n, MILLI)
            over = amount - within
            t_over += over
        else:
            within = amount
            over = 0
        if spf_bps and cls is _B:
            pre = rhu(within * spf_bps, BPS_ONE)
            t_pre += pre
            within -= pre
        else:
            pre = 0
        t_in += within
        append(new(LineSplit, (line_no, code, cls, amount, 0, over, pre, within, version)))
    if refunds and not problems.items:
        for parts in _split_refunds(refunds, seen, problems, out, version):
            t_amount += parts[0]
            t_full += parts[1]
            t_over += parts[2]
            t_pre += parts[3]
            t_in += parts[4]
    if not problems.items and t_amount > INT64_MAX:
        problems.add(Reason.AMOUNT_OUT_OF_RANGE, "lines", "the visit total does not fit in int64 fen")
    problems.raise_if_any()
    return tuple(out), (t_amount, t_full, t_over, t_pre, t_in)


def _line_problems(i: int, line: FeeLine, seen: dict[int, FeeLine], problems: _Problems) -> None:
    """Classify why a line failed the fast guard (slow path; collects every problem)."""
    qty, price, code, line_no = line.quantity_milli, line.unit_price_fen, line.item_code, line.line_no
    p = f"lines[{i}]"
    if type(line_no) is not int or line_no < 1:
        problems.add(Reason.FEE_LINE_INVALID, f"{p}.line_no", "must be a positive integer")
    elif line_no in seen:
        problems.add(Reason.FEE_LINE_INVALID, f"{p}.line_no", f"duplicate line number {line_no}")
    else:
        seen[line_no] = line
    if type(code) is not str:
        problems.add(Reason.ITEM_CODE_INVALID, f"{p}.item_code", "must be a string")
    ok = True
    if type(qty) is not int or qty == 0:
        problems.add(Reason.QUANTITY_INVALID, f"{p}.quantity_milli", "must be a non-zero integer (x1000)")
        ok = False
    if type(price) is not int or price < 0:
        problems.add(Reason.PRICE_INVALID, f"{p}.unit_price_fen", "must be a non-negative integer of fen")
        ok = False
    if ok and (price > INT64_MAX or abs(qty) > INT64_MAX or abs(price * qty) > _AMOUNT_LIMIT):
        problems.add(Reason.AMOUNT_OUT_OF_RANGE, p, "unit price x quantity does not fit in int64 fen")


def _components(price: int, qty: int, entry: tuple[ItemClass, int, int] | None) -> tuple[int, int, int, int, int]:
    """(amount, full self-pay, over-limit, pre-self-pay, in scope) of ``qty`` units; same rules
    as the hot loop in :func:`_split_lines`."""
    amount = round_half_up(price * qty, MILLI)
    if entry is None or entry[0] is _C:
        return amount, amount, 0, 0, 0
    cls, ceiling, spf_bps = entry
    within = round_half_up(ceiling * qty, MILLI) if 0 <= ceiling < price else amount
    pre = round_half_up(within * spf_bps, BPS_ONE) if (spf_bps and cls is _B) else 0
    return amount, 0, amount - within, pre, within - pre


def _split_refunds(
    refunds: list[tuple[int, int, FeeLine, tuple[ItemClass, int, int] | None]],
    originals: Mapping[int, FeeLine],
    problems: _Problems,
    out: list[LineSplit],
    version: str,
) -> list[tuple[int, int, int, int, int]]:
    """Split refund lines as the *difference* between the original line's split before and after
    the refund (telescoping): refunds of one line can never give back more than it charged, in
    any component, and a full refund is the exact negative of the original line."""
    left: dict[int, int] = {}
    parts_list = []
    for pos, i, line, entry in refunds:
        ref = line.refund_of_line_no
        field = f"lines[{i}].refund_of_line_no"
        orig = originals.get(ref) if type(ref) is int else None
        if orig is None or orig.quantity_milli < 0:
            problems.add(Reason.REFUND_LINE_UNMATCHED, field, f"no original line {ref} in this visit")
            continue
        if orig.item_code != line.item_code or orig.unit_price_fen != line.unit_price_fen:
            problems.add(Reason.REFUND_LINE_UNMATCHED, field, f"item or unit price differs from line {ref}")
            continue
        before = left.get(orig.line_no, orig.quantity_milli)
        after = before + line.quantity_milli
        if after < 0:
            problems.add(Reason.REFUND_LINE_UNMATCHED, field, f"refunds more than line {ref} charged")
            continue
        left[orig.line_no] = after
        price = line.unit_price_fen
        hi = _components(price, before, entry)
        lo = _components(price, after, entry)
        parts = (lo[0] - hi[0], lo[1] - hi[1], lo[2] - hi[2], lo[3] - hi[3], lo[4] - hi[4])
        cls = None if entry is None else entry[0]
        out[pos] = LineSplit(line.line_no, line.item_code, cls, *parts, version)
        parts_list.append(parts)
    return parts_list


def validate_visit(visit: Visit, catalogue: Catalogue, *, allow_unknown_items: bool = True) -> None:
    """Raise a classified INVALID :class:`DomainError` naming every bad field of the visit.

    Items not in the catalogue are full self-pay (POLICY.md §1), so a well-formed unknown code is
    accepted unless ``allow_unknown_items`` is False."""
    split_lines(visit, catalogue, allow_unknown_items=allow_unknown_items)


def split_lines(visit: Visit, catalogue: Catalogue, *, allow_unknown_items: bool = True) -> tuple[LineSplit, ...]:
    """The line split :func:`settle` computes for this visit's lines (POLICY.md §1), without the
    funds: it depends only on the lines and the treatment-place catalogue, not on the policy.
    Refund lines are split telescopically against their original in the order they come, as in
    ``settle``, so pass the lines in the order ``settle`` will see them. Raises what
    :func:`validate_visit` raises."""
    problems = _Problems()
    _check_visit_fields(visit, problems)
    problems.raise_if_any()
    return _split_lines(visit, catalogue, allow_unknown_items)[0]


def _check_visit_fields(visit: Visit, problems: _Problems) -> None:
    if type(visit.hospital_level) is not int or not 0 <= visit.hospital_level <= 3:
        problems.add(Reason.VALIDATION_FAILED, "hospital_level", "must be 0 (unrated) to 3")
    for name in ("hospital_borne_fen", "other_fund_fen", "prior_stay_deductible_fen"):
        value = getattr(visit, name)
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            problems.add(Reason.AMOUNT_OUT_OF_RANGE, name, "must be an integer from 0 to int64 max")


# ------------------------------------------------------------------------------ fund math


_BandTable = tuple[tuple[int, int, int, str], ...]  # (from, to, ratio_bps, trace label)


def _band_payment(start: int, end: int, bands: _BandTable) -> int:
    """Σ ratio_bps x |[start, end) ∩ [lo, hi)| over the bands, / 10 000 rounded half-up: the
    payment on the base from ``start`` to ``end``, rounded once from its exact value."""
    num = 0
    for lo, hi, ratio, _ in bands:
        a = start if start > lo else lo
        b = end if end < hi else hi
        if b > a:
            num += ratio * (b - a)
    return (num + HALF_BPS) // BPS_ONE if num >= 0 else round_half_up(num, BPS_ONE)


def _label(lo: int, hi: int, ratio: int) -> str:
    return f"{yuan(lo)}{'+' if hi >= _INF else '-' + yuan(hi)}: {pct(ratio)}"


def _pooled_bands(policy: Policy, service: ServiceType, person: PersonType, level: int, reduction: int) -> _BandTable:
    key = ("pooled", service, person, level, reduction)
    got = policy.memo.get(key)
    if got is None:
        rows = []
        for seg in policy.benefits[service].segments:
            ratio = max(seg.ratio_bps[person][level] - reduction, 0)
            hi = _INF if seg.to_fen is None else seg.to_fen
            rows.append((seg.from_fen, hi, ratio, _label(seg.from_fen, hi, ratio)))
        got = policy.memo[key] = tuple(rows)
    return got  # type: ignore[return-value]


def _supp_bands(policy: Policy, supp: Supplementary, hardship: bool) -> _BandTable:
    key = ("supplementary", hardship)
    got = policy.memo.get(key)
    if got is None:
        bonus = supp.hardship_ratio_bonus_bps if hardship else 0
        rows = []
        for b in supp.bands:
            ratio = min(b.ratio_bps + bonus, BPS_ONE)
            hi = _INF if b.to_fen is None else b.to_fen
            rows.append((b.from_fen, hi, ratio, _label(b.from_fen, hi, ratio)))
        got = policy.memo[key] = tuple(rows)
    return got  # type: ignore[return-value]


def _describe_bands(bands: _BandTable, used_from: int, used_to: int) -> str:
    """The labels of the bands ``[used_from, used_to)`` reaches, joined by "; "."""
    text = None
    for lo, hi, _, label in bands:
        if used_to > lo and used_from < hi:
            text = label if text is None else f"{text}; {label}"
    return text or "no band reached"


# Per-policy trace texts and tables, memoised in ``policy.memo`` like the band tables: they depend
# only on the policy and on the visit fields in their key, and a policy is immutable.


def _pooled_plan(
    policy: Policy, benefit: ServiceBenefit, service: ServiceType, person: PersonType, level: int, filing: FilingType
) -> tuple[_BandTable, str]:
    """(band table, trace rule) of the pooled fund for one kind of visit."""
    key = ("pooled plan", service, person, level, filing)
    got = policy.memo.get(key)
    if got is None:
        reduction = policy.temporary_reduction_bps.get(filing, 0)
        bands = _pooled_bands(policy, service, person, level, reduction)
        red_note = f", -{pct(reduction)} pts {filing}" if reduction else ""
        got = policy.memo[key] = (
            bands,
            f"segments {benefit.segment_scope}, tier {level}, {person}{red_note}",
        )
    return got  # type: ignore[return-value]


def _supp_plan(policy: Policy, supp: Supplementary, hardship: bool) -> tuple[int, int | None, _BandTable, str, str]:
    """(threshold, annual cap, band table, trace rule, fund name) of the supplementary fund."""
    key = ("supplementary plan", hardship)
    got = policy.memo.get(key)
    if got is None:
        threshold = supp.hardship_threshold_fen if hardship else supp.threshold_fen
        got = policy.memo[key] = (
            threshold,
            supp.hardship_annual_cap_fen if hardship else supp.annual_cap_fen,
            _supp_bands(policy, supp, hardship),
            f"threshold {yuan(threshold)}{' (hardship)' if hardship else ''}",
            supp.fund.value,
        )
    return got  # type: ignore[return-value]


def _assistance_plan(policy: Policy, category: str) -> tuple[AssistanceRule, _BandTable, str, str]:
    """(rule, band table, trace rule, trace parameter) of medical assistance for a category."""
    key = ("assistance plan", category)
    got = policy.memo.get(key)
    if got is None:
        rule = policy.assistance[category]
        got = policy.memo[key] = (
            rule,
            ((rule.deductible_fen, _INF, rule.ratio_bps, ""),),
            f"category {category}",
            f"{pct(rule.ratio_bps)} above {yuan(rule.deductible_fen)} a year",
        )
    return got  # type: ignore[return-value]


def _bad(field: str, description: str, reason: Reason = Reason.VALIDATION_FAILED) -> DomainError:
    return DomainError(reason, f"{field}: {description}", violations=[FieldViolation(field, description)])


# ---------------------------------------------------------------------------------- settle


def settle(
    policy: Policy,
    catalogue: Catalogue,
    visit: Visit,
    acc: Accumulators,
    *,
    allow_unknown_items: bool = True,
) -> SettlementResult:
    """Compute one settlement (POLICY.md §1-§4). Pure; raises classified DomainErrors."""
    service = visit.service_type
    person = visit.person_type
    level = visit.hospital_level
    category = visit.assistance_category
    other = visit.other_fund_fen
    borne = visit.hospital_borne_fen
    prior = visit.prior_stay_deductible_fen
    day = visit.settle_date
    if not (  # one combined test; _visit_problems classifies what fails
        type(level) is int
        and 0 <= level <= 3
        and type(borne) is int
        and 0 <= borne <= INT64_MAX
        and type(other) is int
        and 0 <= other <= INT64_MAX
        and type(prior) is int
        and 0 <= prior <= INT64_MAX
        and visit.insurance_type == policy.insurance_type
        and person in policy.person_types
        and acc.year == day.year
        and acc.account_balance_fen >= 0
        and (category is None or category in policy.assistance)
        and service in policy.benefits
    ):
        _visit_problems(policy, visit, acc).raise_if_any()
    if not (policy.effective_from <= day and (policy.effective_to is None or day <= policy.effective_to)):
        raise _bad("settle_date", f"policy {policy.version} is not in effect", Reason.POLICY_NOT_FOUND)
    if not (catalogue.effective_from <= day and (catalogue.effective_to is None or day <= catalogue.effective_to)):
        raise _bad("settle_date", f"catalogue {catalogue.version} is not in effect", Reason.CATALOGUE_NOT_FOUND)

    splits, (total, full, over, pre, in_scope) = _split_lines(visit, catalogue, allow_unknown_items)
    new = _new
    trace: list[TraceStep] = [
        new(
            TraceStep,
            (
                "line_split",
                "treatment-place catalogue",
                catalogue.label,
                total,
                f"full self-pay {yuan(full)}, over-limit {yuan(over)}, pre-self-pay {yuan(pre)}, "
                f"in scope {yuan(in_scope)}",
            ),
        )
    ]
    benefit = policy.benefits[service]
    inpatient_pool = benefit.pool is _INPATIENT_POOL

    # 1. deductible ------------------------------------------------------------------------
    ded_rule = benefit.deductible
    mode = ded_rule.mode
    new_admission = visit.new_admission
    admissions_delta = 1 if (service is _INPATIENT and new_admission) else 0
    if mode is _PER_ADMISSION:
        ordinal = acc.admissions + 1 if new_admission else max(acc.admissions, 1)
        table = ded_rule.first_fen if ordinal == 1 else ded_rule.later_fen
        ded_amount = table[person][level]
        already = 0 if new_admission else prior
        ded_param = f"{yuan(ded_amount)} (admission #{ordinal}, tier {level})"
    elif mode is _ANNUAL:
        ded_amount = ded_rule.first_fen[person][level]
        already = acc.inpatient_deductible_borne_fen if inpatient_pool else acc.outpatient_deductible_borne_fen
        ded_param = f"{yuan(ded_amount)} a year"
    else:
        ded_amount = already = 0
        ded_param = "none"
    open_ded = ded_amount - already if ded_amount > already else 0
    deductible = in_scope if in_scope < open_ded else open_ded
    if deductible < 0:
        deductible = 0
    trace.append(new(TraceStep, ("deductible", f"{mode} deductible", ded_param, deductible, f"open {yuan(open_ded)}")))

    # 2. pooled fund by segments, then the annual cap ---------------------------------------
    base = in_scope - deductible
    bands, pooled_rule = _pooled_plan(policy, benefit, service, person, level, visit.filing_type)
    if inpatient_pool:
        base_before, paid_before = acc.pooled_base_fen, acc.pooled_paid_fen
    else:
        base_before, paid_before = acc.outpatient_pooled_base_fen, acc.outpatient_pooled_paid_fen
    start = base_before if benefit.segment_scope is _PER_YEAR else 0
    end = start + base
    uncapped = _band_payment(start, end, bands) if base > 0 else 0
    cap = policy.pool_caps_fen[benefit.pool]
    remaining = cap - paid_before if cap > paid_before else 0
    pooled = uncapped if uncapped < remaining else remaining
    trace.append(
        new(TraceStep, ("pooled_fund", pooled_rule, _describe_bands(bands, start, end), uncapped, f"base {yuan(base)}"))
    )
    if pooled != uncapped:
        trace.append(
            new(
                TraceStep,
                ("annual_cap", f"{benefit.pool} pool annual cap", yuan(cap), pooled, f"left {yuan(remaining)}"),
            )
        )
    funds = [new(FundDetail, (_POOLED, base, remaining, pooled))]

    # 3. large-amount subsidy / critical-illness insurance ---------------------------------
    large = critical = 0
    burden = in_scope - pooled
    supp = policy.supplementary
    supp_base = 0
    supp_paid = 0
    if supp is not None and benefit.supplementary:
        supp_base = burden
        threshold, scap, sbands, supp_rule, supp_fund = _supp_plan(policy, supp, visit.hardship)
        ci_paid = acc.ci_paid_fen
        s_start = acc.ci_burden_fen - threshold
        s_end = s_start + burden
        s_uncapped = _band_payment(s_start, s_end, sbands) if burden > 0 else 0
        s_remaining: int | None = None
        supp_paid = s_uncapped
        if scap is not None:
            s_remaining = scap - ci_paid if scap > ci_paid else 0
            if supp_paid > s_remaining:
                supp_paid = s_remaining
        if supp.fund is _LARGE_AMOUNT:
            large = supp_paid
        else:
            critical = supp_paid
        trace.append(
            new(
                TraceStep,
                (
                    supp_fund,
                    supp_rule,
                    _describe_bands(sbands, s_start, s_end),
                    supp_paid,
                    f"burden {yuan(burden)}"
                    if s_remaining is None
                    else f"burden {yuan(burden)}, cap left {yuan(s_remaining)}",
                ),
            )
        )
        funds.append(new(FundDetail, (supp_fund, burden, s_remaining, supp_paid)))

    # 4. medical assistance --------------------------------------------------------------------
    assistance = 0
    assist_base = 0
    if category is not None:
        rule, a_bands, assist_rule, assist_param = _assistance_plan(policy, category)
        assist_base = burden - supp_paid
        a_start = acc.assistance_base_fen
        a_uncapped = _band_payment(a_start, a_start + assist_base, a_bands) if assist_base > 0 else 0
        a_remaining = rule.annual_cap_fen - acc.assistance_paid_fen
        if a_remaining < 0:
            a_remaining = 0
        assistance = a_uncapped if a_uncapped < a_remaining else a_remaining
        trace.append(
            new(
                TraceStep,
                (
                    "assistance",
                    assist_rule,
                    assist_param,
                    assistance,
                    f"base {yuan(assist_base)}, cap left {yuan(a_remaining)}",
                ),
            )
        )
        funds.append(new(FundDetail, (_ASSISTANCE, assist_base, a_remaining, assistance)))

    # 5. other funds, hospital-borne, personal part ------------------------------------------
    left = total - pooled - supp_paid - assistance
    if other + borne > left:
        raise _bad(
            "other_fund_fen",
            f"other fund {yuan(other)} + hospital-borne {yuan(borne)} exceed what the funds left ({yuan(left)})",
            Reason.AMOUNT_OUT_OF_RANGE,
        )
    if other:
        trace.append(new(TraceStep, ("other_fund", "other fund (as reported)", "", other, "")))
    if borne:
        trace.append(new(TraceStep, ("hospital_borne", "borne by the hospital (as reported)", "", borne, "")))
    fund_total = pooled + supp_paid + assistance + other
    personal = total - fund_total - borne
    trace.append(new(TraceStep, ("personal_part", "total - funds - hospital-borne", "", personal, "")))

    account = 0
    balance = acc.account_balance_fen
    if visit.use_personal_account:
        if policy.personal_account:
            account = personal if personal < balance else balance
            trace.append(
                new(TraceStep, ("personal_account", "account pays first", f"balance {yuan(balance)}", account, ""))
            )
            funds.append(new(FundDetail, (_PERSONAL_ACCOUNT, personal, balance, account)))
        else:
            trace.append(TraceStep("personal_account", "not available", policy.insurance_type.value, 0, "no account"))
    cash = personal - account
    trace.append(new(TraceStep, ("cash", "personal part - account", "", cash, "")))

    # 6. accumulators -----------------------------------------------------------------------------
    if inpatient_pool:
        delta = _new_acc(
            (
                acc.year,  # year
                deductible,  # inpatient_deductible_borne_fen
                0,  # outpatient_deductible_borne_fen
                base,  # pooled_base_fen
                pooled,  # pooled_paid_fen
                supp_base,  # ci_burden_fen
                supp_paid,  # ci_paid_fen
                assist_base,  # assistance_base_fen
                assistance,  # assistance_paid_fen
                admissions_delta,  # admissions
                -account,  # account_balance_fen
                0,  # outpatient_pooled_base_fen
                0,  # outpatient_pooled_paid_fen
            )
        )
    else:
        delta = _new_acc(
            (
                acc.year,  # year
                0,  # inpatient_deductible_borne_fen
                deductible,  # outpatient_deductible_borne_fen
                0,  # pooled_base_fen
                0,  # pooled_paid_fen
                supp_base,  # ci_burden_fen
                supp_paid,  # ci_paid_fen
                assist_base,  # assistance_base_fen
                assistance,  # assistance_paid_fen
                admissions_delta,  # admissions
                -account,  # account_balance_fen
                base,  # outpatient_pooled_base_fen
                pooled,  # outpatient_pooled_paid_fen
            )
        )
    result = _new_result(
        (
            total,  # total_fen
            full,  # full_self_pay_fen
            over,  # over_limit_fen
            pre,  # pre_self_pay_fen
            in_scope,  # in_scope_fen
            deductible,  # deductible_fen
            pooled,  # pooled_fund_fen
            large,  # large_amount_fen
            critical,  # critical_illness_fen
            assistance,  # assistance_fen
            other,  # other_fund_fen
            fund_total,  # fund_total_fen
            borne,  # hospital_borne_fen
            personal,  # personal_part_fen
            account,  # personal_account_fen
            cash,  # cash_fen
            splits,  # lines
            tuple(funds),  # funds
            tuple(trace),  # trace
            policy.version,  # policy_version
            catalogue.version,  # catalogue_version
            acc,  # accumulators_before
            acc.plus(delta),  # accumulators_after
            delta,  # accumulator_delta
            False,  # is_reversal
            service,  # service_type
            day,  # settle_date
        )
    )
    check_identities(result)
    return result


def _visit_problems(policy: Policy, visit: Visit, acc: Accumulators) -> _Problems:
    """Every classified problem of the visit's own fields against the policy and accumulators."""
    problems = _Problems()
    _check_visit_fields(visit, problems)
    if visit.insurance_type != policy.insurance_type:
        problems.add(
            Reason.VALIDATION_FAILED,
            "insurance_type",
            f"{visit.insurance_type} does not match policy {policy.version} ({policy.insurance_type})",
        )
    elif visit.person_type not in policy.person_types:
        problems.add(
            Reason.VALIDATION_FAILED,
            "person_type",
            f"{visit.person_type} is not a person type of the {policy.insurance_type} scheme",
        )
    if acc.year != visit.settle_date.year:
        problems.add(Reason.VALIDATION_FAILED, "accumulators.year", f"{acc.year} is not the settle year")
    if acc.account_balance_fen < 0:
        problems.add(Reason.VALIDATION_FAILED, "accumulators.account_balance_fen", "must not be negative")
    category = visit.assistance_category
    if category is not None and category not in policy.assistance:
        problems.add(
            Reason.VALIDATION_FAILED,
            "assistance_category",
            f"unknown assistance category {category!r} in policy {policy.version}",
        )
    if visit.service_type not in policy.benefits:
        problems.add(Reason.VALIDATION_FAILED, "service_type", f"policy has no {visit.service_type} benefit")
    return problems


# --------------------------------------------------------------------------------- reverse


def reverse(result: SettlementResult, acc: Accumulators | None = None) -> SettlementResult:
    """The exact negative mirror of ``result``: every amount negated; the accumulators go from
    ``acc`` (default: the original's ``accumulators_after``) back by the original delta."""
    if result.is_reversal:
        raise _bad("result", "a reversal cannot itself be reversed", Reason.SETTLEMENT_ALREADY_REVERSED)
    before = result.accumulators_after if acc is None else acc
    if before.year != result.accumulator_delta.year:
        raise _bad("accumulators.year", f"{before.year} is not the year of the settlement")
    delta = result.accumulator_delta.negated()
    new = _new
    line_split = LineSplit
    trace_step = TraceStep
    amounts = tuple(map(neg, _amounts_of(result)))
    # unpacking a LineSplit is cheaper than indexing it nine times
    lines = [new(line_split, (n, c, k, -a, -f, -o, -p, -i, v)) for n, c, k, a, f, o, p, i, v in result.lines]
    mirrored = _new_result(
        (
            *amounts,
            tuple(lines),
            tuple(
                [
                    new(
                        FundDetail,
                        (
                            f.fund,
                            -f.base_fen,
                            None if f.remaining_limit_before_fen is None else -f.remaining_limit_before_fen,
                            -f.paid_fen,
                        ),
                    )
                    for f in result.funds
                ]
            ),
            (
                new(trace_step, ("reversal", "exact negative mirror", result.policy_version, -result.total_fen, "")),
                *[new(trace_step, (t.step, t.rule, t.parameter, -t.amount_fen, t.note)) for t in result.trace],
            ),
            result.policy_version,
            result.catalogue_version,
            before,
            before.plus(delta),
            delta,
            True,
            result.service_type,
            result.settle_date,
        )
    )
    check_identities(mirrored)
    return mirrored


# ------------------------------------------------------------------------------ identities


def check_identities(result: SettlementResult) -> None:
    """POLICY.md §3 on one result; any failure is a bug -> INVARIANT_VIOLATED.

    Runs on every settle/reverse, so the happy path is plain comparisons (the per-line ones
    element-wise in C); messages are built only for what fails."""
    r = result
    bad: list[FieldViolation] = []
    add_bad = bad.append
    total = r.total_fen
    full = r.full_self_pay_fen
    over = r.over_limit_fen
    pre = r.pre_self_pay_fen
    in_scope = r.in_scope_fen
    deductible = r.deductible_fen
    pooled = r.pooled_fund_fen
    large = r.large_amount_fen
    critical = r.critical_illness_fen
    assistance = r.assistance_fen
    fund_total = r.fund_total_fen
    personal = r.personal_part_fen
    account = r.personal_account_fen
    if total != full + over + pre + in_scope:
        add_bad(FieldViolation("total_fen", "total != full self-pay + over-limit + pre-self-pay + in scope"))
    if total != fund_total + personal + r.hospital_borne_fen:
        add_bad(FieldViolation("total_fen", "total != fund total + personal part + hospital-borne"))
    if personal != account + r.cash_fen:
        add_bad(FieldViolation("personal_part_fen", "personal part != personal account + cash"))
    if fund_total != pooled + large + critical + assistance + r.other_fund_fen:
        add_bad(FieldViolation("fund_total_fen", "fund total != sum of the funds"))
    sign = -1 if r.is_reversal else 1
    if sign * (in_scope - deductible - pooled) < 0:
        add_bad(FieldViolation("pooled_fund_fen", "deductible + pooled fund exceed the in-scope amount"))
    lines = r.lines
    if lines:
        _, _, _, amounts, fulls, overs, pres, ins, _ = zip(*lines, strict=True)
        # per-line identity, element-wise in C: amount == full + over + pre + in scope
        if tuple(map(add, map(add, map(add, fulls, overs), pres), ins)) != amounts:
            for i, s in enumerate(lines):
                if s.amount_fen != s.full_self_pay_fen + s.over_limit_fen + s.pre_self_pay_fen + s.in_scope_fen:
                    add_bad(FieldViolation(f"lines[{i}]", "line amount != its split"))
        sums = (sum(amounts), sum(fulls), sum(overs), sum(pres), sum(ins))
    else:
        sums = (0, 0, 0, 0, 0)
    if sums != (total, full, over, pre, in_scope):
        add_bad(FieldViolation("lines", "line splits do not add up to the totals"))
    amounts_signed = (
        total,
        full,
        over,
        pre,
        in_scope,
        deductible,
        pooled,
        large,
        critical,
        assistance,
        r.other_fund_fen,
        fund_total,
        r.hospital_borne_fen,
        personal,
        account,
        r.cash_fen,
    )
    if (min(amounts_signed) < 0) if sign > 0 else (max(amounts_signed) > 0):
        for name, value in zip(AMOUNT_FIELDS, amounts_signed, strict=True):
            if sign * value < 0:
                add_bad(FieldViolation(name, "negative in a settlement" if sign > 0 else "positive in a reversal"))
    for f in r.funds:
        fund, _, limit, paid = f
        if sign * paid < 0:
            add_bad(FieldViolation(f"funds.{fund}", "wrong sign"))
        if sign > 0 and limit is not None and paid > limit:
            add_bad(FieldViolation(f"funds.{fund}", "paid above the remaining limit"))
    d = r.accumulator_delta
    if _not_sum(r.accumulators_after, r.accumulators_before, d):
        add_bad(FieldViolation("accumulators_after", "after != before + delta"))
    if d.pooled_paid_fen + d.outpatient_pooled_paid_fen != pooled:
        add_bad(FieldViolation("accumulator_delta.pooled_paid_fen", "pooled paid delta != pooled fund"))
    if d.ci_paid_fen != large + critical:
        add_bad(FieldViolation("accumulator_delta.ci_paid_fen", "supplementary delta != large-amount + CI"))
    if d.assistance_paid_fen != assistance:
        add_bad(FieldViolation("accumulator_delta.assistance_paid_fen", "assistance delta != assistance"))
    if d.inpatient_deductible_borne_fen + d.outpatient_deductible_borne_fen != deductible:
        add_bad(FieldViolation("accumulator_delta.deductible", "deductible delta != deductible"))
    if d.account_balance_fen != -account:
        add_bad(FieldViolation("accumulator_delta.account_balance_fen", "balance delta != -personal account"))
    if bad:
        raise DomainError(
            Reason.INVARIANT_VIOLATED,
            f"settlement identity violated: {bad[0].field}: {bad[0].description}",
            violations=bad,
        )


def _not_sum(a: Accumulators, b: Accumulators, d: Accumulators) -> bool:
    """``a != b.plus(d)`` field by field, without building the sum (spelled out like ``plus``)."""
    if not (type(a) is type(b) is type(d) is Accumulators and b.year == d.year):
        return a != b.plus(d)  # b.plus raises for a delta of another year
    return (
        a.year != b.year
        or a.inpatient_deductible_borne_fen != b.inpatient_deductible_borne_fen + d.inpatient_deductible_borne_fen
        or a.outpatient_deductible_borne_fen != b.outpatient_deductible_borne_fen + d.outpatient_deductible_borne_fen
        or a.pooled_base_fen != b.pooled_base_fen + d.pooled_base_fen
        or a.pooled_paid_fen != b.pooled_paid_fen + d.pooled_paid_fen
        or a.ci_burden_fen != b.ci_burden_fen + d.ci_burden_fen
        or a.ci_paid_fen != b.ci_paid_fen + d.ci_paid_fen
        or a.assistance_base_fen != b.assistance_base_fen + d.assistance_base_fen
        or a.assistance_paid_fen != b.assistance_paid_fen + d.assistance_paid_fen
        or a.admissions != b.admissions + d.admissions
        or a.account_balance_fen != b.account_balance_fen + d.account_balance_fen
        or a.outpatient_pooled_base_fen != b.outpatient_pooled_base_fen + d.outpatient_pooled_base_fen
        or a.outpatient_pooled_paid_fen != b.outpatient_pooled_paid_fen + d.outpatient_pooled_paid_fen
    )
