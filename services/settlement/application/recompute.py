"""RecomputeSettlement and the archive of the policy and catalogue versions it needs."""

from __future__ import annotations

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy import Catalogue, Policy, SettlementResult, settle
from services.settlement.application.commands import Committed
from services.settlement.application.context import SettlementContext
from services.settlement.domain import results
from services.settlement.domain.model import SettlementKind, check_owner
from services.settlement.domain.visits import policy_visit


class Recompute:
    def __init__(self, ctx: SettlementContext) -> None:
        self.ctx = ctx

    async def recompute(self, caller: str | None, settlement_id: str) -> tuple[Committed, SettlementResult]:
        """Computes a stored settlement again with exactly the policy and catalogue versions it
        names (also after newer versions were published or the files changed), from its own fee
        lines and the accumulators it started from. Returns the stored one and the new result;
        the engine is deterministic, so they are equal unless the stored data was altered."""
        async with self.ctx.store.read() as repo:
            rec = await repo.settlement(settlement_id)
            if rec is None:
                raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no settlement {settlement_id}")
            check_owner(rec.institution_code, caller)
            visit = await repo.visit(rec.visit_id)
            lines = tuple(u.line for u in await repo.lines(rec.visit_id) if u.settlement_id == settlement_id)
        if visit is None:
            raise DomainError(Reason.INVARIANT_VIOLATED, f"settlement {settlement_id} has no visit")
        if rec.kind is not SettlementKind.SETTLEMENT:
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "a cancellation is the mirror of the settlement it cancels: recompute that one",
                violations=[FieldViolation("settlement_id", f"a cancellation of {rec.cancels_settlement_id}")],
            )
        inputs = results.inputs_of(rec.result_json)
        if not lines:
            raise DomainError(
                Reason.SETTLEMENT_ALREADY_REVERSED, "the settlement was cancelled and its fee lines released"
            )
        if inputs is None:
            raise DomainError(
                Reason.VISIT_STATE_INVALID, "the settlement was stored before its engine inputs were recorded"
            )
        stored = results.load(rec.result_json)
        pv = policy_visit(
            visit,
            lines,
            use_account=inputs.use_personal_account,
            settle_date=stored.settle_date,
            prior_deductible_fen=inputs.prior_stay_deductible_fen,
            new_admission=inputs.new_admission,
        )
        policy = await self.version(stored.policy_version, "policy")
        catalogue = await self.version(stored.catalogue_version, "catalogue")
        if not isinstance(policy, Policy) or not isinstance(catalogue, Catalogue):
            raise DomainError(Reason.INVARIANT_VIOLATED, "an archived version is of the wrong kind")
        again = settle(policy, catalogue, pv, stored.accumulators_before)
        return Committed(rec, stored, visit), again

    async def version(self, version: str, kind: str) -> Policy | Catalogue:
        """A policy or catalogue by full version: in memory, else from this service's archive."""
        source = self.ctx.policy_source
        find = source.policy_version if kind == "policy" else source.catalogue_version
        try:
            return find(version)
        except DomainError:
            async with self.ctx.store.read() as repo:
                found = await repo.archived_policy_version(version)
            if found is None or found[0] != kind:
                raise
            return source.remember(kind, found[1], f"archived {version}")

    async def archive_policies(self) -> int:
        """Archive every version in force that is not archived yet (at start and after reloads)."""
        ctx = self.ctx
        async with ctx.store.transaction() as repo:
            return await repo.record_policy_versions(dict(ctx.books.sources), ctx.now())
