"""Registry files (YAML or CSV) -> regions, institutions, insured persons.

YAML: one file with any of the top-level lists ``regions``, ``institutions``, ``persons``.
CSV: one kind per file, told by its header: ``person_no`` -> persons, ``institution_code`` ->
institutions, otherwise ``region_code`` -> regions; lists (networked services, disease codes)
are separated by ``;``. Every error names ``<file>:<line>:<field>``, all of them at once.
See services/eligibility/samples/ for examples.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from libs.core.errors import DomainError, FieldViolation, Reason
from services.eligibility.domain.model import Institution, InsuredPerson, Region
from services.eligibility.domain.registry import parse_institution, parse_person, parse_region

_KINDS = ("regions", "institutions", "persons")
_PARSERS: dict[str, Any] = {"regions": parse_region, "institutions": parse_institution, "persons": parse_person}


@dataclass
class RegistryData:
    regions: list[Region] = field(default_factory=list)
    institutions: list[Institution] = field(default_factory=list)
    persons: list[InsuredPerson] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.regions) + len(self.institutions) + len(self.persons)


class _LineDict(dict[str, Any]):
    line = 0


class _LineLoader(yaml.SafeLoader):
    """Remembers the line of every mapping, so errors can name it."""


def _mapping_with_line(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
    value = _LineDict({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    value.line = node.start_mark.line + 1
    return value


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _invalid(path: Path, problems: list[FieldViolation]) -> DomainError:
    first = problems[0]
    return DomainError(
        Reason.REGISTRY_DATA_INVALID,
        f"{path}: {len(problems)} problem(s); first: {first.field}: {first.description}",
        violations=problems,
    )


def _rows_from_yaml(path: Path, text: str) -> list[tuple[str, int, dict[str, Any]]]:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise _invalid(path, [FieldViolation(f"{path.name}:{line}", "not valid YAML")]) from exc
    if doc is None:
        return []
    if not isinstance(doc, _LineDict):
        raise _invalid(path, [FieldViolation(f"{path.name}:1", f"expected a mapping with {', '.join(_KINDS)}")])
    problems = [FieldViolation(f"{path.name}:{doc.line}:{k}", "unknown section") for k in doc if k not in _KINDS]
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for kind in _KINDS:
        items = doc.get(kind) or []
        if not isinstance(items, list):
            problems.append(FieldViolation(f"{path.name}:{doc.line}:{kind}", "expected a list"))
            continue
        for item in items:
            line = int(getattr(item, "line", doc.line))
            if not isinstance(item, dict):
                problems.append(FieldViolation(f"{path.name}:{line}:{kind}", "expected a mapping per entry"))
                continue
            rows.append((kind, line, dict(item)))
    if problems:
        raise _invalid(path, problems)
    return rows


def _rows_from_csv(path: Path, text: str) -> list[tuple[str, int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    if "person_no" in header:
        kind = "persons"
    elif "institution_code" in header:
        kind = "institutions"
    elif "region_code" in header:
        kind = "regions"
    else:
        raise _invalid(
            path, [FieldViolation(f"{path.name}:1", "header needs person_no, institution_code or region_code")]
        )
    rows = []
    for row in reader:
        if None in row:  # more cells than header columns
            raise _invalid(path, [FieldViolation(f"{path.name}:{reader.line_num}", "more cells than the header")])
        rows.append((kind, reader.line_num, {k: v for k, v in row.items() if v is not None}))
    return rows


def load_registry_file(path: str | Path) -> RegistryData:
    """Parses and validates one registry file; raises REGISTRY_DATA_INVALID naming file:line:field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(p, [FieldViolation(p.name, f"cannot read: {exc}")]) from exc
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        rows = _rows_from_yaml(p, text)
    elif suffix == ".csv":
        rows = _rows_from_csv(p, text)
    else:
        raise _invalid(p, [FieldViolation(p.name, "a .yaml, .yml or .csv file")])
    out = RegistryData()
    problems: list[FieldViolation] = []
    seen: dict[tuple[str, str], int] = {}
    for kind, line, data in rows:
        entity, bad = _PARSERS[kind](data, f"{p.name}:{line}")
        problems.extend(bad)
        if entity is None:
            continue
        key = (kind, str(getattr(entity, _key_of(kind))))
        if key in seen:
            problems.append(FieldViolation(f"{p.name}:{line}", f"duplicate of the entry on line {seen[key]}"))
            continue
        seen[key] = line
        getattr(out, kind).append(entity)
    if problems:
        raise _invalid(p, problems)
    return out


def _key_of(kind: str) -> str:
    return {"regions": "region_code", "institutions": "institution_code", "persons": "person_no"}[kind]
