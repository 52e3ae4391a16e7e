"""The double-entry ledger in integer fen (pure).

One ledger for the national clearing house, holding every party's accounts; debits are positive,
credits negative, and every posting sums to zero, so the whole ledger always does. Account names
(``province:<2 digits>:...`` or ``institution:<code>:...``) read as "whose account : what":

- ``province:{ip}:fund_expense:{fund}``      one of the insured place's funds spent out of province
                                             (pooled_fund, large_amount, critical_illness,
                                             assistance, other_fund)
- ``province:{ip}:account_expense``          personal-account payments out of province
- ``province:{ip}:payable:{tp}``             the insured place owes the treatment place (credit):
                                             every fund and the personal account
- ``province:{tp}:receivable:{ip}``          the treatment place is owed by the insured place
- ``institution:{code}:receivable``          the treatment place owes the institution (credit:
                                             the institution's receivable at the treatment place;
                                             the same funds and account)
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
from services.clearing.domain.model import PAYER_FIELDS, PAYERS, FeedSettlement, Payer, payer_amounts


def expense_account(ip: str, payer: Payer) -> str:
    if payer is Payer.PERSONAL_ACCOUNT:
        return f"province:{ip}:account_expense"
    return f"province:{ip}:fund_expense:{payer.value}"


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


def postings_for(s: FeedSettlement) -> list[Entry]:
    """What the insured place pays for one settlement (each fund and the personal account): the
    treatment place advances it to the institution and is owed it by the insured place. A
    cancellation carries negative amounts and so negates."""
    return _posting(_legs(s.insured_province, s.treatment_province, s.institution_code, payer_amounts(s)))


def batch_posting(items: Iterable[FeedSettlement]) -> list[Entry]:
    """One summarised posting for a batch of ingested settlements: the same legs as
    ``postings_for`` summed per account. The per-settlement detail stays in the cleared
    settlements (the sub-ledger), so the journal grows with accounts, not with settlements.
    Sums per province pair and per institution first: this runs on the ingest hot path."""
    per_pair: dict[tuple[str, str], list[int]] = {}
    per_institution: dict[str, int] = defaultdict(int)
    n = len(PAYER_FIELDS)
    for s in items:
        key = (s.insured_region[:2], s.treatment_region[:2])
        sums = per_pair.get(key)
        if sums is None:
            sums = per_pair[key] = [0] * n
        sums[0] += s.pooled_fund_fen
        sums[1] += s.large_amount_fen
        sums[2] += s.critical_illness_fen
        sums[3] += s.assistance_fen
        sums[4] += s.other_fund_fen
        sums[5] += s.personal_account_fen
        per_institution[s.institution_code] += s.fund_total_fen + s.personal_account_fen
    legs: list[tuple[str, int]] = []
    for (ip, tp), sums in per_pair.items():
        owed = sum(sums)
        legs += [(expense_account(ip, p), sums[i]) for i, p in enumerate(PAYERS)]
        legs += [(f"province:{ip}:payable:{tp}", -owed), (f"province:{tp}:receivable:{ip}", owed)]
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


def rejection(ip: str, tp: str, institution_code: str, per_payer: tuple[int, ...]) -> list[Entry]:
    """An expense found not compliant: the insured place's funds do not pay it (``per_payer``:
    the deduction split over the payers, see ``rules.split_deduction``); the treatment place
    deducts it from what it owes the institution."""
    return _posting((account, -amount) for account, amount in _legs(ip, tp, institution_code, per_payer))


def _legs(ip: str, tp: str, institution_code: str, per_payer: tuple[int, ...]) -> list[tuple[str, int]]:
    owed = sum(per_payer)
    return [
        *((expense_account(ip, p), per_payer[i]) for i, p in enumerate(PAYERS)),
        (f"province:{ip}:payable:{tp}", -owed),
        (f"province:{tp}:receivable:{ip}", owed),
        (f"institution:{institution_code}:receivable", -owed),
    ]


def institution_payment(tp: str, institution_code: str, amount_fen: int) -> list[Entry]:
    return _posting([(f"institution:{institution_code}:receivable", amount_fen), (f"province:{tp}:cash", -amount_fen)])


def prepayment_interest(tp: str, amount_fen: int) -> list[Entry]:
    return _posting([(f"province:{tp}:cash", amount_fen), (f"province:{tp}:interest_income", -amount_fen)])
