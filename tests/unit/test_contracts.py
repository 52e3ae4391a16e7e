"""Drift checks: the reason enum vs the Python catalogue, generated code vs the protos."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from libs.core.errors import CATEGORY_OF, Reason
from medsettle.common.v1 import reason_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_reason_catalogue_matches_the_proto_enum() -> None:
    proto = {v.name for v in reason_pb2.Reason.DESCRIPTOR.values if v.number != 0}
    assert proto == {r.value for r in Reason}


def test_every_reason_has_a_category() -> None:
    assert set(CATEGORY_OF) == set(Reason)


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)], check=True, capture_output=True
    )
    fresh, committed = tmp_path / "medsettle", ROOT / "libs" / "contracts" / "medsettle"
    diffs: list[str] = []

    def walk(cmp: filecmp.dircmp[str], rel: str) -> None:
        diffs.extend(f"{rel}{n}" for n in cmp.left_only + cmp.right_only + cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{rel}{name}/")

    walk(filecmp.dircmp(fresh, committed, ignore=["__pycache__"]), "")
    assert not diffs, f"run `make protos`: generated code differs: {diffs}"


def test_layering_contracts_hold() -> None:
    exe = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
