"""Who is calling: a :class:`Principal` (a role and whom it speaks for) from a verified identity.

Identities are URIs (docs/access.md):

    urn:medsettle:hospital:<institution code>        a designated hospital
    urn:medsettle:pharmacy:<institution code>        a designated pharmacy
    urn:medsettle:bureau:treatment:<region>          the treatment-place bureau of a region
    urn:medsettle:bureau:insured:<region>            the insured-place bureau of a region
    urn:medsettle:operator:<name>                    the national clearing operator
    urn:medsettle:service:<filing|eligibility|settlement|clearing>   the suite's own services
    urn:medsettle:app:<person no>                    the insured person's app (e-certificates)
    urn:medsettle:gateway:<name>                     the edge gateway: not a caller itself, it
                                                     names the caller in the identity headers

``<region>`` is a six-digit coordinating region (``310100``) or a two-digit province (``31``),
which covers every region of that province.

Where it comes from (the server interceptor, :func:`resolve`):

* service-side mTLS: the URI SAN of the verified peer certificate (never the subject string);
  a certificate without exactly one ``urn:medsettle:`` URI is refused. A gateway certificate
  names the caller in the identity headers; any other certificate is the caller itself and its
  headers are ignored.
* no TLS: the identity headers, trusted only from a loopback peer (development, all-in-one,
  a sidecar on the same host); anything else is unauthenticated.

Two headers name a caller: ``x-medsettle-principal`` (a URI above) and the older
``x-medsettle-institution`` (a bare institution code = a hospital). A call carrying more than one
identity header value is refused: the gateway strips what clients send before setting its own.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from libs.core.errors import DomainError, Reason

PRINCIPAL_HEADER = "x-medsettle-principal"
INSTITUTION_HEADER = "x-medsettle-institution"
IDENTITY_HEADERS = (PRINCIPAL_HEADER, INSTITUTION_HEADER)
URN_PREFIX = "urn:medsettle:"


class Role(StrEnum):
    INSTITUTION = "institution"  # a hospital or pharmacy
    TREATMENT_BUREAU = "treatment-bureau"
    INSURED_BUREAU = "insured-bureau"
    OPERATOR = "operator"  # the national clearing operator
    SERVICE = "service"  # the suite's own services
    APP = "app"  # the insured person's app
    GATEWAY = "gateway"  # the edge: vouches for the caller in the headers


SERVICE_NAMES = ("filing", "eligibility", "settlement", "clearing")

_INSTITUTION = re.compile(r"[A-Z][A-Z0-9]{1,31}")
_REGION = re.compile(r"[0-9]{2}|[0-9]{6}")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PERSON = re.compile(r"[A-Z0-9]{1,32}")


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    id: str  # institution code, region code, operator or service name, person number
    kind: str = ""  # hospital / pharmacy for institutions

    @property
    def urn(self) -> str:
        match self.role:
            case Role.INSTITUTION:
                return f"{URN_PREFIX}{self.kind or 'hospital'}:{self.id}"
            case Role.TREATMENT_BUREAU:
                return f"{URN_PREFIX}bureau:treatment:{self.id}"
            case Role.INSURED_BUREAU:
                return f"{URN_PREFIX}bureau:insured:{self.id}"
            case _:
                return f"{URN_PREFIX}{self.role.value}:{self.id}"

    @property
    def institution(self) -> str | None:
        return self.id if self.role is Role.INSTITUTION else None

    def covers_region(self, region_code: str) -> bool:
        """A bureau's own region: its six-digit region, or every region of its province."""
        if self.role not in (Role.TREATMENT_BUREAU, Role.INSURED_BUREAU) or not region_code:
            return False
        return region_code == self.id if len(self.id) == 6 else region_code[:2] == self.id

    @property
    def scope_key(self) -> str:
        """The namespace of this caller's idempotency keys."""
        return self.urn.removeprefix(URN_PREFIX)


def hospital(code: str) -> Principal:
    return Principal(Role.INSTITUTION, code, "hospital")


def parse_urn(value: str) -> Principal | None:
    """The principal a URI names, or None if it is not a well-formed medsettle identity."""
    if not value.startswith(URN_PREFIX):
        return None
    parts = value[len(URN_PREFIX) :].split(":")
    match parts:
        case [("hospital" | "pharmacy") as kind, code] if _INSTITUTION.fullmatch(code):
            return Principal(Role.INSTITUTION, code, kind)
        case ["bureau", "treatment", region] if _REGION.fullmatch(region):
            return Principal(Role.TREATMENT_BUREAU, region)
        case ["bureau", "insured", region] if _REGION.fullmatch(region):
            return Principal(Role.INSURED_BUREAU, region)
        case ["operator", name] if _NAME.fullmatch(name):
            return Principal(Role.OPERATOR, name)
        case ["service", name] if name in SERVICE_NAMES:
            return Principal(Role.SERVICE, name)
        case ["app", person] if _PERSON.fullmatch(person):
            return Principal(Role.APP, person)
        case ["gateway", name] if _NAME.fullmatch(name):
            return Principal(Role.GATEWAY, name)
    return None


def _unauthenticated(reason: Reason, message: str) -> DomainError:
    return DomainError(reason, message)


def from_headers(metadata: Any) -> Principal | None:
    """The principal named by the identity headers (``metadata``: (key, value) pairs), None if
    none is sent. More than one identity header value, or a malformed one, is refused."""
    found = [(k, v) for k, v in metadata if k in IDENTITY_HEADERS]
    if not found:
        return None
    if len(found) > 1:
        raise _unauthenticated(Reason.CALLER_IDENTITY_AMBIGUOUS, "more than one identity header")
    key, value = found[0]
    value = value.decode() if isinstance(value, bytes) else str(value)
    principal = (
        parse_urn(value) if key == PRINCIPAL_HEADER else (hospital(value) if _INSTITUTION.fullmatch(value) else None)
    )
    if principal is None or principal.role is Role.GATEWAY:
        raise _unauthenticated(Reason.CALLER_IDENTITY_INVALID, f"{key} does not name a medsettle identity")
    return principal


@functools.lru_cache(maxsize=4096)
def from_certificate(pem: bytes) -> Principal:
    """The principal of a verified peer certificate: its one ``urn:medsettle:`` URI SAN."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(URN_PREFIX)]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) != 1:
        raise _unauthenticated(
            Reason.CALLER_IDENTITY_INVALID, "the client certificate must carry exactly one urn:medsettle: URI SAN"
        )
    principal = parse_urn(uris[0])
    if principal is None:
        raise _unauthenticated(
            Reason.CALLER_IDENTITY_INVALID, "the client certificate's URI SAN is not a medsettle identity"
        )
    return principal


def is_loopback_peer(peer: str) -> bool:
    """``context.peer()`` of a caller on this host (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``, ``unix:``)."""
    return peer.startswith(("ipv4:127.", "ipv6:[::1]", "ipv6:%5B::1%5D", "unix:", "ipv6:[::ffff:127."))


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("medsettle_principal", default=None)


def caller() -> Principal | None:
    return _current.get()


def caller_institution() -> str | None:
    p = _current.get()
    return p.institution if p is not None else None


def set_caller(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset_caller(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def require_caller() -> Principal:
    p = _current.get()
    if p is None:
        raise DomainError(Reason.INSTITUTION_IDENTITY_MISSING, "the caller is not authenticated")
    return p


MAX_SCOPED_KEY = 128


def scoped_request_id(request_id: str, principal: Principal | None = None) -> str:
    """The idempotency key of ``request_id`` in the caller's own namespace: two callers' ids never
    meet, so a replay by another caller is a new request (refused by the ownership checks) and
    never the stored answer, and a tombstone reaches only the caller's own ids. Kept within the
    128-character key column: a long id is replaced by its SHA-256."""
    p = principal or require_caller()
    key = f"{p.scope_key}/{request_id}"
    if len(key) <= MAX_SCOPED_KEY:
        return key
    return f"{p.scope_key}/~{hashlib.sha256(request_id.encode()).hexdigest()}"[:MAX_SCOPED_KEY]


def unscoped_request_id(key: str) -> str:
    """The caller's own request_id back from a scoped key (an over-long one stays hashed)."""
    return key.split("/", 1)[1] if "/" in key else key


def mask_id_number(id_number: str) -> str:
    """``110105195403120027`` -> ``110105********0027``: what everyone but the insured-place
    bureau (and every log line) gets."""
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]
