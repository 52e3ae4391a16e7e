"""The bounds table (libs/platform/bounds.py): every request field has one, the generated doc is
fresh, errors quote no more than a short prefix, e-certificates are checked before parsing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from libs.core.errors import DomainError, Reason
from libs.platform import bounds
from libs.platform.errors import status_for
from medsettle.clearing.v1 import clearing_pb2 as cl
from medsettle.settlement.v1 import settlement_pb2 as st
from services.eligibility.domain.credentials import TokenSigner

ROOT = Path(__file__).resolve().parents[2]


def _fields(d: Descriptor, seen: set[str]) -> list[tuple[Descriptor, FieldDescriptor]]:
    out = []
    for f in d.fields:
        out.append((d, f))
        if f.message_type is not None and f.message_type.full_name not in seen:
            seen.add(f.message_type.full_name)
            out += _fields(f.message_type, seen)
    return out


def test_every_string_repeated_and_integer_field_of_every_request_has_a_bound() -> None:
    requests = bounds.request_descriptors()
    assert len(requests) >= 47
    missing = []
    for d in requests:
        for message, f in _fields(d, {d.full_name}):
            b = bounds.bound_of(message, f)
            if f.is_repeated and b.items is None:
                missing.append(f"{message.full_name}.{f.name}: items")
            if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) and b.chars is None:
                missing.append(f"{message.full_name}.{f.name}: chars")
            if f.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64) and (
                b.low is None or b.high is None
            ):
                missing.append(f"{message.full_name}.{f.name}: range")
    assert not missing


def test_docs_bounds_md_is_generated_from_the_table() -> None:
    doc = (ROOT / "docs" / "bounds.md").read_text(encoding="utf-8")
    assert doc == bounds.render_doc(), "docs/bounds.md is stale: python -m libs.platform.bounds --write docs/bounds.md"


def test_violations_name_the_field_and_never_quote_the_value() -> None:
    req = st.UploadFeesRequest(
        request_id="r" * 129,
        visit_id="v\x00",
        lines=[st.FeeLine(line_no=1, item_code="A"), st.FeeLine(line_no=-1, item_code="z" * 65)],
    )
    found = {v.field: v.description for v in bounds.violations(req)}
    assert found == {
        "request_id": "at most 128 characters (got 129)",
        "visit_id": "must not contain the NUL character",
        "lines[1].line_no": "must be in 0..100000",
        "lines[1].item_code": "at most 64 characters (got 65)",
    }
    with pytest.raises(DomainError) as exc:
        bounds.check(req)
    assert exc.value.reason is Reason.VALIDATION_FAILED and exc.value.metadata == {"field": "request_id"}


def test_many_items_are_one_violation_and_many_bad_items_are_capped() -> None:
    assert [v.field for v in bounds.violations(st.OpenVisitRequest(diagnosis_codes=["K"] * 33))] == ["diagnosis_codes"]
    bad = bounds.violations(st.OpenVisitRequest(diagnosis_codes=["\x00"] * 32))
    assert len(bad) == bounds.MAX_VIOLATIONS


def test_dates_enums_and_money() -> None:
    zero = cl.RecordPrepaymentInterestRequest(year=0, amount_fen=bounds.MAX_FEN)
    assert bounds.violations(zero) == []
    found = {
        v.field
        for v in bounds.violations(
            cl.RecordPrepaymentInterestRequest(year=1, amount_fen=2**63 - 1, insured_province_code="11")
        )
    }
    assert found == {"year", "amount_fen"}
    settle = st.SettleRequest(discharge_date={"year": 99999, "month": 13, "day": 32})
    assert {v.field for v in bounds.violations(settle)} == {
        "discharge_date.year",
        "discharge_date.month",
        "discharge_date.day",
    }
    visit = st.OpenVisitRequest()
    visit.service_type = 999  # type: ignore[assignment]  # an undefined enum: the adapter's to report
    assert bounds.violations(visit) == []


def test_errors_quote_at_most_a_short_prefix() -> None:
    err = DomainError(Reason.VISIT_NOT_FOUND, "no visit " + "x" * 20_000, metadata={"visit_id": "x" * 20_000})
    _, status = status_for(err)
    assert len(status.SerializeToString()) < 1200
    assert len(status.message) <= 512


def _token(payload: bytes) -> str:
    sig = base64.urlsafe_b64encode(b"\x00" * 64).rstrip(b"=").decode()
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + sig


def test_an_ecert_is_checked_for_size_and_signature_before_its_payload_is_parsed() -> None:
    signer = TokenSigner(Ed25519PrivateKey.generate())
    with pytest.raises(DomainError) as exc:  # the old order parsed this first: RecursionError
        signer.verify(_token(b"[" * 100_000), 0)
    assert exc.value.reason is Reason.CREDENTIAL_INVALID and "longer than" in exc.value.message
    with pytest.raises(DomainError) as exc:  # unsigned, not even JSON: never parsed
        signer.verify(_token(b"[" * 500 + b"not json"), 0)
    assert exc.value.reason is Reason.CREDENTIAL_TAMPERED
    token, claims = signer.issue("P1", "110105195403120027", 1_000, 300)
    assert signer.verify(token, 1_001) == claims
