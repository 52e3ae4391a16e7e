"""Generate the reason table from the protos: libs/core/reasons.py and docs/reasons.md.

The source is medsettle.common.v1.Reason in protos/medsettle/common/v1/reason.proto: each value's
comment (its meaning) and its ``(medsettle.common.v1.reason_info)`` option (the gRPC status code
and the ErrorInfo metadata keys). They are read from the descriptor set `make protos` writes
(libs/contracts/medsettle/descriptor_set.binpb, which keeps the comments), so run after
scripts/gen_protos.py; `make protos` runs both.

    .venv/bin/python scripts/gen_reasons.py          # rewrite both
    .venv/bin/python scripts/gen_reasons.py --check  # exit 1 if either is stale

Fails, naming the value, when a value has no reason_info option, its code is OK or unset, or
values are not declared in number order. tests/unit/test_reasons.py fails while either file
is stale.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "libs" / "contracts"))

from google.protobuf import descriptor_pb2  # noqa: E402
from google.rpc import code_pb2  # noqa: E402

from medsettle.common.v1 import reason_info_pb2  # noqa: E402

DESCRIPTOR_SET = ROOT / "libs" / "contracts" / "medsettle" / "descriptor_set.binpb"
PROTO = "medsettle/common/v1/reason.proto"
PY_OUT = ROOT / "libs" / "core" / "reasons.py"
DOC_OUT = ROOT / "docs" / "reasons.md"
EXTENSION = "(medsettle.common.v1.reason_info)"


class CatalogueError(Exception):
    """The reason enum breaks a rule of the catalogue."""


@dataclass(frozen=True)
class Row:
    name: str  # REASON_...
    number: int
    code: str  # google.rpc.Code name
    metadata_keys: tuple[str, ...]
    meaning: str

    @property
    def member(self) -> str:
        return self.name.removeprefix("REASON_")


def _comments(file: descriptor_pb2.FileDescriptorProto, enum_index: int) -> dict[int, str]:
    """Value index -> its leading comment, one paragraph."""
    out: dict[int, str] = {}
    for loc in file.source_code_info.location:
        # path: 5 (enum_type), enum index, 2 (value), value index
        if len(loc.path) == 4 and loc.path[0] == 5 and loc.path[1] == enum_index and loc.path[2] == 2:
            out[loc.path[3]] = " ".join(line.strip() for line in loc.leading_comments.splitlines() if line.strip())
    return out


def rows_from(file: descriptor_pb2.FileDescriptorProto) -> list[Row]:
    """The catalogue's rows (REASON_UNSPECIFIED left out); raises CatalogueError on a broken rule."""
    enum_index = next((i for i, e in enumerate(file.enum_type) if e.name == "Reason"), None)
    if enum_index is None:
        raise CatalogueError(f"{file.name}: no enum Reason")
    enum = file.enum_type[enum_index]
    comments = _comments(file, enum_index)
    rows: list[Row] = []
    problems: list[str] = []
    previous = -1
    for i, value in enumerate(enum.value):
        if value.number <= previous:
            problems.append(
                f"{value.name} = {value.number} is declared after {previous}: declare values in number order"
            )
        previous = max(previous, value.number)
        if value.number == 0:
            continue
        if not value.options.HasExtension(reason_info_pb2.reason_info):
            problems.append(
                f"{value.name} = {value.number} has no {EXTENSION} option: add "
                "[(reason_info) = {code: ..., metadata_keys: [...]}] (docs/reasons.md)"
            )
            continue
        info = value.options.Extensions[reason_info_pb2.reason_info]
        if info.code == code_pb2.OK:
            problems.append(f"{value.name} = {value.number}: reason_info.code is unset (OK is not a failure)")
            continue
        meaning = comments.get(i, "")
        if not meaning:
            problems.append(f"{value.name} = {value.number} has no comment saying what it means")
        rows.append(Row(value.name, value.number, code_pb2.Code.Name(info.code), tuple(info.metadata_keys), meaning))
    if problems:
        raise CatalogueError(f"{PROTO}: " + "; ".join(problems))
    return rows


def load_file(path: Path = DESCRIPTOR_SET) -> descriptor_pb2.FileDescriptorProto:
    fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    for f in fds.file:
        if f.name == PROTO:
            return f
    raise CatalogueError(f"{path}: {PROTO} is missing; run scripts/gen_protos.py")


def _comment_lines(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=116 - len(indent))]


def python_text(rows: list[Row]) -> str:
    lines = [
        '"""The reason catalogue, GENERATED from protos/medsettle/common/v1/reason.proto by',
        "scripts/gen_reasons.py (`make protos`): do not edit; change the proto and regenerate.",
        "",
        "Pure (no protobuf). ``Reason`` members are the proto value names without ``REASON_``; their values",
        "are the names ``google.rpc.ErrorInfo.reason`` carries. ``REASON_INFO`` gives each one's number, gRPC",
        "status code (by name) and ErrorInfo metadata keys; libs/core/errors.py derives the categories from it.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from enum import StrEnum",
        "from typing import NamedTuple",
        "",
        "",
        "class Reason(StrEnum):",
        '    """Every reason of the catalogue, in number order (see docs/reasons.md)."""',
        "",
    ]
    for r in rows:
        lines += _comment_lines(f"{r.number}, {r.code}: {r.meaning}", "    ")
        lines.append(f'    {r.member} = "{r.name}"')
    lines += [
        "",
        "",
        "class ReasonInfo(NamedTuple):",
        "    number: int",
        "    code: str  # the gRPC status code's name (google.rpc.Code)",
        "    metadata_keys: tuple[str, ...]  # the keys ErrorInfo.metadata can carry",
        "",
        "",
        "REASON_INFO: dict[Reason, ReasonInfo] = {",
    ]
    for r in rows:
        quoted = [f'"{k}"' for k in r.metadata_keys]
        keys = f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"
        lines.append(f'    Reason.{r.member}: ReasonInfo({r.number}, "{r.code}", {keys}),')
    lines += ["}", ""]
    return _ruff_format("\n".join(lines))


def _ruff_format(text: str) -> str:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(PY_OUT), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"ruff format failed on the generated module: {result.stderr}")
    return result.stdout


def doc_text(rows: list[Row]) -> str:
    out = [
        "# Reasons",
        "",
        "<!-- GENERATED by scripts/gen_reasons.py from protos/medsettle/common/v1/reason.proto; do not edit. -->",
        "",
        "Every error a medsettle service returns is a `google.rpc.Status` (trailer `grpc-status-details-bin`)",
        "carrying a `google.rpc.ErrorInfo` with domain `medsettle`, `reason` = one of the names below and the",
        "metadata keys listed (never personal data), and for bad input a `google.rpc.BadRequest` naming every",
        "bad field. The gRPC code of a reason never changes. Which failures are safe to retry, and how:",
        "[design/failure-semantics.md](design/failure-semantics.md).",
        "",
        "## Adding a reason",
        "",
        "1. In `protos/medsettle/common/v1/reason.proto`, append the value with the next free number of",
        "   your range (values are declared in number order; a number is never renumbered or reused),",
        "   a comment saying what it means and what the caller can do, and its option:",
        "",
        "   ```proto",
        "   // FAILED_PRECONDITION: what went wrong and what the caller can do. metadata visit_id.",
        "   REASON_SOMETHING_REFUSED = 106 [(reason_info) = {",
        "     code: FAILED_PRECONDITION",
        '     metadata_keys: ["visit_id"]',
        "   }];",
        "   ```",
        "",
        "2. `make protos`: regenerates `libs/contracts`, `libs/core/reasons.py` (the `Reason` enum and",
        "   the reason -> code table) and this page. It fails, naming the value, if the option is",
        "   missing, the code is unset or the value is out of order.",
        '3. Raise it: `DomainError(Reason.SOMETHING_REFUSED, message, metadata={"visit_id": ...})`.',
        "   There is nothing to add to `libs/core/errors.py`: `Reason` and `CATEGORY_OF` come from the",
        "   generated table.",
        "",
        "A branch made before this rule that added `Reason` members and `CATEGORY_OF` entries to",
        "`libs/core/errors.py`: on merge drop those lines from `errors.py`, give each new value in",
        "`reason.proto` its `reason_info` option (the code: `INVALID_ARGUMENT` for invalid,",
        "`NOT_FOUND`, `ALREADY_EXISTS` for duplicate, `FAILED_PRECONDITION` for refused,",
        "`PERMISSION_DENIED` for not_allowed, `UNAUTHENTICATED`, `ABORTED` for conflict,",
        "`RESOURCE_EXHAUSTED` for exhausted, `UNAVAILABLE`, `INTERNAL`) and run `make protos`.",
        "",
        "## The catalogue",
        "",
        "| reason | number | gRPC code | ErrorInfo metadata | meaning |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        keys = ", ".join(f"`{k}`" for k in r.metadata_keys) or "—"
        meaning = r.meaning.replace("|", "\\|")
        out.append(f"| `{r.name}` | {r.number} | `{r.code}` | {keys} | {meaning} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the files are stale")
    args = parser.parse_args(argv)
    try:
        rows = rows_from(load_file())
    except CatalogueError as exc:
        print(f"gen_reasons: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path, text in ((PY_OUT, python_text(rows)), (DOC_OUT, doc_text(rows))):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("stale (run `make protos`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
