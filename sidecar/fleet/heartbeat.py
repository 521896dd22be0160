"""One shared ping loop for every fleet member (instead of a keepalive task per connection).

A binary heap holds one due time per member. The loop wakes at the earliest due time, and for each due
member either sends the next ping (``ping_interval`` after the previous one, if its pong came back),
waits on (the pong is outstanding but ``ping_timeout`` has not passed), or gives up: the pong is
``ping_timeout`` late, so the pong is counted missed, the disconnect is recorded with reason
``ping_timeout`` and the connection is closed with 1011, as websockets' own keepalive does. Heap entries
carry the member's ``gen``; an entry from an older connection is dropped when it comes up.

A member whose socket stops taking bytes (write backlog above ``backlog_limit``) gets no new ping — the
send could block the shared loop — but its deadline runs as if it had been sent.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import random
import time
from collections.abc import Callable

from sidecar.fleet.registry import FleetRegistry, Member

PING_TIMEOUT_CODE = 1011
YIELD_EVERY = 256  # pings sent back to back before letting other tasks run
BACKLOG_LIMIT = 64 * 1024


class Heartbeat:
    """Pings members of ``registry``; call :meth:`add` after every connect, run :meth:`run` as one task."""

    def __init__(
        self,
        registry: FleetRegistry,
        interval_s: float,
        timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        rtt_clock: Callable[[], float] = time.perf_counter,
        backlog_limit: int = BACKLOG_LIMIT,
    ) -> None:
        self.registry = registry
        self.interval = interval_s
        self.timeout = timeout_s
        self._clock = clock
        self._wall = wall
        self._jitter = jitter
        self._rtt_clock = rtt_clock
        self._backlog_limit = backlog_limit
        self._heap: list[tuple[float, int, Member, int]] = []
        self._seq = itertools.count()
        # Longest sleep: bounds how late a member added during a sleep gets its first ping.
        self._max_sleep = max(0.005, min(interval_s, timeout_s) / 8)
        # Shortest sleep: due times closer than this share one wake-up (a coarse timer wheel), which
        # is what makes one loop cheaper than a keepalive task per member.
        self._quantum = min(0.05, min(interval_s, timeout_s) / 100)

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, member: Member) -> None:
        """Schedule a freshly connected member: first ping after 0.5-1 interval (spreads connect bursts)."""
        now = self._clock()
        member.last_ping = now - self.interval  # no ping sent yet on this connection
        self._push(now + self.interval * (0.5 + 0.5 * self._jitter()), member)

    def _push(self, due: float, member: Member) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), member, member.gen))

    async def run(self) -> None:
        """Forever: visit due members, then sleep until the next one is due. Cancel to stop."""
        while True:
            await self.visit_due()
            now = self._clock()
            delay = self._heap[0][0] - now if self._heap else self._max_sleep
            await asyncio.sleep(min(max(delay, self._quantum), self._max_sleep))

    async def visit_due(self) -> int:
        """Handle every entry due by now; returns how many entries were taken off the heap."""
        taken = 0
        now, wall = self._clock(), self._wall()
        while self._heap and self._heap[0][0] <= now:
            _, _, member, gen = heapq.heappop(self._heap)
            taken += 1
            if member.gen == gen and member.link is not None:
                await self._visit(member, now, wall)
            if taken % YIELD_EVERY == 0:
                await asyncio.sleep(0)
                now, wall = self._clock(), self._wall()
        return taken

    async def _visit(self, member: Member, now: float, wall: float) -> None:
        link = member.link
        assert link is not None
        if member.pending_since is not None:
            deadline = member.pending_since + self.timeout
            if now < deadline:
                self._push(deadline, member)
                return
            self.registry.record_missed(member)
            self.registry.disconnect(member, link, "ping_timeout", wall, PING_TIMEOUT_CODE)
            link.close_soon(PING_TIMEOUT_CODE, "keepalive ping timeout")
            return
        next_ping = member.last_ping + self.interval
        if now < next_ping:
            self._push(next_ping, member)
            return
        gen = member.gen
        member.last_ping = member.pending_since = now
        self.registry.record_ping(member)
        if link.write_backlog() <= self._backlog_limit:
            sent = self._rtt_clock()
            try:
                waiter = await link.ping()
            except Exception:
                return  # the connection is closing; its handler records the disconnect
            waiter.add_done_callback(functools.partial(self._on_pong, member, gen, sent))
        self._push(now + min(self.interval, self.timeout), member)

    def _on_pong(self, member: Member, gen: int, sent: float, waiter: asyncio.Future[float]) -> None:
        # Our own high-resolution RTT: the library's uses the loop clock (1 ms steps under uvloop).
        if member.gen != gen or waiter.cancelled() or waiter.exception() is not None:
            return
        member.pending_since = None
        self.registry.record_pong(member, self._rtt_clock() - sent, self._wall())
