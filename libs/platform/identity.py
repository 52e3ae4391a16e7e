"""Who is calling: the institution code from the authenticated identity.

Behind the gateway, the gateway verifies the hospital's client certificate and overwrites the
``x-medsettle-institution`` header with the certificate's CN. When a service terminates mTLS
itself, the CN comes from the TLS peer. Service code asks :func:`caller_institution`.
"""

from __future__ import annotations

import contextvars

INSTITUTION_HEADER = "x-medsettle-institution"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("medsettle_institution", default=None)


def caller_institution() -> str | None:
    return _current.get()


def set_caller_institution(code: str | None) -> contextvars.Token[str | None]:
    return _current.set(code)


def reset_caller_institution(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)
