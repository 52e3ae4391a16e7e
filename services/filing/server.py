"""Wires the filing service together (the one composition point of this service)."""

from __future__ import annotations

from pathlib import Path

import grpc
import yaml

from libs.platform.clock import Clock, system_clock, today_cst
from libs.platform.db import Database
from libs.platform.host import Runtime
from libs.platform.peers import open_channel
from libs.platform.settings import Settings
from medsettle.filing.v1 import filing_pb2
from services.filing.adapters.db import SqlFilingStore
from services.filing.adapters.peers import GrpcInstitutionDirectory
from services.filing.adapters.rpc import FilingServicer, register
from services.filing.application.service import FilingService
from services.filing.domain.model import MinPeriodRules, parse_min_period_rules

SERVICE_NAME = filing_pb2.DESCRIPTOR.services_by_name["FilingService"].full_name
MIN_PERIOD_FILE = Path(__file__).resolve().parent / "min_period.yaml"


def load_min_period_rules(path: Path = MIN_PERIOD_FILE) -> MinPeriodRules:
    """Policy data, checked at start-up: a bad file stops the service with the entry named."""
    return parse_min_period_rules(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)


class FilingModule:
    name = "filing"
    grpc_service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.db = Database.from_settings(settings, "filing")
        self.settings = settings
        self.service = FilingService(
            SqlFilingStore(self.db), min_period=load_min_period_rules(), clock=clock, today=lambda: today_cst(clock)
        )
        self.service.notifier.max_followers = settings.feed_max_followers
        self._runtime: list[Runtime] = []
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        register(server, FilingServicer(self.service, self._runtime))

    async def start(self, runtime: Runtime) -> None:
        self._runtime.append(runtime)
        # Special-disease filings are checked against eligibility's institution registry.
        self._channel = open_channel(runtime.peer_target("eligibility"), self.settings, as_service=self.name)
        self.service.institutions = GrpcInstitutionDirectory(self._channel)

    async def stop_tasks(self) -> None:
        return None

    async def close(self) -> None:
        # After the server stopped: in-flight filings may still have been using the channel.
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        await self.db.dispose()


def create(settings: Settings, *, clock: Clock = system_clock) -> FilingModule:
    return FilingModule(settings, clock)
