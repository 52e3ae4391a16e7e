"""Generate Python code and type stubs from protos/ (the one command behind `make protos`).

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: libs/contracts)

Besides the code it writes OUT_DIR/medsettle/descriptor_set.binpb: a FileDescriptorSet of every
contract and its imports WITH source info (the comments), which reflection serves
(libs/platform/reflection.py), scripts/gen_reasons.py reads, and integrators can load
(`grpcurl -protoset`). Only protos/medsettle is generated; protos/third_party holds the copies
of the googleapis files the contracts import (their Python code comes from the
googleapis-common-protos package).

Output is deterministic for the pinned grpcio-tools / mypy-protobuf versions, so
tests/unit/test_contracts.py can regenerate into a temporary folder and compare.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = PROTOS / "third_party"
DESCRIPTOR_SET = "descriptor_set.binpb"


def generate(out: Path) -> None:
    package_root = out / "medsettle"
    if package_root.exists():
        shutil.rmtree(package_root)
    package_root.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "medsettle").rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--descriptor_set_out={package_root / DESCRIPTOR_SET}",
        "--include_imports",
        "--include_source_info",
        *files,
    ]
    # The mypy plugins live next to this interpreter (the venv's bin), which may not be on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Packages for every generated folder, so `import medsettle.settlement.v1` works everywhere.
    for folder in [package_root, *[p for p in package_root.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
        (folder / "py.typed").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "libs" / "contracts")
