"""Channels to peer services: client-side round robin over every address the name resolves to
(headless Services in Kubernetes), trace propagation, optional mTLS."""

from __future__ import annotations

import json

import grpc

from libs.platform.identity import URN_PREFIX
from libs.platform.interceptors import client_interceptors
from libs.platform.settings import Settings

_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)

CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
]


def open_channel(target: str, settings: Settings | None = None, *, as_service: str = "") -> grpc.aio.Channel:
    """``as_service``: the calling service, named to the peer as ``urn:medsettle:service:<name>``
    in the identity header (trusted without mTLS on loopback); with mTLS the peer certificate
    (``MEDSETTLE_PEER_CERT_FILE``, URI SAN of the same form) is what the peer believes."""
    principal = f"{URN_PREFIX}service:{as_service}" if as_service else None
    interceptors = client_interceptors(principal)
    if settings is not None and settings.peer_ca_file is not None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=settings.peer_ca_file.read_bytes(),
            private_key=settings.peer_key_file.read_bytes() if settings.peer_key_file else None,
            certificate_chain=settings.peer_cert_file.read_bytes() if settings.peer_cert_file else None,
        )
        return grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)
