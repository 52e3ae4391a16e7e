"""The server's drain: which calls are in flight, and whether new ones are still taken.

Once ``draining`` is set, the interceptor answers every new call UNAVAILABLE with
REASON_SERVER_DRAINING (safe to retry with the same request_id, on another replica) instead of
letting the stopping server cancel it, and the host waits (up to the grace period) until the
calls in flight have finished before it stops the server. A call made on behalf of a call in
flight (same trace: all-in-one, a service calling a peer hosted in the same process) is still
served, so the call in flight can finish.
"""

from __future__ import annotations

import asyncio
from collections import Counter


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

        self._traces: Counter[int] = Counter()

    def enter(self, trace_id: int = 0) -> None:
        self.in_flight += 1
        self._idle.clear()
        if trace_id:
            self._traces[trace_id] += 1

    def leave(self, trace_id: int = 0) -> None:
        self.in_flight -= 1
        if trace_id:
            left = self._traces[trace_id] - 1
            if left > 0:
                self._traces[trace_id] = left
            else:
                del self._traces[trace_id]
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    def refuses(self, trace_id: int = 0) -> bool:
        """While draining, a call is refused unless another call of its trace is in flight here
        (it entered already, so its own trace counts once)."""
        return self.draining and not (trace_id and self._traces.get(trace_id, 0) > 1)

    async def wait_idle(self, seconds: float) -> bool:
        """True once no call was in flight (a refused straggler may enter just after), False when
        ``seconds`` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True
