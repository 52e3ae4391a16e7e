"""A server that requires mTLS still answers probes that speak no TLS: MEDSETTLE_HEALTH_PORT is a
second, plaintext listener with grpc.health.v1.Health only (the kubelet's gRPC probe in the
production overlay). And MEDSETTLE_REQUIRE_MTLS without TLS settings stops the start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.platform.settings import Settings
from services.suite import build_host
from tests.conftest import free_port
from tests.e2e.flow import TlsClients, rpc_error
from tests.pki import Pki

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
FILING = "medsettle.filing.v1.FilingService"


async def test_the_plaintext_health_port_answers_health_only_while_the_main_port_requires_mtls(
    settings: Settings, tmp_path: Path
) -> None:
    from medsettle.filing.v1 import filing_pb2

    pki = Pki(tmp_path / "pki")
    identity = pki.server("svc-filing", uri="urn:medsettle:service:filing")
    mtls = settings.model_copy(
        update={
            "require_mtls": True,
            "tls_cert_file": identity.cert_file,
            "tls_key_file": identity.key_file,
            "tls_client_ca_file": pki.ca_file,
            "health_port": free_port(),
            "eligibility_target": f"127.0.0.1:{free_port()}",  # filing's peer: not called here
        }
    )
    host = build_host(mtls, ["filing"], port=free_port(), bind_host="127.0.0.1")
    await host.start()
    try:
        assert host.health_port == mtls.health_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.health_port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for name in ("", FILING):
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
            # nothing else: no service method, no reflection
            for method in (
                f"/{FILING}/ListFilings",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await ch.unary_unary(method)(b"", timeout=5)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
        # the main port: plaintext fails the handshake; a client certificate is served
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        bureau = pki.client("urn:medsettle:bureau:insured:110100")
        async with TlsClients(f"127.0.0.1:{host.port}", pki.ca_pem, bureau) as c:
            listed = await c.filing.ListFilings(filing_pb2.ListFilingsRequest(page_size=10), timeout=10)
            assert list(listed.filings) == []
        async with TlsClients(f"127.0.0.1:{host.port}", pki.ca_pem, None) as c:
            refused = await rpc_error(c.filing.ListFilings(filing_pb2.ListFilingsRequest(), timeout=5))
            assert refused.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await host.stop(drain=False)
    # the health listener goes with the server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.health_port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_server_that_requires_mtls_without_tls_settings_exits_naming_the_problem(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not (k.startswith("MEDSETTLE_TLS_") or k.startswith("MEDSETTLE_PEER_"))
    }
    env.update(
        {
            "MEDSETTLE_REQUIRE_MTLS": "true",
            "MEDSETTLE_DATA_DIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "libs" / "contracts")]),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "filing", "--port", str(free_port()), "--no-migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "MEDSETTLE_REQUIRE_MTLS" in proc.stderr and "MEDSETTLE_TLS_CLIENT_CA_FILE" in proc.stderr, proc.stderr
    assert "server_started" not in proc.stderr + proc.stdout
