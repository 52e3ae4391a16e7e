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
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

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
from libs.policy.money import BPS_ONE, INT64_MAX

POLICY_SCHEMA = "medsettle.policy/v1"
CATALOGUE_SCHEMA = "medsettle.catalogue/v1"

LevelList = Annotated[list[StrictInt], Field(min_length=4, max_length=4)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentIn(_In):
    from_fen: StrictInt
    to_fen: StrictInt | None = None
    ratio_bps: dict[PersonType, LevelList]


class DeductibleIn(_In):
    mode: DeductibleMode
    first_fen: dict[PersonType, LevelList] = {}
    later_fen: dict[PersonType, LevelList] | None = None


class ServiceIn(_In):
    pool: Pool
    deductible: DeductibleIn
    segment_scope: SegmentScope
    segments: Annotated[list[SegmentIn], Field(min_length=1)]
    supplementary: StrictBool = True


class PoolIn(_In):
    annual_cap_fen: StrictInt


class BandIn(_In):
    from_fen: StrictInt
    to_fen: StrictInt | None = None
    ratio_bps: StrictInt


class HardshipIn(_In):
    threshold_fen: StrictInt
    ratio_bonus_bps: StrictInt = 0
    annual_cap_fen: StrictInt | None = None


class SupplementaryIn(_In):
    fund: Literal["large_amount", "critical_illness"]
    threshold_fen: StrictInt
    bands: Annotated[list[BandIn], Field(min_length=1)]
    annual_cap_fen: StrictInt | None = None
    hardship: HardshipIn | None = None


class AssistanceIn(_In):
    deductible_fen: StrictInt
    ratio_bps: StrictInt
    annual_cap_fen: StrictInt


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
    temporary_reduction_bps: dict[FilingType, StrictInt] = {}
    pools: dict[Pool, PoolIn]
    services: dict[ServiceType, ServiceIn]
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


def _shape(model: type[BaseModel], data: object, errors: _Errors) -> Any:
    if not isinstance(data, Mapping):
        errors.add("", "the file must hold a YAML mapping")
        errors.raise_if_any()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            errors.add(_loc(tuple(e["loc"])), e["msg"])
        errors.raise_if_any()
        raise  # unreachable


def _check_bands(bounds: list[tuple[int, int | None]], path: str, errors: _Errors) -> None:
    """Bands must start at 0, be contiguous and ordered; only the last may be open."""
    for i, (lo, hi) in enumerate(bounds):
        p = f"{path}[{i}]"
        if i == 0 and lo != 0:
            errors.add(f"{p}.from_fen", "the first band must start at 0")
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


def _person_table(
    table: Mapping[PersonType, list[int]],
    scheme: tuple[PersonType, ...],
    path: str,
    errors: _Errors,
    *,
    ratio: bool,
) -> dict[PersonType, LevelTable]:
    out: dict[PersonType, LevelTable] = {}
    for person in scheme:
        if person not in table:
            errors.add(f"{path}.{person}", "missing: every person type of the scheme needs a value")
    for person, levels in table.items():
        if person not in scheme:
            errors.add(f"{path}.{person}", "not a person type of this insurance type")
            continue
        for lvl, v in enumerate(levels):
            (errors.ratio if ratio else errors.amount)(v, f"{path}.{person}[{lvl}]")
        out[person] = (levels[0], levels[1], levels[2], levels[3])
    return out


# ----------------------------------------------------------------------------------- policy


def parse_policy(data: object, origin: str) -> Policy:
    """Validate one policy file's data (already parsed from YAML) and build the Policy."""
    errors = _Errors(origin, Reason.POLICY_DATA_INVALID)
    p: PolicyIn = _shape(PolicyIn, data, errors)
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

    benefits: dict[ServiceType, ServiceBenefit] = {}
    for service in ServiceType:
        if service not in p.services:
            errors.add(f"services.{service}", "missing: every service type needs a benefit")
    for service, s in p.services.items():
        sp = f"services.{service}"
        if s.pool not in p.pools:
            errors.add(f"{sp}.pool", f"pool {s.pool} has no entry under pools")
        d = s.deductible
        first = (
            _person_table(d.first_fen, scheme, f"{sp}.deductible.first_fen", errors, ratio=False)
            if (d.mode is not DeductibleMode.NONE)
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
        _check_bands([(b.from_fen, b.to_fen) for b in su.bands], "supplementary.bands", errors)
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
            bands=tuple(Band(b.from_fen, b.to_fen, b.ratio_bps) for b in su.bands),
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
        if ceiling is not None and (type(ceiling) is not int or not 0 < ceiling <= INT64_MAX):
            errors.add(f"{p}.ceiling_fen", "must be null or a positive integer of fen")
            ok = False
        if type(spf) is not int or not 0 <= spf <= BPS_ONE:
            errors.add(f"{p}.self_pay_first_bps", "must be an integer from 0 to 10000 bps")
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
