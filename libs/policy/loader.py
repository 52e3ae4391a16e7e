"""Loading policy and catalogue files (the only I/O in ``libs.policy``), and the books that
find the right policy / catalogue for a region and date, or replay one by version."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy.model import Catalogue, InsuranceType, Policy
from libs.policy.schema import parse_catalogue, parse_policy

DATA_DIR = Path(__file__).resolve().parent / "data"
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, reason: Reason) -> object:
    try:
        with path.open("rb") as f:
            return yaml.load(f, Loader=_Loader)
    except OSError as exc:
        raise DomainError(
            reason,
            f"{path}: cannot read: {exc.strerror}",
            violations=[FieldViolation(path.name, "cannot read")],
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise DomainError(
            reason,
            f"{path}: not valid YAML ({where})",
            violations=[FieldViolation(f"{path.name}:{where}", "not valid YAML")],
        ) from exc


def _with_path(exc: DomainError, path: Path) -> DomainError:
    return DomainError(exc.reason, f"{path}: {exc.message}", violations=exc.violations, metadata=exc.metadata)


def load_policy(path: str | Path) -> Policy:
    """Load and validate one policy file. Errors: POLICY_DATA_INVALID naming ``<file>:<field>``."""
    p = Path(path)
    data = _read_yaml(p, Reason.POLICY_DATA_INVALID)
    try:
        return parse_policy(data, p.name)
    except DomainError as exc:
        raise _with_path(exc, p) from None


def load_catalogue(path: str | Path) -> Catalogue:
    """Load and validate one catalogue file. Errors: CATALOGUE_DATA_INVALID naming the field."""
    p = Path(path)
    data = _read_yaml(p, Reason.CATALOGUE_DATA_INVALID)
    try:
        return parse_catalogue(data, p.name)
    except DomainError as exc:
        raise _with_path(exc, p) from None


def _not_found(reason: Reason, field: str, what: str) -> DomainError:
    return DomainError(reason, what, violations=[FieldViolation(field, what)])


def no_policy_in_effect(insured_region: str, insurance_type: str, on: datetime.date) -> DomainError:
    """FAILED_PRECONDITION: the insured place has published no policy covering ``on``."""
    return DomainError(
        Reason.NO_POLICY_IN_EFFECT,
        f"no {insurance_type} policy of region {insured_region} is in effect on {on.isoformat()}",
        metadata={"region": insured_region, "insurance_type": insurance_type, "date": on.isoformat()},
    )


def no_catalogue_in_effect(treatment_region: str, on: datetime.date) -> DomainError:
    """FAILED_PRECONDITION: the treatment place has published no catalogue covering ``on``."""
    return DomainError(
        Reason.NO_CATALOGUE_IN_EFFECT,
        f"no catalogue of region {treatment_region} is in effect on {on.isoformat()}",
        metadata={"region": treatment_region, "date": on.isoformat()},
    )


class PolicyBook:
    """Many policies. ``find`` picks the one in effect; ``by_version`` replays an exact one."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self._all = sorted(policies, key=lambda p: (p.insured_region, p.insurance_type, p.effective_from))
        self._by_version: dict[str, Policy] = {}
        for p in self._all:
            if p.version in self._by_version or p.label in self._by_version:
                raise DomainError(
                    Reason.POLICY_DATA_INVALID,
                    f"two policies share version {p.label}",
                    violations=[FieldViolation(f"{p.label}:version", "duplicate version")],
                )
            self._by_version[p.version] = p
            self._by_version[p.label] = p

    @property
    def policies(self) -> tuple[Policy, ...]:
        return tuple(self._all)

    def find(self, insured_region: str, insurance_type: InsuranceType | str, on: datetime.date) -> Policy:
        it = InsuranceType(insurance_type)
        hits = [
            p for p in self._all if p.insured_region == insured_region and p.insurance_type is it and p.in_effect(on)
        ]
        if not hits:
            raise no_policy_in_effect(insured_region, it.value, on)
        return max(hits, key=lambda p: p.effective_from)

    def by_version(self, version: str) -> Policy:
        """Exact ``label@hash`` (replay-safe), or the bare label."""
        p = self._by_version.get(version)
        if p is None:
            raise _not_found(Reason.POLICY_NOT_FOUND, "policy_version", f"no policy with version {version}")
        return p


class CatalogueBook:
    def __init__(self, catalogues: Iterable[Catalogue]) -> None:
        self._all = sorted(catalogues, key=lambda c: (c.region, c.effective_from))
        self._by_version: dict[str, Catalogue] = {}
        for c in self._all:
            if c.version in self._by_version or c.label in self._by_version:
                raise DomainError(
                    Reason.CATALOGUE_DATA_INVALID,
                    f"two catalogues share version {c.label}",
                    violations=[FieldViolation(f"{c.label}:version", "duplicate version")],
                )
            self._by_version[c.version] = c
            self._by_version[c.label] = c

    @property
    def catalogues(self) -> tuple[Catalogue, ...]:
        return tuple(self._all)

    def find(self, treatment_region: str, on: datetime.date) -> Catalogue:
        hits = [c for c in self._all if c.region == treatment_region and c.in_effect(on)]
        if not hits:
            raise no_catalogue_in_effect(treatment_region, on)
        return max(hits, key=lambda c: c.effective_from)

    def by_version(self, version: str) -> Catalogue:
        c = self._by_version.get(version)
        if c is None:
            raise _not_found(Reason.CATALOGUE_NOT_FOUND, "catalogue_version", f"no catalogue with version {version}")
        return c


def load_books(data_dir: str | Path) -> tuple[PolicyBook, CatalogueBook]:
    """Load every ``policies/*.yaml`` and ``catalogues/*.yaml`` under ``data_dir``."""
    root = Path(data_dir)
    policies = [load_policy(p) for p in sorted((root / "policies").glob("*.yaml"))]
    catalogues = [load_catalogue(p) for p in sorted((root / "catalogues").glob("*.yaml"))]
    return PolicyBook(policies), CatalogueBook(catalogues)


@functools.cache
def default_books() -> tuple[PolicyBook, CatalogueBook]:
    """The shipped data under ``libs/policy/data/``, loaded once per process."""
    return load_books(DATA_DIR)
