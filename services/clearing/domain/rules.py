"""Prepayment, emergency top-up and expense-verification rules (pure)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from libs.core.errors import DomainError, Reason
from libs.policy.money import round_half_up

Q4_MONTHS = (10, 11, 12)
# The largest amount one clearing request may name (one trillion yuan): far above any real
# prepayment, top-up, interest, payment or charge, and far enough below the ledger's int64
# that no sum of postings can overflow it.
MAX_AMOUNT_FEN = 100_000_000_000_000
# Dates a clearing request may name (signing, disbursement, payment): business dates, never the
# ends of the calendar (a signing date of 9999-12-31 has no payment deadline after it).
MIN_YEAR, MAX_YEAR = 2000, 2100
# (practice) days the treatment place has to answer an expense verification request; data, not law.
VERIFICATION_ANSWER_DAYS = 15


def annual_prepayment(previous_q4_clearing_fen: int) -> int:
    """2 x the monthly average of the previous year's Q4 clearing (half-up to the fen)."""
    return max(0, round_half_up(2 * previous_q4_clearing_fen, len(Q4_MONTHS)))


def top_up_threshold_met(month_clearing_fen: int, annual_prepayment_fen: int) -> bool:
    """The month's clearing must exceed (not merely reach) 90% of the prepayment."""
    return month_clearing_fen * 10 > annual_prepayment_fen * 9


def top_up_cap(month_clearing_fen: int, annual_prepayment_fen: int) -> int:
    """Upper limit of the emergency increase: 2 x the month's clearing - the annual prepayment,
    and nothing at all unless the month's clearing exceeds 90% of it (the one place both rules
    are applied)."""
    if not top_up_threshold_met(month_clearing_fen, annual_prepayment_fen):
        return 0
    return max(0, 2 * month_clearing_fen - annual_prepayment_fen)


class TopUpStatus(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REFUSED = "refused"
    DISBURSED = "disbursed"


TAKEN = (TopUpStatus.REQUESTED.value, TopUpStatus.APPROVED.value, TopUpStatus.DISBURSED.value)


def next_top_up_status(current: TopUpStatus, step: TopUpStatus) -> TopUpStatus:
    """requested -> approved | refused (the national operator) -> disbursed (approved only)."""
    allowed = {
        TopUpStatus.REQUESTED: (TopUpStatus.APPROVED, TopUpStatus.REFUSED),
        TopUpStatus.APPROVED: (TopUpStatus.DISBURSED,),
    }
    if step not in allowed.get(current, ()):
        raise DomainError(
            Reason.TOP_UP_STATE_INVALID,
            f"a top-up that is {current.value} cannot become {step.value}",
            metadata={"status": current.value},
        )
    return step


def check_top_up(amount_fen: int, month_clearing_fen: int, annual_prepayment_fen: int, granted_fen: int) -> int:
    """Refuses a top-up the rules do not allow; returns the cap. ``granted_fen`` is what earlier
    top-ups for the same month already took from the cap."""
    cap = top_up_cap(month_clearing_fen, annual_prepayment_fen)
    if not top_up_threshold_met(month_clearing_fen, annual_prepayment_fen):
        raise DomainError(
            Reason.TOP_UP_NOT_ALLOWED,
            f"the month's clearing {month_clearing_fen} fen does not exceed 90% of the prepayment "
            f"{annual_prepayment_fen} fen",
        )
    if granted_fen + amount_fen > cap:
        raise DomainError(
            Reason.TOP_UP_ABOVE_CAP,
            f"top-up {amount_fen} fen (+{granted_fen} already granted) exceeds the cap {cap} fen",
            metadata={"cap_fen": str(cap), "granted_fen": str(granted_fen)},
        )
    return cap


def answer_deadline(created: dt.date, days: int = VERIFICATION_ANSWER_DAYS) -> dt.date:
    return created + dt.timedelta(days=days)


def check_answer(today: dt.date, deadline: dt.date, answered: bool, rejected_fen: int, fund_total_fen: int) -> None:
    if answered:
        raise DomainError(Reason.VERIFICATION_ALREADY_ANSWERED, "the verification request was already answered")
    if today > deadline:
        raise DomainError(Reason.VERIFICATION_DEADLINE_PASSED, f"the answer was due by {deadline.isoformat()}")
    if not 0 <= rejected_fen <= max(fund_total_fen, 0):
        raise DomainError(
            Reason.AMOUNT_OUT_OF_RANGE,
            f"rejected_fen must be between 0 and the settlement's fund part {fund_total_fen}",
        )


def deductible_left(paid: tuple[int, ...], already: tuple[int, ...]) -> int:
    """What verification can still deduct from a settlement: its funds less earlier deductions."""
    return sum(max(p - a, 0) for p, a in zip(paid[:-1], already[:-1], strict=True))


def split_deduction(amount_fen: int, paid: tuple[int, ...], already: tuple[int, ...]) -> tuple[int, ...]:
    """A verification deduction spread over the payers of the settlement (PAYERS order): the
    funds in order (pooled, large-amount / critical illness, assistance, other), each never below
    what it paid less what earlier deductions already took; the personal account is never
    deducted (verification judges the fund payment). Refuses more than the funds have left."""
    left = [max(p - a, 0) for p, a in zip(paid, already, strict=True)]
    left[-1] = 0  # the personal account
    if not 0 <= amount_fen <= sum(left):
        raise DomainError(
            Reason.AMOUNT_OUT_OF_RANGE,
            f"the deduction {amount_fen} fen must be between 0 and what the settlement's funds have left "
            f"after earlier deductions ({sum(left)} fen)",
            metadata={"remaining_fen": str(sum(left))},
        )
    out, rest = [], amount_fen
    for cap in left:
        take = min(cap, rest)
        out.append(take)
        rest -= take
    return tuple(out)
