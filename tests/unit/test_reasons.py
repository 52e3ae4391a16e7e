"""The reason catalogue is generated from the protos and true to the code.

* libs/core/reasons.py and docs/reasons.md equal what scripts/gen_reasons.py makes of the proto;
* the generator refuses a value without its (reason_info) option, or declared out of order;
* every ErrorInfo metadata key the code sets for a reason is one its option documents.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import code_pb2

from libs.core.errors import CATEGORY_OF, Reason
from libs.core.reasons import REASON_INFO
from libs.platform.errors import CODE_OF
from medsettle.common.v1 import reason_info_pb2, reason_pb2

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reasons", ROOT / "scripts" / "gen_reasons.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reasons"] = module
    spec.loader.exec_module(module)
    return module


gen = _generator()


def test_generated_reason_table_and_page_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_reasons.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_reason_table_equals_the_proto_options() -> None:
    values = [v for v in reason_pb2.Reason.DESCRIPTOR.values if v.number != 0]
    assert [v.name for v in values] == [r.value for r in Reason]
    for v in values:
        info = v.GetOptions().Extensions[reason_info_pb2.reason_info]
        row = REASON_INFO[Reason(v.name)]
        assert (row.number, row.code, row.metadata_keys) == (
            v.number,
            code_pb2.Code.Name(info.code),
            tuple(info.metadata_keys),
        )
        # the status code a failure carries is the one the proto documents
        assert CODE_OF[CATEGORY_OF[Reason(v.name)]] == grpc.StatusCode[row.code]


def test_numbers_are_in_declaration_order_and_unique() -> None:
    numbers = [info.number for info in REASON_INFO.values()]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def _reason_file() -> descriptor_pb2.FileDescriptorProto:
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(gen.load_file())
    return copy


def test_the_generator_refuses_a_value_without_its_option() -> None:
    file = _reason_file()
    value = file.enum_type[0].value[5]
    value.options.ClearExtension(reason_info_pb2.reason_info)
    with pytest.raises(gen.CatalogueError, match=f"{value.name} = {value.number} has no .*reason_info"):
        gen.rows_from(file)


def test_the_generator_refuses_values_out_of_number_order() -> None:
    file = _reason_file()
    added = file.enum_type[0].value.add(name="REASON_LATE", number=3)
    added.options.Extensions[reason_info_pb2.reason_info].code = 9
    with pytest.raises(gen.CatalogueError, match="REASON_LATE = 3 is declared after"):
        gen.rows_from(file)


def test_the_generator_refuses_a_value_without_a_code() -> None:
    file = _reason_file()
    file.enum_type[0].value[1].options.Extensions[reason_info_pb2.reason_info].code = 0
    with pytest.raises(gen.CatalogueError, match="code is unset"):
        gen.rows_from(file)


def _metadata_keys_in_code() -> dict[str, set[str]]:
    """Reason member -> the literal ErrorInfo metadata keys the code raises it with."""
    found: dict[str, set[str]] = {}
    files = [*(ROOT / "services").rglob("*.py"), *(ROOT / "libs").rglob("*.py")]
    for path in files:
        if "contracts" in path.parts or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name)):
                continue
            if first.value.id != "Reason":
                continue
            for kw in node.keywords:
                if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
                    keys = {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
                    found.setdefault(first.attr, set()).update(keys)
    return found


def test_every_metadata_key_the_code_sets_is_documented() -> None:
    found = _metadata_keys_in_code()
    assert found, "the scan found no DomainError with metadata: it is broken"
    undocumented = {
        member: sorted(keys - set(REASON_INFO[Reason[member]].metadata_keys))
        for member, keys in found.items()
        if keys - set(REASON_INFO[Reason[member]].metadata_keys)
    }
    assert not undocumented, f"add these keys to the reasons' reason_info in reason.proto: {undocumented}"


def test_the_reasons_page_lists_every_reason_with_its_code() -> None:
    page = (ROOT / "docs" / "reasons.md").read_text(encoding="utf-8")
    for reason, info in REASON_INFO.items():
        assert f"| `{reason.value}` | {info.number} | `{info.code}` |" in page
