"""Read-only use cases: catalogue download (national 1301-1319), the line split of a visit's fees
(2301 / 5204), settlement lists (5203) and a person's accumulators with what remains of every cap
(5206).

Who may see what is a :class:`Scope`. Today the servicer only knows the calling hospital, so
every query is scoped to its institution; a bureau's scope (by insured region) is the same
parameter with ``institution=None`` and ``insured_region`` set, once callers other than
hospitals are authenticated. The policy and catalogue books and the date are always read through
the :class:`SettlementContext` (``.policies``, ``.catalogues``, ``.today()``), never kept here.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy import Accumulators, Catalogue, CatalogueItem, ItemClass, ItemKind, LineSplit, Policy, split_lines
from libs.policy.caps import CapLeft, remaining_caps
from services.settlement.application import paging
from services.settlement.application.ports import SettlementRepo
from services.settlement.domain import monitoring, results
from services.settlement.domain.model import (
    MonitoringFlag,
    SettlementKind,
    SettlementRecord,
    UploadedLine,
    VisitRecord,
    check_owner,
)
from services.settlement.domain.visits import policy_visit

if TYPE_CHECKING:
    from services.settlement.application.context import SettlementContext

MAX_SETTLEMENT_SPAN_DAYS = 366
DEFAULT_SETTLEMENT_SPAN_DAYS = 30


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose records a query may see: a hospital's own (``institution``), or, for a bureau, the
    persons insured in ``insured_region``. None = not limited by that."""

    institution: str | None = None
    insured_region: str | None = None

    def allows_visit(self, visit: VisitRecord) -> bool:
        return (self.institution is None or visit.institution_code == self.institution) and (
            self.insured_region is None or visit.decision.insured_region == self.insured_region
        )


def hospital_scope(institution_code: str, caller: str | None) -> Scope:
    """A hospital sees its own records: the request's institution must be the caller."""
    check_owner(institution_code, caller)
    assert caller is not None
    return Scope(institution=caller)


# -- catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CataloguePage:
    catalogue: Catalogue
    items: tuple[CatalogueItem, ...]
    next_token: str


def _catalogue_on(service: SettlementContext, region: str, day: dt.date | None) -> Catalogue:
    """The catalogue in effect (NO_CATALOGUE_IN_EFFECT when none covers the day)."""
    return service.catalogues.find(region, day or service.today())


def list_catalogue_items(
    service: SettlementContext,
    *,
    region: str,
    day: dt.date | None,
    code_prefix: str,
    item_class: ItemClass | None,
    kind: ItemKind | None,
    page_size: int,
    page_token: str,
) -> CataloguePage:
    """Items in code order. A page token carries the catalogue version it was issued under: if
    another catalogue is in effect by the next call, CATALOGUE_CHANGED (list again)."""
    filters = paging.digest(region, day, code_prefix, item_class, kind)
    after = ""
    token_version = ""
    if page_token:
        doc = paging.decode(page_token, filters, {"v": str, "a": str})
        token_version, after = doc["v"], doc["a"]
    catalogue = _catalogue_on(service, region, day)
    if token_version and token_version != catalogue.version:
        raise DomainError(
            Reason.CATALOGUE_CHANGED,
            f"the catalogue changed since the first page ({token_version} -> {catalogue.version}): list again",
            violations=[FieldViolation("page_token", "issued under another catalogue version")],
            metadata={"token_catalogue_version": token_version, "catalogue_version": catalogue.version},
        )
    codes = sorted(catalogue.items)
    lo = bisect_left(codes, code_prefix) if code_prefix else 0
    hi = bisect_right(codes, code_prefix + "\U0010ffff") if code_prefix else len(codes)
    if after:
        lo = max(lo, bisect_right(codes, after))
    items: list[CatalogueItem] = []
    next_token = ""
    for code in codes[lo:hi]:
        item = catalogue.items[code]
        if item_class is not None and item.item_class is not item_class:
            continue
        if kind is not None and item.kind is not kind:
            continue
        if len(items) == page_size:
            next_token = paging.encode({"f": filters, "v": catalogue.version, "a": items[-1].code})
            break
        items.append(item)
    return CataloguePage(catalogue, tuple(items), next_token)


def get_catalogue_item(
    service: SettlementContext, *, region: str, day: dt.date | None, code: str
) -> tuple[Catalogue, CatalogueItem]:
    catalogue = _catalogue_on(service, region, day)
    item = catalogue.lookup(code)
    if item is None:
        raise DomainError(
            Reason.CATALOGUE_ITEM_NOT_FOUND,
            f"item {code} is not in catalogue {catalogue.version}",
            violations=[FieldViolation("item_code", "not in the catalogue in effect")],
            metadata={"region": region, "item_code": code, "catalogue_version": catalogue.version},
        )
    return catalogue, item


# -- a visit's fee lines with their split ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitLine:
    uploaded: UploadedLine
    split: LineSplit
    item: CatalogueItem | None  # as in the catalogue the line was split against


@dataclass(frozen=True, slots=True)
class FeeSplit:
    lines: tuple[SplitLine, ...]  # every line of the visit, in line order
    catalogue_version: str  # the catalogue the unsettled lines are split against
    flags: tuple[MonitoringFlag, ...]  # ITEM_NOT_IN_CATALOGUE, one per such line


async def fee_split(service: SettlementContext, repo: SettlementRepo, visit: VisitRecord) -> FeeSplit:
    """Every line of the visit with its split: the unsettled ones exactly as the next Settle splits
    them (the same engine function, the same catalogue, in line order, refunds telescoped), the
    settled ones as their settlement recorded them."""
    uploaded = await repo.lines(visit.visit_id)
    catalogue = service.catalogues.find(visit.decision.treatment_region, visit.admission_date)  # as Settle
    unsettled = [u for u in uploaded if not u.settlement_id]
    splits: dict[int, LineSplit] = {}
    if unsettled:
        pv = policy_visit(visit, tuple(u.line for u in unsettled), use_account=False, settle_date=service.today())
        splits.update((s.line_no, s) for s in split_lines(pv, catalogue))
    settled_ids = sorted({u.settlement_id for u in uploaded if u.settlement_id})
    versions: dict[str, Catalogue | None] = {catalogue.version: catalogue}
    if settled_ids:
        for rec in (await repo.settlements_by_ids(settled_ids)).values():
            for s in results.load(rec.result_json).lines:
                splits.setdefault(s.line_no, s)
    out: list[SplitLine] = []
    for u in uploaded:
        split = splits[u.line.line_no]
        if split.catalogue_version not in versions:
            try:
                versions[split.catalogue_version] = service.catalogues.by_version(split.catalogue_version)
            except DomainError:
                versions[split.catalogue_version] = None  # no longer loaded: the split stands alone
        cat = versions[split.catalogue_version]
        out.append(SplitLine(u, split, cat.lookup(u.line.item_code) if cat is not None else None))
    splits_in_order = [sl.split for sl in out]
    return FeeSplit(tuple(out), catalogue.version, tuple(monitoring.catalogue_flags(splits_in_order)))


async def visit_fees(
    service: SettlementContext, scope: Scope, visit_id: str, *, page_size: int, page_token: str
) -> tuple[VisitRecord, FeeSplit, str]:
    """One page of a visit's lines with their split (after ``page_token``), and the next token."""
    filters = paging.digest(visit_id)
    after = paging.decode(page_token, filters, {"a": int})["a"] if page_token else 0
    async with service.store.read() as repo:
        visit = await repo.visit(visit_id)
        if visit is None:
            raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
        if not scope.allows_visit(visit):
            raise DomainError(Reason.NOT_AUTHORISED_FOR_INSTITUTION, "this record belongs to another institution")
        full = await fee_split(service, repo, visit)
    rest = [sl for sl in full.lines if sl.uploaded.line.line_no > after]
    page = rest[:page_size]
    token = paging.encode({"f": filters, "a": page[-1].uploaded.line.line_no}) if len(rest) > page_size else ""
    numbers = {sl.uploaded.line.line_no for sl in page}
    flags = tuple(f for f in full.flags if f.line_no in numbers)
    return visit, FeeSplit(tuple(page), full.catalogue_version, flags), token


# -- settlements (5203) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettlementFilter:
    person_no: str | None
    insured_region: str | None
    date_from: dt.date | None
    date_to: dt.date | None
    kind: SettlementKind | None


def _settlement_days(service: SettlementContext, f: SettlementFilter) -> tuple[dt.date, dt.date]:
    to = f.date_to or service.today()
    start = f.date_from or to - dt.timedelta(days=DEFAULT_SETTLEMENT_SPAN_DAYS)
    _check_span(start, to)
    return start, to


def _check_span(start: dt.date, to: dt.date) -> None:
    bad: list[FieldViolation] = []
    if start > to:
        bad.append(FieldViolation("settle_date_from", "must be on or before settle_date_to"))
    elif (to - start).days >= MAX_SETTLEMENT_SPAN_DAYS:
        bad.append(FieldViolation("settle_date_to", f"at most {MAX_SETTLEMENT_SPAN_DAYS} days after settle_date_from"))
    if bad:
        raise DomainError(Reason.VALIDATION_FAILED, f"{bad[0].field}: {bad[0].description}", violations=bad)


async def list_settlements(
    service: SettlementContext, scope: Scope, f: SettlementFilter, *, page_size: int, page_token: str
) -> tuple[list[SettlementRecord], str]:
    """Settlements in the scope matching ``f``, newest first; the token carries the date range
    it was issued for, so defaults resolved on the first page stay fixed for the next ones."""
    filters = paging.digest(
        scope.institution, scope.insured_region, f.person_no, f.insured_region, f.date_from, f.date_to, f.kind
    )
    after: tuple[dt.datetime, str] | None = None
    if page_token:
        doc = paging.decode(page_token, filters, {"t": str, "s": str, "from": str, "to": str})
        try:
            after = (dt.datetime.fromisoformat(doc["t"]), doc["s"])
            start, to = dt.date.fromisoformat(doc["from"]), dt.date.fromisoformat(doc["to"])
        except ValueError:
            raise paging.invalid_token("not a page token of this list") from None
        if after[0].tzinfo is None or start > to or (to - start).days >= MAX_SETTLEMENT_SPAN_DAYS:
            raise paging.invalid_token("not a page token of this list")
    else:
        start, to = _settlement_days(service, f)
    if scope.insured_region is not None and f.insured_region not in (None, scope.insured_region):
        return [], ""  # a bureau filtering for another region sees nothing of it
    async with service.store.read() as repo:
        found = await repo.list_settlements(
            institution=scope.institution,
            person_no=f.person_no,
            insured_region=scope.insured_region or f.insured_region,
            date_from=start,
            date_to=to,
            kind=f.kind.value if f.kind else None,
            after=after,
            limit=page_size + 1,
        )
    token = ""
    if len(found) > page_size:
        last = found[page_size - 1]
        token = paging.encode(
            {
                "f": filters,
                "t": last.settled_at.isoformat(),
                "s": last.settlement_id,
                "from": start.isoformat(),
                "to": to.isoformat(),
            }
        )
    return found[:page_size], token


# -- accumulators (5206) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccumulatorView:
    visit: VisitRecord  # the person's latest visit in scope: region, scheme, person type, level
    accumulators: Accumulators
    policy: Policy
    as_of: dt.date
    caps: tuple[CapLeft, ...]


def _as_of(service: SettlementContext, year: int, day: dt.date | None) -> dt.date:
    if day is not None:
        return day
    today = service.today()
    if today.year == year:
        return today
    return dt.date(year, 12, 31) if year < today.year else dt.date(year, 1, 1)


async def accumulators(
    service: SettlementContext, scope: Scope, person_no: str, year: int, as_of: dt.date | None
) -> AccumulatorView:
    """The person's accumulators of ``year`` and what remains of every cap of the policy in
    effect on ``as_of``. The insured region, scheme, person type, hospital level, assistance
    category and hardship come from the person's latest visit in the scope; with none, there is
    nothing the caller may see (ACCUMULATORS_NOT_FOUND)."""
    day = _as_of(service, year, as_of)
    async with service.store.read() as repo:
        visit = await repo.latest_visit_of(person_no, scope.institution)
        if visit is None or not scope.allows_visit(visit):
            raise DomainError(
                Reason.ACCUMULATORS_NOT_FOUND,
                f"no visit of this person is visible to the caller: no accumulators for {year}",
                violations=[FieldViolation("person_no", "no visit of this person at the calling institution")],
                metadata={"year": str(year)},
            )
        d = visit.decision
        acc = await repo.read_accumulators(person_no, year, d.account_balance_fen)
    if d.insurance_type is None or d.person_type is None:
        raise DomainError(Reason.INVARIANT_VIOLATED, "visit decision lacks insurance or person type")
    policy = service.policies.find(d.insured_region, d.insurance_type, day)
    caps = remaining_caps(
        policy,
        acc,
        person_type=d.person_type,
        hospital_level=d.hospital_level,
        assistance_category=d.assistance_category or None,
        hardship=d.hardship,
    )
    return AccumulatorView(visit, acc, policy, day, caps)
