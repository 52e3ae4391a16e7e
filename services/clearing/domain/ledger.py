"""The double-entry ledger in integer fen (pure).

One ledger for the national clearing house, holding every party's accounts; debits are positive,
credits negative, and every posting sums to zero, so the whole ledger always does. Account names
(``province:<2 digits>:...`` or ``institution:<code>:...``) read as "whose account : what":

- ``province:{ip}:fund_expense``             the insured place's fund spent out of province
- ``province:{ip}:payable:{tp}``             the insured place owes the treatment place (credit)
- ``province:{tp}:receivable:{ip}``          the treatment place is owed by the insured place
- ``institution:{code}:receivable``          the treatment place owes the institution (credit:
                                             the institution's receivable at the treatment place)
- ``province:{ip}:prepayment_paid:{tp}``     prepayment advanced (asset of the insured place)
- ``province:{tp}:prepayment_received:{ip}`` prepayment held (liability of the treatment place)
- ``province:{p}:cash``                      cash at bank
- ``province:{p}:bank_charges``              the payer's own expense: never the fund
- ``province:{tp}:interest_income``          interest on prepayments: the treatment place's
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from libs.core.errors import DomainError, Reason
from services.clearing.domain.model import FeedSettlement


@dataclass(frozen=True, slots=True)
class Entry:
    account: str
    amount_fen: int  # debit positive, credit negative


def check_balanced(entries: Iterable[Entry]) -> None:
    if sum(e.amount_fen for e in entries) != 0:
        raise DomainError(Reason.INVARIANT_VIOLATED, "a ledger posting does not balance")


def _posting(pairs: Iterable[tuple[str, int]]) -> list[Entry]:
    """Merges legs per account, drops zero legs, checks the balance."""
    sums: dict[str, int] = defaultdict(int)
    for account, amount in pairs:
        sums[account] += amount
    entries = [Entry(a, v) for a, v in sorted(sums.items()) if v != 0]
    check_balanced(entries)
    return entries


def _settlement_legs(s: FeedSettlement) -> list[tuple[str, int]]:
    return _legs(s.insured_province, s.treatment_province, s.institution_code, s.fund_total_fen)


def postings_for(s: FeedSettlement) -> list[Entry]:
    """The fund part of one settlement: the treatment place advances it to the institution and is
    owed it by the insured place. A cancellation carries negative amounts and so negates."""
    return _posting(_settlement_legs(s))


def batch_posting(items: Iterable[FeedSettlement]) -> list[Entry]:
    """One summarised posting for a batch of ingested settlements: the same legs as
    ``postings_for`` summed per account. The per-settlement detail stays in the cleared
    settlements (the sub-ledger), so the journal grows with accounts, not with settlements.
    Sums per province pair and per institution first: this runs on the ingest hot path."""
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    per_institution: dict[str, int] = defaultdict(int)
    for s in items:
        per_pair[(s.insured_region[:2], s.treatment_region[:2])] += s.fund_total_fen
        per_institution[s.institution_code] += s.fund_total_fen
    legs: list[tuple[str, int]] = []
    for (ip, tp), f in per_pair.items():
        legs += [
            (f"province:{ip}:fund_expense", f),
            (f"province:{ip}:payable:{tp}", -f),
            (f"province:{tp}:receivable:{ip}", f),
        ]
    legs += [(f"institution:{code}:receivable", -f) for code, f in per_institution.items()]
    return _posting(legs)


def prepayment_transfer(ip: str, tp: str, amount_fen: int) -> list[Entry]:
    """The insured place advances money (annual prepayment or an emergency top-up)."""
    return _posting(
        [
            (f"province:{ip}:prepayment_paid:{tp}", amount_fen),
            (f"province:{ip}:cash", -amount_fen),
            (f"province:{tp}:cash", amount_fen),
            (f"province:{tp}:prepayment_received:{ip}", -amount_fen),
        ]
    )


def clearing_drawn(ip: str, tp: str, amount_fen: int) -> list[Entry]:
    """At the signing, the month's clearing settles the debt out of the prepayment."""
    return _posting(
        [
            (f"province:{ip}:payable:{tp}", amount_fen),
            (f"province:{ip}:prepayment_paid:{tp}", -amount_fen),
            (f"province:{tp}:prepayment_received:{ip}", amount_fen),
            (f"province:{tp}:receivable:{ip}", -amount_fen),
        ]
    )


def disbursement(ip: str, tp: str, amount_fen: int, bank_charge_fen: int) -> list[Entry]:
    """The insured place pays the month's clearing, restoring the prepayment; the bank charge is
    its own expense, never the fund's."""
    return _posting(
        [
            (f"province:{ip}:prepayment_paid:{tp}", amount_fen),
            (f"province:{ip}:cash", -amount_fen - bank_charge_fen),
            (f"province:{ip}:bank_charges", bank_charge_fen),
            (f"province:{tp}:cash", amount_fen),
            (f"province:{tp}:prepayment_received:{ip}", -amount_fen),
        ]
    )


def rejection(ip: str, tp: str, institution_code: str, amount_fen: int) -> list[Entry]:
    """An expense found not compliant: the insured place's fund does not pay it; the treatment
    place deducts it from what it owes the institution."""
    return _posting((account, -amount) for account, amount in _legs(ip, tp, institution_code, amount_fen))


def _legs(ip: str, tp: str, institution_code: str, f: int) -> list[tuple[str, int]]:
    return [
        (f"province:{ip}:fund_expense", f),
        (f"province:{ip}:payable:{tp}", -f),
        (f"province:{tp}:receivable:{ip}", f),
        (f"institution:{institution_code}:receivable", -f),
    ]


def institution_payment(tp: str, institution_code: str, amount_fen: int) -> list[Entry]:
    return _posting([(f"institution:{institution_code}:receivable", amount_fen), (f"province:{tp}:cash", -amount_fen)])


def prepayment_interest(tp: str, amount_fen: int) -> list[Entry]:
    return _posting([(f"province:{tp}:cash", amount_fen), (f"province:{tp}:interest_income", -amount_fen)])
