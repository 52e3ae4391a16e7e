"""`medsettle demo` as a new user runs it, on a machine whose clock says 2027-01-04 or 2030-06-30
(libfaketime, from Debian's `faketime`), and with `--on` instead of a faked system clock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FAKETIME = shutil.which("faketime")


def run_demo(*args: str, prefix: tuple[str, ...] = ()) -> str:
    env = {**os.environ, "MEDSETTLE_LOG_LEVEL": "WARNING"}
    env.pop("MEDSETTLE_TEST_CLOCK_START", None)
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "services.cli", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("when", ["2027-01-04 10:00:00", "2030-06-30 10:00:00"])
def test_demo_on_a_machine_whose_clock_says(when: str) -> None:
    if FAKETIME is None:
        if os.environ.get("CI"):
            pytest.fail("faketime is required under CI (Debian package faketime)")
        pytest.skip("faketime not installed (apt-get install faketime)")
    out = run_demo(prefix=(FAKETIME, "-f", f"@{when}"))
    month = when[:7]
    assert f"the suite's date is {when[:10]}" in out
    assert f"monthly clearing {month}: 2 statement(s)" in out
    assert "policy 110100-employee-2027.1@" in out
    assert "Beijing owes Shanghai" in out and "Sichuan owes Shanghai" in out


def test_demo_on_a_given_day() -> None:
    out = run_demo("--on", "2031-02-28")
    assert "the suite's date is 2031-02-28" in out
    assert "monthly clearing 2031-02: 2 statement(s)" in out
