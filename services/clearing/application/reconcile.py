"""Daily and detail reconciliation. The answer is stored under the request id, so a replay
returns exactly what was answered, even after more settlements were ingested."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from libs.platform import idempotency
from libs.platform.logs import get_logger
from services.clearing.application.ports import ClearingStore
from services.clearing.domain.model import FUND_FIELDS, Category
from services.clearing.domain.reconcile import (
    Difference,
    DifferenceKind,
    Item,
    Totals,
    compare_items,
    compare_totals,
    overall,
)

_log = get_logger("medsettle.clearing")


@dataclass(frozen=True, slots=True)
class Answer:
    matched: bool
    our_totals: tuple[Totals, ...]
    differences: tuple[Difference, ...]


def _dump(a: Answer) -> str:
    def enc(o: Any) -> Any:
        d = asdict(o)
        for k in ("category", "kind"):
            if k in d and d[k] is not None:
                d[k] = d[k].value
        return d

    return json.dumps(
        {"matched": a.matched, "totals": [enc(t) for t in a.our_totals], "diffs": [enc(d) for d in a.differences]}
    )


def _load(text: str) -> Answer:
    doc = json.loads(text)

    def cat(v: str | None) -> Category | None:
        return Category(v) if v else None

    return Answer(
        doc["matched"],
        tuple(Totals(**{**t, "category": cat(t["category"])}) for t in doc["totals"]),
        tuple(
            Difference(**{**d, "category": cat(d["category"]), "kind": DifferenceKind(d["kind"])}) for d in doc["diffs"]
        ),
    )


class Reconciliation:
    def __init__(self, store: ClearingStore, clock: Callable[[], dt.datetime]) -> None:
        self.store = store
        self._clock = clock

    async def daily(
        self,
        request_id: str,
        fp: str,
        institution: str,
        province: str,
        day: dt.date,
        totals: Sequence[Totals],
        items: Sequence[Item] = (),
    ) -> Answer:
        return await self._run(request_id, fp, "daily", institution, province, day, totals, items, with_totals=True)

    async def detail(self, request_id: str, fp: str, institution: str, day: dt.date, items: Sequence[Item]) -> Answer:
        return await self._run(request_id, fp, "detail", institution, "", day, (), items, with_totals=False)

    async def _run(
        self,
        request_id: str,
        fp: str,
        kind: str,
        institution: str,
        province: str,
        day: dt.date,
        totals: Sequence[Totals],
        items: Sequence[Item],
        *,
        with_totals: bool,
    ) -> Answer:
        op = f"reconcile_{kind}"

        async def attempt() -> Answer:
            async with self.store.transaction() as repo:
                if await repo.request_ref(request_id, op, fp):
                    raise idempotency.Replay(request_id)
                per_cat = [
                    Totals(
                        Category(r.category),
                        int(r.count),
                        int(r.medical_total_fen),
                        int(r.fund_total_fen),
                        int(r.personal_account_fen),
                        *(int(getattr(r, f)) for f in FUND_FIELDS),
                    )
                    for r in await repo.day_totals(day, institution, province)
                ]
                ours: dict[Category | None, Totals] = {t.category: t for t in per_cat}
                ours[None] = overall(per_cat)
                diffs = compare_totals(totals, ours) if with_totals else []
                if items or not with_totals:
                    mine = [
                        Item(r.settlement_id, int(r.total_fen), int(r.fund_total_fen), int(r.personal_account_fen))
                        for r in await repo.day_items(day, institution, province)
                    ]
                    diffs += compare_items(items, mine)
                answer = Answer(not diffs, (*sorted(per_cat, key=lambda t: str(t.category)), ours[None]), tuple(diffs))
                now = self._clock()
                await repo.save_reconciliation(
                    request_id, kind, institution or province, day, answer.matched, _dump(answer), now
                )
                await repo.record_request(request_id, op, fp, request_id)
            _log.info("reconciled", kind=kind, submitter=institution or province, matched=answer.matched)
            return answer

        async def replay(ref: str) -> Answer:
            async with self.store.read() as repo:
                row = await repo.reconciliation(ref)
            return _load(row.result)

        return await idempotency.run_once(attempt, replay)
