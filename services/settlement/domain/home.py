"""The insured place's own spending (home movements) and how each changes a person's year totals.

Pure rules: what a movement may carry for its kind, and applying one to the totals and the
personal-account balance — refused when the totals it was computed from are not the totals any
more, when a negative delta is larger than what it reduces, or when the account does not cover a
debit. See docs/design/accumulators.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, fields, replace
from enum import StrEnum

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy import Accumulators

# The year totals a movement can change (every Accumulators field but the year and the balance).
TOTAL_FIELDS = tuple(f.name for f in fields(Accumulators) if f.name not in ("year", "account_balance_fen"))
MAX_DELTA_FEN = 10**12
MAX_MOVEMENTS = 500


class MovementKind(StrEnum):
    SETTLEMENT = "settlement"
    CANCELLATION = "cancellation"
    ACCOUNT_CREDIT = "account_credit"
    ACCOUNT_DEBIT = "account_debit"


@dataclass(frozen=True, slots=True)
class HomeMovement:
    movement_id: str
    person_no: str
    year: int
    kind: MovementKind
    delta: Accumulators  # differences, ``year`` = the movement's year, balance unused (0)
    account_delta_fen: int
    home_balance_after_fen: int | None
    occurred_on: dt.date
    expected: Accumulators | None  # the totals it was computed from (balance not compared)

    def fingerprint(self) -> str:
        """Identifies the content (not the expected totals: a retry after ABORTED recomputes
        with new ones and may report other deltas under a new id, never the same id twice)."""
        doc = [
            self.person_no,
            self.year,
            self.kind.value,
            [getattr(self.delta, n) for n in TOTAL_FIELDS],
            self.account_delta_fen,
            self.occurred_on.isoformat(),
        ]
        return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()

    def delta_json(self) -> str:
        return json.dumps({n: getattr(self.delta, n) for n in TOTAL_FIELDS if getattr(self.delta, n)})


def movement_violations(m: HomeMovement, at: str) -> list[FieldViolation]:
    """What a movement of its kind may carry: signs per kind, bounds, the home balance when the
    account moves."""
    out: list[FieldViolation] = []
    values = {n: getattr(m.delta, n) for n in TOTAL_FIELDS}
    for name, value in values.items():
        if abs(value) > MAX_DELTA_FEN:
            out.append(FieldViolation(f"{at}.delta.{name}", f"at most {MAX_DELTA_FEN} in magnitude"))
    if abs(m.account_delta_fen) > MAX_DELTA_FEN:
        out.append(FieldViolation(f"{at}.account_delta_fen", f"at most {MAX_DELTA_FEN} in magnitude"))
    if m.home_balance_after_fen is not None and not 0 <= m.home_balance_after_fen <= MAX_DELTA_FEN:
        out.append(FieldViolation(f"{at}.home_balance_after_fen", f"0..{MAX_DELTA_FEN}"))
    if m.account_delta_fen and m.home_balance_after_fen is None:
        out.append(FieldViolation(f"{at}.home_balance_after_fen", "required when the account moves"))
    a = m.account_delta_fen
    if m.kind is MovementKind.SETTLEMENT:
        if any(v < 0 for v in values.values()) or a > 0:
            out.append(FieldViolation(f"{at}.kind", "a settlement adds to the totals and debits the account"))
        if not any(values.values()) and not a:
            out.append(FieldViolation(f"{at}.delta", "a settlement changes something"))
    elif m.kind is MovementKind.CANCELLATION:
        if any(v > 0 for v in values.values()) or a < 0:
            out.append(FieldViolation(f"{at}.kind", "a cancellation reduces the totals and credits the account"))
        if not any(values.values()) and not a:
            out.append(FieldViolation(f"{at}.delta", "a cancellation changes something"))
    elif m.kind is MovementKind.ACCOUNT_CREDIT:
        if any(values.values()) or a <= 0:
            out.append(FieldViolation(f"{at}.kind", "an account credit is a positive account_delta_fen only"))
    elif m.kind is MovementKind.ACCOUNT_DEBIT and (any(values.values()) or a >= 0):
        out.append(FieldViolation(f"{at}.kind", "an account debit is a negative account_delta_fen only"))
    return out


def totals_metadata(movement_id: str, totals: Accumulators) -> dict[str, str]:
    meta = {"movement_id": movement_id, "year": str(totals.year)}
    meta.update({n: str(getattr(totals, n)) for n in TOTAL_FIELDS})
    return meta


def apply_movement(totals: Accumulators, balance: int | None, m: HomeMovement) -> tuple[Accumulators, int | None]:
    """The totals and balance after ``m``. ``balance`` None: no balance of the person is held
    here yet; an account movement then starts it from the home balance after the movement."""
    if m.expected is not None and any(getattr(m.expected, n) != getattr(totals, n) for n in TOTAL_FIELDS):
        raise DomainError(
            Reason.ACCUMULATORS_CHANGED,
            f"movement {m.movement_id[:64]}: the totals changed since they were read; compute again from these",
            metadata=totals_metadata(m.movement_id, totals),
        )
    after = totals.plus(replace(m.delta, year=totals.year, account_balance_fen=0))
    for n in TOTAL_FIELDS:
        if getattr(after, n) < 0:
            raise DomainError(
                Reason.MOVEMENT_EXCEEDS_TOTALS,
                f"movement {m.movement_id[:64]} reduces {n} below zero",
                metadata={"movement_id": m.movement_id, "field": n},
            )
    if not m.account_delta_fen:
        return after, balance
    if balance is None:
        assert m.home_balance_after_fen is not None  # movement_violations requires it
        return after, m.home_balance_after_fen
    new_balance = balance + m.account_delta_fen
    if new_balance < 0:
        raise DomainError(
            Reason.ACCOUNT_INSUFFICIENT,
            f"movement {m.movement_id[:64]} debits more than the personal account holds",
            metadata={"movement_id": m.movement_id, "balance_fen": str(balance)},
        )
    return after, new_balance
