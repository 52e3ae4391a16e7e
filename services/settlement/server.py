"""Wires the settlement service together."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import grpc

from libs.platform import metrics, outbox
from libs.platform import policies as policy_sources
from libs.platform.clock import Clock, system_clock
from libs.platform.db import Database
from libs.platform.group_commit import GroupCommit
from libs.platform.host import Runtime
from libs.platform.logs import get_logger
from libs.platform.peers import open_channel
from libs.platform.settings import Settings
from libs.policy import FilingType, ServiceType, SettlementResult
from libs.policy.loader import Reloaded
from medsettle.settlement.v1 import catalogue_pb2, home_pb2, settlement_pb2
from services.settlement.adapters import catalogue_rpc, home_rpc
from services.settlement.adapters.home_db import DbHomeStore
from services.settlement.adapters.peers import GrpcEligibility
from services.settlement.adapters.rpc import ManualClaimServicer, SettlementServicer, register
from services.settlement.adapters.store import SqlStore
from services.settlement.application.claims import Claims
from services.settlement.application.commands import Committed, SettleCall
from services.settlement.application.context import OnCommit, SettlementContext
from services.settlement.application.feed import Feed
from services.settlement.application.home import HomeMovements
from services.settlement.application.ports import EligibilityPort, PolicySource, Store
from services.settlement.application.recompute import Recompute
from services.settlement.application.service import SettlementService
from services.settlement.application.settle import Settling
from services.settlement.application.visits import Visits
from services.settlement.domain.model import CredentialRef, Decision, SettlementRecord

_log = get_logger("medsettle.settlement")
SERVICE_NAME = settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name
CLAIMS_SERVICE_NAME = settlement_pb2.DESCRIPTOR.services_by_name["ManualClaimService"].full_name
CATALOGUE_SERVICE_NAME = catalogue_pb2.DESCRIPTOR.services_by_name["CatalogueService"].full_name
HOME_SERVICE_NAME = home_pb2.DESCRIPTOR.services_by_name["HomeMovementService"].full_name


class _LazyEligibility:
    """The eligibility channel opens once the host knows its own port (all-in-one mode)."""

    def __init__(self) -> None:
        self.inner: GrpcEligibility | None = None

    def _started(self) -> GrpcEligibility:
        if self.inner is None:
            raise RuntimeError("settlement module not started")
        return self.inner

    async def check(
        self,
        cred: CredentialRef,
        institution_code: str,
        service: ServiceType,
        day: dt.date,
        *,
        special_disease_code: str,
        emergency: bool,
        trauma: bool,
    ) -> Decision:
        return await self._started().check(
            cred,
            institution_code,
            service,
            day,
            special_disease_code=special_disease_code,
            emergency=emergency,
            trauma=trauma,
        )

    async def filing_type_on(self, person_no: str, treatment_region: str, day: dt.date) -> FilingType | None:
        return await self._started().filing_type_on(person_no, treatment_region, day)


def _count(rec: SettlementRecord, result: SettlementResult) -> None:
    ip, tp = rec.insured_region[:2], rec.treatment_region[:2]
    metrics.SETTLEMENTS.labels(ip, tp, rec.kind.value).inc()
    for fund, amount in (
        ("pooled", result.pooled_fund_fen),
        ("large_amount", result.large_amount_fen),
        ("critical_illness", result.critical_illness_fen),
        ("assistance", result.assistance_fen),
    ):
        if amount > 0:  # counters only grow; cancellations are counted by kind
            metrics.FUND_PAID.labels(ip, tp, fund).inc(amount)


class SettlementModule:
    name = "settlement"
    grpc_service_names = (SERVICE_NAME, CLAIMS_SERVICE_NAME, CATALOGUE_SERVICE_NAME, HOME_SERVICE_NAME)

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings, "settlement")
        self.policies = policy_sources.store_for(settings)
        self._eligibility = _LazyEligibility()
        self.store = SqlStore(self.db, outbox.FeedNotifier(max_followers=settings.feed_max_followers))
        # SQLite has one writer anyway; on PostgreSQL a second batch reads and computes while the
        # first one waits for its commit.
        writers = settings.settle_writers or (1 if self.db.is_sqlite else 2)
        self.service = build_service(
            self.store,
            self._eligibility,
            self.policies,
            clock=clock,
            max_batch=settings.settle_max_batch,
            writers=writers,
            on_commit=_count,
        )
        self.home = HomeMovements(DbHomeStore(self.db), clock)
        self._runtime: list[Runtime] = []
        self._archiving: set[asyncio.Task[None]] = set()
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        register(server, SettlementServicer(self.service, self._runtime), ManualClaimServicer(self.service))
        catalogue_rpc.register(server, catalogue_rpc.CatalogueServicer(self.service))
        home_rpc.register(server, home_rpc.HomeMovementServicer(self.home))

    async def start(self, runtime: Runtime) -> None:
        self._runtime.append(runtime)
        self._channel = open_channel(runtime.peer_target("eligibility"), self.settings, as_service=self.name)
        self._eligibility.inner = GrpcEligibility(self._channel)
        self.service.settle_queue.start()
        await self._archive()
        policy_sources.watch(self.policies, self.settings.policy_poll_seconds, self._reloaded)

    def _reloaded(self, _changed: Reloaded) -> None:
        task = asyncio.get_running_loop().create_task(self._archive())
        self._archiving.add(task)
        task.add_done_callback(self._archiving.discard)

    async def _archive(self) -> None:
        """Keep the text of every version in force (RecomputeSettlement after restarts); a failure
        is retried with the next reload and does not stop settling."""
        try:
            added = await self.service.recompute.archive_policies()
        except Exception as exc:  # noqa: BLE001 - the versions stay in memory; retried on the next reload
            _log.warning("policy_archive_failed", error_type=type(exc).__name__)
            return
        if added:
            _log.info("policy_versions_archived", count=added)

    async def stop_tasks(self) -> None:
        await policy_sources.unwatch(self.policies, self._reloaded)
        for task in list(self._archiving):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.service.settle_queue.stop()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        await self.db.dispose()


def build_service(
    store: Store,
    eligibility: EligibilityPort,
    policies: PolicySource,
    *,
    clock: Clock,
    max_batch: int,
    writers: int,
    on_commit: OnCommit | None = None,
) -> SettlementService:
    """The use cases over their ports, and the group-commit queue Settle goes through: the queue
    calls the Settle use case; the use case knows nothing of the queue."""
    ctx = SettlementContext(store, eligibility, policies, clock=clock, on_commit=on_commit)
    visits = Visits(ctx)
    settling = Settling(ctx, visits)
    queue: GroupCommit[SettleCall, Committed] = GroupCommit(
        settling.settle_batch, settling.settle_one, max_batch=max_batch, writers=writers
    )
    return SettlementService(ctx, visits, settling, Claims(ctx), Recompute(ctx), Feed(ctx), queue)


def create(settings: Settings, *, clock: Clock = system_clock) -> SettlementModule:
    return SettlementModule(settings, clock)
