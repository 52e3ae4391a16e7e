"""Loading policy and catalogue files (the only I/O in ``libs.policy``), and the books that
find the right policy / catalogue for a region and date, or replay one by version."""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy.model import Catalogue, InsuranceType, Policy
from libs.policy.schema import parse_catalogue, parse_policy

DATA_DIR = Path(__file__).resolve().parent / "data"
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, reason: Reason) -> object:
    return _read_yaml_text(path, reason)[0]


def _read_yaml_text(path: Path, reason: Reason) -> tuple[object, str]:
    """The parsed data and the exact text it was parsed from (read once: no race with a writer)."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        return yaml.load(text, Loader=_Loader), text
    except UnicodeDecodeError as exc:
        raise DomainError(
            reason, f"{path}: not UTF-8 text", violations=[FieldViolation(path.name, "not UTF-8 text")]
        ) from exc
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


def policy_from_text(text: str, origin: str) -> Policy:
    """A policy from the text of its file (an archived version): same checks, same version."""
    try:
        return parse_policy(yaml.load(text, Loader=_Loader), origin)
    except yaml.YAMLError as exc:
        raise DomainError(Reason.POLICY_DATA_INVALID, f"{origin}: not valid YAML") from exc


def catalogue_from_text(text: str, origin: str) -> Catalogue:
    try:
        return parse_catalogue(yaml.load(text, Loader=_Loader), origin)
    except yaml.YAMLError as exc:
        raise DomainError(Reason.CATALOGUE_DATA_INVALID, f"{origin}: not valid YAML") from exc


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
    found = load_dirs([Path(data_dir)])
    return found.policies, found.catalogues


@functools.cache
def default_books() -> tuple[PolicyBook, CatalogueBook]:
    """The shipped data under ``libs/policy/data/``, loaded once per process."""
    return load_books(DATA_DIR)


# ------------------------------------------------------------------------ policy folders

SAMPLES = "@samples"
"""In ``MEDSETTLE_POLICY_DIRS``: the shipped sample folder (``libs/policy/data``)."""

Signature = tuple[tuple[str, int, int, int], ...]


def parse_dirs(spec: str) -> tuple[Path, ...]:
    """``MEDSETTLE_POLICY_DIRS``: folders separated by ``,`` or the OS path separator; ``@samples``
    names the shipped samples; empty means the samples alone."""
    parts = [p.strip() for chunk in spec.split(",") for p in chunk.split(os.pathsep)]
    dirs = tuple(DATA_DIR if p == SAMPLES else Path(p) for p in parts if p)
    return dirs or (DATA_DIR,)


def policy_files(dirs: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """The policy and catalogue files of the folders, in a stable order."""
    policies: list[Path] = []
    catalogues: list[Path] = []
    for d in dirs:
        policies.extend(sorted((d / "policies").glob("*.yaml")))
        catalogues.extend(sorted((d / "catalogues").glob("*.yaml")))
    return policies, catalogues


def signature(dirs: Sequence[Path]) -> Signature:
    """What changes when a file is added, removed, replaced or rewritten (cheap: no reads)."""
    out: list[tuple[str, int, int, int]] = []
    pols, cats = policy_files(dirs)
    for path in (*pols, *cats):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


@dataclass(frozen=True)
class PolicySet:
    """One consistent set of policies and catalogues. Swapped as a whole, never edited: a
    computation takes one set and uses it to the end, so it never sees half of a change."""

    policies: PolicyBook
    catalogues: CatalogueBook
    signature: Signature = ()
    # full version -> ("policy" | "catalogue", the file's text), to archive what was in force
    sources: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def versions(self) -> frozenset[str]:
        return frozenset([p.version for p in self.policies.policies] + [c.version for c in self.catalogues.catalogues])


_Versioned = TypeVar("_Versioned", Policy, Catalogue)


def _parse_all(
    paths: list[Path],
    kind: str,
    parse: Callable[[object, str], _Versioned],
    reason: Reason,
    problems: list[FieldViolation],
    sources: dict[str, tuple[str, str]],
) -> list[_Versioned]:
    """Parse each file; collect its problems (every file is tried) and the text of each version."""
    out: list[_Versioned] = []
    for path in paths:
        try:
            data, text = _read_yaml_text(path, reason)
            found = parse(data, path.name)
        except DomainError as exc:
            problems.extend(exc.violations or [FieldViolation(path.name, exc.message)])
            continue
        out.append(found)
        sources[found.version] = (kind, text)
    return out


def load_dirs(dirs: Sequence[Path]) -> PolicySet:
    """Load and validate every file of the folders as one set. Every problem of every file is
    reported at once (``DomainError.violations``, each ``"<file>:<path>"``); nothing is partial."""
    for d in dirs:
        if not d.is_dir():
            raise DomainError(
                Reason.POLICY_DATA_INVALID,
                f"{d}: not a folder",
                violations=[FieldViolation(str(d), "not a folder (MEDSETTLE_POLICY_DIRS)")],
            )
    sig = signature(dirs)
    pol_paths, cat_paths = policy_files(dirs)
    problems: list[FieldViolation] = []
    sources: dict[str, tuple[str, str]] = {}
    policies = _parse_all(pol_paths, "policy", parse_policy, Reason.POLICY_DATA_INVALID, problems, sources)
    catalogues = _parse_all(cat_paths, "catalogue", parse_catalogue, Reason.CATALOGUE_DATA_INVALID, problems, sources)
    books: tuple[PolicyBook, CatalogueBook] | None = None
    if not problems:
        try:
            books = (PolicyBook(policies), CatalogueBook(catalogues))
        except DomainError as exc:
            problems.extend(exc.violations)
    if problems or books is None:
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DomainError(Reason.POLICY_DATA_INVALID, f"{first.field}: {first.description}{more}", violations=problems)
    return PolicySet(books[0], books[1], sig, sources)


@dataclass(frozen=True)
class Reloaded:
    """What a reload changed (full versions)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


class PolicyStore:
    """The policies and catalogues a running service uses, read from folders.

    ``current`` is one :class:`PolicySet`, replaced whole by :meth:`reload_if_changed` only when
    every file of the new set is valid; otherwise the old set stays and the error is raised (once
    per change of the files, not on every poll). Every version ever loaded stays addressable by
    its full version (``label@hash``) through :meth:`policy_version` / :meth:`catalogue_version`,
    so a settlement can be recomputed with exactly what it used after the files changed.
    """

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = tuple(dirs)
        self._current = load_dirs(self.dirs)
        self._policies: dict[str, Policy] = {}
        self._catalogues: dict[str, Catalogue] = {}
        self._refused: Signature | None = None
        self._remember(self._current)

    @property
    def current(self) -> PolicySet:
        return self._current

    def _remember(self, found: PolicySet) -> None:
        for p in found.policies.policies:
            self._policies.setdefault(p.version, p)
        for c in found.catalogues.catalogues:
            self._catalogues.setdefault(c.version, c)

    def reload_if_changed(self) -> Reloaded | None:
        """None when the files did not change (or changed to a set already refused)."""
        sig = signature(self.dirs)
        if sig == self._current.signature or sig == self._refused:
            return None
        try:
            found = load_dirs(self.dirs)
        except DomainError:
            self._refused = sig
            raise
        self._refused = None
        old = self._current.versions
        self._remember(found)
        self._current = found
        new = found.versions
        return Reloaded(tuple(sorted(new - old)), tuple(sorted(old - new)))

    def policy_version(self, version: str) -> Policy:
        """A policy by its full version, also one no longer in the folders (loaded since start or
        given back by :meth:`remember`); or a current label."""
        p = self._policies.get(version)
        return p if p is not None else self._current.policies.by_version(version)

    def catalogue_version(self, version: str) -> Catalogue:
        c = self._catalogues.get(version)
        return c if c is not None else self._current.catalogues.by_version(version)

    def remember(self, kind: str, text: str, origin: str) -> Policy | Catalogue:
        """Give back an archived version (e.g. from a database) so it is addressable again."""
        if kind == "policy":
            p = policy_from_text(text, origin)
            return self._policies.setdefault(p.version, p)
        c = catalogue_from_text(text, origin)
        return self._catalogues.setdefault(c.version, c)

    @property
    def known_versions(self) -> tuple[str, ...]:
        return tuple(sorted([*self._policies, *self._catalogues]))
