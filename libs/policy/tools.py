"""The logic behind ``medsettle policy validate | diff | explain`` (docs/policy-tools.md).

Pure functions that read the files they are given and return data and text lines; the CLI
(``services/cli.py``) only parses arguments and prints. No grpc, protobuf or SQLAlchemy.

* :func:`validate_files`: every problem of every policy / catalogue file at once, each named
  ``FILE:PATH``, plus the problems of the files taken together (what ``PolicyBook`` and
  ``CatalogueBook`` would refuse, and two files for the same region, type and start date).
* :func:`diff_policies` / :func:`diff_catalogues`: what changes between two versions, compared
  on the *parsed* model (two spellings of one value are no difference), one line per changed
  cell, grouped by service type.
* :func:`explain_visit`: settle one visit of the JSON visit format (:func:`parse_visit`) with
  :func:`libs.policy.engine.settle` and render the result and its trace, or give it as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy.engine import settle, validate_visit
from libs.policy.loader import CatalogueBook, PolicyBook, default_books
from libs.policy.model import (
    ACCUMULATOR_FIELDS,
    TEMPORARY_FILINGS,
    Accumulators,
    Catalogue,
    CatalogueItem,
    FeeLine,
    FilingType,
    InsuranceType,
    PersonType,
    Policy,
    ServiceType,
    SettlementResult,
    Visit,
)
from libs.policy.money import BPS_ONE, yuan
from libs.policy.schema import CATALOGUE_SCHEMA, POLICY_SCHEMA, parse_catalogue, parse_policy

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LEVEL_NAMES = ("unrated", "tier1", "tier2", "tier3")  # index = hospital level


# ------------------------------------------------------------------------------ formatting


def money(fen: int) -> str:
    """``130000`` -> ``"1300.00 yuan (130000 fen)"``."""
    return f"{yuan(fen)} yuan ({fen} fen)"


def percent(bps: int) -> str:
    """``8500`` -> ``"85.00%"`` (two decimals: one basis point is 0.01%)."""
    sign = "-" if bps < 0 else ""
    whole, part = divmod(abs(bps), BPS_ONE // 100)
    return f"{sign}{whole}.{part:02d}%"


def effective_text(start: datetime.date, end: datetime.date | None) -> str:
    return (
        f"effective {start.isoformat()} to {end.isoformat()}" if end else f"effective {start.isoformat()}, open-ended"
    )


def _value_text(value: object, name: str) -> str:
    """A leaf value for people: money for ``*_fen``, percent for ``*_bps``, None by what it means."""
    if value is None:
        if name.endswith("to_fen"):
            return "open"
        if "cap" in name:
            return "no cap"
        if "ceiling" in name:
            return "no ceiling"
        if name == "effective_to":
            return "open-ended"
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, int):
        if name.endswith("_fen"):
            return money(value)
        if name.endswith("_bps"):
            return percent(value)
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list) and not _is_record(value):
        return "[" + ", ".join(_value_text(v, name) for v in value) + "]"
    return _brief(value)


def _is_record(value: object) -> bool:
    """A dataclass instance or a NamedTuple: something with named fields."""
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or (
        isinstance(value, tuple) and hasattr(value, "_fields")
    )


def _record_items(value: object) -> Iterator[tuple[str, object]]:
    """The (name, value) of every field of a dataclass or NamedTuple, in declaration order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.compare:
                yield f.name, getattr(value, f.name)
    else:
        record: Any = value
        yield from zip(record._fields, record, strict=True)


_KEY_FIELDS = {"service", "category", "code"}  # records filed under these keys: not repeated


def _brief(value: object) -> str:
    """One line for a whole record (an added segment, a catalogue item, a band of a trace step)."""
    if _is_record(value):
        parts = []
        for name, v in _record_items(value):
            if name in _KEY_FIELDS:
                continue  # the key it is filed under already names it
            if isinstance(v, Mapping):
                continue  # per-person tables are left to the per-cell lines
            if isinstance(v, tuple) and v and _is_record(v[0]):
                parts.append(f"{name} {len(v)}")  # how many segments / bands
                continue
            parts.append(f"{name} {_value_text(v, name)}")
        return ", ".join(parts)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_value_text(v, str(k))}" for k, v in value.items()) + "}"
    return _value_text(value, "")


# ------------------------------------------------------------------------------- validate


@dataclass(frozen=True)
class FileCheck:
    """The outcome of validating one file."""

    path: str
    kind: str | None  # "policy", "catalogue", or None when it could not be told
    violations: tuple[FieldViolation, ...]  # field "FILE:PATH" (or "FILE" for the whole file)
    policy: Policy | None = None
    catalogue: Catalogue | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def problems(self) -> tuple[str, ...]:
        """One ``FILE:PATH: description`` line per problem."""
        return tuple(f"{v.field}: {v.description}" for v in self.violations)

    def summary(self) -> str:
        """``FILE: OK policy <label@hash12>, region ..., effective ...`` for a valid file."""
        if self.policy is not None:
            p = self.policy
            return (
                f"{self.path}: OK policy {p.version}, region {p.insured_region} {p.region_name}, "
                f"{p.insurance_type.value}, {effective_text(p.effective_from, p.effective_to)}"
            )
        if self.catalogue is not None:
            c = self.catalogue
            return (
                f"{self.path}: OK catalogue {c.version}, region {c.region} {c.region_name}, "
                f"{len(c.items)} items, {effective_text(c.effective_from, c.effective_to)}"
            )
        return f"{self.path}: {len(self.problems)} problem(s)"


@dataclass(frozen=True)
class ValidationReport:
    files: tuple[FileCheck, ...]
    together: tuple[str, ...]  # problems of the files taken together (overlaps, duplicate labels)

    @property
    def ok(self) -> bool:
        return not self.together and all(f.ok for f in self.files)

    def lines(self) -> list[str]:
        out: list[str] = []
        for f in self.files:
            out.extend(f.problems)
        out.extend(self.together)
        out.extend(f.summary() for f in self.files if f.ok)
        bad = sum(1 for f in self.files if not f.ok)
        problems = sum(len(f.problems) for f in self.files) + len(self.together)
        out.append(
            f"{len(self.files)} file(s): {len(self.files) - bad} valid, {bad} invalid; "
            f"{problems} problem(s)" + ("" if not self.together else f" ({len(self.together)} across files)")
        )
        return out


def _named(origin: str, v: FieldViolation) -> FieldViolation:
    """``FILE:PATH`` as the parser names it, or just ``FILE`` for a problem of the whole file."""
    return FieldViolation(origin, v.description) if v.field in (origin, f"{origin}:") else v


def read_yaml(path: str) -> tuple[object, list[FieldViolation]]:
    """The file's YAML data, or the problem reading it (named ``FILE:line N``)."""
    try:
        with open(path, "rb") as f:
            return yaml.load(f, Loader=_Loader), []
    except OSError as exc:
        return None, [FieldViolation(path, f"cannot read: {exc.strerror}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or "syntax error"
        return None, [FieldViolation(f"{path}:{where}", f"not valid YAML ({problem})")]


def kind_of(data: object) -> str | None:
    """Which kind of file: "policy" or "catalogue" by its ``schema:`` key; without one, by its
    keys (``items`` = catalogue, ``services`` = policy) so the rest of it is still checked."""
    if not isinstance(data, Mapping):
        return None
    schema = data.get("schema")
    if schema == POLICY_SCHEMA:
        return "policy"
    if schema == CATALOGUE_SCHEMA:
        return "catalogue"
    if "items" in data:
        return "catalogue"
    if "services" in data:
        return "policy"
    return None


def check_file(path: str) -> FileCheck:
    """Validate one file; every problem the parser finds, each as ``FILE:PATH: description``."""
    data, problems = read_yaml(path)
    if problems:
        return FileCheck(path, None, tuple(problems))
    if data is None:
        return FileCheck(path, None, (FieldViolation(path, "the file is empty"),))
    if not isinstance(data, Mapping):
        return FileCheck(path, None, (FieldViolation(path, "the file must hold a YAML mapping (schema: ...)"),))
    kind = kind_of(data)
    if kind is None:
        return FileCheck(
            path,
            None,
            (FieldViolation(f"{path}:schema", f"missing or unknown; expected {POLICY_SCHEMA} or {CATALOGUE_SCHEMA}"),),
        )
    try:
        if kind == "policy":
            return FileCheck(path, kind, (), policy=parse_policy(data, path))
        return FileCheck(path, kind, (), catalogue=parse_catalogue(data, path))
    except DomainError as exc:
        found = tuple(_named(path, v) for v in exc.violations) or (FieldViolation(path, exc.message),)
        return FileCheck(path, kind, found)


def _overlaps(checks: Sequence[FileCheck]) -> list[str]:
    """What a book built from these files would refuse or silently shadow."""
    out: list[str] = []
    labels: dict[tuple[str, str], int] = {}
    starts: dict[tuple[object, ...], int] = {}
    for i, c in enumerate(checks):
        if c.policy is not None:
            label = c.policy.label
            start: tuple[object, ...] = (
                "policy",
                c.policy.insured_region,
                c.policy.insurance_type.value,
                c.policy.effective_from,
            )
            what = (
                f"a second {c.policy.insurance_type.value} policy of region {c.policy.insured_region} "
                f"effective from {c.policy.effective_from.isoformat()}"
            )
        elif c.catalogue is not None:
            label = c.catalogue.label
            start = ("catalogue", c.catalogue.region, c.catalogue.effective_from)
            what = (
                f"a second catalogue of region {c.catalogue.region} "
                f"effective from {c.catalogue.effective_from.isoformat()}"
            )
        else:
            continue
        assert c.kind is not None
        first = labels.setdefault((c.kind, label), i)
        if first != i:
            out.append(f"{c.path}:version: duplicate {c.kind} version {label} (also in {checks[first].path})")
        first = starts.setdefault(start, i)
        if first != i:
            out.append(f"{c.path}:effective_from: {what} (also {checks[first].path})")
    if not out:  # the books' own checks, in case they refuse something more
        try:
            PolicyBook(c.policy for c in checks if c.policy is not None)
            CatalogueBook(c.catalogue for c in checks if c.catalogue is not None)
        except DomainError as exc:
            out.extend(f"{v.field}: {v.description}" for v in exc.violations)
    return out


def validate_files(paths: Sequence[str]) -> ValidationReport:
    checks = tuple(check_file(p) for p in paths)
    return ValidationReport(checks, tuple(_overlaps(checks)))


def find_version(ref: str) -> Policy | Catalogue | None:
    """The policy or catalogue of the loaded books (:func:`default_books`) whose full version
    ``label@hash12`` (or bare label) is ``ref``, or None."""
    policies, catalogues = default_books()
    for book in (policies, catalogues):
        try:
            return book.by_version(ref)
        except DomainError:
            continue
    return None


def load_one(path: str, want: str | None = None) -> Policy | Catalogue:
    """Load a policy or catalogue file (told apart by ``schema:``), or, when ``path`` is no
    file, the loaded version it names (``110100-employee-2026.1@57ad16cdacb8``); raises a
    DomainError whose violations are ``FILE:PATH`` lines when it is not valid (or not of the
    ``want`` kind)."""
    known = None if os.path.isfile(path) else find_version(path)
    if known is not None:
        kind = "policy" if isinstance(known, Policy) else "catalogue"
        if want is None or want == kind:
            return known
        reason = Reason.POLICY_NOT_FOUND if want == "policy" else Reason.CATALOGUE_NOT_FOUND
        raise DomainError(
            reason,
            f"{path} is a {kind} version, not a {want}",
            violations=[FieldViolation(path, f"is a {kind} version, expected a {want}")],
        )
    check = check_file(path)
    if not check.ok:
        reason = Reason.CATALOGUE_DATA_INVALID if check.kind == "catalogue" else Reason.POLICY_DATA_INVALID
        raise DomainError(
            reason,
            f"{path} is not valid",
            violations=list(check.violations),
        )
    got = check.policy if check.policy is not None else check.catalogue
    assert got is not None
    if want is not None and check.kind != want:
        reason = Reason.POLICY_DATA_INVALID if want == "policy" else Reason.CATALOGUE_DATA_INVALID
        raise DomainError(
            reason,
            f"{path} is a {check.kind} file, not a {want} file",
            violations=[FieldViolation(f"{path}:schema", f"is {check.kind}, expected {want}")],
        )
    return got


# ----------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    group: str  # "general", "services.inpatient", "supplementary", "assistance", "items" ...
    path: str  # e.g. "services.inpatient.segments[0] ratio in_service tier3"
    old: str
    new: str

    def line(self) -> str:
        if self.old == ABSENT:
            return f"{self.path}: added: {self.new}"
        if self.new == ABSENT:
            return f"{self.path}: removed: {self.old}"
        return f"{self.path}: {self.old} -> {self.new}"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()
ABSENT = "absent"  # the old or new side of an added or removed value

# Model field -> the key a bureau writes in its file (the rest are spelled the same).
_FILE_NAMES = {"benefits": "services", "pool_caps_fen": "pools", "label": "version"}
_SKIP = {"version", "content_hash", "person_types", "items"}  # header lines / derived / diffed apart


def _unit_less(name: str) -> str:
    for suffix in ("_bps", "_fen"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_person_table(a: object, b: object) -> bool:
    return any(
        isinstance(m, Mapping) and any(isinstance(k, PersonType) for k in m) for m in (a, b) if m is not _MISSING
    )


def _keys(a: object, b: object) -> list[Any]:
    keys: list[Any] = []
    for m in (a, b):
        if isinstance(m, Mapping):
            keys.extend(k for k in m if k not in keys)
    return keys


def _group(path: str) -> str:
    if path.startswith("services."):
        return ".".join(path.split(" ")[0].split(".")[:2]).split("[")[0]
    head = path.split(" ")[0].split(".")[0].split("[")[0]
    return head if head in {"pools", "supplementary", "assistance", "temporary_reduction_bps"} else "general"


def _walk(a: object, b: object, path: str, name: str, out: list[Change]) -> None:
    if a is not _MISSING and b is not _MISSING and type(a) is type(b) and a == b:
        return
    if (a is None and _is_record(b)) or (b is None and _is_record(a)):
        a, b = (_MISSING if a is None else a), (_MISSING if b is None else b)  # e.g. no supplementary fund
    if a is _MISSING or b is _MISSING:
        present = b if a is _MISSING else a
        text = _brief(present) if _is_record(present) or isinstance(present, Mapping) else _value_text(present, name)
        old, new = (ABSENT, text) if a is _MISSING else (text, ABSENT)
        out.append(Change(_group(path), path, old, new))
        return
    if _is_record(a) and type(a) is type(b):
        for (field, va), (_, vb) in zip(_record_items(a), _record_items(b), strict=True):
            if field in _SKIP or field in _KEY_FIELDS:
                continue
            key = _FILE_NAMES.get(field, field) if not path else field
            if _is_person_table(va, vb):
                _person_cells(va, vb, f"{path} {_unit_less(field)}" if path else key, field, out)
            else:
                _walk(va, vb, f"{path}.{key}" if path else key, field, out)
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in _keys(a, b):
            va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
            if name == "temporary_reduction_bps" and k in TEMPORARY_FILINGS:
                va, vb = (0 if va is _MISSING else va), (0 if vb is _MISSING else vb)  # absent = no reduction
            key = k.value if isinstance(k, enum.Enum) else str(k)
            sub = f"{path}.{key}.annual_cap_fen" if name == "pool_caps_fen" else f"{path}.{key}"
            _walk(va, vb, sub, "annual_cap_fen" if name == "pool_caps_fen" else name, out)
        return
    if isinstance(a, tuple) and isinstance(b, tuple) and not _is_record(a) and not _is_record(b):
        for i in range(max(len(a), len(b))):
            va = a[i] if i < len(a) else _MISSING
            vb = b[i] if i < len(b) else _MISSING
            _walk(va, vb, f"{path}[{i}]", name, out)
        return
    out.append(Change(_group(path), path, _value_text(a, name), _value_text(b, name)))


def _person_cells(a: object, b: object, path: str, name: str, out: list[Change]) -> None:
    """One line per changed (person type, hospital level) cell of a per-person table."""
    ma = a if isinstance(a, Mapping) else {}
    mb = b if isinstance(b, Mapping) else {}
    for person in _keys(ma, mb):
        ta, tb = ma.get(person), mb.get(person)
        p = person.value if isinstance(person, enum.Enum) else str(person)
        for level, level_name in enumerate(LEVEL_NAMES):
            va = ta[level] if ta is not None else _MISSING
            vb = tb[level] if tb is not None else _MISSING
            if va != vb or type(va) is not type(vb):
                old = ABSENT if va is _MISSING else _value_text(va, name)
                new = ABSENT if vb is _MISSING else _value_text(vb, name)
                out.append(Change(_group(path), f"{path} {p} {level_name}", old, new))


_COUNTED = ("added", "removed", "changed")  # the catalogue counts that are differences


@dataclass(frozen=True)
class DiffReport:
    kind: str  # "policy" or "catalogue"
    old_version: str
    new_version: str
    changes: tuple[Change, ...]
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)  # catalogue: added/removed/changed
    item_lines: tuple[str, ...] = ()  # catalogue: the items printed (up to the limit)

    @property
    def identical(self) -> bool:
        return not self.changes and not any(self.counts.get(k, 0) for k in _COUNTED)

    def lines(self) -> list[str]:
        out = [f"{self.kind} {self.old_version} -> {self.new_version}"]
        if self.identical:
            same_hash = self.old_version == self.new_version
            out.append("no differences" + ("" if same_hash else " (same values, spelled differently in the files)"))
            return out
        groups: dict[str, list[Change]] = {}
        for c in self.changes:
            groups.setdefault(c.group, []).append(c)
        for group, changes in groups.items():
            out.append(f"{group}:")
            out.extend(f"  {c.line()}" for c in changes)
        if self.kind == "catalogue":
            n = self.counts
            out.append(
                f"items: {n.get('added', 0)} added, {n.get('removed', 0)} removed, {n.get('changed', 0)} changed "
                f"({n.get('old_items', 0)} -> {n.get('new_items', 0)} items)"
            )
            out.extend(f"  {line}" for line in self.item_lines)
        total = len(self.changes) + sum(self.counts.get(k, 0) for k in _COUNTED)
        out.append(f"{total} difference(s)")
        return out


def diff_policies(old: Policy, new: Policy) -> DiffReport:
    """Every changed value of the parsed policies, one line per changed cell."""
    changes: list[Change] = []
    _walk(old, new, "", "", changes)
    order = {"general": 0, "temporary_reduction_bps": 1, "pools": 2}
    services = [f"services.{s.value}" for s in ServiceType]

    tail = ["supplementary", "assistance"]

    def rank(c: Change) -> int:
        if c.group in order:
            return order[c.group]
        if c.group in services:
            return 3 + services.index(c.group)
        return 10 + tail.index(c.group) if c.group in tail else 20

    changes.sort(key=rank)  # stable: within a group, the file's order
    return DiffReport("policy", old.version, new.version, tuple(changes))


def diff_catalogues(old: Catalogue, new: Catalogue, limit: int = 20) -> DiffReport:
    """Header changes, and items added / removed / changed (all counted; ``limit`` of each printed)."""
    header: list[Change] = []
    _walk(old, new, "", "", header)
    added = [c for c in new.items if c not in old.items]
    removed = [c for c in old.items if c not in new.items]
    changed: list[tuple[str, list[Change]]] = []
    for code, item in old.items.items():
        other = new.items.get(code)
        if other is not None and other != item:
            cells: list[Change] = []
            _walk(item, other, "", "", cells)
            changed.append((code, cells))
    lines: list[str] = []
    for sign, codes, items in (("+", added, new.items), ("-", removed, old.items)):
        lines.extend(f"{sign} {code}: {item_text(items[code])}" for code in codes[: max(limit, 0)])
        if len(codes) > limit:
            lines.append(f"{sign} ... and {len(codes) - max(limit, 0)} more")
    for code, cells in changed[: max(limit, 0)]:
        lines.append(f"~ {code}: " + "; ".join(f"{_item_field(c.path)} {c.old} -> {c.new}" for c in cells))
    if len(changed) > limit:
        lines.append(f"~ ... and {len(changed) - max(limit, 0)} more")
    counts = {
        "added": len(added),
        "removed": len(removed),
        "changed": len(changed),
        "old_items": len(old.items),
        "new_items": len(new.items),
    }
    return DiffReport("catalogue", old.version, new.version, tuple(header), counts, tuple(lines))


def item_text(item: CatalogueItem) -> str:
    """``Level-2 nursing care (service, class A, no ceiling)``; a ceiling and a self-pay-first
    ratio when there are, and who it is restricted to."""
    parts = [item.kind.value, f"class {item.item_class.value}"]
    parts.append("no ceiling" if item.ceiling_fen is None else f"ceiling {money(item.ceiling_fen)}")
    if item.self_pay_first_bps:
        parts.append(f"self-pay first {percent(item.self_pay_first_bps)}")
    if item.restriction is not None:
        parts.append(f"restricted to {_brief(item.restriction)}")
    return f"{item.name} ({', '.join(parts)})"


def _item_field(path: str) -> str:
    return {"item_class": "class", "ceiling_fen": "ceiling", "self_pay_first_bps": "self-pay first"}.get(path, path)


def _kind_name(x: Policy | Catalogue) -> str:
    return "policy" if isinstance(x, Policy) else "catalogue"


def diff_files(old_path: str, new_path: str, limit: int = 20) -> DiffReport:
    """Diff two policy files or two catalogue files (a DomainError names what is wrong with them)."""
    old = load_one(old_path)
    new = load_one(new_path)
    if isinstance(old, Policy) and isinstance(new, Policy):
        return diff_policies(old, new)
    if isinstance(old, Catalogue) and isinstance(new, Catalogue):
        return diff_catalogues(old, new, limit)
    raise DomainError(
        Reason.VALIDATION_FAILED,
        "diff needs two policy files or two catalogue files",
        violations=[
            FieldViolation(
                new_path,
                f"is a {_kind_name(new)} file and {old_path} a {_kind_name(old)} file; "
                "diff needs two policy files or two catalogue files",
            )
        ],
    )


# -------------------------------------------------------------------------------- explain

VISIT_FIELDS = {
    # name: (required, kind); kind names a check in _visit_value
    "service_type": (True, ServiceType),
    "hospital_level": (True, int),
    "insurance_type": (True, InsuranceType),
    "person_type": (True, PersonType),
    "filing_type": (True, FilingType),
    "settle_date": (True, datetime.date),
    "treatment_region": (False, "region"),
    "lines": (True, list),
    "use_personal_account": (False, bool),
    "assistance_category": (False, "str_or_null"),
    "hardship": (False, bool),
    "new_admission": (False, bool),
    "hospital_borne_fen": (False, int),
    "other_fund_fen": (False, int),
    "prior_stay_deductible_fen": (False, int),
    "accumulators": (False, dict),
}
LINE_FIELDS = {
    "line_no": (True, int),
    "item_code": (True, str),
    "quantity_milli": (True, int),
    "unit_price_fen": (True, int),
    "refund_of_line_no": (False, "int_or_null"),
}


@dataclass(frozen=True)
class VisitFile:
    """A parsed visit file: the engine's ``Visit``, the treatment region (to pick the shipped
    catalogue) and the accumulators given with it (None = a fresh year)."""

    visit: Visit
    treatment_region: str | None
    accumulators: Accumulators | None


class _Collect:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self, what: str) -> None:
        if self.items:
            first = self.items[0]
            more = f" (+{len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise DomainError(
                Reason.VALIDATION_FAILED,
                f"{what}: {first.field}: {first.description}{more}",
                violations=self.items,
            )


def _visit_value(value: object, kind: object, path: str, problems: _Collect) -> Any:
    """Check one JSON value against its kind; returns the converted value or _MISSING."""
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        allowed = [m.value for m in kind]  # type: ignore[var-annotated]
        if value not in allowed:
            problems.add(path, f"must be one of {', '.join(allowed)}")
            return _MISSING
        return kind(value)
    if kind is int:
        if type(value) is not int:
            problems.add(path, "must be a whole number (no decimals, no quotes)")
            return _MISSING
        return value
    if kind is bool:
        if type(value) is not bool:
            problems.add(path, "must be true or false")
            return _MISSING
        return value
    if kind is str:
        if type(value) is not str:
            problems.add(path, "must be a string")
            return _MISSING
        return value
    if kind == "str_or_null":
        if value is not None and type(value) is not str:
            problems.add(path, "must be a string or null")
            return _MISSING
        return value
    if kind == "int_or_null":
        if value is not None and type(value) is not int:
            problems.add(path, "must be an integer or null")
            return _MISSING
        return value
    if kind == "region":
        if type(value) is not str or len(value) != 6 or not value.isdigit():
            problems.add(path, 'must be a 6-digit region code as a string, e.g. "310100"')
            return _MISSING
        return value
    if kind is datetime.date:
        try:
            if type(value) is not str:
                raise ValueError
            return datetime.date.fromisoformat(value)
        except ValueError:
            problems.add(path, 'must be a date as "YYYY-MM-DD"')
            return _MISSING
    if kind is list:
        if type(value) is not list:
            problems.add(path, "must be a list")
            return _MISSING
        return value
    if kind is dict:
        if type(value) is not dict:
            problems.add(path, "must be an object")
            return _MISSING
        return value
    raise AssertionError(kind)


def _fields_of(
    data: Mapping[str, Any], spec: Mapping[str, tuple[bool, object]], prefix: str, problems: _Collect
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in data:
        if key not in spec:
            problems.add(f"{prefix}{key}", f"unknown field (known: {', '.join(spec)})")
    for key, (required, kind) in spec.items():
        if key not in data:
            if required:
                problems.add(f"{prefix}{key}", "missing (required)")
            continue
        value = _visit_value(data[key], kind, f"{prefix}{key}", problems)
        if value is not _MISSING:
            out[key] = value
    return out


def parse_accumulators(data: object, prefix: str, problems: _Collect, year: int | None) -> Accumulators | None:
    """Accumulators from a JSON object: any of ``year`` and the amount fields (absent = 0)."""
    if not isinstance(data, dict):
        problems.add(prefix.rstrip(".") or "accumulators", "must be an object")
        return None
    spec: dict[str, tuple[bool, object]] = {"year": (False, int)}
    spec.update((name, (False, int)) for name in ACCUMULATOR_FIELDS)
    got = _fields_of(data, spec, prefix, problems)
    if len(got) != len([k for k in data if k in spec]):
        return None
    got.setdefault("year", year)
    if got["year"] is None:
        problems.add(f"{prefix}year", "missing (required when the visit has no settle_date)")
        return None
    return Accumulators(**got)


def parse_visit(data: object, origin: str = "visit") -> VisitFile:
    """The visit file's JSON data (see docs/policy-tools.md "Visit files") as a ``Visit``;
    a DomainError(VALIDATION_FAILED) names every bad field (``lines[2].quantity_milli``)."""
    problems = _Collect()
    if not isinstance(data, dict):
        problems.add("", "a visit file holds one JSON object")
        problems.raise_if_any(origin)
    assert isinstance(data, dict)
    got = _fields_of(data, VISIT_FIELDS, "", problems)
    lines: list[FeeLine] = []
    for i, raw in enumerate(got.get("lines", [])):
        if not isinstance(raw, dict):
            problems.add(f"lines[{i}]", "must be an object")
            continue
        line = _fields_of(raw, LINE_FIELDS, f"lines[{i}].", problems)
        if len(line) == len([k for k in raw if k in LINE_FIELDS]) and all(
            k in line for k, (req, _) in LINE_FIELDS.items() if req
        ):
            lines.append(FeeLine(**line))
    settle_date = got.get("settle_date")
    acc = None
    if "accumulators" in got:
        acc = parse_accumulators(got["accumulators"], "accumulators.", problems, getattr(settle_date, "year", None))
    problems.raise_if_any(origin)
    got.pop("accumulators", None)
    region = got.pop("treatment_region", None)
    got["lines"] = tuple(lines)
    return VisitFile(Visit(**got), region, acc)


def read_json(path: str) -> object:
    """A JSON file's data; an unreadable or malformed file is a DomainError naming the place
    in the file (the caller prefixes the file name, see :func:`_prefixed`)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise DomainError(
            Reason.VALIDATION_FAILED,
            f"{path}: cannot read: {exc.strerror}",
            violations=[FieldViolation("", f"cannot read: {exc.strerror}")],
        ) from exc
    except json.JSONDecodeError as exc:
        raise DomainError(
            Reason.VALIDATION_FAILED,
            f"{path}: not valid JSON",
            violations=[FieldViolation(f"line {exc.lineno} column {exc.colno}", f"not valid JSON ({exc.msg})")],
        ) from exc


def _prefixed(exc: DomainError, origin: str, accumulators_origin: str | None = None) -> DomainError:
    """The same error with every field named ``FILE:field`` (``accumulators.*`` fields by the
    accumulators file when they came from one)."""

    def named(field: str) -> str:
        if accumulators_origin is not None and field.startswith("accumulators."):
            return f"{accumulators_origin}:{field.removeprefix('accumulators.')}"
        return f"{origin}:{field}" if field else origin

    return DomainError(
        exc.reason,
        exc.message if exc.message.startswith(origin) else f"{origin}: {exc.message}",
        violations=[FieldViolation(named(v.field), v.description) for v in exc.violations],
        metadata=exc.metadata,
    )


@dataclass(frozen=True)
class Explanation:
    policy: Policy
    catalogue: Catalogue
    catalogue_origin: str  # the file given, or which shipped catalogue was chosen and why
    visit: Visit
    result: SettlementResult

    def to_json(self) -> dict[str, Any]:
        """The result for machines: money in int fen, ratios in int bps, dates ISO."""
        return {
            "policy_version": self.policy.version,
            "catalogue_version": self.catalogue.version,
            "catalogue_origin": self.catalogue_origin,
            "visit": to_jsonable(self.visit),
            "result": to_jsonable(self.result),
        }

    def lines(self) -> list[str]:
        return explain_lines(self)


def explain_visit(
    policy_path: str,
    visit_path: str,
    *,
    catalogue_path: str | None = None,
    accumulators_path: str | None = None,
) -> Explanation:
    """Settle the visit of ``visit_path`` offline under the policy file (and the catalogue file,
    or the shipped catalogue of the visit's treatment region in effect on its settle date)."""
    policy = load_one(policy_path, "policy")
    assert isinstance(policy, Policy)
    try:
        vf = parse_visit(read_json(visit_path), visit_path)
    except DomainError as exc:
        raise _prefixed(exc, visit_path) from None
    visit = vf.visit
    acc = vf.accumulators
    if accumulators_path is not None:
        problems = _Collect()
        try:
            acc = parse_accumulators(read_json(accumulators_path), "", problems, visit.settle_date.year)
            problems.raise_if_any(accumulators_path)
        except DomainError as exc:
            raise _prefixed(exc, accumulators_path) from None
    if acc is None:
        acc = Accumulators(year=visit.settle_date.year)
    if catalogue_path is not None:
        catalogue = load_one(catalogue_path, "catalogue")
        assert isinstance(catalogue, Catalogue)
        origin = catalogue_path if os.path.isfile(catalogue_path) else f"version {catalogue_path} of the loaded books"
    else:
        if vf.treatment_region is None:
            raise DomainError(
                Reason.VALIDATION_FAILED,
                f"{visit_path}: treatment_region: needed to pick the shipped catalogue (or pass --catalogue)",
                violations=[
                    FieldViolation(f"{visit_path}:treatment_region", "missing: needed when no --catalogue is given")
                ],
            )
        catalogue = default_books()[1].find(vf.treatment_region, visit.settle_date)
        origin = (
            f"shipped catalogue of treatment region {vf.treatment_region} ({catalogue.region_name}) "
            f"in effect on {visit.settle_date.isoformat()}"
        )
    try:
        result = settle(policy, catalogue, visit, acc)
    except DomainError as exc:
        raise _prefixed(_with_line_problems(exc, visit, catalogue), visit_path, accumulators_path) from None
    return Explanation(policy, catalogue, origin, visit, result)


def _with_line_problems(exc: DomainError, visit: Visit, catalogue: Catalogue) -> DomainError:
    """``settle`` stops at the visit's own fields before it looks at the lines; add what
    ``validate_visit`` says about the lines too, so every problem is named at once."""
    fields_ok = dataclasses.replace(  # the visit's own fields are settle's part; here only the lines
        visit, hospital_level=0, hospital_borne_fen=0, other_fund_fen=0, prior_stay_deductible_fen=0
    )
    try:
        validate_visit(fields_ok, catalogue)
    except DomainError as more:
        seen = {(v.field, v.description) for v in exc.violations}
        extra = [v for v in more.violations if (v.field, v.description) not in seen]
        if extra:
            return DomainError(exc.reason, exc.message, violations=[*exc.violations, *extra], metadata=exc.metadata)
    return exc


def to_jsonable(value: object) -> Any:
    """Dataclasses and NamedTuples as objects (every field), enums as values, dates ISO."""
    if _is_record(value):
        return {name: to_jsonable(v) for name, v in _record_items(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k.value if isinstance(k, enum.Enum) else k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    return value


def _field_text(name: str, value: object) -> str:
    """A field of the result or of a trace step: money as yuan for ``*_fen``, nested records
    (e.g. bands of a trace step) one per line."""
    if isinstance(value, tuple | list) and value and all(_is_record(v) for v in value):
        return "; ".join(_brief(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool) and name.endswith("_fen"):
        return f"{yuan(value)} yuan"
    return _value_text(value, name) if not isinstance(value, str) else value


def explain_lines(ex: Explanation) -> list[str]:
    """The breakdown (every field of the result) and the trace, step by step, every field."""
    v, r = ex.visit, ex.result
    out = [
        f"policy     {ex.policy.version} ({ex.policy.region_name} {ex.policy.insurance_type.value}, "
        f"{effective_text(ex.policy.effective_from, ex.policy.effective_to)})",
        f"catalogue  {ex.catalogue.version} ({ex.catalogue_origin})",
        f"visit      {v.service_type.value}, hospital level {v.hospital_level} ({LEVEL_NAMES[v.hospital_level]}), "
        f"{v.insurance_type.value}/{v.person_type.value}, filing {v.filing_type.value}, "
        f"settled {v.settle_date.isoformat()}, {len(v.lines)} line(s)",
        "",
        "breakdown",
    ]
    width = max(len(f.name) for f in dataclasses.fields(r))
    for f in dataclasses.fields(r):
        value = getattr(r, f.name)
        if f.name in ("lines", "funds", "trace"):
            continue
        if isinstance(value, Accumulators):
            out.append(f"  {f.name:<{width}}  (year {value.year}, see accumulators below)")
        else:
            out.append(f"  {f.name:<{width}}  {_field_text(f.name, value)}")
    aw = max(len(n) for n in ACCUMULATOR_FIELDS)
    out += ["", "accumulators (yuan; admissions a count)", f"  {'':<{aw}}  {'before':>14} {'delta':>14} {'after':>14}"]
    for name in ACCUMULATOR_FIELDS:
        cells = [getattr(a, name) for a in (r.accumulators_before, r.accumulator_delta, r.accumulators_after)]
        text = [yuan(c) if name.endswith("_fen") else str(c) for c in cells]
        out.append(f"  {name:<{aw}}  {text[0]:>14} {text[1]:>14} {text[2]:>14}")
    out += ["", f"lines ({len(r.lines)})"]
    for line in r.lines:
        out.append("  " + ", ".join(f"{name} {_field_text(name, x)}" for name, x in _record_items(line)))
    out += ["", f"funds ({len(r.funds)})"]
    for fund in r.funds:
        out.append("  " + ", ".join(f"{name} {_field_text(name, x)}" for name, x in _record_items(fund)))
    out += ["", f"trace ({len(r.trace)} steps)"]
    for i, step in enumerate(r.trace, 1):
        items = list(_record_items(step))
        out.append(f"  {i:>2}. {items[0][1]}")
        for name, x in items[1:]:
            shown = _field_text(name, x)
            out.append(f"      {name}: {shown}" if shown else f"      {name}:")
    return out
