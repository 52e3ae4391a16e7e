"""MEDSETTLE_TEST_CLOCK_START shifts the services' clock, for tests and rehearsals only: no
manifest may set it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_manifest_shifts_the_clock() -> None:
    files = [p for p in (ROOT / "k8s").rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json", ".env")]
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if "TEST_CLOCK" in p.read_text(encoding="utf-8")]
    assert offenders == []
