"""Wires the clearing service together."""

from __future__ import annotations

import asyncio

import grpc

from libs.platform.clock import Clock, system_clock
from libs.platform.db import Database
from libs.platform.host import Runtime, cancel_tasks
from libs.platform.peers import open_channel
from libs.platform.settings import Settings
from medsettle.clearing.v1 import clearing_pb2
from services.clearing.adapters.db import SqlClearingStore
from services.clearing.adapters.peers import GrpcSettlementFeed
from services.clearing.adapters.rpc import ClearingServicer, register
from services.clearing.application.service import ClearingService

SERVICE_NAME = clearing_pb2.DESCRIPTOR.services_by_name["ClearingService"].full_name


class ClearingModule:
    name = "clearing"
    grpc_service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings, "clearing")
        self.service = ClearingService(SqlClearingStore(self.db), clock=clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        register(server, ClearingServicer(self.service))

    async def start(self, runtime: Runtime) -> None:
        if self.settings.clearing_follow_feed:
            self._channel = open_channel(runtime.peer_target("settlement"), self.settings, as_service=self.name)
            feed = GrpcSettlementFeed(self._channel)
            self._tasks.append(asyncio.create_task(self.service.follow(feed, runtime.stopping)))

    async def stop_tasks(self) -> None:
        await cancel_tasks(self._tasks)
        if self._channel is not None:
            await self._channel.close()

    async def close(self) -> None:
        await self.db.dispose()


def create(settings: Settings, *, clock: Clock = system_clock) -> ClearingModule:
    return ClearingModule(settings, clock)
