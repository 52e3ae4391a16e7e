"""The settlement engine: line split, funds in order, accumulators, identities, trace.

Pure: no I/O. Follows POLICY.md §1-§4. Money is int fen, ratios int bps, and every non-whole
value goes through :func:`libs.policy.money.round_half_up` exactly once per fund (or per line
component for the line split).
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import add

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy.codes import is_well_formed
from libs.policy.model import (
    AMOUNT_FIELDS,
    Accumulators,
    Catalogue,
    DeductibleMode,
    FeeLine,
    Fund,
    FundDetail,
    ItemClass,
    LineSplit,
    PersonType,
    Policy,
    Pool,
    SegmentScope,
    ServiceType,
    SettlementResult,
    Supplementary,
    TraceStep,
    Visit,
)
from libs.policy.money import BPS_ONE, INT64_MAX, MILLI, pct, round_half_up, yuan

_INF = 1 << 100  # stands for an open upper band edge; larger than any int64 amount
_A, _B, _C = ItemClass.A, ItemClass.B, ItemClass.C


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


def _split_lines(
    visit: Visit, catalogue: Catalogue, allow_unknown_items: bool
) -> tuple[tuple[LineSplit, ...], tuple[int, int, int, int, int]]:
    """Validate and split every line in one pass. Returns the splits and the five totals
    (amount, full self-pay, over-limit, pre-self-pay, in scope).

    Hot loop: one combined guard for a well-formed line, then the split; the detailed
    classification of a bad line happens only on the slow path (:func:`_line_problems`)."""
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
    problems = _Problems()
    _check_visit_fields(visit, problems)
    problems.raise_if_any()
    _split_lines(visit, catalogue, allow_unknown_items)


def _check_visit_fields(visit: Visit, problems: _Problems) -> None:
    if type(visit.hospital_level) is not int or not 0 <= visit.hospital_level <= 3:
        problems.add(Reason.VALIDATION_FAILED, "hospital_level", "must be 0 (unrated) to 3")
    for name in ("hospital_borne_fen", "other_fund_fen", "prior_stay_deductible_fen"):
        value = getattr(visit, name)
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            problems.add(Reason.AMOUNT_OUT_OF_RANGE, name, "must be an integer from 0 to int64 max")


# ------------------------------------------------------------------------------ fund math


_BandTable = tuple[tuple[int, int, int, str], ...]  # (from, to, ratio_bps, trace label)


def _band_numerator(start: int, end: int, bands: _BandTable) -> int:
    """Σ ratio_bps x |[start, end) ∩ [lo, hi)| over the bands: the exact payment x 10 000."""
    num = 0
    for lo, hi, ratio, _ in bands:
        a = start if start > lo else lo
        b = end if end < hi else hi
        if b > a:
            num += ratio * (b - a)
    return num


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
    return "; ".join([label for lo, hi, _, label in bands if used_to > lo and used_from < hi]) or "no band reached"


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
    problems.raise_if_any()
    if not policy.in_effect(visit.settle_date):
        raise _bad("settle_date", f"policy {policy.version} is not in effect", Reason.POLICY_NOT_FOUND)
    if not catalogue.in_effect(visit.settle_date):
        raise _bad("settle_date", f"catalogue {catalogue.version} is not in effect", Reason.CATALOGUE_NOT_FOUND)

    splits, (total, full, over, pre, in_scope) = _split_lines(visit, catalogue, allow_unknown_items)
    trace: list[TraceStep] = [
        TraceStep(
            "line_split",
            "treatment-place catalogue",
            catalogue.label,
            total,
            f"full self-pay {yuan(full)}, over-limit {yuan(over)}, pre-self-pay {yuan(pre)}, in scope {yuan(in_scope)}",
        )
    ]
    benefit = policy.benefits[visit.service_type]
    person = visit.person_type
    level = visit.hospital_level
    inpatient_pool = benefit.pool is Pool.INPATIENT

    # 1. deductible ------------------------------------------------------------------------
    ded_rule = benefit.deductible
    admissions_delta = 1 if (visit.service_type is ServiceType.INPATIENT and visit.new_admission) else 0
    if ded_rule.mode is DeductibleMode.PER_ADMISSION:
        ordinal = acc.admissions + 1 if visit.new_admission else max(acc.admissions, 1)
        table = ded_rule.first_fen if ordinal == 1 else ded_rule.later_fen
        ded_amount = table[person][level]
        already = 0 if visit.new_admission else visit.prior_stay_deductible_fen
        ded_param = f"{yuan(ded_amount)} (admission #{ordinal}, tier {level})"
    elif ded_rule.mode is DeductibleMode.ANNUAL:
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
    trace.append(
        TraceStep("deductible", f"{ded_rule.mode} deductible", ded_param, deductible, f"open {yuan(open_ded)}")
    )

    # 2. pooled fund by segments, then the annual cap ---------------------------------------
    base = in_scope - deductible
    reduction = policy.temporary_reduction_bps.get(visit.filing_type, 0)
    bands = _pooled_bands(policy, visit.service_type, person, level, reduction)
    if inpatient_pool:
        base_before, paid_before = acc.pooled_base_fen, acc.pooled_paid_fen
    else:
        base_before, paid_before = acc.outpatient_pooled_base_fen, acc.outpatient_pooled_paid_fen
    start = base_before if benefit.segment_scope is SegmentScope.PER_YEAR else 0
    uncapped = round_half_up(_band_numerator(start, start + base, bands), BPS_ONE) if base > 0 else 0
    cap = policy.pool_caps_fen[benefit.pool]
    remaining = cap - paid_before if cap > paid_before else 0
    pooled = uncapped if uncapped < remaining else remaining
    red_note = f", -{pct(reduction)} pts {visit.filing_type}" if reduction else ""
    trace.append(
        TraceStep(
            "pooled_fund",
            f"segments {benefit.segment_scope}, tier {level}, {person}{red_note}",
            _describe_bands(bands, start, start + base),
            uncapped,
            f"base {yuan(base)}",
        )
    )
    if pooled != uncapped:
        trace.append(
            TraceStep("annual_cap", f"{benefit.pool} pool annual cap", yuan(cap), pooled, f"left {yuan(remaining)}")
        )
    funds = [FundDetail(Fund.POOLED.value, base, remaining, pooled)]

    # 3. large-amount subsidy / critical-illness insurance ---------------------------------
    large = critical = 0
    burden = in_scope - pooled
    supp = policy.supplementary
    supp_base = 0
    supp_paid = 0
    if supp is not None and benefit.supplementary:
        supp_base = burden
        hardship = visit.hardship
        threshold = supp.hardship_threshold_fen if hardship else supp.threshold_fen
        scap = supp.hardship_annual_cap_fen if hardship else supp.annual_cap_fen
        sbands = _supp_bands(policy, supp, hardship)
        s_start = acc.ci_burden_fen - threshold
        s_end = s_start + burden
        s_uncapped = round_half_up(_band_numerator(s_start, s_end, sbands), BPS_ONE) if burden > 0 else 0
        s_remaining: int | None = None
        supp_paid = s_uncapped
        if scap is not None:
            s_remaining = scap - acc.ci_paid_fen if scap > acc.ci_paid_fen else 0
            if supp_paid > s_remaining:
                supp_paid = s_remaining
        if supp.fund is Fund.LARGE_AMOUNT:
            large = supp_paid
        else:
            critical = supp_paid
        trace.append(
            TraceStep(
                supp.fund.value,
                f"threshold {yuan(threshold)}{' (hardship)' if hardship else ''}",
                _describe_bands(sbands, s_start, s_end),
                supp_paid,
                f"burden {yuan(burden)}" + ("" if s_remaining is None else f", cap left {yuan(s_remaining)}"),
            )
        )
        funds.append(FundDetail(supp.fund.value, burden, s_remaining, supp_paid))

    # 4. medical assistance --------------------------------------------------------------------
    assistance = 0
    assist_base = 0
    if category is not None:
        rule = policy.assistance[category]
        assist_base = burden - supp_paid
        a_start = acc.assistance_base_fen
        a_num = _band_numerator(a_start, a_start + assist_base, ((rule.deductible_fen, _INF, rule.ratio_bps, ""),))
        a_uncapped = round_half_up(a_num, BPS_ONE) if assist_base > 0 else 0
        a_remaining = rule.annual_cap_fen - acc.assistance_paid_fen
        if a_remaining < 0:
            a_remaining = 0
        assistance = a_uncapped if a_uncapped < a_remaining else a_remaining
        trace.append(
            TraceStep(
                "assistance",
                f"category {category}",
                f"{pct(rule.ratio_bps)} above {yuan(rule.deductible_fen)} a year",
                assistance,
                f"base {yuan(assist_base)}, cap left {yuan(a_remaining)}",
            )
        )
        funds.append(FundDetail(Fund.ASSISTANCE.value, assist_base, a_remaining, assistance))

    # 5. other funds, hospital-borne, personal part ------------------------------------------
    other = visit.other_fund_fen
    borne = visit.hospital_borne_fen
    left = total - pooled - supp_paid - assistance
    if other + borne > left:
        raise _bad(
            "other_fund_fen",
            f"other fund {yuan(other)} + hospital-borne {yuan(borne)} exceed what the funds left ({yuan(left)})",
            Reason.AMOUNT_OUT_OF_RANGE,
        )
    if other:
        trace.append(TraceStep("other_fund", "other fund (as reported)", "", other))
    if borne:
        trace.append(TraceStep("hospital_borne", "borne by the hospital (as reported)", "", borne))
    fund_total = pooled + supp_paid + assistance + other
    personal = total - fund_total - borne
    trace.append(TraceStep("personal_part", "total - funds - hospital-borne", "", personal))

    account = 0
    balance = acc.account_balance_fen
    if visit.use_personal_account:
        if policy.personal_account:
            account = personal if personal < balance else balance
            trace.append(TraceStep("personal_account", "account pays first", f"balance {yuan(balance)}", account))
            funds.append(FundDetail(Fund.PERSONAL_ACCOUNT.value, personal, balance, account))
        else:
            trace.append(TraceStep("personal_account", "not available", policy.insurance_type.value, 0, "no account"))
    cash = personal - account
    trace.append(TraceStep("cash", "personal part - account", "", cash))

    # 6. accumulators -----------------------------------------------------------------------------
    delta = Accumulators(
        acc.year,
        inpatient_deductible_borne_fen=deductible if inpatient_pool else 0,
        outpatient_deductible_borne_fen=0 if inpatient_pool else deductible,
        pooled_base_fen=base if inpatient_pool else 0,
        pooled_paid_fen=pooled if inpatient_pool else 0,
        ci_burden_fen=supp_base,
        ci_paid_fen=supp_paid,
        assistance_base_fen=assist_base,
        assistance_paid_fen=assistance,
        admissions=admissions_delta,
        account_balance_fen=-account,
        outpatient_pooled_base_fen=0 if inpatient_pool else base,
        outpatient_pooled_paid_fen=0 if inpatient_pool else pooled,
    )
    result = SettlementResult(
        total_fen=total,
        full_self_pay_fen=full,
        over_limit_fen=over,
        pre_self_pay_fen=pre,
        in_scope_fen=in_scope,
        deductible_fen=deductible,
        pooled_fund_fen=pooled,
        large_amount_fen=large,
        critical_illness_fen=critical,
        assistance_fen=assistance,
        other_fund_fen=other,
        fund_total_fen=fund_total,
        hospital_borne_fen=borne,
        personal_part_fen=personal,
        personal_account_fen=account,
        cash_fen=cash,
        lines=splits,
        funds=tuple(funds),
        trace=tuple(trace),
        policy_version=policy.version,
        catalogue_version=catalogue.version,
        accumulators_before=acc,
        accumulators_after=acc.plus(delta),
        accumulator_delta=delta,
        is_reversal=False,
        service_type=visit.service_type,
        settle_date=visit.settle_date,
    )
    check_identities(result)
    return result


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
    new = tuple.__new__
    amounts = {name: -getattr(result, name) for name in AMOUNT_FIELDS}
    mirrored = SettlementResult(
        **amounts,
        lines=tuple(
            [new(LineSplit, (s[0], s[1], s[2], -s[3], -s[4], -s[5], -s[6], -s[7], s[8])) for s in result.lines]
        ),
        funds=tuple(
            FundDetail(
                f.fund,
                -f.base_fen,
                None if f.remaining_limit_before_fen is None else -f.remaining_limit_before_fen,
                -f.paid_fen,
            )
            for f in result.funds
        ),
        trace=(
            TraceStep("reversal", "exact negative mirror", result.policy_version, -result.total_fen),
            *(TraceStep(t.step, t.rule, t.parameter, -t.amount_fen, t.note) for t in result.trace),
        ),
        policy_version=result.policy_version,
        catalogue_version=result.catalogue_version,
        accumulators_before=before,
        accumulators_after=before.plus(delta),
        accumulator_delta=delta,
        is_reversal=True,
        service_type=result.service_type,
        settle_date=result.settle_date,
    )
    check_identities(mirrored)
    return mirrored


# ------------------------------------------------------------------------------ identities


def check_identities(result: SettlementResult) -> None:
    """POLICY.md §3 on one result; any failure is a bug -> INVARIANT_VIOLATED.

    Runs on every settle/reverse, so the happy path is plain comparisons; messages are built
    only for what fails."""
    r = result
    bad: list[FieldViolation] = []
    add_bad = bad.append
    total = r.total_fen
    if total != r.full_self_pay_fen + r.over_limit_fen + r.pre_self_pay_fen + r.in_scope_fen:
        add_bad(FieldViolation("total_fen", "total != full self-pay + over-limit + pre-self-pay + in scope"))
    if total != r.fund_total_fen + r.personal_part_fen + r.hospital_borne_fen:
        add_bad(FieldViolation("total_fen", "total != fund total + personal part + hospital-borne"))
    if r.personal_part_fen != r.personal_account_fen + r.cash_fen:
        add_bad(FieldViolation("personal_part_fen", "personal part != personal account + cash"))
    if r.fund_total_fen != (
        r.pooled_fund_fen + r.large_amount_fen + r.critical_illness_fen + r.assistance_fen + r.other_fund_fen
    ):
        add_bad(FieldViolation("fund_total_fen", "fund total != sum of the funds"))
    sign = -1 if r.is_reversal else 1
    if sign * (r.in_scope_fen - r.deductible_fen - r.pooled_fund_fen) < 0:
        add_bad(FieldViolation("pooled_fund_fen", "deductible + pooled fund exceed the in-scope amount"))
    if r.lines:
        _, _, _, amounts, fulls, overs, pres, ins, _ = zip(*r.lines, strict=True)
        # per-line identity, element-wise in C: amount == full + over + pre + in scope
        if tuple(map(add, map(add, map(add, fulls, overs), pres), ins)) != amounts:
            for i, s in enumerate(r.lines):
                if s.amount_fen != s.full_self_pay_fen + s.over_limit_fen + s.pre_self_pay_fen + s.in_scope_fen:
                    add_bad(FieldViolation(f"lines[{i}]", "line amount != its split"))
        sums = (sum(amounts), sum(fulls), sum(overs), sum(pres), sum(ins))
    else:
        sums = (0, 0, 0, 0, 0)
    if sums != (total, r.full_self_pay_fen, r.over_limit_fen, r.pre_self_pay_fen, r.in_scope_fen):
        add_bad(FieldViolation("lines", "line splits do not add up to the totals"))
    amounts_signed = (
        total,
        r.full_self_pay_fen,
        r.over_limit_fen,
        r.pre_self_pay_fen,
        r.in_scope_fen,
        r.deductible_fen,
        r.pooled_fund_fen,
        r.large_amount_fen,
        r.critical_illness_fen,
        r.assistance_fen,
        r.other_fund_fen,
        r.fund_total_fen,
        r.hospital_borne_fen,
        r.personal_part_fen,
        r.personal_account_fen,
        r.cash_fen,
    )
    if (min(amounts_signed) < 0) if sign > 0 else (max(amounts_signed) > 0):
        for name, value in zip(AMOUNT_FIELDS, amounts_signed, strict=True):
            if sign * value < 0:
                add_bad(FieldViolation(name, "negative in a settlement" if sign > 0 else "positive in a reversal"))
    for f in r.funds:
        if sign * f.paid_fen < 0:
            add_bad(FieldViolation(f"funds.{f.fund}", "wrong sign"))
        limit = f.remaining_limit_before_fen
        if sign > 0 and limit is not None and f.paid_fen > limit:
            add_bad(FieldViolation(f"funds.{f.fund}", "paid above the remaining limit"))
    d = r.accumulator_delta
    if r.accumulators_after != r.accumulators_before.plus(d):
        add_bad(FieldViolation("accumulators_after", "after != before + delta"))
    if d.pooled_paid_fen + d.outpatient_pooled_paid_fen != r.pooled_fund_fen:
        add_bad(FieldViolation("accumulator_delta.pooled_paid_fen", "pooled paid delta != pooled fund"))
    if d.ci_paid_fen != r.large_amount_fen + r.critical_illness_fen:
        add_bad(FieldViolation("accumulator_delta.ci_paid_fen", "supplementary delta != large-amount + CI"))
    if d.assistance_paid_fen != r.assistance_fen:
        add_bad(FieldViolation("accumulator_delta.assistance_paid_fen", "assistance delta != assistance"))
    if d.inpatient_deductible_borne_fen + d.outpatient_deductible_borne_fen != r.deductible_fen:
        add_bad(FieldViolation("accumulator_delta.deductible", "deductible delta != deductible"))
    if d.account_balance_fen != -r.personal_account_fen:
        add_bad(FieldViolation("accumulator_delta.account_balance_fen", "balance delta != -personal account"))
    if bad:
        raise DomainError(
            Reason.INVARIANT_VIOLATED,
            f"settlement identity violated: {bad[0].field}: {bad[0].description}",
            violations=bad,
        )
