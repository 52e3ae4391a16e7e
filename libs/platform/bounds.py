"""The bounds of every request field, in one table, checked on every request before its handler.

Every string, repeated and integer field of every request message (sub-messages included) has a
declared maximum: by (message, field), else by field name, else by kind (``DEFAULTS``). The
interceptor parses each request itself and calls :func:`check` before access control and the
handler, so no RPC can forget it; the checks that need meaning (formats, required fields, dates
that exist, business ranges, enum values, which the adapters map and report together with the
request's other bad fields) stay in the adapters. Also refused here: the NUL character in any
string (PostgreSQL cannot store it).

Error descriptions name the field and the bound and never quote the value.
``docs/bounds.md`` is generated from this table (``python -m libs.platform.bounds --write
docs/bounds.md``; a test fails while it is stale).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from libs.core.errors import DomainError, FieldViolation, Reason

# Money: the same ceiling clearing uses for any amount (one trillion yuan), either sign.
MAX_FEN = 100_000_000_000_000
# A fee line's price and quantity, so that price x quantity x lines stays far inside int64.
MAX_UNIT_PRICE_FEN = 10_000_000_000  # 100 million yuan per unit
MAX_QUANTITY_MILLI = 100_000_000  # 100,000 units
MAX_LINES_PER_UPLOAD = 2000  # lines per UploadFees / SettleOutpatient / manual claim
MAX_DIAGNOSES = 32  # diagnosis codes per visit
MAX_VIOLATIONS = 20  # reported per request: a hostile request gets the first ones only
MIN_YEAR, MAX_YEAR = 1900, 2100  # a Date's year (0 with month and day 0: not given)


@dataclass(frozen=True, slots=True)
class Bound:
    """``chars``: a string's (or each string item's) length in characters; ``items``: a repeated
    field's length; ``low``/``high``: an integer's (or each item's) range, ``zero`` also allowed."""

    chars: int | None = None
    items: int | None = None
    low: int | None = None
    high: int | None = None
    zero: bool = False

    def merged(self, other: Bound) -> Bound:
        """``other``'s values where given, this one's elsewhere."""
        return Bound(
            chars=other.chars if other.chars is not None else self.chars,
            items=other.items if other.items is not None else self.items,
            low=other.low if other.low is not None else self.low,
            high=other.high if other.high is not None else self.high,
            zero=other.zero or self.zero,
        )


def _text(n: int) -> Bound:
    return Bound(chars=n)


def _range(low: int, high: int, *, zero: bool = False) -> Bound:
    return Bound(low=low, high=high, zero=zero)


# By kind, for any field the tables below do not name.
DEFAULTS: dict[str, Bound] = {
    "string": _text(256),
    "bytes": _text(4096),
    "repeated": Bound(items=1000),
    "int": _range(-1_000_000_000, 1_000_000_000),
    "money": _range(-MAX_FEN, MAX_FEN),  # any *_fen field
}

# By field name, in every message that has it. Lengths follow the database columns they end in.
BY_NAME: dict[str, Bound] = {
    # ids and idempotency keys
    "request_id": _text(128),
    "original_request_id": _text(128),
    "visit_id": _text(40),
    "settlement_id": _text(40),
    "filing_id": _text(40),
    "claim_id": _text(40),
    "statement_id": _text(40),
    "verification_id": _text(40),
    "token_id": _text(32),
    "top_up_id": _text(128),
    "page_token": _text(512),
    # codes
    "institution_code": _text(32),
    "institution_codes": Bound(chars=32, items=16),
    "person_no": _text(40),
    "expected_person_no": _text(40),
    "hospital_visit_no": _text(64),
    "item_code": _text(64),
    "item_class": _text(32),
    "code_prefix": _text(64),
    "prefix": _text(96),  # a ledger account name (96)
    "region_code": _text(6),
    "insured_region_code": _text(6),
    "treatment_region_code": _text(6),
    "province_code": _text(2),
    "insured_province_code": _text(2),
    "treatment_province_code": _text(2),
    "special_disease_code": _text(32),
    "disease_code": _text(32),
    "special_disease_codes": Bound(chars=32, items=64),
    "special_diseases": Bound(items=16),
    "diagnosis_codes": Bound(chars=32, items=MAX_DIAGNOSES),
    "networked_services": Bound(items=16),
    "card_number": _text(32),
    "card_serial": _text(64),
    "id_number": _text(18),
    "sex": _text(1),
    "assistance_category": _text(32),
    # credentials: an e-certificate token is about 300 characters
    "ecert_token": _text(1024),
    # names and free text
    "name": _text(100),
    "item_name": _text(200),
    "employer_name": _text(200),
    "failure_reason": _text(200),
    "reason": _text(2000),
    "answer": _text(2000),
    "note": _text(2000),
    # fee lines
    "lines": Bound(items=MAX_LINES_PER_UPLOAD),
    "line_no": _range(0, 100_000),
    "refund_of_line_no": _range(0, 100_000),
    "quantity_milli": _range(-MAX_QUANTITY_MILLI, MAX_QUANTITY_MILLI),
    "unit_price_fen": _range(-MAX_UNIT_PRICE_FEN, MAX_UNIT_PRICE_FEN),
    # clearing uploads
    "items": Bound(items=200_000),
    "totals": Bound(items=100),
    "signing_dates": Bound(items=12),
    "count": _range(0, 1_000_000_000),
    # queries and feeds
    "page_size": _range(0, 10_000),
    "after_position": _range(0, 2**62),
    # calendar fields (medsettle.common.v1.Date and Month, and bare years)
    "year": _range(MIN_YEAR, MAX_YEAR, zero=True),
    "month": _range(0, 12),
    "day": _range(0, 31),
}

# By (message full name, field name): where one name means different things.
BY_FIELD: dict[tuple[str, str], Bound] = {
    ("medsettle.eligibility.v1.Institution", "name"): _text(200),
    # home movements (the domain's own bounds, services/settlement/domain/home.py)
    ("medsettle.settlement.v1.ReportHomeMovementsRequest", "movements"): Bound(items=500),
    ("medsettle.settlement.v1.HomeMovement", "movement_id"): _text(64),
    ("medsettle.settlement.v1.HomeMovement", "account_delta_fen"): _range(-(10**12), 10**12),
    ("medsettle.settlement.v1.HomeMovement", "home_balance_after_fen"): _range(0, 10**12),
}


def _kind(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_STRING:
        return "string"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return "bytes"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return "message"
    if field.type == FieldDescriptor.TYPE_ENUM:
        return "enum"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "bool"
    if field.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return "float"
    return "int"


def bound_of(message: Descriptor, field: FieldDescriptor) -> Bound:
    """The declared bound of one field: defaults by kind, then by name, then by (message, field)."""
    kind = _kind(field)
    base = Bound()
    if field.is_repeated:
        base = base.merged(DEFAULTS["repeated"])
    if kind in ("string", "bytes"):
        base = base.merged(DEFAULTS[kind])
    elif kind == "int":
        base = base.merged(DEFAULTS["money" if field.name.endswith("_fen") else "int"])
    if field.name in BY_NAME:
        base = base.merged(BY_NAME[field.name])
    if (message.full_name, field.name) in BY_FIELD:
        base = base.merged(BY_FIELD[(message.full_name, field.name)])
    return base


@dataclass(frozen=True, slots=True)
class _Step:
    name: str
    kind: str
    repeated: bool
    bound: Bound
    message: Descriptor | None


_PLANS: dict[str, dict[str, _Step]] = {}


def _plan(descriptor: Descriptor) -> dict[str, _Step]:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = {}
        for f in descriptor.fields:
            kind = _kind(f)
            message = f.message_type if kind == "message" else None
            plan[f.name] = _Step(f.name, kind, f.is_repeated, bound_of(descriptor, f), message)
        _PLANS[descriptor.full_name] = plan
    return plan


# One checker per message type, made once from the plan: plain attribute reads and comparisons,
# a field's path built only when it is out of bounds (a 2000-line upload is on the hot path).
_Checker = Callable[[Any, str, list[FieldViolation]], None]
_CHECKERS: dict[str, _Checker] = {}


def _scalar_fault(step: _Step) -> Callable[[Any], str | None] | None:
    """What is wrong with one value of the field (None: nothing), or None for a kind not checked."""
    b = step.bound
    if step.kind == "string" and b.chars is not None:
        chars = b.chars

        def text(v: str) -> str | None:
            if len(v) > chars:
                return f"at most {chars} characters (got {len(v)})"
            return "must not contain the NUL character" if "\x00" in v else None

        return text
    if step.kind == "bytes" and b.chars is not None:
        size = b.chars
        return lambda v: f"at most {size} bytes (got {len(v)})" if len(v) > size else None
    if step.kind == "int" and b.low is not None and b.high is not None:
        low, high, zero = b.low, b.high, b.zero
        text_range = f"must be in {low}..{high}" + (" or 0" if zero else "")
        return lambda v: text_range if (v < low or v > high) and not (zero and v == 0) else None
    return None


def _field_checker(step: _Step) -> _Checker | None:
    name, items = step.name, step.bound.items
    if step.kind == "message":
        assert step.message is not None
        sub = step.message
        if step.repeated:

            def messages(msg: Any, prefix: str, out: list[FieldViolation]) -> None:
                values = getattr(msg, name)
                if items is not None and len(values) > items:
                    out.append(FieldViolation(prefix + name, f"at most {items} items (got {len(values)})"))
                    return
                check_sub = _checker(sub)
                for i, v in enumerate(values):
                    if len(out) >= MAX_VIOLATIONS:
                        return
                    check_sub(v, f"{prefix}{name}[{i}].", out)

            return messages

        def message(msg: Any, prefix: str, out: list[FieldViolation]) -> None:
            if msg.HasField(name):
                _checker(sub)(getattr(msg, name), prefix + name + ".", out)

        return message
    fault = _scalar_fault(step)
    if step.repeated:

        def scalars(msg: Any, prefix: str, out: list[FieldViolation]) -> None:
            values = getattr(msg, name)
            if items is not None and len(values) > items:
                out.append(FieldViolation(prefix + name, f"at most {items} items (got {len(values)})"))
                return
            if fault is not None:
                for i, v in enumerate(values):
                    if (why := fault(v)) is not None:
                        out.append(FieldViolation(f"{prefix}{name}[{i}]", why))
                        if len(out) >= MAX_VIOLATIONS:
                            return

        return scalars
    if fault is None:
        return None

    def scalar(msg: Any, prefix: str, out: list[FieldViolation]) -> None:
        if (why := fault(getattr(msg, name))) is not None:
            out.append(FieldViolation(prefix + name, why))

    return scalar


def _checker(descriptor: Descriptor) -> _Checker:
    found = _CHECKERS.get(descriptor.full_name)
    if found is not None:
        return found
    fields = [c for step in _plan(descriptor).values() if (c := _field_checker(step)) is not None]

    def check_message(msg: Any, prefix: str, out: list[FieldViolation]) -> None:
        for c in fields:
            if len(out) >= MAX_VIOLATIONS:
                return
            c(msg, prefix, out)

    _CHECKERS[descriptor.full_name] = check_message
    return check_message


def violations(message: Message) -> list[FieldViolation]:
    """Every field of ``message`` outside its bounds (at most MAX_VIOLATIONS)."""
    out: list[FieldViolation] = []
    _checker(message.DESCRIPTOR)(message, "", out)  # type: ignore[arg-type]  # upb's Descriptor is one
    return out[:MAX_VIOLATIONS]


def check(message: Message) -> None:
    """Raises INVALID_ARGUMENT ``REASON_VALIDATION_FAILED`` naming every field out of bounds."""
    found = violations(message)
    if found:
        first = found[0]
        raise DomainError(
            Reason.VALIDATION_FAILED,
            f"{len(found)} field(s) out of bounds; first: {first.field}: {first.description}",
            violations=found,
            metadata={"field": first.field[:128]},
        )


# -- the generated table (docs/bounds.md) ---------------------------------------------------------


def request_descriptors() -> list[Descriptor]:
    """The input message of every RPC of every service in the contracts, sorted by name."""
    import medsettle  # the generated contracts

    found: dict[str, Descriptor] = {}
    for mod in pkgutil.walk_packages(medsettle.__path__, "medsettle."):
        if not mod.name.endswith("_pb2"):
            continue
        for service in importlib.import_module(mod.name).DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found[method.input_type.full_name] = method.input_type
    return [found[k] for k in sorted(found)]


def _describe(step: _Step) -> str:
    b, parts = step.bound, []
    if step.repeated and b.items is not None:
        parts.append(f"≤ {b.items:,} items")
    if step.kind in ("string", "bytes") and b.chars is not None:
        unit = "characters" if step.kind == "string" else "bytes"
        parts.append(f"{'each ' if step.repeated else ''}≤ {b.chars:,} {unit}" + (", no NUL" if unit[0] == "c" else ""))
    if step.kind == "int" and b.low is not None and b.high is not None:
        parts.append(f"{b.low:,} .. {b.high:,}" + (" or 0" if b.zero else ""))
    return "; ".join(parts)


def _rows(descriptor: Descriptor, prefix: str, seen: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    for name, step in _plan(descriptor).items():
        path = prefix + name + ("[]" if step.repeated else "")
        if step.kind == "message":
            assert step.message is not None
            if step.repeated:
                yield path, step.message.full_name.rsplit(".", 1)[-1], _describe(step)
            if step.message.full_name.startswith("google.") or step.message.full_name in seen:
                continue
            yield from _rows(step.message, path + ".", (*seen, step.message.full_name))
        elif step.kind not in ("bool", "enum"):
            yield path, step.kind, _describe(step)


def render_doc() -> str:
    lines = [
        "# Request bounds",
        "",
        "<!-- generated from libs/platform/bounds.py: python -m libs.platform.bounds --write docs/bounds.md -->",
        "",
        "Every request is parsed and checked against these bounds before access control and the handler",
        "run. Bytes that do not parse (invalid UTF-8 in a string included) are INVALID_ARGUMENT",
        "`REASON_REQUEST_UNPARSEABLE`; a field outside its bound is INVALID_ARGUMENT",
        f"`REASON_VALIDATION_FAILED` with one `BadRequest` field violation per field (at most {MAX_VIOLATIONS}),",
        "ErrorInfo metadata `field` naming the first; the service's own checks of the request do not",
        "run then, so the caller sees these first. No error quotes the value itself. Strings never",
        f"contain NUL; a `Date` of all zeros means not given, any other has a year in {MIN_YEAR}..{MAX_YEAR}",
        "(whether it is a real day, and narrower business ranges, are the service's own checks).",
        "",
        "E-certificate tokens are also checked for size and signature before anything in them is parsed.",
        "",
    ]
    for d in request_descriptors():
        lines += [f"## {d.full_name}", "", "| field | kind | bound |", "|---|---|---|"]
        rows = list(_rows(d, "", (d.full_name,)))
        lines += [f"| `{p}` | {k} | {b} |" for p, k, b in rows] or ["| (no fields) | | |"]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--write", type=Path, help="write the table to this file")
    args = parser.parse_args(argv)
    doc = render_doc()
    if args.write:
        args.write.write_text(doc, encoding="utf-8")
    else:
        sys.stdout.write(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
