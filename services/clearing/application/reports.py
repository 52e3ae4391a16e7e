"""Read models for operators: figures per province pair, fund use per insured place, the ledger.
Read-only; used by ``python -m services.clearing.report``."""

from __future__ import annotations

from dataclasses import dataclass

from services.clearing.application.funds import Verification, _verification
from services.clearing.application.ports import ClearingStore
from services.clearing.application.service import _lines
from services.clearing.domain.model import Category, Statement, StatementLine


@dataclass(frozen=True, slots=True)
class PairFigures:
    insured_province: str
    treatment_province: str
    category: Category
    line: StatementLine


class Reports:
    def __init__(self, store: ClearingStore) -> None:
        self.store = store

    async def statements(self, year: int, month: int, province: str = "") -> list[Statement]:
        async with self.store.read() as repo:
            return await repo.statements_of_month(year, month, province)

    async def direct_settlement(self, year: int, month: int) -> list[PairFigures]:
        """Everything ingested for the month (whether or not a statement was built yet)."""
        async with self.store.read() as repo:
            rows = await repo.month_pairs_by_category(year, month)
        return [PairFigures(ip, tp, cat, line) for (ip, tp, cat), line in sorted(_lines(rows).items())]

    async def balances(self, prefix: str = "") -> list[tuple[str, int]]:
        async with self.store.read() as repo:
            return await repo.balances(prefix)

    async def verifications(self) -> list[Verification]:
        async with self.store.read() as repo:
            return [_verification(r) for r in await repo.all_verifications()]
