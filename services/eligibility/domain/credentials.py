"""E-certificate tokens: Ed25519-signed, short-lived, bound to one person.

Format: ``base64url(payload_json) + "." + base64url(signature)``; payload
``{"v":1,"kid":...,"tid":...,"pno":...,"idh":...,"iat":...,"exp":...}`` where ``idh`` is a hash of
the person's ID number (the token never carries the ID number itself).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from libs.core.errors import DomainError, Reason

# A token is about 300 characters; anything much longer is refused before it is decoded.
MAX_TOKEN_CHARS = 1024
SIGNATURE_BYTES = 64


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def id_hash(id_number: str) -> str:
    return hashlib.sha256(id_number.upper().encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    token_id: str
    person_no: str
    id_hash: str
    issued_at: int
    expires_at: int
    key_id: str


def _verifies(key: Ed25519PublicKey, sig: bytes, payload: bytes) -> bool:
    try:
        key.verify(sig, payload)
    except InvalidSignature:
        return False
    return True


class TokenSigner:
    def __init__(self, private: Ed25519PrivateKey, verify_keys: list[Ed25519PublicKey] | None = None) -> None:
        self._private = private
        self.kid = key_id(private.public_key())
        self._verify = {self.kid: private.public_key()}
        for k in verify_keys or []:
            self._verify[key_id(k)] = k

    def issue(self, person_no: str, id_number: str, now: int, ttl: int) -> tuple[str, TokenClaims]:
        claims = TokenClaims(secrets.token_hex(12), person_no, id_hash(id_number), now, now + ttl, self.kid)
        return self.sign(claims), claims

    def _signed_by(self, payload: bytes, sig: bytes) -> str | None:
        """The id of the known key whose signature ``sig`` is over ``payload``, if any."""
        if len(sig) != SIGNATURE_BYTES:
            return None
        return next((kid for kid, key in self._verify.items() if _verifies(key, sig, payload)), None)

    def sign(self, claims: TokenClaims) -> str:
        """Ed25519 is deterministic: the same claims always give the same token."""
        payload = json.dumps(
            {
                "v": 1,
                "kid": claims.key_id,
                "tid": claims.token_id,
                "pno": claims.person_no,
                "idh": claims.id_hash,
                "iat": claims.issued_at,
                "exp": claims.expires_at,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        return _b64(payload) + "." + _b64(self._private.sign(payload))

    def verify(self, token: str, now: int) -> TokenClaims:
        """Size, then signature (tampered), and only then the payload is parsed; then expiry.
        Revocation and person binding are the caller's. Nothing of an unsigned token is parsed:
        the signature is tried with each known key on the raw payload bytes."""
        if len(token) > MAX_TOKEN_CHARS:
            raise DomainError(Reason.CREDENTIAL_INVALID, f"the e-certificate token is longer than {MAX_TOKEN_CHARS}")
        try:
            payload_b64, sig_b64 = token.split(".")
            payload, sig = _unb64(payload_b64), _unb64(sig_b64)
        except ValueError as exc:  # binascii.Error is a ValueError
            raise DomainError(Reason.CREDENTIAL_INVALID, "the e-certificate token is malformed") from exc
        kid = self._signed_by(payload, sig)
        if kid is None:
            raise DomainError(Reason.CREDENTIAL_TAMPERED, "the e-certificate was not signed by a known key")
        try:
            data = json.loads(payload)
            if not isinstance(data, dict) or str(data["kid"]) != kid:
                raise ValueError("not a claims object of the signing key")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise DomainError(Reason.CREDENTIAL_INVALID, "the e-certificate token is malformed") from exc
        try:
            claims = TokenClaims(
                str(data["tid"]), str(data["pno"]), str(data["idh"]), int(data["iat"]), int(data["exp"]), kid
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DomainError(Reason.CREDENTIAL_INVALID, "the e-certificate token is malformed") from exc
        if data.get("v") != 1:
            raise DomainError(Reason.CREDENTIAL_INVALID, "unknown e-certificate version")
        if now >= claims.expires_at:
            raise DomainError(Reason.CREDENTIAL_EXPIRED, "the e-certificate has expired; refresh the QR code")
        return claims
