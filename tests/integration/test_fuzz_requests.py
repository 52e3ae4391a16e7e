"""Property: whatever a caller sends to any method, the answer is never INTERNAL or UNKNOWN, every
error carries ErrorInfo, and a rejected request changes no table (SQLite and PostgreSQL).

Requests are drawn by hypothesis from each method's request descriptor: plausible values of a
seeded world (so calls reach the handlers, not only the bounds), random text, NUL characters,
strings and lists one beyond their bound, extreme integers, undefined enum numbers, and random
bytes that may not parse. Each call is made as a role the access table admits for the method,
usually with the scoped field set to the caller's own id. Deterministic by default (a fixed set
of examples, a few seconds); ``MEDSETTLE_FUZZ_EXAMPLES=2000`` runs more, randomly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from libs.platform import access, bounds
from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.platform.identity import Principal
from services.demo import HOSPITAL
from tests.dates import TEST_DAY
from tests.integration.hostile import Tables, call_raw, message_class, method_descriptor
from tests.integration.settlement.helpers import OTHER_HOSPITAL, RESIDENT, RETIREE, setup_world
from tests.integration.test_access_matrix import PRINCIPALS
from tests.unit.test_access import all_methods

pytestmark = pytest.mark.db

EXAMPLES = int(os.environ.get("MEDSETTLE_FUZZ_EXAMPLES", "150"))
PLAUSIBLE_TEXT: dict[str, list[str]] = {
    "institution_code": [HOSPITAL, OTHER_HOSPITAL],
    "person_no": [RETIREE, RESIDENT],
    "expected_person_no": [RETIREE],
    "region_code": ["310100", "110100"],
    "insured_region_code": ["110100", "510100"],
    "treatment_region_code": ["310100"],
    "insured_province_code": ["11", "51"],
    "treatment_province_code": ["31"],
    "province_code": ["31"],
    "card_number": ["110100C0001"],
    "card_serial": ["S9A1B2C3"],
    "id_number": ["110105195403120027"],
    "request_id": ["fz-1", "fz-2"],
    "hospital_visit_no": ["HV-1"],
    "item_code": ["X"],
    "diagnosis_codes": ["K35.800"],
}
PLAUSIBLE_INT: dict[str, list[int]] = {
    "year": [TEST_DAY.year],
    "month": [TEST_DAY.month],
    "day": [TEST_DAY.day],
    "quantity_milli": [1000, -1000],
    "unit_price_fen": [100],
    "line_no": [1, 2],
    "amount_fen": [100],
}
INT_RANGE = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
NASTY_TEXT = hs.text(alphabet=hs.sampled_from(["a", "0", "\x00", "é", "%", "_", "'", "\\", "\U0001f600"]), max_size=8)


def _text(f: FieldDescriptor, b: bounds.Bound) -> hs.SearchStrategy[str]:
    too_long = (b.chars or 256) + 1
    return hs.one_of(
        hs.sampled_from(PLAUSIBLE_TEXT.get(f.name, ["x"])),
        hs.text(max_size=10),
        NASTY_TEXT,
        hs.just("y" * too_long),
    )


def _int(f: FieldDescriptor, b: bounds.Bound) -> hs.SearchStrategy[int]:
    low, high = INT_RANGE.get(f.cpp_type, (-(2**31), 2**31 - 1))
    edges = [x for x in (0, 1, -1, low, high) if low <= x <= high]
    if b.low is not None and b.high is not None:
        edges += [x for x in (b.low - 1, b.low, b.high, b.high + 1) if low <= x <= high]
    return hs.one_of(hs.sampled_from(PLAUSIBLE_INT.get(f.name, [0])), hs.sampled_from(edges), hs.integers(low, high))


def _scalar(message: Descriptor, f: FieldDescriptor, depth: int) -> hs.SearchStrategy[Any]:
    b = bounds.bound_of(message, f)
    if f.type == FieldDescriptor.TYPE_STRING:
        return _text(f, b)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return hs.binary(max_size=16)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return hs.booleans()
    if f.type == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        return hs.one_of(hs.sampled_from([v.number for v in f.enum_type.values]), hs.integers(-3, 1000))
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        assert f.message_type is not None
        return _message(f.message_type, depth + 1)
    if f.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return hs.floats()
    return _int(f, b)


def _field(message: Descriptor, f: FieldDescriptor, depth: int) -> hs.SearchStrategy[Any]:
    item = _scalar(message, f, depth)
    if not f.is_repeated:
        return item
    b = bounds.bound_of(message, f)
    lists = hs.lists(item, max_size=3)
    if b.items is not None:  # one beyond the bound, of one (repeated) item
        lists = hs.one_of(lists, item.map(lambda x: [x] * (b.items + 1)))  # type: ignore[operator]
    return lists


def _fill(cls: Any, values: dict[str, Any]) -> Any:
    msg = cls()
    for name, value in values.items():
        f = msg.DESCRIPTOR.fields_by_name[name]
        if f.is_repeated:
            getattr(msg, name).extend(value)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def _message(d: Descriptor, depth: int = 0) -> hs.SearchStrategy[Any]:
    cls = message_class(d)
    if depth > 2 or d.full_name.startswith("google."):
        return hs.just(cls())
    optional: dict[str, hs.SearchStrategy[Any]] = {}
    for f in d.fields:
        if f.containing_oneof is not None and f.containing_oneof.name != f.name:
            optional[f.name] = _field(d, f, depth)  # the last one drawn wins, as on the wire
        else:
            optional[f.name] = _field(d, f, depth)
    return hs.fixed_dictionaries({}, optional=optional).map(lambda values: _fill(cls, values))


def _request(method: str, principal: Principal) -> Callable[[hs.DrawFn], bytes]:
    d = method_descriptor(method).input_type
    strategy = _message(d)

    @hs.composite
    def draw(draw_: hs.DrawFn) -> bytes:
        if draw_(hs.integers(0, 9)) == 0:
            return draw_(hs.binary(max_size=48))  # bytes that may not parse
        msg = draw_(strategy)
        rule = access.rule_for(method)
        path = rule.scope_fields().get(principal.role) if rule else None
        if path and draw_(hs.integers(0, 3)) > 0:
            target = msg
            *parents, leaf = path.split(".")
            for part in parents:
                target = getattr(target, part)
            setattr(target, leaf, principal.id)
        if "follow" in d.fields_by_name:
            msg.follow = False
        return bytes(msg.SerializeToString())

    return draw  # type: ignore[return-value]


def _admitted(method: str) -> list[Principal]:
    rule = access.rule_for(method)
    assert rule is not None, method
    return [PRINCIPALS[r] for r in sorted(rule.roles)]


async def _settled(tables: Tables) -> dict[str, list[tuple[Any, ...]]]:
    """The tables once background work after an accepted call (outbox positions, the feeds) is done."""
    last = await tables.dump()
    for _ in range(15):
        await asyncio.sleep(0.2)
        now = await tables.dump()
        if now == last:
            return now
        last = now
    return last


async def test_no_request_gets_internal_and_a_rejected_one_writes_nothing(suite: Host, db_urls: dict[str, str]) -> None:
    target = f"127.0.0.1:{suite.port}"
    world = await setup_world(target)
    loop = asyncio.get_running_loop()
    methods = all_methods()
    calls = {"n": 0, "rejected": 0, "unparseable": 0}

    async with Tables(db_urls) as tables, grpc.aio.insecure_channel(target) as channel:
        state = {"before": await _settled(tables)}

        def run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize="MEDSETTLE_FUZZ_EXAMPLES" not in os.environ,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=hs.data())
        def one(data: hs.DataObject) -> None:
            method = data.draw(hs.sampled_from(methods), label="method")
            principal = data.draw(hs.sampled_from(_admitted(method)), label="caller")
            payload = data.draw(_request(method, principal)(), label="payload")  # type: ignore[operator]
            err = run(call_raw(channel, method, payload, principal))
            calls["n"] += 1
            if err is None:
                state["before"] = run(_settled(tables))
                return
            calls["rejected"] += 1
            d = error_details(err)
            assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, err.code(), d)
            assert d.reason.startswith("REASON_"), (method, err.code(), d)
            calls["unparseable"] += d.reason == "REASON_REQUEST_UNPARSEABLE"
            after = run(tables.dump())
            changed = sorted(k for k in after if after[k] != state["before"].get(k))
            assert not changed, (method, err.code(), d.reason, changed)

        await asyncio.to_thread(one)
    await world.c.close()
    print("fuzz calls", calls)
    assert calls["n"] >= EXAMPLES and calls["rejected"] > EXAMPLES // 2 and calls["unparseable"] > 0, calls
