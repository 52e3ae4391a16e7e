"""Shared pieces of the in-memory stores the use-case tests run against.

A fake behaves as the service's database does where a use case depends on it: a transaction
sees its own writes, commits all of them or none (an exception inside rolls everything back),
and a commit that would break a uniqueness rule (a request id recorded twice, a second active
filing of a person) fails with ``IntegrityError``, as the database's unique index makes it fail,
so ``libs.platform.idempotency.run_once`` answers the stored result on the retry. Transactions
run optimistically on a private copy and are checked at commit (the databases lock instead; the
outcome a use case sees is the same)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from libs.core.errors import DomainError, Reason


def unique_violation(what: str) -> IntegrityError:
    return IntegrityError(f"unique: {what}", {}, Exception(what))


class Keys:
    """The idempotency_keys table: request_id -> (operation, fingerprint, result_ref)."""

    def __init__(self, rows: dict[str, tuple[str, str, str]] | None = None) -> None:
        self.rows: dict[str, tuple[str, str, str]] = dict(rows or {})
        self.added: list[str] = []

    def copy(self) -> Keys:
        return Keys(self.rows)

    def check(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        row = self.rows.get(request_id)
        if row is None:
            return None
        if row[0] != operation or row[1] != fingerprint:
            raise DomainError(
                Reason.REQUEST_ID_REUSED,
                "request_id was already used for a different request",
                metadata={"operation": row[0]},
            )
        return row[2]

    def record(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        if request_id in self.rows:
            raise unique_violation(f"idempotency_keys.request_id {request_id}")
        self.rows[request_id] = (operation, fingerprint, ref)
        self.added.append(request_id)

    def merge_into(self, committed: Keys) -> None:
        """At commit: a key another transaction committed meanwhile is a primary-key violation."""
        for rid in self.added:
            if rid in committed.rows:
                raise unique_violation(f"idempotency_keys.request_id {rid}")
        for rid in self.added:
            committed.rows[rid] = self.rows[rid]


def row(**values: Any) -> Any:
    """A row object with attribute access, as SQLAlchemy returns them."""
    from types import SimpleNamespace

    return SimpleNamespace(**values)
