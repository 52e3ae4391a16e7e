"""Settling use cases: PreSettle (2303), Settle (2304) one at a time and as a group-commit batch,
CancelSettlement (2305/2208), ReverseTransaction (2601), SettleOutpatient (2201+2204+2207).

One Settle write, whichever path: lock the visit, check the key, read the unsettled lines, lock
the person's accumulators for the year (created on first use), compute with ``libs.policy``,
store the settlement with its outbox event, mark the lines, update the accumulators and the
account, set the visit's status, record the key. ``settle_batch`` does the same for many calls
in one transaction (the statements: adapters/hot.py); the parity test
(tests/integration/settlement/test_settle_parity.py) compares every row both paths write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from opentelemetry import context as otel_context

from libs.core.errors import DomainError, Reason
from libs.platform import idempotency
from libs.platform.group_commit import Queued
from libs.policy import FeeLine, ServiceType, SettlementResult, reverse
from services.settlement.application.commands import (
    CancelSettlementCommand,
    Committed,
    Request,
    ReverseCommand,
    SettleCall,
    SettleOutpatientCommand,
)
from services.settlement.application.context import SettlementContext, new_id
from services.settlement.application.ports import KeyRow, SettlementRepo, StatusChange
from services.settlement.application.visits import Visits
from services.settlement.domain import monitoring, results
from services.settlement.domain import visits as rules
from services.settlement.domain.model import (
    SettlementKind,
    SettlementRecord,
    VisitRecord,
    VisitStatus,
    check_owner,
    clearing_category,
)
from services.settlement.domain.monitoring import Stay

Outcome = Committed | BaseException | None


class Settling:
    def __init__(self, ctx: SettlementContext, visits: Visits) -> None:
        self.ctx = ctx
        self.visits = visits

    async def pre_settle(self, caller: str | None, visit_id: str, use_account: bool) -> SettlementResult:
        ctx = self.ctx
        day = ctx.today()
        found = await ctx.store.presettle_reads(visit_id, day.year)
        if found is None:
            raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
        check_owner(found.visit.institution_code, caller)
        rules.require_fees(found.lines)
        return ctx.compute(
            found.visit,
            found.lines,
            found.accumulators,
            use_account=use_account,
            day=day,
            prior_deductible_fen=found.prior_deductible_fen,
        )

    # -- one at a time --------------------------------------------------------------------
    async def settle_one(self, call: SettleCall) -> Committed:
        ctx = self.ctx
        req, cmd = call.request, call.command

        async def attempt() -> Committed:
            async with ctx.store.transaction() as repo:
                # Take the visit's row lock before looking at the key: a concurrent duplicate that
                # got the lock first has committed its key by the time we get it.
                locked = await repo.visit(cmd.visit_id, for_update=True)
                if ref := await repo.check_key(req.request_id, "settle", req.fp):
                    raise idempotency.Replay(ref)
                visit = rules.writable(locked, cmd.visit_id, req.caller)
                committed = await self.settle_in(
                    repo,
                    visit,
                    req.request_id,
                    use_account=cmd.use_account,
                    interim=cmd.interim,
                    discharge_date=cmd.discharge_date,
                )
                await repo.record_key(req.request_id, "settle", req.fp, committed.record.settlement_id)
            ctx.committed(committed)
            return committed

        return await idempotency.run_once(attempt, ctx.committed_or_fail)

    async def settle_in(
        self,
        repo: SettlementRepo,
        visit: VisitRecord,
        request_id: str,
        *,
        use_account: bool,
        interim: bool,
        discharge_date: dt.date | None,
    ) -> Committed:
        """The Settle write inside the caller's unit of work (Settle and SettleOutpatient)."""
        lines = tuple(u.line for u in await repo.lines(visit.visit_id, unsettled_only=True))
        rules.require_fees(lines)
        day = rules.settle_day(visit, discharge_date, self.ctx.today())
        d = visit.decision
        prior = await repo.deductible_borne_in_stay(visit.visit_id) if visit.settled_stays else 0
        acc = await repo.lock_accumulators(d.person_no, day.year, d.account_balance_fen)
        result = self.ctx.compute(visit, lines, acc, use_account=use_account, day=day, prior_deductible_fen=prior)
        stays: list[Stay] = []
        if visit.service_type is ServiceType.INPATIENT:
            stays = (await repo.inpatient_stays_of([d.person_no])).get(d.person_no, [])
        record = self.new_settlement(visit, request_id, day, interim, lines, result, stays, use_account, prior)
        status = rules.status_after_settle(interim)
        await repo.add_settlement(record, result)
        await repo.mark_lines_settled(visit.visit_id, [ln.line_no for ln in lines], record.settlement_id)
        await repo.save_accumulators(d.person_no, result.accumulators_after)
        await repo.set_visit_status(
            visit.visit_id, status, discharge_date=None if interim else discharge_date, settled_stays_delta=1
        )
        return Committed(record, result, replace(visit, status=status))

    def new_settlement(
        self,
        visit: VisitRecord,
        request_id: str,
        day: dt.date,
        interim: bool,
        lines: tuple[FeeLine, ...],
        result: SettlementResult,
        stays: list[Stay],
        use_account: bool,
        prior_deductible_fen: int,
    ) -> SettlementRecord:
        """The settlement record, with the monitoring flags raised at settle time."""
        d = visit.decision
        flags = monitoring.line_flags(lines)
        flags.extend(monitoring.catalogue_flags(result.lines))
        catalogue = self.ctx.policy_source.catalogue_version(result.catalogue_version)
        flags.extend(monitoring.restriction_flags(lines, catalogue, d.sex, d.birth_date, day))
        if visit.service_type is ServiceType.INPATIENT:
            flags.extend(monitoring.overlap_flags(stays, visit.visit_id, visit.admission_date, day))
        return SettlementRecord(
            settlement_id=new_id("S"),
            request_id=request_id,
            visit_id=visit.visit_id,
            kind=SettlementKind.SETTLEMENT,
            cancels_settlement_id="",
            institution_code=visit.institution_code,
            person_no=d.person_no,
            insured_region=d.insured_region,
            treatment_region=d.treatment_region,
            service_type=visit.service_type,
            category=clearing_category(visit.service_type),
            settle_date=day,
            settled_at=self.ctx.now(),
            interim=interim,
            result_json=results.dump(result, rules.engine_inputs(visit, use_account, prior_deductible_fen)),
            flags=tuple(flags),
        )

    # -- the group-commit batch -----------------------------------------------------------
    async def settle_batch(self, queued: Sequence[Queued[SettleCall, Committed]]) -> list[Outcome]:
        """Settles many calls in one transaction (libs/platform/group_commit.py for the contract,
        adapters/hot.py for its statements). Returns, per call, its settlement, its own error, or
        None (settle it one at a time)."""
        ctx = self.ctx
        calls = [q.item for q in queued]
        out: list[Outcome] = [None] * len(calls)
        replays: dict[int, str] = {}
        done: list[tuple[int, Committed]] = []
        today = ctx.today()
        async with ctx.store.batch() as unit:
            # Lock first, then read the keys and the rest (as the one-at-a-time path does). The
            # reads cover the calls on open visits of their own hospital; which of them settle
            # (not a replay, not a reused key) is decided below, with each refusal's reason.
            visits = await unit.lock_visits([c.command.visit_id for c in calls])
            open_ = [
                (c, v)
                for c in calls
                if (v := visits.get(c.command.visit_id)) is not None
                and v.status is VisitStatus.OPEN
                and v.institution_code == c.request.caller
            ]
            reads = await unit.read(
                [c.request.request_id for c in calls],
                sorted({v.visit_id for _, v in open_}),
                sorted({v.visit_id for _, v in open_ if v.settled_stays}),
                [v.decision.person_no for _, v in open_ if v.service_type is ServiceType.INPATIENT],
                [(v.decision.person_no, (c.command.discharge_date or today).year) for c, v in open_],
            )
            active: list[tuple[int, SettleCall, VisitRecord, dt.date]] = []
            taken_ids: set[str] = set()
            taken_visits: set[str] = set()
            for i, c in enumerate(calls):
                req, cmd = c.request, c.command
                if req.request_id in taken_ids or cmd.visit_id in taken_visits:
                    continue  # a duplicate or a second call for the visit: after this batch, alone
                if (found := reads.keys.get(req.request_id)) is not None:
                    if found[0] == "settle" and found[1] == req.fp:
                        replays[i] = found[2]
                    else:
                        out[i] = DomainError(
                            Reason.REQUEST_ID_REUSED,
                            "request_id was already used for a different request",
                            metadata={"operation": found[0]},
                        )
                    continue
                try:  # the refusals in the order of the one-at-a-time path
                    visit = rules.writable(visits.get(cmd.visit_id), cmd.visit_id, req.caller)
                    rules.require_fees(tuple(reads.lines.get(visit.visit_id, ())))
                    day = rules.settle_day(visit, cmd.discharge_date, today)
                except DomainError as exc:
                    out[i] = exc
                    continue
                taken_ids.add(req.request_id)
                taken_visits.add(cmd.visit_id)
                active.append((i, c, visit, day))
            accs = reads.accs
            seeds = {
                (v.decision.person_no, day.year): v.decision.account_balance_fen
                for _, _, v, day in active
                if (v.decision.person_no, day.year) not in accs
            }
            if seeds:  # a person's first settlement of the year: created only for calls that settle
                accs.update(await unit.create_accumulators(seeds))
            balances = {person: acc.account_balance_fen for (person, _), acc in accs.items()}
            records: list[tuple[SettlementRecord, SettlementResult]] = []
            statuses: list[StatusChange] = []
            key_rows: list[KeyRow] = []
            touched: set[tuple[str, int]] = set()
            for i, c, visit, day in active:
                req, cmd = c.request, c.command
                fee = tuple(reads.lines[visit.visit_id])
                d = visit.decision
                acc_key = (d.person_no, day.year)
                acc = replace(accs[acc_key], account_balance_fen=balances[d.person_no])
                prior = reads.prior.get(visit.visit_id, 0)
                try:
                    result = ctx.compute(
                        visit, fee, acc, use_account=cmd.use_account, day=day, prior_deductible_fen=prior
                    )
                except DomainError as exc:
                    out[i] = exc
                    continue
                accs[acc_key] = result.accumulators_after  # the next call of this person starts here
                balances[d.person_no] = result.accumulators_after.account_balance_fen
                touched.add(acc_key)
                stays = reads.stays.get(d.person_no, [])
                record = self.new_settlement(
                    visit, req.request_id, day, cmd.interim, fee, result, stays, cmd.use_account, prior
                )
                records.append((record, result))
                status = rules.status_after_settle(cmd.interim)
                statuses.append((visit.visit_id, status.value, None if cmd.interim else cmd.discharge_date))
                key_rows.append((req.request_id, "settle", req.fp, record.settlement_id))
                committed = Committed(record, result, replace(visit, status=status))
                out[i] = committed
                done.append((i, committed))
            if records:
                persons = {person for person, _ in touched}
                await unit.write(
                    records,
                    {k: accs[k] for k in touched},
                    {p: b for p, b in balances.items() if p in persons},
                    statuses,
                    key_rows,
                )
        for i, committed in done:
            token = otel_context.attach(queued[i].context)  # log under the caller's trace id
            try:
                ctx.committed(committed)
            finally:
                otel_context.detach(token)
        for i, ref in replays.items():
            out[i] = await ctx.committed_or_fail(ref)
        return out

    # -- cancelling -----------------------------------------------------------------------
    async def cancel(self, req: Request, cmd: CancelSettlementCommand) -> Committed:
        ctx = self.ctx

        async def attempt() -> Committed:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "cancel", req.fp):
                    raise idempotency.Replay(ref)
                committed = await self.cancel_in(repo, req.request_id, req.caller, cmd.settlement_id)
                await repo.record_key(req.request_id, "cancel", req.fp, committed.record.settlement_id)
            ctx.committed(committed)
            return committed

        return await idempotency.run_once(attempt, ctx.committed_or_fail)

    async def cancel_in(
        self, repo: SettlementRepo, request_id: str, caller: str | None, settlement_id: str
    ) -> Committed:
        ctx = self.ctx
        original = await repo.settlement(settlement_id)
        if original is None:
            raise DomainError(Reason.SETTLEMENT_NOT_FOUND, f"no settlement {settlement_id}")
        check_owner(original.institution_code, caller)
        if original.kind is not SettlementKind.SETTLEMENT:
            raise DomainError(Reason.VISIT_STATE_INVALID, "a cancellation cannot itself be cancelled")
        if original.cancelled_by:
            raise DomainError(
                Reason.SETTLEMENT_ALREADY_REVERSED,
                f"settlement {settlement_id} was already cancelled by {original.cancelled_by}",
            )
        visit = await repo.visit(original.visit_id, for_update=True)
        if visit is None:
            raise DomainError(Reason.INVARIANT_VIOLATED, f"settlement {settlement_id} has no visit")
        orig_result = results.load(original.result_json)
        acc = await repo.lock_accumulators(
            original.person_no, original.settle_date.year, visit.decision.account_balance_fen
        )
        # The negative mirror, applied to the person's accumulators as they are now: it takes back
        # exactly what the original added, whatever happened in between.
        mirror = reverse(orig_result, acc)
        record = SettlementRecord(
            settlement_id=new_id("C"),
            request_id=request_id,
            visit_id=original.visit_id,
            kind=SettlementKind.CANCELLATION,
            cancels_settlement_id=original.settlement_id,
            institution_code=original.institution_code,
            person_no=original.person_no,
            insured_region=original.insured_region,
            treatment_region=original.treatment_region,
            service_type=original.service_type,
            category=original.category,
            settle_date=ctx.today(),
            settled_at=ctx.now(),
            interim=original.interim,
            result_json=results.dump(mirror),
        )
        await repo.add_settlement(record, mirror)
        # its lines can be corrected and settled again
        await repo.unmark_lines(original.visit_id, original.settlement_id)
        await repo.save_accumulators(original.person_no, mirror.accumulators_after)
        await repo.set_visit_status(original.visit_id, VisitStatus.OPEN, settled_stays_delta=-1)
        return Committed(record, mirror, replace(visit, status=VisitStatus.OPEN))

    async def reverse_transaction(self, req: Request, cmd: ReverseCommand) -> tuple[bool, Committed | None]:
        """Undo whatever ``original_request_id`` did (national 2601): a settlement is cancelled by
        its negative mirror, an opened visit is cancelled; if the original never arrived, its id
        is tombstoned so a late arrival is refused. Returns (something was undone, cancellation)."""
        ctx = self.ctx
        if req.caller is None:
            raise DomainError(Reason.INSTITUTION_IDENTITY_MISSING, "the calling institution is not authenticated")
        original_id = cmd.original_request_id

        async def attempt() -> tuple[bool, Committed | None]:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "reverse", req.fp):
                    raise idempotency.Replay(ref)
                original = await repo.settlement_by_request(original_id)
                earlier = await repo.lookup_key(original_id)
                committed: Committed | None = None
                if original is not None:
                    committed = await self.cancel_in(repo, req.request_id, req.caller, original.settlement_id)
                    ref = committed.record.settlement_id
                elif earlier is not None and earlier[0] == "open_visit":
                    await self.visits.cancel_visit_in(repo, earlier[1], req.caller)
                    ref = f"visit:{earlier[1]}"
                elif earlier is None:
                    # Never arrived: tombstone the id so the original is refused if it shows up late.
                    await repo.record_key(original_id, "reversed", "-", "-")
                    ref = "-"
                elif earlier[0] in ("reverse", "reversed"):
                    ref = "-"  # a reversal itself, or an id already tombstoned: nothing to undo
                else:
                    raise DomainError(
                        Reason.TRANSACTION_NOT_REVERSIBLE,
                        f"request {original_id} ({earlier[0]}) cannot be reversed; nothing was undone",
                        metadata={"operation": earlier[0]},
                    )
                await repo.record_key(req.request_id, "reverse", req.fp, ref)
            if committed:
                ctx.committed(committed)
            return ref != "-", committed

        async def replay(ref: str) -> tuple[bool, Committed | None]:
            if ref == "-":
                return False, None
            if ref.startswith("visit:"):
                return True, None
            return True, await ctx.committed_or_fail(ref)

        return await idempotency.run_once(attempt, replay)

    # -- open, upload and settle in one round trip ----------------------------------------
    async def settle_outpatient(self, req: Request, cmd: SettleOutpatientCommand) -> Committed:
        ctx = self.ctx
        v = cmd.visit
        self.visits.check_new_visit(req.caller, v, "visit_date")
        async with ctx.store.read() as repo:
            if ref := await repo.check_key(req.request_id, "settle_outpatient", req.fp):
                return await ctx.committed_or_fail(ref)
        decision = await self.visits.direct_decision(v)
        lines = list(cmd.lines)

        async def attempt() -> Committed:
            async with ctx.store.transaction() as repo:
                if ref := await repo.check_key(req.request_id, "settle_outpatient", req.fp):
                    raise idempotency.Replay(ref)
                visit = await self.visits.insert_visit(repo, v, decision)
                self.visits.validate_lines(visit, lines, [])
                await repo.replace_lines(visit.visit_id, lines)
                committed = await self.settle_in(
                    repo,
                    visit,
                    req.request_id,
                    use_account=cmd.use_account,
                    interim=False,
                    discharge_date=v.admission_date,
                )
                stored = await repo.visit(visit.visit_id)  # the visit as stored: its lines and status
                if stored is None:
                    raise DomainError(Reason.INVARIANT_VIOLATED, f"visit {visit.visit_id} vanished")
                committed = replace(committed, visit=stored)
                await repo.record_key(req.request_id, "settle_outpatient", req.fp, committed.record.settlement_id)
            ctx.committed(committed)
            return committed

        return await idempotency.run_once(attempt, ctx.committed_or_fail)

    async def get_settlement(self, caller: str | None, settlement_id: str) -> Committed:
        c = await self.ctx.committed_or_fail(settlement_id)
        check_owner(c.record.institution_code, caller)
        return c
