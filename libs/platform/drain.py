"""The server's drain: which calls are in flight, and whether new ones are still taken.

Once ``draining`` is set, the interceptor answers every new call UNAVAILABLE with
REASON_SERVER_DRAINING (safe to retry with the same request_id, on another replica) instead of
letting the stopping server cancel it, and the host waits (up to the grace period) until the
calls in flight have finished before it stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def wait_idle(self, seconds: float) -> bool:
        """True when no call is in flight any more, False when ``seconds`` ran out first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)
        return self._idle.is_set()
