"""Wires the settlement service together."""

from __future__ import annotations

import grpc

from libs.platform import metrics
from libs.platform.db import Database
from libs.platform.host import Runtime
from libs.platform.peers import open_channel
from libs.platform.settings import Settings
from libs.policy import SettlementResult, default_books
from medsettle.settlement.v1 import settlement_pb2
from services.settlement.adapters.peers import GrpcEligibility
from services.settlement.adapters.rpc import ManualClaimServicer, SettlementServicer, register
from services.settlement.application.service import SettlementService
from services.settlement.domain.model import SettlementRecord

SERVICE_NAME = settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name
CLAIMS_SERVICE_NAME = settlement_pb2.DESCRIPTOR.services_by_name["ManualClaimService"].full_name


class _LazyEligibility:
    """The eligibility channel opens once the host knows its own port (all-in-one mode)."""

    def __init__(self) -> None:
        self.inner: GrpcEligibility | None = None

    async def check(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert self.inner is not None, "settlement module not started"
        return await self.inner.check(*args, **kwargs)

    async def filing_type_on(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert self.inner is not None, "settlement module not started"
        return await self.inner.filing_type_on(*args, **kwargs)


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
    grpc_service_names = (SERVICE_NAME, CLAIMS_SERVICE_NAME)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url("settlement"), pool_size=settings.db_pool_size, echo=settings.db_echo)
        policies, catalogues = default_books()
        self._eligibility = _LazyEligibility()
        self.service = SettlementService(self.db, self._eligibility, policies, catalogues, on_commit=_count)
        self._runtime: list[Runtime] = []
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        register(server, SettlementServicer(self.service, self._runtime), ManualClaimServicer(self.service))

    async def start(self, runtime: Runtime) -> None:
        self._runtime.append(runtime)
        self._channel = open_channel(runtime.peer_target("eligibility"), self.settings, as_service=self.name)
        self._eligibility.inner = GrpcEligibility(self._channel)
        self.service.batcher.start()

    async def stop_tasks(self) -> None:
        await self.service.batcher.stop()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        await self.db.dispose()


def create(settings: Settings) -> SettlementModule:
    return SettlementModule(settings)
