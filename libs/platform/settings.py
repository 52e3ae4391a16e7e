"""Settings from environment variables (prefix ``MEDSETTLE_``), read once and validated at start-up.

Nothing reads the environment at import time; the composition root calls :func:`load_settings`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("filing", "eligibility", "settlement", "clearing")
ServiceName = Literal["filing", "eligibility", "settlement", "clearing"]


class SettingsError(Exception):
    """Start-up configuration is wrong; the message names every bad variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDSETTLE_", extra="ignore", frozen=True)

    data_dir: Path = Path("data")
    filing_database_url: str | None = None
    eligibility_database_url: str | None = None
    settlement_database_url: str | None = None
    clearing_database_url: str | None = None
    # gRPC targets of peers; in all-in-one mode they default to the host's own port.
    filing_target: str | None = None
    eligibility_target: str | None = None
    settlement_target: str | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    # Seconds the server answers NOT_SERVING before it stops accepting calls (lets probes see it).
    drain_seconds: float = Field(default=5.0, ge=0, le=300)
    # Seconds in-flight calls get to finish once the server stops.
    grace_seconds: float = Field(default=10.0, ge=0, le=300)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # A second, plaintext listener that answers grpc.health.v1.Health only (no other service, no
    # reflection, no data): for probes that speak no TLS (the kubelet's gRPC probe) when the main
    # port requires mTLS. Unset: no such listener.
    health_port: int | None = Field(default=None, ge=0, le=65535)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_echo: bool = False
    # PostgreSQL session limits on every connection, in milliseconds (0 = none): one statement,
    # waiting for a row or table lock, and a transaction left open without a statement.
    db_statement_timeout_ms: int = Field(default=5_000, ge=0, le=3_600_000)
    db_lock_timeout_ms: int = Field(default=2_000, ge=0, le=3_600_000)
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0, le=3_600_000)
    # Seconds to open a connection before the database counts as unreachable.
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # Connections: the server pings a quiet client this often and drops it when the ping is not
    # answered in the timeout; closes a connection idle (no call) this long, and any connection
    # this old (after a grace for its calls; clients reconnect, streams resume by position); a
    # client must finish its TLS/HTTP2 handshake in the handshake time.
    grpc_keepalive_seconds: float = Field(default=60.0, ge=1, le=7200)
    grpc_keepalive_timeout_seconds: float = Field(default=20.0, ge=1, le=600)
    grpc_max_idle_seconds: float = Field(default=300.0, ge=1, le=86400)
    grpc_max_connection_age_seconds: float = Field(default=1800.0, ge=10, le=86400 * 7)
    grpc_max_connection_age_grace_seconds: float = Field(default=60.0, ge=0, le=3600)
    grpc_handshake_seconds: float = Field(default=10.0, ge=0.1, le=300)
    # Feed streams (WatchFilings, StreamSettlements) one process serves at once.
    feed_max_followers: int = Field(default=1000, ge=1, le=100_000)
    # Settlement's group commit: at most this many Settle calls in one transaction, and this many
    # such transactions at once (0: one on SQLite, two on PostgreSQL).
    settle_max_batch: int = Field(default=64, ge=1, le=1000)
    settle_writers: int = Field(default=0, ge=0, le=16)
    # How often the host checks each service's own database for the health service (readiness).
    db_probe_seconds: float = Field(default=1.0, gt=0, le=300)

    # Server TLS (mTLS when a client CA is given) for meshes without a sidecar.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Client TLS towards peers.
    peer_ca_file: Path | None = None
    peer_cert_file: Path | None = None
    peer_key_file: Path | None = None
    # Without mTLS, whom the identity headers (x-medsettle-principal / -institution) are trusted
    # from: "loopback" (default: development, all-in-one, a sidecar mesh delivering on 127.0.0.x),
    # "any" (a mesh that authenticates every peer before it reaches the pod; logged at start-up),
    # "never". With mTLS the client certificate decides (docs/access.md).
    identity_headers: Literal["loopback", "any", "never"] = "loopback"
    # Refuse to start without service-side mTLS (server certificate and required client
    # certificates): for deployments where the identity must come from certificates only.
    require_mtls: bool = False

    # E-certificates (eligibility): Ed25519 private key PEM; older public keys still accepted.
    ecert_signing_key_file: Path | None = None
    ecert_verify_key_files: str = ""
    ecert_ttl_seconds: int = Field(default=300, ge=10, le=86400)

    # Clearing follows the settlement feed from this service when true.
    clearing_follow_feed: bool = True

    # Folders of policies and catalogues (each with policies/*.yaml and catalogues/*.yaml),
    # separated by "," or the OS path separator; "@samples" is the shipped samples (the default).
    # Watched: a changed, valid set takes effect without a restart.
    policy_dirs: str = "@samples"
    policy_poll_seconds: float = Field(default=2.0, gt=0, le=3600)

    # For tests and rehearsals only: the services' clock starts at this instant (ISO 8601 with a
    # UTC offset) and runs at the real pace. Logged as a warning at start-up; never set it in
    # production (the manifests' tests check that no overlay does).
    test_clock_start: dt.datetime | None = None

    @field_validator(
        "filing_database_url",
        "eligibility_database_url",
        "settlement_database_url",
        "clearing_database_url",
    )
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not (value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")):
            raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("MEDSETTLE_TLS_CERT_FILE and MEDSETTLE_TLS_KEY_FILE go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("MEDSETTLE_TLS_CLIENT_CA_FILE needs MEDSETTLE_TLS_CERT_FILE")
        if self.require_mtls and (self.tls_cert_file is None or self.tls_client_ca_file is None):
            raise ValueError(
                "MEDSETTLE_REQUIRE_MTLS is set: MEDSETTLE_TLS_CERT_FILE, MEDSETTLE_TLS_KEY_FILE and "
                "MEDSETTLE_TLS_CLIENT_CA_FILE are required"
            )
        if (self.peer_cert_file is None) != (self.peer_key_file is None):
            raise ValueError("MEDSETTLE_PEER_CERT_FILE and MEDSETTLE_PEER_KEY_FILE go together")
        for name in (
            "tls_cert_file",
            "tls_key_file",
            "tls_client_ca_file",
            "peer_ca_file",
            "peer_cert_file",
            "peer_key_file",
            "ecert_signing_key_file",
        ):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"MEDSETTLE_{name.upper()}: no such file: {path}")
        if self.test_clock_start is not None and self.test_clock_start.tzinfo is None:
            raise ValueError("MEDSETTLE_TEST_CLOCK_START needs a UTC offset, e.g. 2027-01-04T09:00:00+08:00")
        for part in (p.strip() for chunk in self.policy_dirs.split(",") for p in chunk.split(os.pathsep)):
            if part and part != "@samples" and not Path(part).is_dir():
                raise ValueError(f"MEDSETTLE_POLICY_DIRS: no such folder: {part}")
        return self

    def database_url(self, service: str) -> str:
        explicit: str | None = getattr(self, f"{service}_database_url")
        if explicit:
            return explicit
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def target(self, service: str, default: str | None) -> str:
        explicit: str | None = getattr(self, f"{service}_target", None)
        if explicit:
            return explicit
        if default is None:
            raise SettingsError(f"MEDSETTLE_{service.upper()}_TARGET is not set")
        return default


def load_settings(**overrides: object) -> Settings:
    """Reads the environment (overrides win) and fails with every bad variable named."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"MEDSETTLE_{loc.upper()}" if loc != "settings" else loc
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
