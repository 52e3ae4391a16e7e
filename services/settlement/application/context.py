"""What every settlement use case shares: the ports, the clock, the policies in force, and what
happens after a settlement commits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from libs.core.errors import DomainError, Reason
from libs.platform.convert import CST
from libs.platform.identity import unscoped_request_id
from libs.platform.logs import get_logger
from libs.policy import Accumulators, Catalogue, CatalogueBook, FeeLine, PolicyBook, SettlementResult, settle
from libs.policy.loader import PolicySet
from services.settlement.application.commands import Committed, OpenVisitCommand
from services.settlement.application.ports import EligibilityPort, PolicySource, Store
from services.settlement.domain import results
from services.settlement.domain.model import Decision, SettlementRecord, VisitRecord
from services.settlement.domain.visits import policy_visit

_log = get_logger("medsettle.settlement")

OnCommit = Callable[[SettlementRecord, SettlementResult], None]


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:22].upper()


class SettlementContext:
    def __init__(
        self,
        store: Store,
        eligibility: EligibilityPort,
        policies: PolicySource,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.store = store
        self.eligibility = eligibility
        self.policy_source = policies
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._on_commit = on_commit

    def now(self) -> dt.datetime:
        return self._clock()

    def today(self) -> dt.date:
        return self._clock().astimezone(CST).date()

    @property
    def books(self) -> PolicySet:
        """The policy set in force now. Take it once per computation: a reload swaps the whole
        set, so one computation never mixes two."""
        return self.policy_source.current

    @property
    def policies(self) -> PolicyBook:
        return self.policy_source.current.policies

    @property
    def catalogues(self) -> CatalogueBook:
        return self.policy_source.current.catalogues

    def catalogue_of(self, visit: VisitRecord, books: PolicySet | None = None) -> Catalogue:
        return (books or self.books).catalogues.find(visit.decision.treatment_region, visit.admission_date)

    def compute(
        self,
        visit: VisitRecord,
        lines: tuple[FeeLine, ...],
        acc: Accumulators,
        *,
        use_account: bool,
        day: dt.date,
        prior_deductible_fen: int,
    ) -> SettlementResult:
        books = self.books
        d = visit.decision
        if d.insurance_type is None:
            raise DomainError(Reason.INVARIANT_VIOLATED, "visit decision lacks an insurance type")
        policy = books.policies.find(d.insured_region, d.insurance_type, day)
        pv = policy_visit(
            visit, lines, use_account=use_account, settle_date=day, prior_deductible_fen=prior_deductible_fen
        )
        return settle(policy, self.catalogue_of(visit, books), pv, acc)

    async def decide(self, cmd: OpenVisitCommand) -> Decision:
        """The one eligibility call of a visit, made before any transaction opens."""
        return await self.eligibility.check(
            cmd.credential,
            cmd.institution_code,
            cmd.service_type,
            cmd.admission_date,
            special_disease_code=cmd.special_disease_code,
            emergency=cmd.emergency,
            trauma=cmd.trauma,
        )

    def committed(self, c: Committed) -> None:
        """After a settlement or cancellation committed: wake the feed, log, count."""
        self.store.notify()
        _log.info(
            "settlement_committed",
            # named here, not only through the call's log context: a group-commit batch logs
            # from the batch's own task, where no call's context is bound
            request_id=unscoped_request_id(c.record.request_id)[:128],
            settlement_id=c.record.settlement_id,
            kind=c.record.kind.value,
            visit_id=c.record.visit_id,
            total_fen=c.result.total_fen,
            fund_total_fen=c.result.fund_total_fen,
        )
        if self._on_commit is not None:
            self._on_commit(c.record, c.result)

    async def visit_or_fail(self, visit_id: str) -> VisitRecord:
        async with self.store.read() as repo:
            v = await repo.visit(visit_id)
        if v is None:
            raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
        return v

    async def committed_or_fail(self, settlement_id: str) -> Committed:
        async with self.store.read() as repo:
            rec = await repo.settlement(settlement_id)
            if rec is None:
                raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no settlement {settlement_id}")
            visit = await repo.visit(rec.visit_id)
        if visit is None:
            raise DomainError(Reason.INVARIANT_VIOLATED, f"settlement {settlement_id} has no visit")
        return Committed(rec, results.load(rec.result_json), visit)
