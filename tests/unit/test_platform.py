"""Service plumbing: error translation, log masking, settings validation."""

from __future__ import annotations

import io
import json

import grpc
import pytest
from google.rpc import error_details_pb2

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform.errors import status_for, status_for_internal
from libs.platform.logs import configure_logging, get_logger, mask_id_numbers
from libs.platform.settings import SettingsError, load_settings


def _unpack(status, kind):  # type: ignore[no-untyped-def]
    for any_ in status.details:
        if any_.Is(kind.DESCRIPTOR):
            out = kind()
            any_.Unpack(out)
            return out
    return None


def test_invalid_input_maps_to_invalid_argument_with_reason_and_field_violations() -> None:
    err = DomainError(
        Reason.VALIDATION_FAILED,
        "2 invalid fields",
        violations=[FieldViolation("lines[0].quantity_milli", "must not be zero")],
    )
    code, status = status_for(err)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    info = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == "REASON_VALIDATION_FAILED" and info.domain == "medsettle"
    bad = _unpack(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [("lines[0].quantity_milli", "must not be zero")]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (Reason.FILING_REQUIRED, grpc.StatusCode.FAILED_PRECONDITION),
        (Reason.VISIT_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (Reason.REQUEST_ID_REUSED, grpc.StatusCode.ALREADY_EXISTS),
        (Reason.NOT_AUTHORISED_FOR_INSTITUTION, grpc.StatusCode.PERMISSION_DENIED),
        (Reason.CONCURRENT_UPDATE, grpc.StatusCode.ABORTED),
        (Reason.DEPENDENCY_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_categories_map_to_grpc_codes(reason: Reason, code: grpc.StatusCode) -> None:
    assert status_for(DomainError(reason, "x"))[0] is code


def test_internal_errors_never_leak_their_text() -> None:
    code, status = status_for(DomainError(Reason.INVARIANT_VIOLATED, "pooled 123 != 456 for person P1"))
    assert code is grpc.StatusCode.INTERNAL and "P1" not in status.message and "123" not in status.message
    code, status = status_for_internal("abc123")
    assert _unpack(status, error_details_pb2.ErrorInfo).metadata["trace_id"] == "abc123"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("110105195403120027", "110105********0027"),
        ("id 11010519540312002X end", "id 110105********002X end"),
        ("legacy 110105540312002", "legacy 110105*****2002"),
        ("visit V12345678901234567890", "visit V12345678901234567890"),  # 20 digits: no ID number
        ("person_P110105195403120027x", "person_P110105********0027x"),  # glued to letters
        ("id=11010519540312002Xabc;", "id=110105********002Xabc;"),
        ("ids:110105195403120027,510104198811230016", "ids:110105********0027,510104********0016"),
    ],
)
def test_id_numbers_are_masked(raw: str, masked: str) -> None:
    assert mask_id_numbers(raw) == masked


def test_log_lines_are_json_with_masked_id_numbers() -> None:
    buf = io.StringIO()
    configure_logging("INFO", json=True, stream=buf)
    get_logger("t").info("person_seen", id_number="110105195403120027", nested={"x": ["510104198811230016"]})
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert line["event"] == "person_seen"
    assert "195403120027" not in buf.getvalue() and "198811230016" not in buf.getvalue()
    assert line["id_number"] == "110105********0027"


def test_bad_settings_fail_at_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSETTLE_SETTLEMENT_DATABASE_URL", "mysql://nope")
    monkeypatch.setenv("MEDSETTLE_DRAIN_SECONDS", "-1")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "MEDSETTLE_SETTLEMENT_DATABASE_URL" in str(exc.value) and "MEDSETTLE_DRAIN_SECONDS" in str(exc.value)
