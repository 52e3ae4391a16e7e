"""The contracts document themselves: read from the descriptor set reflection serves
(libs/contracts/medsettle/descriptor_set.binpb, with source info), every RPC has a comment that
says what it does, who may call it (equal to the access table) and how to retry it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from libs.platform import access
from libs.platform.reflection import source_descriptors

ROOT = Path(__file__).resolve().parents[2]


def _gen_access():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_access", ROOT / "scripts" / "gen_access.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_access"] = module
    spec.loader.exec_module(module)
    return module


gen = _gen_access()


def _files() -> list[descriptor_pb2.FileDescriptorProto]:
    return [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in source_descriptors().values()]


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_rpc_says_what_it_does_who_may_call_and_how_to_retry() -> None:
    seen, problems = 0, []
    for file in _files():
        comments = _comments(file)
        for s, service in enumerate(file.service):
            for m, method in enumerate(service.method):
                seen += 1
                name = f"/{file.package}.{service.name}/{method.name}"
                comment = _flat(comments.get((6, s, 2, m), ""))
                if name not in access.RULES:
                    problems.append(f"{name}: no access rule")
                    continue
                who = comment.find(gen.WHO)
                if who <= 0:
                    problems.append(f"{name}: the comment must say what the method does, then {gen.WHO!r}")
                elif _flat(gen.who_may_call(name)) not in comment:
                    problems.append(
                        f"{name}: 'Who may call' disagrees with the access table; run scripts/gen_access.py"
                    )
                if not any(s in comment for s in (gen.MUTATING, gen.READ_ONLY, gen.FEED)):
                    problems.append(f"{name}: no retry sentence")
    assert seen == len(access.RULES), "every rule's method is in the contracts"
    assert not problems, "\n".join(problems)


def test_every_mutating_rpc_takes_a_request_id_and_says_so() -> None:
    for file in _files():
        messages = {f".{file.package}.{m.name}": m for m in file.message_type}
        comments = _comments(file)
        for s, service in enumerate(file.service):
            for m, method in enumerate(service.method):
                request = messages.get(method.input_type)
                if request is None:
                    continue
                mutating = any(f.name == "request_id" for f in request.field)
                comment = _flat(comments.get((6, s, 2, m), ""))
                if not method.server_streaming:
                    assert (gen.MUTATING in comment) is mutating, method.name


def test_every_service_documents_its_retries() -> None:
    for file in _files():
        comments = _comments(file)
        for s, service in enumerate(file.service):
            comment = _flat(comments.get((6, s), ""))
            assert comment, f"{service.name} has no comment"


def _all_messages() -> list[Any]:
    from medsettle.clearing.v1 import clearing_pb2
    from medsettle.eligibility.v1 import eligibility_pb2
    from medsettle.filing.v1 import filing_pb2
    from medsettle.settlement.v1 import catalogue_pb2, settlement_pb2

    out = []
    for module in (clearing_pb2, eligibility_pb2, filing_pb2, catalogue_pb2, settlement_pb2):
        out += list(module.DESCRIPTOR.message_types_by_name.values())
    return out


def test_field_behaviours_mark_every_request_id_required_and_ids_the_server_assigns_output_only() -> None:
    required, output_only = set(), set()
    for message in _all_messages():
        for field in message.fields:
            behaviours = set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])
            name = f"{message.name}.{field.name}"
            if field_behavior_pb2.REQUIRED in behaviours:
                required.add(name)
            if field_behavior_pb2.OUTPUT_ONLY in behaviours:
                output_only.add(name)
            if field.name == "request_id" and message.name.endswith("Request"):
                assert field_behavior_pb2.REQUIRED in behaviours, name
    assert not required & output_only
    # the hot path's request fields and the ids the server assigns
    assert {"SettleRequest.visit_id", "OpenVisitRequest.credential", "CheckEligibilityRequest.institution_code"} <= (
        required
    )
    assert {"Visit.visit_id", "Settlement.settlement_id", "Filing.filing_id", "Statement.statement_id"} <= output_only


def test_every_record_message_and_enum_has_a_comment() -> None:
    """Requests and responses are named after their RPC; every other message and every enum says
    what it is."""
    missing = []
    for file in _files():
        comments = _comments(file)
        for i, message in enumerate(file.message_type):
            if message.name.endswith(("Request", "Response")):
                continue
            if not comments.get((4, i), "").strip():
                missing.append(f"{file.name}: message {message.name}")
        for i, enum in enumerate(file.enum_type):
            if not comments.get((5, i), "").strip():
                missing.append(f"{file.name}: enum {enum.name}")
    assert not missing, "\n".join(missing)
