"""Runs the local gateway (k8s/local-gateway/nginx.conf.template) as an ordinary user from a
scratch prefix: ``nginx -c <prefix>/nginx.conf -p <prefix> -e <prefix>/error.log``, in the
foreground (``daemon off``), stopped by the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "k8s" / "local-gateway"))
from render import render  # noqa: E402

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> str:
    """The nginx binary; skips locally when there is none, fails under CI (the install script
    puts it there before the tests run)."""
    for candidate in (os.environ.get("MEDSETTLE_TEST_NGINX"), *NGINX_CANDIDATES, shutil.which("nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "nginx not found (scripts/install-k8s-tools.sh installs nginx-light)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; the gateway test is required under CI")
    pytest.skip(message)


class Nginx:
    def __init__(
        self,
        prefix: Path,
        *,
        upstreams: dict[str, str],
        tls_cert: Path,
        tls_key: Path,
        client_ca: Path,
        port: int,
        partner_client_ca: Path,
        partner_port: int,
    ) -> None:
        self.binary = find_nginx()
        self.prefix = prefix
        self.port = port
        self.partner_port = partner_port
        prefix.mkdir(parents=True, exist_ok=True)
        text = render(
            listen_port=port,
            prefix=prefix,
            filing_upstream=upstreams["filing"],
            eligibility_upstream=upstreams["eligibility"],
            settlement_upstream=upstreams["settlement"],
            clearing_upstream=upstreams["clearing"],
            tls_cert=tls_cert,
            tls_key=tls_key,
            client_ca=client_ca,
            partner_listen_port=partner_port,
            partner_client_ca=partner_client_ca,
        )
        # Foreground, so the test owns the process; the template leaves daemon mode to the caller.
        self.conf = prefix / "nginx.conf"
        head = "daemon off;\n"
        if os.geteuid() == 0:
            # As root, workers would drop to "nobody", which cannot enter a private temp prefix.
            head += "user root;\n"
        self.conf.write_text(head + text, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def partner_target(self) -> str:
        return f"127.0.0.1:{self.partner_port}"

    def _cmd(self, *extra: str) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), *extra]

    def start(self, timeout: float = 10.0) -> None:
        check = subprocess.run(self._cmd("-t"), capture_output=True, timeout=timeout)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {check.stderr.decode(errors='replace')}")
        self.proc = subprocess.Popen(
            self._cmd(), stdout=subprocess.DEVNULL, stderr=(self.prefix / "stderr.log").open("ab")
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.error_log()}")
            with socket.socket() as s, socket.socket() as p:
                if s.connect_ex(("127.0.0.1", self.port)) == 0 and p.connect_ex(("127.0.0.1", self.partner_port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"nginx did not listen on {self.port}: {self.error_log()}")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests, then exit
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
