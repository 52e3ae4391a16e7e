"""Wires the eligibility service together."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from libs.platform import policies as policy_sources
from libs.platform.clock import Clock, system_clock
from libs.platform.db import Database
from libs.platform.host import Runtime, cancel_tasks
from libs.platform.logs import get_logger
from libs.platform.peers import open_channel
from libs.platform.settings import Settings
from libs.policy.loader import PolicyStore
from medsettle.eligibility.v1 import eligibility_pb2
from services.eligibility.adapters.db import SqlEligibilityStore
from services.eligibility.adapters.peers import GrpcFilingFeed
from services.eligibility.adapters.rpc import EligibilityServicer, register
from services.eligibility.application.service import EligibilityService
from services.eligibility.domain.credentials import TokenSigner
from services.eligibility.domain.model import EligibilityRules, parse_rules

SERVICE_NAME = eligibility_pb2.DESCRIPTOR.services_by_name["EligibilityService"].full_name
_log = get_logger("medsettle.eligibility")
REFRESH_SECONDS = 2.0
# How long start-up waits for the filing backlog before serving (then refusals that depend on a
# filing answer FILING_INDEX_NOT_READY until the index is complete).
INDEX_WAIT_SECONDS = 5.0
RULES_FILE = Path(__file__).resolve().parent / "rules.yaml"


def load_rules(path: Path = RULES_FILE) -> EligibilityRules:
    return parse_rules(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)


def policy_version_lookup(store: PolicyStore) -> Callable[[str, str, str, dt.date], str]:
    """The insured place's policy version in effect, from the policy set in force; refuses
    (NO_POLICY_IN_EFFECT / NO_CATALOGUE_IN_EFFECT) when the policy or the treatment place's
    catalogue does not cover the day."""

    def lookup(insured_region: str, insurance_type: str, treatment_region: str, day: dt.date) -> str:
        books = store.current
        books.catalogues.find(treatment_region, day)
        return books.policies.find(insured_region, insurance_type, day).version

    return lookup


def load_signer(settings: Settings) -> TokenSigner:
    """The signing key comes from a Secret in production; locally one is created in the data dir."""
    path = settings.ecert_signing_key_file
    if path is None:
        path = settings.data_dir / "ecert-signing-key.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    key = load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    verify: list[Ed25519PublicKey] = []
    for item in filter(None, (p.strip() for p in settings.ecert_verify_key_files.split(","))):
        pub = load_pem_public_key(Path(item).read_bytes())
        if not isinstance(pub, Ed25519PublicKey):
            raise ValueError(f"{item}: not an Ed25519 public key")
        verify.append(pub)
    return TokenSigner(key, verify)


class EligibilityModule:
    name = "eligibility"
    grpc_service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.policies = policy_sources.store_for(settings)
        self.db = Database.from_settings(settings, "eligibility")
        self.service = EligibilityService(
            SqlEligibilityStore(self.db),
            load_signer(settings),
            token_ttl_seconds=settings.ecert_ttl_seconds,
            rules=load_rules(),
            policy_version=policy_version_lookup(self.policies),
            clock=clock,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        register(server, EligibilityServicer(self.service))

    async def start(self, runtime: Runtime) -> None:
        await self.service.load()
        policy_sources.watch(self.policies, self.settings.policy_poll_seconds)
        self._channel = open_channel(runtime.peer_target("filing"), self.settings, as_service=self.name)
        feed = GrpcFilingFeed(self._channel)
        self._tasks.append(asyncio.create_task(self.service.follow_filings(feed, runtime.stopping)))
        self._tasks.append(asyncio.create_task(self._refresh_loop(runtime.stopping)))
        # The index is rebuilt from position 0 on every start (no cursor is persisted): wait for
        # the backlog so the first decisions are not made from a half-built index.
        try:
            await asyncio.wait_for(self.service.registry.filings_ready.wait(), timeout=INDEX_WAIT_SECONDS)
        except TimeoutError:
            _log.warning("filing_index_not_ready_at_start", position=self.service.registry.filing_position)

    async def _refresh_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=REFRESH_SECONDS)
            try:
                await self.service.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving from memory; log and retry
                _log.warning("registry_refresh_failed", error_type=type(exc).__name__)

    async def stop_tasks(self) -> None:
        await policy_sources.unwatch(self.policies)
        await cancel_tasks(self._tasks)
        if self._channel is not None:
            await self._channel.close()

    async def close(self) -> None:
        await self.db.dispose()


def create(settings: Settings, *, clock: Clock = system_clock) -> EligibilityModule:
    return EligibilityModule(settings, clock)
