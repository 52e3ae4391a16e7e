"""E-certificate tokens: forged, tampered, expired, signed by an unknown key, malformed."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from services.eligibility.domain.credentials import TokenSigner, id_hash

KEY = Ed25519PrivateKey.generate()
SIGNER = TokenSigner(KEY)
ID = "110105195403120027"


def refused(token: str, now: int = 1_000) -> Reason:
    with pytest.raises(DomainError) as exc:
        SIGNER.verify(token, now)
    return exc.value.reason


def test_a_fresh_token_verifies_and_is_bound_to_the_person() -> None:
    token, claims = SIGNER.issue("P1", ID, 1_000, 300)
    got = SIGNER.verify(token, 1_299)
    assert got == claims and got.person_no == "P1" and got.id_hash == id_hash(ID)
    assert ID not in base64.urlsafe_b64decode(token.split(".")[0] + "==").decode()


def test_expiry_is_exact() -> None:
    token, _ = SIGNER.issue("P1", ID, 1_000, 300)
    assert refused(token, 1_300) is Reason.CREDENTIAL_EXPIRED


def test_a_forged_payload_does_not_verify() -> None:
    token, _ = SIGNER.issue("P1", ID, 1_000, 300)
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    payload["pno"] = "P2"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode() + "." + token.split(".")[1]
    assert refused(forged) is Reason.CREDENTIAL_TAMPERED


def test_a_token_signed_by_another_key_is_refused_even_with_our_key_id() -> None:
    other = TokenSigner(Ed25519PrivateKey.generate())
    token, _ = other.issue("P1", ID, 1_000, 300)
    assert refused(token) is Reason.CREDENTIAL_TAMPERED
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    payload["kid"] = SIGNER.kid
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    lie = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + token.split(".")[1]
    assert refused(lie) is Reason.CREDENTIAL_TAMPERED


def test_rotated_keys_still_verify_old_tokens() -> None:
    old = TokenSigner(Ed25519PrivateKey.generate())
    token, _ = old.issue("P1", ID, 1_000, 300)
    rotated = TokenSigner(Ed25519PrivateKey.generate(), [old._private.public_key()])
    assert rotated.verify(token, 1_001).person_no == "P1"


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "!!!.???", "e30.AAAA"])
def test_malformed_tokens_are_invalid(junk: str) -> None:
    assert refused(junk) in (Reason.CREDENTIAL_INVALID, Reason.CREDENTIAL_TAMPERED)


def test_signing_is_deterministic_so_a_replayed_issue_gets_the_same_token() -> None:
    token, claims = SIGNER.issue("P1", ID, 1_000, 300)
    assert SIGNER.sign(claims) == token


@settings(max_examples=60)
@given(st.data())
def test_any_single_character_change_is_refused(data: st.DataObject) -> None:
    token, _ = SIGNER.issue("P1", ID, 1_000, 300)
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."))
    changed = token[:i] + c + token[i + 1 :]
    if changed == token:
        return
    try:
        claims = SIGNER.verify(changed, 1_000)
    except DomainError as exc:
        assert exc.reason in (Reason.CREDENTIAL_INVALID, Reason.CREDENTIAL_TAMPERED)
    else:
        # base64 padding bits can absorb a change of the last character: same bytes, same claims
        assert claims.person_no == "P1"
