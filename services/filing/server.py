"""Wires the filing service together (the one composition point of this service)."""

from __future__ import annotations

import grpc

from libs.platform.db import Database
from libs.platform.host import Runtime
from libs.platform.settings import Settings
from medsettle.filing.v1 import filing_pb2
from services.filing.adapters.rpc import FilingServicer, register
from services.filing.application.service import FilingService

SERVICE_NAME = filing_pb2.DESCRIPTOR.services_by_name["FilingService"].full_name


class FilingModule:
    name = "filing"
    grpc_service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings.database_url("filing"), pool_size=settings.db_pool_size, echo=settings.db_echo)
        self.service = FilingService(self.db)
        self._runtime: list[Runtime] = []

    def register(self, server: grpc.aio.Server) -> None:
        register(server, FilingServicer(self.service, self._runtime))

    async def start(self, runtime: Runtime) -> None:
        self._runtime.append(runtime)

    async def stop_tasks(self) -> None:
        return None

    async def close(self) -> None:
        await self.db.dispose()


def create(settings: Settings) -> FilingModule:
    return FilingModule(settings)
