"""The schema of policy and catalogue files (``medsettle.policy/v1``, ``medsettle.catalogue/v1``).

Two layers: pydantic checks the *shape* (types, required keys, no unknown keys, no floats);
:func:`parse_policy` / :func:`parse_catalogue` then check the *meaning* (ordered segments,
ratios ≤ 100%, reductions within the national limits, person types of the scheme) and build the
frozen model objects. Every problem becomes a ``FieldViolation`` named ``"<file>:<path>"``.
See README.md for the format.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy.codes import kind_of_code
from libs.policy.model import (
    NATIONAL_REDUCTION_LIMIT_BPS,
    PERSON_TYPES_OF,
    TEMPORARY_FILINGS,
    AssistanceRule,
    Band,
    Catalogue,
    CatalogueItem,
    Deductible,
    DeductibleMode,
    FilingType,
    Fund,
    InsuranceType,
    ItemClass,
    ItemKind,
    ItemRestriction,
    LevelTable,
    PersonType,
    Policy,
    Pool,
    Segment,
    SegmentScope,
    ServiceBenefit,
    ServiceType,
    Supplementary,
)
from libs.policy.money import BPS_ONE, INT64_MAX, pct, yuan

POLICY_SCHEMA = "medsettle.policy/v1"
CATALOGUE_SCHEMA = "medsettle.catalogue/v1"

# A money field takes integer fen (130000) or an exact yuan string with at most two decimals
# ("1300", "1300.00"); a ratio field integer bps (8500) or a percentage string with at most two
# decimals of a percent ("85%", "92.25%"). Floats are refused: 0.85 or 1300.0 in YAML is never
# read as money or a ratio. Conversion is exact (integer parsing of the digits).
_YUAN = re.compile(r"([+-]?)([0-9]{1,19})(?:\.([0-9]{1,2}))?")
_PERCENT = re.compile(r"([+-]?)([0-9]{1,5})(?:\.([0-9]{1,2}))?%")
_FLOAT_HINT = "floats are not accepted"


def _digits(sign: str, whole: str, frac: str | None) -> int:
    value = int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)
    return -value if sign == "-" else value


def money_value(raw: object, *, signed: bool = False) -> int:
    """Fen from integer fen or a yuan string ("1300.00"); ``signed`` for adjustments ("+500",
    "-650.00", or a signed int of fen). Raises ValueError with the reason otherwise."""
    if type(raw) is int:
        return raw
    if isinstance(raw, float):
        raise ValueError(f"{raw!r}: {_FLOAT_HINT}; write integer fen (130000) or an exact yuan string ('1300.00')")
    if isinstance(raw, str):
        m = _YUAN.fullmatch(raw.strip())
        if m is not None and (signed or not m.group(1)):
            if signed and not m.group(1):
                raise ValueError(
                    f"{raw!r}: an adjustment is written with its sign ('+{raw.strip()}' or '-{raw.strip()}')"
                )
            return _digits(m.group(1), m.group(2), m.group(3))
        if _PERCENT.fullmatch(raw.strip()):
            raise ValueError(f"{raw!r}: a money field takes fen or yuan, not a percentage")
        want = "a signed yuan string ('+500', '-650.00')" if signed else "a yuan string ('1300.00')"
        raise ValueError(f"{raw!r}: must be integer fen or {want} with at most two decimals")
    raise ValueError(f"{raw!r}: must be integer fen or a yuan string ('1300.00')")


def ratio_value(raw: object, *, signed: bool = False) -> int:
    """Basis points from integer bps or a percentage string ("85%", "92.2%"); ``signed`` for
    adjustments ("+5%", "-3%", or a signed int of bps). Raises ValueError otherwise."""
    if type(raw) is int:
        return raw
    if isinstance(raw, float):
        raise ValueError(f"{raw!r}: {_FLOAT_HINT}; write integer bps (8500) or a percentage string ('85%')")
    if isinstance(raw, str):
        m = _PERCENT.fullmatch(raw.strip())
        if m is not None and (signed or not m.group(1)):
            if signed and not m.group(1):
                raise ValueError(
                    f"{raw!r}: an adjustment is written with its sign ('+{raw.strip()}' or '-{raw.strip()}')"
                )
            return _digits(m.group(1), m.group(2), m.group(3))
        if m is None and re.fullmatch(r"[+-]?[0-9]+\.[0-9]{3,}%", raw.strip()):
            raise ValueError(f"{raw!r}: at most two decimals of a percent (a whole number of bps)")
        want = "a signed percentage ('+5%', '-3%')" if signed else "a percentage string ('85%')"
        raise ValueError(f"{raw!r}: must be integer bps or {want}")
    raise ValueError(f"{raw!r}: must be integer bps or a percentage string ('85%')")


def _pyd_money(raw: object) -> object:
    return money_value(raw)


def _pyd_ratio(raw: object) -> object:
    return ratio_value(raw)


Fen = Annotated[StrictInt, BeforeValidator(_pyd_money)]
Bps = Annotated[StrictInt, BeforeValidator(_pyd_ratio)]
# A person-type x level table, as a grid ``{person: [unrated, tier1, tier2, tier3]}`` or in the
# compact form ``{base, person: {person: adj}, level: {tier1: adj, ...}}``; checked by hand
# (:func:`_person_table`) so every cell's problem is named by its path.
Table = Any
LEVEL_NAMES = ("unrated", "tier1", "tier2", "tier3")  # hospital level 0..3
BAND_BASES = ("above_threshold", "cumulative_burden")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentIn(_In):
    from_fen: Fen
    to_fen: Fen | None = None
    ratio_bps: Table


class DeductibleIn(_In):
    mode: DeductibleMode
    first_fen: Table = None
    later_fen: Table = None


class ServiceIn(_In):
    pool: Pool
    deductible: DeductibleIn
    segment_scope: SegmentScope
    segments: Annotated[list[SegmentIn], Field(min_length=1)]
    supplementary: StrictBool = True


class PoolIn(_In):
    annual_cap_fen: Fen


class BandIn(_In):
    from_fen: Fen
    to_fen: Fen | None = None
    ratio_bps: Bps


class HardshipIn(_In):
    threshold_fen: Fen
    ratio_bonus_bps: Bps = 0
    annual_cap_fen: Fen | None = None


class SupplementaryIn(_In):
    fund: Literal["large_amount", "critical_illness"]
    threshold_fen: Fen
    band_basis: StrictStr | None = None  # required; checked by hand for a clear message
    bands: Annotated[list[BandIn], Field(min_length=1)]
    annual_cap_fen: Fen | None = None
    hardship: HardshipIn | None = None


class AssistanceIn(_In):
    deductible_fen: Fen
    ratio_bps: Bps
    annual_cap_fen: Fen


class PolicyIn(_In):
    schema_: Literal["medsettle.policy/v1"] = Field(alias="schema")
    version: StrictStr
    insured_region: Annotated[StrictStr, Field(pattern=r"^\d{6}$")]
    region_name: StrictStr
    insurance_type: InsuranceType
    effective_from: datetime.date
    effective_to: datetime.date | None = None
    source: Annotated[StrictStr, Field(min_length=1)]
    personal_account: StrictBool = False
    temporary_reduction_bps: dict[FilingType, Bps] = {}
    pools: dict[Pool, PoolIn]
    services: Annotated[dict[ServiceType, ServiceIn], Field(min_length=1)]
    supplementary: SupplementaryIn | None = None
    assistance: dict[StrictStr, AssistanceIn] = {}


class CatalogueIn(_In):
    schema_: Literal["medsettle.catalogue/v1"] = Field(alias="schema")
    version: StrictStr
    region: Annotated[StrictStr, Field(pattern=r"^\d{6}$")]
    region_name: StrictStr
    effective_from: datetime.date
    effective_to: datetime.date | None = None
    source: Annotated[StrictStr, Field(min_length=1)]
    generator: dict[StrictStr, Any] | None = None
    items: list[list[Any]]


# ---------------------------------------------------------------------------------- helpers


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def content_hash(data: Mapping[str, Any]) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of the file's data (key order and YAML
    layout do not matter; any value change does)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class _Errors:
    def __init__(self, origin: str, reason: Reason) -> None:
        self.origin = origin
        self.reason = reason
        self.items: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        self.items.append(FieldViolation(f"{self.origin}:{path}", description))

    def amount(self, value: int, path: str) -> None:
        if not 0 <= value <= INT64_MAX:
            self.add(path, "amount must be from 0 to int64 max fen")

    def ratio(self, value: int, path: str) -> None:
        if not 0 <= value <= BPS_ONE:
            self.add(path, "ratio must be from 0 to 10000 bps (100%)")

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            more = f" (+{len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise DomainError(self.reason, f"{first.field}: {first.description}{more}", violations=self.items)


def _shape(
    model: type[BaseModel], data: object, errors: _Errors, also: Callable[[Mapping[Any, Any]], None] | None = None
) -> Any:
    """The file's data checked by ``model``; on failure every shape problem is raised, together
    with what ``also`` finds in the raw data (the hand-checked parts), so a file's problems are
    listed at once."""
    if not isinstance(data, Mapping):
        errors.add("", "the file must hold a YAML mapping")
        errors.raise_if_any()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            msg = e["msg"]
            errors.add(_loc(tuple(e["loc"])), msg.removeprefix("Value error, "))
        if also is not None and isinstance(data, Mapping):
            also(data)
        errors.raise_if_any()
        raise  # unreachable


def _raw_tables(data: Mapping[Any, Any], errors: _Errors) -> None:
    """The person-type x level tables of a policy file that failed its shape check, checked by
    hand from the raw data (the shape check does not look inside them)."""
    try:
        scheme = PERSON_TYPES_OF[InsuranceType(str(data.get("insurance_type")))]
    except ValueError:
        return
    services = data.get("services")
    if not isinstance(services, Mapping):
        return
    for name, s in services.items():
        if not isinstance(s, Mapping):
            continue
        sp = f"services.{name}"
        d = s.get("deductible")
        if isinstance(d, Mapping) and d.get("mode") != DeductibleMode.NONE.value:
            for key in ("first_fen", "later_fen"):
                if d.get(key) is not None:
                    _person_table(d[key], scheme, f"{sp}.deductible.{key}", errors, ratio=False)
        segments = s.get("segments")
        if isinstance(segments, list):
            for i, g in enumerate(segments):
                if isinstance(g, Mapping) and "ratio_bps" in g:
                    _person_table(g["ratio_bps"], scheme, f"{sp}.segments[{i}].ratio_bps", errors, ratio=True)


def _check_bands(bounds: list[tuple[int, int | None]], path: str, errors: _Errors, start: int = 0) -> None:
    """Bands must start at ``start`` (0, or the threshold for published supplementary bands), be
    contiguous and ordered; only the last may be open."""
    for i, (lo, hi) in enumerate(bounds):
        p = f"{path}[{i}]"
        if i == 0 and lo != start:
            errors.add(f"{p}.from_fen", "the first band must start at 0" if start == 0 else f"must be {start}")
        if i > 0:
            prev_hi = bounds[i - 1][1]
            if prev_hi is not None and lo != prev_hi:
                errors.add(f"{p}.from_fen", f"bands must be ordered and contiguous: expected {prev_hi}")
        if hi is None:
            if i != len(bounds) - 1:
                errors.add(f"{p}.to_fen", "only the last band may be open-ended")
        elif hi <= lo:
            errors.add(f"{p}.to_fen", "must be above from_fen (bands must be ordered)")
        errors.amount(lo, f"{p}.from_fen")
        if hi is not None:
            errors.amount(hi, f"{p}.to_fen")


_TABLE_FORMS = (
    "a table {person type: [unrated, tier1, tier2, tier3]} or "
    "{base: value, person: {person type: adjustment}, level: {tier1: adjustment, ...}}"
)


def _cell(raw: object, path: str, errors: _Errors, *, ratio: bool, signed: bool = False) -> int | None:
    """One value of a table (or an adjustment), converted; None (and an error) when it is bad."""
    try:
        return (ratio_value if ratio else money_value)(raw, signed=signed)
    except ValueError as exc:
        errors.add(path, str(exc))
        return None


def _person_table(
    table: object,
    scheme: tuple[PersonType, ...],
    path: str,
    errors: _Errors,
    *,
    ratio: bool,
) -> dict[PersonType, LevelTable]:
    """A person-type x level table, from the grid or the compact form (see docs/policy-format.md)."""
    if not isinstance(table, Mapping) or not table:
        errors.add(path, f"must be {_TABLE_FORMS}")
        return {}
    if "base" in table:
        return _compact_table(table, scheme, path, errors, ratio=ratio)
    out: dict[PersonType, LevelTable] = {}
    for person in scheme:
        if person.value not in table:
            errors.add(f"{path}.{person}", "missing: every person type of the scheme needs a value")
    for person, levels in table.items():
        if person not in scheme:
            errors.add(f"{path}.{person}", "not a person type of this insurance type")
            continue
        if not isinstance(levels, list) or len(levels) != len(LEVEL_NAMES):
            errors.add(f"{path}.{person}", "must list 4 values: [unrated, tier1, tier2, tier3]")
            continue
        cells = [_cell(v, f"{path}.{person}[{lvl}]", errors, ratio=ratio) for lvl, v in enumerate(levels)]
        for lvl, v in enumerate(cells):
            if v is not None:
                (errors.ratio if ratio else errors.amount)(v, f"{path}.{person}[{lvl}]")
        if all(v is not None for v in cells):
            out[PersonType(person)] = (cells[0], cells[1], cells[2], cells[3])  # type: ignore[assignment]
    return out


def _compact_table(
    table: Mapping[Any, Any],
    scheme: tuple[PersonType, ...],
    path: str,
    errors: _Errors,
    *,
    ratio: bool,
) -> dict[PersonType, LevelTable]:
    """``{base, person: {p: adj}, level: {tierN: adj}}``: cell (p, level) = base + person[p] +
    level[level], each part exact; adjustments are signed ("+5%", "-3%", "+500", or signed ints)."""
    for key in table:
        if key not in ("base", "person", "level"):
            errors.add(f"{path}.{key}", "unknown key: the compact form has base, person and level")
    base = _cell(table["base"], f"{path}.base", errors, ratio=ratio)
    person_adj: dict[str, int] = {}
    level_adj: dict[int, int] = {}
    for key, known, into in (("person", tuple(p.value for p in scheme), person_adj), ("level", LEVEL_NAMES, None)):
        raw = table.get(key, {})
        if not isinstance(raw, Mapping):
            errors.add(f"{path}.{key}", f"must be a mapping of {', '.join(known)} to signed adjustments")
            continue
        for name, adj in raw.items():
            if name not in known:
                what = "person type of this insurance type" if key == "person" else "level (unrated, tier1..tier3)"
                errors.add(f"{path}.{key}.{name}", f"not a {what}")
                continue
            v = _cell(adj, f"{path}.{key}.{name}", errors, ratio=ratio, signed=True)
            if v is None:
                continue
            if into is not None:
                into[name] = v
            else:
                level_adj[LEVEL_NAMES.index(name)] = v
    if base is None:
        return {}
    fmt = pct if ratio else yuan
    out: dict[PersonType, LevelTable] = {}
    for person in scheme:
        row = []
        for lvl in range(len(LEVEL_NAMES)):
            v = base + person_adj.get(person.value, 0) + level_adj.get(lvl, 0)
            limit = BPS_ONE if ratio else INT64_MAX
            if not 0 <= v <= limit:
                parts = fmt(base)
                if person.value in person_adj:
                    parts += f" {_signed(fmt, person_adj[person.value])} ({person})"
                if lvl in level_adj:
                    parts += f" {_signed(fmt, level_adj[lvl])} ({LEVEL_NAMES[lvl]})"
                bound = "from 0 to 100%" if ratio else "from 0 to int64 max fen"
                errors.add(f"{path}.{person}[{lvl}]", f"{parts} = {fmt(v)}: must be {bound}")
            row.append(v)
        out[person] = (row[0], row[1], row[2], row[3])
    return out


def _signed(fmt: Any, v: int) -> str:
    return f"+{fmt(v)}" if v >= 0 else f"-{fmt(-v)}"


# ----------------------------------------------------------------------------------- policy


def _band_shift(basis: str | None, threshold: int, bounds: list[tuple[int, int | None]], errors: _Errors) -> int:
    """How far the declared band coordinates lie from the model's (bands above the threshold),
    after checking the bands against their declared basis. ``band_basis`` is required, so the two
    coordinate systems are never taken for one another silently."""
    path = "supplementary.bands"
    first = bounds[0][0]
    if basis not in BAND_BASES:
        errors.add(
            "supplementary.band_basis",
            "required: above_threshold (bands measured on the cumulative compliant burden above the "
            "threshold, the first band starts at 0) or cumulative_burden (bands in the published "
            "coordinates, the cumulative compliant burden itself: the first band starts at the threshold)"
            + ("" if basis is None else f"; got {basis!r}"),
        )
        return 0
    if basis == "above_threshold":
        if first != 0 and threshold != 0 and first == threshold:
            errors.add(
                f"{path}[0].from_fen",
                f"band_basis above_threshold: the first band must start at 0, but it starts at the threshold "
                f"({threshold}): bands written as published are band_basis: cumulative_burden",
            )
            first_ok = False
        else:
            first_ok = True
        _check_bands(bounds if first_ok else [(0, bounds[0][1]), *bounds[1:]], path, errors)
        return 0
    if first != threshold:
        errors.add(
            f"{path}[0].from_fen",
            f"band_basis cumulative_burden: the first band must start at the threshold ({threshold} fen = "
            f"{yuan(threshold)} yuan), not {first}"
            + (": bands measured above the threshold are band_basis: above_threshold" if first == 0 else ""),
        )
        bounds = [(threshold, bounds[0][1]), *bounds[1:]]
    _check_bands(bounds, path, errors, start=threshold)
    return threshold


def parse_policy(data: object, origin: str) -> Policy:
    """Validate one policy file's data (already parsed from YAML) and build the Policy."""
    errors = _Errors(origin, Reason.POLICY_DATA_INVALID)
    p: PolicyIn = _shape(PolicyIn, data, errors, lambda raw: _raw_tables(raw, errors))
    scheme = PERSON_TYPES_OF[p.insurance_type]
    prefix = f"{p.insured_region}-{p.insurance_type}-"
    if not p.version.startswith(prefix) or len(p.version) == len(prefix):
        errors.add("version", f"must look like '{prefix}<year>.<n>'")
    if p.effective_to is not None and p.effective_to < p.effective_from:
        errors.add("effective_to", "must not be before effective_from")
    for filing, bps in p.temporary_reduction_bps.items():
        path = f"temporary_reduction_bps.{filing}"
        if filing not in TEMPORARY_FILINGS:
            errors.add(path, "only temporary filings (referral, emergency, other_temporary) get a reduction")
        elif not 0 <= bps <= NATIONAL_REDUCTION_LIMIT_BPS[filing]:
            errors.add(path, f"must be 0..{NATIONAL_REDUCTION_LIMIT_BPS[filing]} bps (national limit)")
    for pool, rule in p.pools.items():
        errors.amount(rule.annual_cap_fen, f"pools.{pool}.annual_cap_fen")
    if p.personal_account and p.insurance_type is not InsuranceType.EMPLOYEE:
        errors.add("personal_account", "only the employee scheme has personal accounts")

    # A policy need not define every service type: a visit of one it leaves out is refused at
    # settle time with SERVICE_NOT_COVERED.
    benefits: dict[ServiceType, ServiceBenefit] = {}
    for service, s in p.services.items():
        sp = f"services.{service}"
        if s.pool not in p.pools:
            errors.add(f"{sp}.pool", f"pool {s.pool} has no entry under pools")
        d = s.deductible
        if d.mode is DeductibleMode.NONE and (d.first_fen is not None or d.later_fen is not None):
            errors.add(f"{sp}.deductible", "mode none takes no first_fen / later_fen")
        if d.mode is not DeductibleMode.NONE and d.first_fen is None:
            errors.add(f"{sp}.deductible.first_fen", f"required for mode {d.mode}")
        if d.mode is DeductibleMode.ANNUAL and d.later_fen is not None:
            errors.add(f"{sp}.deductible.later_fen", "only a per_admission deductible has later admissions")
        first = (
            _person_table(d.first_fen, scheme, f"{sp}.deductible.first_fen", errors, ratio=False)
            if d.mode is not DeductibleMode.NONE and d.first_fen is not None
            else {}
        )
        later = (
            _person_table(d.later_fen, scheme, f"{sp}.deductible.later_fen", errors, ratio=False)
            if d.later_fen is not None and d.mode is not DeductibleMode.NONE
            else first
        )
        if d.mode is DeductibleMode.PER_ADMISSION and service is not ServiceType.INPATIENT:
            errors.add(f"{sp}.deductible.mode", "per_admission is only for inpatient")
        _check_bands([(g.from_fen, g.to_fen) for g in s.segments], f"{sp}.segments", errors)
        segments = tuple(
            Segment(
                g.from_fen,
                g.to_fen,
                _person_table(g.ratio_bps, scheme, f"{sp}.segments[{i}].ratio_bps", errors, ratio=True),
            )
            for i, g in enumerate(s.segments)
        )
        benefits[service] = ServiceBenefit(
            service, s.pool, Deductible(d.mode, first, later), s.segment_scope, segments, s.supplementary
        )

    supplementary = None
    if p.supplementary is not None:
        su = p.supplementary
        want = Fund.LARGE_AMOUNT if p.insurance_type is InsuranceType.EMPLOYEE else Fund.CRITICAL_ILLNESS
        if su.fund != want.value:
            errors.add("supplementary.fund", f"the {p.insurance_type} scheme uses {want}")
        errors.amount(su.threshold_fen, "supplementary.threshold_fen")
        if su.annual_cap_fen is not None:
            errors.amount(su.annual_cap_fen, "supplementary.annual_cap_fen")
        bounds = [(b.from_fen, b.to_fen) for b in su.bands]
        shift = _band_shift(su.band_basis, su.threshold_fen, bounds, errors)
        bounds = [(lo - shift, None if hi is None else hi - shift) for lo, hi in bounds]
        for i, b in enumerate(su.bands):
            errors.ratio(b.ratio_bps, f"supplementary.bands[{i}].ratio_bps")
        h = su.hardship
        if h is not None:
            errors.amount(h.threshold_fen, "supplementary.hardship.threshold_fen")
            errors.ratio(h.ratio_bonus_bps, "supplementary.hardship.ratio_bonus_bps")
            if h.annual_cap_fen is not None:
                errors.amount(h.annual_cap_fen, "supplementary.hardship.annual_cap_fen")
        supplementary = Supplementary(
            fund=want,
            threshold_fen=su.threshold_fen,
            bands=tuple(Band(lo, hi, b.ratio_bps) for (lo, hi), b in zip(bounds, su.bands, strict=True)),
            annual_cap_fen=su.annual_cap_fen,
            hardship_threshold_fen=su.threshold_fen if h is None else h.threshold_fen,
            hardship_ratio_bonus_bps=0 if h is None else h.ratio_bonus_bps,
            hardship_annual_cap_fen=su.annual_cap_fen if h is None else h.annual_cap_fen,
        )

    assistance: dict[str, AssistanceRule] = {}
    for cat, a in p.assistance.items():
        ap = f"assistance.{cat}"
        errors.amount(a.deductible_fen, f"{ap}.deductible_fen")
        errors.ratio(a.ratio_bps, f"{ap}.ratio_bps")
        errors.amount(a.annual_cap_fen, f"{ap}.annual_cap_fen")
        assistance[cat] = AssistanceRule(cat, a.deductible_fen, a.ratio_bps, a.annual_cap_fen)
    errors.raise_if_any()

    digest = content_hash(data)  # type: ignore[arg-type]
    return Policy(
        version=f"{p.version}@{digest}",
        label=p.version,
        content_hash=digest,
        insured_region=p.insured_region,
        region_name=p.region_name,
        insurance_type=p.insurance_type,
        effective_from=p.effective_from,
        effective_to=p.effective_to,
        source=p.source,
        person_types=scheme,
        temporary_reduction_bps={f: b for f, b in p.temporary_reduction_bps.items() if f in TEMPORARY_FILINGS},
        pool_caps_fen={pool: rule.annual_cap_fen for pool, rule in p.pools.items()},
        benefits=benefits,
        supplementary=supplementary,
        assistance=assistance,
        personal_account=p.personal_account,
    )


# -------------------------------------------------------------------------------- catalogue

ITEM_FIELDS = ("code", "name", "kind", "class", "ceiling_fen", "self_pay_first_bps")


def _restriction(raw: Any, path: str, errors: _Errors) -> ItemRestriction | None:
    """The optional 7th entry of an item row: {"sex": "F"|"M", "min_age": n, "max_age": n}."""
    if not isinstance(raw, dict) or not raw or set(raw) - {"sex", "min_age", "max_age"}:
        errors.add(path, "must be a mapping with some of: sex, min_age, max_age")
        return None
    sex, lo, hi = raw.get("sex"), raw.get("min_age"), raw.get("max_age")
    if sex is not None and sex not in ("F", "M"):
        errors.add(f"{path}.sex", "must be F or M")
        return None
    for name, value in (("min_age", lo), ("max_age", hi)):
        if value is not None and (type(value) is not int or not 0 <= value <= 150):
            errors.add(f"{path}.{name}", "must be an integer number of years from 0 to 150")
            return None
    if lo is not None and hi is not None and lo > hi:
        errors.add(f"{path}.max_age", "must not be below min_age")
        return None
    return ItemRestriction(sex, lo, hi)


def parse_catalogue(data: object, origin: str) -> Catalogue:
    """Validate one catalogue file's data and build the Catalogue. Items are compact rows
    ``[code, name, kind, class, ceiling_fen|null, self_pay_first_bps]``."""
    errors = _Errors(origin, Reason.CATALOGUE_DATA_INVALID)
    c: CatalogueIn = _shape(CatalogueIn, data, errors)
    if not c.version.startswith(f"{c.region}-catalogue-"):
        errors.add("version", f"must look like '{c.region}-catalogue-<year>.<n>'")
    if c.effective_to is not None and c.effective_to < c.effective_from:
        errors.add("effective_to", "must not be before effective_from")
    items: dict[str, CatalogueItem] = {}
    kinds = {k.value: k for k in ItemKind}
    classes = {k.value: k for k in ItemClass}
    for i, row in enumerate(c.items):
        p = f"items[{i}]"
        if len(row) not in (len(ITEM_FIELDS), len(ITEM_FIELDS) + 1):
            errors.add(
                p, f"must have {len(ITEM_FIELDS)} entries ({', '.join(ITEM_FIELDS)}) and optionally a restriction"
            )
            continue
        code, name, kind_s, class_s, ceiling, spf = row[: len(ITEM_FIELDS)]
        ok = True
        restriction = _restriction(row[len(ITEM_FIELDS)], f"{p}.restriction", errors) if len(row) > 6 else None
        if type(code) is not str or kind_of_code(code) is None:
            errors.add(f"{p}.code", f"malformed national item code {code!r}")
            ok = False
        elif code in items:
            errors.add(f"{p}.code", f"duplicate item code {code}")
            ok = False
        if type(name) is not str or not name:
            errors.add(f"{p}.name", "must be a non-empty string")
            ok = False
        kind = kinds.get(kind_s) if isinstance(kind_s, str) else None
        if kind is None:
            errors.add(f"{p}.kind", "must be drug, service or consumable")
            ok = False
        elif ok and kind_of_code(code) is not kind:
            errors.add(f"{p}.kind", f"code {code} is not a {kind} code")
            ok = False
        cls = classes.get(class_s) if isinstance(class_s, str) else None
        if cls is None:
            errors.add(f"{p}.class", "must be A, B or C")
            ok = False
        if isinstance(ceiling, str):  # a yuan string ("12.50"), converted exactly
            ceiling = _cell(ceiling, f"{p}.ceiling_fen", errors, ratio=False)
            ok = ok and ceiling is not None
            ceiling = -1 if ceiling is None else ceiling
        if isinstance(spf, str):  # a percentage string ("10%")
            spf = _cell(spf, f"{p}.self_pay_first_bps", errors, ratio=True)
            ok = ok and spf is not None
            spf = 0 if spf is None else spf
        if ceiling is not None and (type(ceiling) is not int or not 0 < ceiling <= INT64_MAX):
            if ok:
                errors.add(f"{p}.ceiling_fen", "must be null, a positive integer of fen or a yuan string ('12.50')")
            ok = False
        if type(spf) is not int or not 0 <= spf <= BPS_ONE:
            errors.add(f"{p}.self_pay_first_bps", "must be an integer from 0 to 10000 bps or a percentage ('10%')")
            ok = False
        elif spf and cls is not ItemClass.B:
            errors.add(f"{p}.self_pay_first_bps", "only class B items have a self-pay-first ratio")
            ok = False
        if ok and kind is not None and cls is not None:
            items[code] = CatalogueItem(code, name, kind, cls, ceiling, spf, restriction)
    errors.raise_if_any()
    digest = content_hash(data)  # type: ignore[arg-type]
    return Catalogue(
        version=f"{c.version}@{digest}",
        label=c.version,
        content_hash=digest,
        region=c.region,
        region_name=c.region_name,
        effective_from=c.effective_from,
        effective_to=c.effective_to,
        source=c.source,
        items=items,
    )
