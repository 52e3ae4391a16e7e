"""The policy engine's data: visit input, year-to-date accumulators, settlement output, and the
parsed forms of a policy and a catalogue. Pure data, no I/O.

Inputs and the settlement result are frozen ``slots`` dataclasses. The per-line, per-fund and
per-step parts of a result are ``NamedTuple``s: immutable like the rest, but cheap to build in
the hot loop (a 200-line visit builds 200 of them).

The engine builds ``Accumulators`` and ``SettlementResult`` with :func:`slot_builder` (the same
object the generated ``__init__`` makes, without its per-field Python overhead); see README.md
"Benchmark".
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from itertools import repeat
from operator import call
from typing import Any, NamedTuple, TypeVar

_T = TypeVar("_T")


def slot_builder(cls: type[_T]) -> Callable[[Iterable[Any]], _T]:
    """A fast constructor for a frozen ``slots`` dataclass without ``__post_init__``: takes the
    value of every field, in field order, and returns the instance ``cls(*values)`` would.

    The generated ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__`` (39 k instructions, ~5 µs, for the 27 fields of a SettlementResult;
    this takes 5.7 k). Here the fields are stored on a plain twin class with the very same ``__slots__`` (a plain
    slot store each), then the object's ``__class__`` is switched to ``cls``, which CPython allows
    exactly because the two layouts are identical. The result is an ordinary ``cls`` instance
    (frozen again from then on). Falls back to setting the slots one by one if the switch is
    refused. Only for the engine's own hot path."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    if getattr(cls, "__slots__", None) != names or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not a plain slots dataclass")
    twin = type(f"_{cls.__name__}Slots", (), {"__slots__": names})
    scope: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": cls}
    exec(  # generated like dataclasses' own __init__, from the field names only
        f"def build(values):\n"
        f"    obj = new(twin)\n"
        f"    ({', '.join(f'obj.{n}' for n in names)},) = values\n"
        f"    obj.__class__ = cls\n"
        f"    return obj\n",
        scope,
    )
    build: Callable[[Iterable[Any]], _T] = scope["build"]
    try:
        probe = build(range(len(names)))
        ok = type(probe) is cls and [getattr(probe, n) for n in names] == list(range(len(names)))
    except TypeError:
        ok = False
    if ok:
        return build
    setters = tuple(getattr(cls, n).__set__ for n in names)
    new = object.__new__
    consume = deque[None](maxlen=0).extend

    def build_slowly(values: Iterable[Any]) -> _T:
        obj = new(cls)
        consume(map(call, setters, repeat(obj), values))
        return obj

    return build_slowly


class InsuranceType(StrEnum):
    EMPLOYEE = "employee"
    RESIDENT = "resident"


class PersonType(StrEnum):
    IN_SERVICE = "in_service"
    RETIRED = "retired"
    RESIDENT_ADULT = "resident_adult"
    RESIDENT_MINOR = "resident_minor"


PERSON_TYPES_OF: dict[InsuranceType, tuple[PersonType, ...]] = {
    InsuranceType.EMPLOYEE: (PersonType.IN_SERVICE, PersonType.RETIRED),
    InsuranceType.RESIDENT: (PersonType.RESIDENT_ADULT, PersonType.RESIDENT_MINOR),
}


class ServiceType(StrEnum):
    INPATIENT = "inpatient"
    GENERAL_OUTPATIENT = "general_outpatient"
    CHRONIC_OUTPATIENT = "chronic_outpatient"
    PHARMACY = "pharmacy"


class FilingType(StrEnum):
    RELOCATED_RETIREE = "relocated_retiree"
    LONG_TERM_RESIDENT = "long_term_resident"
    STATIONED_STAFF = "stationed_staff"
    REFERRAL = "referral"
    EMERGENCY = "emergency"
    OTHER_TEMPORARY = "other_temporary"


TEMPORARY_FILINGS = (FilingType.REFERRAL, FilingType.EMERGENCY, FilingType.OTHER_TEMPORARY)
# National limits on the ratio reduction for temporary out-of-province treatment (bps).
NATIONAL_REDUCTION_LIMIT_BPS: dict[FilingType, int] = {
    FilingType.REFERRAL: 1_000,
    FilingType.EMERGENCY: 1_000,
    FilingType.OTHER_TEMPORARY: 2_000,
}


class ItemClass(StrEnum):
    A = "A"
    B = "B"
    C = "C"


class ItemKind(StrEnum):
    DRUG = "drug"
    SERVICE = "service"
    CONSUMABLE = "consumable"


class Pool(StrEnum):
    """Which annual pool (deductible, segments, cap) a service type draws on."""

    INPATIENT = "inpatient"
    OUTPATIENT = "outpatient"


class DeductibleMode(StrEnum):
    PER_ADMISSION = "per_admission"  # per stay; the admission ordinal picks first/later
    ANNUAL = "annual"  # one deductible per calendar year and pool
    NONE = "none"


class SegmentScope(StrEnum):
    PER_VISIT = "per_visit"  # bands measured on this visit's base alone
    PER_YEAR = "per_year"  # bands measured on the pool's cumulative base in the year


class Fund(StrEnum):
    POOLED = "pooled"
    LARGE_AMOUNT = "large_amount"
    CRITICAL_ILLNESS = "critical_illness"
    ASSISTANCE = "assistance"
    PERSONAL_ACCOUNT = "personal_account"


# ----------------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class FeeLine:
    line_no: int
    item_code: str
    quantity_milli: int  # quantity x 1000 (exact; 0.5 box = 500); negative for a refund line
    unit_price_fen: int
    refund_of_line_no: int | None = None


@dataclass(frozen=True, slots=True)
class Visit:
    service_type: ServiceType
    hospital_level: int  # 1..3 (0 = unrated)
    insurance_type: InsuranceType
    person_type: PersonType
    filing_type: FilingType
    settle_date: datetime.date
    lines: tuple[FeeLine, ...]
    use_personal_account: bool = False
    assistance_category: str | None = None
    hardship: bool = False
    new_admission: bool = True  # False for interim settlements of the same stay
    hospital_borne_fen: int = 0
    other_fund_fen: int = 0
    # Added: deductible already borne by earlier interim settlements of this same stay
    # (only read when new_admission is False and the deductible is per admission).
    prior_stay_deductible_fen: int = 0


@dataclass(frozen=True, slots=True)
class Accumulators:
    """Year-to-date totals for one person and one calendar year. All int.

    ``pooled_*`` is the inpatient pool (inpatient and, by policy, chronic outpatient);
    ``outpatient_pooled_*`` the outpatient pool (general outpatient, pharmacy). ``ci_*`` holds
    the supplementary fund of the person's scheme: large-amount subsidy for employees,
    critical-illness insurance for residents. A *delta* is an ``Accumulators`` of differences
    with the same ``year``.
    """

    year: int
    inpatient_deductible_borne_fen: int = 0
    outpatient_deductible_borne_fen: int = 0
    pooled_base_fen: int = 0
    pooled_paid_fen: int = 0
    ci_burden_fen: int = 0
    ci_paid_fen: int = 0
    assistance_base_fen: int = 0
    assistance_paid_fen: int = 0
    admissions: int = 0
    account_balance_fen: int = 0
    outpatient_pooled_base_fen: int = 0
    outpatient_pooled_paid_fen: int = 0

    # plus/minus/negated are spelled out field by field and build through _new_acc: they run
    # several times per settlement and a generic getattr loop (or __init__) costs microseconds.
    # test_fast_paths.test_accumulator_arithmetic_covers_every_field checks every field.
    def plus(self, delta: Accumulators) -> Accumulators:
        if self.year != delta.year:
            _same_year(self, delta)
        return _new_acc(
            (
                self.year,
                self.inpatient_deductible_borne_fen + delta.inpatient_deductible_borne_fen,
                self.outpatient_deductible_borne_fen + delta.outpatient_deductible_borne_fen,
                self.pooled_base_fen + delta.pooled_base_fen,
                self.pooled_paid_fen + delta.pooled_paid_fen,
                self.ci_burden_fen + delta.ci_burden_fen,
                self.ci_paid_fen + delta.ci_paid_fen,
                self.assistance_base_fen + delta.assistance_base_fen,
                self.assistance_paid_fen + delta.assistance_paid_fen,
                self.admissions + delta.admissions,
                self.account_balance_fen + delta.account_balance_fen,
                self.outpatient_pooled_base_fen + delta.outpatient_pooled_base_fen,
                self.outpatient_pooled_paid_fen + delta.outpatient_pooled_paid_fen,
            )
        )

    def minus(self, delta: Accumulators) -> Accumulators:
        if self.year != delta.year:
            _same_year(self, delta)
        return _new_acc(
            (
                self.year,
                self.inpatient_deductible_borne_fen - delta.inpatient_deductible_borne_fen,
                self.outpatient_deductible_borne_fen - delta.outpatient_deductible_borne_fen,
                self.pooled_base_fen - delta.pooled_base_fen,
                self.pooled_paid_fen - delta.pooled_paid_fen,
                self.ci_burden_fen - delta.ci_burden_fen,
                self.ci_paid_fen - delta.ci_paid_fen,
                self.assistance_base_fen - delta.assistance_base_fen,
                self.assistance_paid_fen - delta.assistance_paid_fen,
                self.admissions - delta.admissions,
                self.account_balance_fen - delta.account_balance_fen,
                self.outpatient_pooled_base_fen - delta.outpatient_pooled_base_fen,
                self.outpatient_pooled_paid_fen - delta.outpatient_pooled_paid_fen,
            )
        )

    def negated(self) -> Accumulators:
        return _new_acc(
            (
                self.year,
                -self.inpatient_deductible_borne_fen,
                -self.outpatient_deductible_borne_fen,
                -self.pooled_base_fen,
                -self.pooled_paid_fen,
                -self.ci_burden_fen,
                -self.ci_paid_fen,
                -self.assistance_base_fen,
                -self.assistance_paid_fen,
                -self.admissions,
                -self.account_balance_fen,
                -self.outpatient_pooled_base_fen,
                -self.outpatient_pooled_paid_fen,
            )
        )

    def delta_to(self, after: Accumulators) -> Accumulators:
        """The delta that turns ``self`` into ``after``."""
        return after.minus(self)


_new_acc = slot_builder(Accumulators)

ACCUMULATOR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Accumulators) if f.name != "year")


def _same_year(a: Accumulators, b: Accumulators) -> None:
    if a.year != b.year:  # a delta belongs to one calendar year
        raise ValueError(f"accumulator years differ: {a.year} vs {b.year}")


# ---------------------------------------------------------------------------------- output


class LineSplit(NamedTuple):
    line_no: int
    item_code: str
    item_class: ItemClass | None  # None when the item is not in the catalogue
    amount_fen: int
    full_self_pay_fen: int
    over_limit_fen: int
    pre_self_pay_fen: int
    in_scope_fen: int
    catalogue_version: str


class FundDetail(NamedTuple):
    fund: str  # a Fund value
    base_fen: int
    remaining_limit_before_fen: int | None  # None when the fund has no cap
    paid_fen: int


class TraceBand(NamedTuple):
    """One band of a fund step, as the step used it on this visit.

    ``from_fen`` / ``to_fen`` (None = open) are the band edges in the coordinates the step measures
    in: the pool's base (cumulative in the year for ``per_year``), the cumulative compliant burden
    for large-amount / critical illness (as published: the first band starts at the threshold),
    the cumulative assistance base. ``base_fen`` is the part of this visit's base inside the band,
    ``paid_fen`` what the band pays: ``ratio_bps x base_fen / 10 000`` rounded down or up by the
    largest-remainder rule, so the bands add up exactly to the fund's one rounding of the exact sum
    (the step's amount before any cap); see ``engine._band_payment``."""

    from_fen: int
    to_fen: int | None
    ratio_bps: int
    base_fen: int
    paid_fen: int


class TraceStep(NamedTuple):
    step: str
    rule: str
    parameter: str
    amount_fen: int
    note: str = ""
    # Fund steps measured in bands (pooled fund, large-amount / critical illness, assistance):
    # every band of the step, and where this visit's base started in the step's coordinates (the
    # year-to-date base before it; 0 for a per-visit scope). Empty / 0 for the other steps.
    bands: tuple[TraceBand, ...] = ()
    base_start_fen: int = 0


@dataclass(frozen=True, slots=True)
class SettlementResult:
    total_fen: int
    full_self_pay_fen: int
    over_limit_fen: int
    pre_self_pay_fen: int
    in_scope_fen: int
    deductible_fen: int
    pooled_fund_fen: int
    large_amount_fen: int
    critical_illness_fen: int
    assistance_fen: int
    other_fund_fen: int
    fund_total_fen: int
    hospital_borne_fen: int
    personal_part_fen: int
    personal_account_fen: int
    cash_fen: int
    lines: tuple[LineSplit, ...]
    funds: tuple[FundDetail, ...]
    trace: tuple[TraceStep, ...]
    policy_version: str
    catalogue_version: str
    accumulators_before: Accumulators
    accumulators_after: Accumulators
    accumulator_delta: Accumulators
    # Added fields
    is_reversal: bool = False
    service_type: ServiceType = ServiceType.INPATIENT
    settle_date: datetime.date = datetime.date(1970, 1, 1)


AMOUNT_FIELDS: tuple[str, ...] = (
    "total_fen",
    "full_self_pay_fen",
    "over_limit_fen",
    "pre_self_pay_fen",
    "in_scope_fen",
    "deductible_fen",
    "pooled_fund_fen",
    "large_amount_fen",
    "critical_illness_fen",
    "assistance_fen",
    "other_fund_fen",
    "fund_total_fen",
    "hospital_borne_fen",
    "personal_part_fen",
    "personal_account_fen",
    "cash_fen",
)


# ------------------------------------------------------------------------- policy (parsed)

LevelTable = tuple[int, int, int, int]  # indexed by hospital level 0 (unrated), 1, 2, 3


@dataclass(frozen=True, slots=True)
class Segment:
    """One band ``[from_fen, to_fen)`` of the pooled-fund base; ``to_fen`` None = open."""

    from_fen: int
    to_fen: int | None
    ratio_bps: Mapping[PersonType, LevelTable]


@dataclass(frozen=True, slots=True)
class Deductible:
    mode: DeductibleMode
    first_fen: Mapping[PersonType, LevelTable]  # first admission (or the annual amount)
    later_fen: Mapping[PersonType, LevelTable]  # second and later admissions


@dataclass(frozen=True, slots=True)
class ServiceBenefit:
    service: ServiceType
    pool: Pool
    deductible: Deductible
    segment_scope: SegmentScope
    segments: tuple[Segment, ...]
    supplementary: bool  # does this service's burden count for large-amount / critical illness


@dataclass(frozen=True, slots=True)
class Band:
    from_fen: int
    to_fen: int | None
    ratio_bps: int


@dataclass(frozen=True, slots=True)
class Supplementary:
    """Large-amount subsidy (employees) or critical-illness insurance (residents).

    Bands are measured on the cumulative compliant burden *above the threshold*."""

    fund: Fund
    threshold_fen: int
    bands: tuple[Band, ...]
    annual_cap_fen: int | None
    hardship_threshold_fen: int
    hardship_ratio_bonus_bps: int
    hardship_annual_cap_fen: int | None


@dataclass(frozen=True, slots=True)
class AssistanceRule:
    category: str
    deductible_fen: int  # annual, on the cumulative assistance base
    ratio_bps: int
    annual_cap_fen: int


@dataclass(frozen=True, slots=True)
class Policy:
    version: str  # "<label>@<content hash>", see README.md "Versions"
    label: str  # as declared in the file, e.g. "110100-employee-2026.1"
    content_hash: str
    insured_region: str
    region_name: str
    insurance_type: InsuranceType
    effective_from: datetime.date
    effective_to: datetime.date | None
    source: str
    person_types: tuple[PersonType, ...]
    temporary_reduction_bps: Mapping[FilingType, int]
    pool_caps_fen: Mapping[Pool, int]
    benefits: Mapping[ServiceType, ServiceBenefit]
    supplementary: Supplementary | None
    assistance: Mapping[str, AssistanceRule]
    personal_account: bool
    # Derived lookups the engine memoises per policy (band tables with their trace labels).
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def in_effect(self, on: datetime.date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)


# ---------------------------------------------------------------------- catalogue (parsed)


@dataclass(frozen=True, slots=True)
class ItemRestriction:
    """Who an item is for (the catalogue's "limited to women / children" notes). A use outside it
    is not refused at the desk; intelligent monitoring flags it."""

    sex: str | None = None  # "F" or "M"
    min_age: int | None = None  # years, inclusive
    max_age: int | None = None  # years, inclusive

    def allows(self, sex: str, age: int | None) -> bool:
        if self.sex is not None and sex and sex != self.sex:
            return False
        if age is None:
            return True
        if self.min_age is not None and age < self.min_age:
            return False
        return self.max_age is None or age <= self.max_age


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    code: str
    name: str
    kind: ItemKind
    item_class: ItemClass
    ceiling_fen: int | None  # price ceiling per unit; None = no ceiling
    self_pay_first_bps: int  # class B only; 0 otherwise
    restriction: ItemRestriction | None = None


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str  # "<label>@<content hash>"
    label: str
    content_hash: str
    region: str
    region_name: str
    effective_from: datetime.date
    effective_to: datetime.date | None
    source: str
    items: Mapping[str, CatalogueItem]
    # Hot-path table: code -> (item class, ceiling or -1, self-pay-first bps).
    table: Mapping[str, tuple[ItemClass, int, int]] = field(repr=False, compare=False, default_factory=dict)
    # Derived from ``table`` for the engine's fast line split, see make_split_table.
    split_table: Mapping[str, tuple[ItemClass, int, int]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not self.table:
            object.__setattr__(self, "table", make_catalogue_table(self.items))
        object.__setattr__(self, "split_table", make_split_table(self.table))

    def lookup(self, item_code: str) -> CatalogueItem | None:
        return self.items.get(item_code)

    def in_effect(self, on: datetime.date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)


def make_catalogue_table(items: Mapping[str, CatalogueItem]) -> dict[str, tuple[ItemClass, int, int]]:
    return {
        code: (it.item_class, -1 if it.ceiling_fen is None else it.ceiling_fen, it.self_pay_first_bps)
        for code, it in items.items()
    }


NO_CEILING = 1 << 100  # larger than any int64 price: "no ceiling" in the split table


def make_split_table(table: Mapping[str, tuple[ItemClass, int, int]]) -> dict[str, tuple[ItemClass, int, int]]:
    """The engine's fast line split reads ``code -> (item class, ceiling, self-pay-first bps)``
    with the per-line branches already taken: no ceiling (-1) is :data:`NO_CEILING`, so one
    ``ceiling < price`` test decides "over the ceiling"; the self-pay-first ratio is 0 unless the
    item is class B. Entries the fast split cannot take exactly (not int, negative ratio) are left
    out; the engine then uses its reference split, which reads ``table``."""
    out = {}
    for code, (cls, ceiling, spf_bps) in table.items():
        if type(ceiling) is not int or type(spf_bps) is not int or spf_bps < 0:
            continue
        out[code] = (cls, NO_CEILING if ceiling < 0 else ceiling, spf_bps if cls is ItemClass.B else 0)
    return out
