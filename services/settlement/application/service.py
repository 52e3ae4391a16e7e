"""The settlement application: its use cases, one module each, over one shared context.

- ``visits.py``: OpenVisit, UpdateVisit, CancelVisit, UploadFees, GetVisit;
- ``settle.py``: PreSettle, Settle (one at a time and the group-commit batch), CancelSettlement,
  ReverseTransaction, SettleOutpatient, GetSettlement;
- ``claims.py``: SubmitManualClaim, ProcessManualClaim, GetManualClaim, ListManualClaims;
- ``recompute.py``: RecomputeSettlement, the archive of policy versions;
- ``feed.py``: StreamSettlements;
- ``queries.py``: catalogue download, ListVisitFees, ListSettlements, GetAccumulators.

The inputs are commands (``commands.py``), the storage and the peers are ports (``ports.py``),
the rules are the domain's (``services/settlement/domain``). The composition root
(``server.py``) builds the store, the context, the use cases and the group-commit queue that
Settle goes through (``libs/platform/group_commit.py``), and hands them over as one
:class:`SettlementService`.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.platform.group_commit import GroupCommit
from services.settlement.application.claims import Claims
from services.settlement.application.commands import Committed, Request, SettleCall, SettleCommand
from services.settlement.application.context import SettlementContext
from services.settlement.application.feed import Feed
from services.settlement.application.recompute import Recompute
from services.settlement.application.settle import Settling
from services.settlement.application.visits import Visits

SettleQueue = GroupCommit[SettleCall, Committed]


@dataclass(frozen=True, slots=True)
class SettlementService:
    ctx: SettlementContext
    visits: Visits
    settling: Settling
    claims: Claims
    recompute: Recompute
    feed: Feed
    settle_queue: SettleQueue

    async def settle(self, req: Request, cmd: SettleCommand) -> Committed:
        """Settle through the group-commit queue (one at a time while it is not started)."""
        return await self.settle_queue.submit(SettleCall(req, cmd))
