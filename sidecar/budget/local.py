"""In-process budget counters: exact, O(1) per call, for one sidecar process.

Safe under asyncio because no method awaits inside its critical section: each runs to completion on the
event loop before another task can observe the counters. Not thread-safe (one event loop).
After a restart, :meth:`LocalCounters.restore` rebuilds the counters from the embedded store's events.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sidecar.budget import APP_SCOPE, SESSION_SCOPE, Decision, Reconciled, Reservation, Snapshot
from sidecar.core.budget_config import APP_DAILY_USD, NANOS, WARN, Limits
from sidecar.core.budget_counts import Counts, breaches, reached, utc_day
from sidecar.core.budget_estimate import Actual, Estimate, call_tokens
from sidecar.core.events import CACHE_HIT, REFUSED, CallEvent
from sidecar.store.queries import SessionCounters

MAX_SESSIONS = 200_000
SESSION_TTL_S = 7 * 86400.0  # a session idle this long is forgotten (its events stay in the store)


@dataclass(slots=True)
class _Scope:
    counts: Counts = field(default_factory=Counts)
    warned: set[str] = field(default_factory=set)
    touched: float = 0.0


def _add(c: Counts, actual: Actual) -> None:
    c.used_nanos += actual.nanos
    c.used_tokens += actual.tokens
    c.model_calls += actual.model_calls
    c.tool_calls += actual.tool_calls


class LocalCounters:
    """:class:`sidecar.budget.BudgetCounters` held in this process's memory.

    Memory stays bounded by activity: sessions idle for ``session_ttl_s`` and app days older than the
    previous UTC day are dropped as new calls arrive.
    """

    def __init__(
        self,
        *,
        session_ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._ttl = session_ttl_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, _Scope] = OrderedDict()  # least recently touched first
        self._days: dict[tuple[str, str], _Scope] = {}
        self._last_day = ""
        self._blocked: dict[str, set[str]] = {SESSION_SCOPE: set(), APP_SCOPE: set()}
        self._held: set[str] = set()  # ids of reservations not yet reconciled or released
        self._evicted_at = float("-inf")
        self._ids = itertools.count(1)  # reservation ids are process-local here: a counter is enough

    def _session(self, session_id: str, now: float) -> _Scope:
        scope = self._sessions.get(session_id)
        if scope is None:
            scope = self._sessions[session_id] = _Scope()
        else:
            self._sessions.move_to_end(session_id)
        scope.touched = now
        return scope

    def _day(self, app: str, day: str) -> _Scope:
        if day > self._last_day:
            # Keep the previous day too: calls that started before midnight reconcile into it.
            self._days = {k: v for k, v in self._days.items() if k[1] >= self._last_day}
            self._last_day = day
        scope = self._days.get((app, day))
        if scope is None:
            scope = self._days[(app, day)] = _Scope()
        return scope

    def _evict(self, now: float) -> None:
        # Bounded memory: past the cap the least recently active sessions are forgotten first (their
        # events stay in the store; use Redis counters for more live sessions than this). The TTL is
        # days long: checking it once a second is as good as on every call, and costs less.
        if len(self._sessions) <= self._max_sessions and now - self._evicted_at < 1.0:
            return
        self._evicted_at = now
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        while self._sessions:
            sid, oldest = next(iter(self._sessions.items()))
            if oldest.touched >= now - self._ttl:
                return
            del self._sessions[sid]

    async def try_reserve(
        self, session_id: str, app: str, day: str, limits: Limits, estimate: Estimate
    ) -> Decision:
        now = self._clock()
        self._evict(now)
        s = self._session(session_id, now) if session_id else None
        a = self._day(app, day)
        blocked = None
        if session_id and session_id in self._blocked[SESSION_SCOPE]:
            blocked = SESSION_SCOPE
        elif app in self._blocked[APP_SCOPE]:
            blocked = APP_SCOPE
        found = tuple(breaches(limits.caps(), s.counts if s else None, a.counts))
        if limits.mode != WARN and (blocked or found):
            return Decision(False, None, found, blocked)
        if s is not None:
            s.counts.reserved_nanos += estimate.nanos
            s.counts.reserved_tokens += estimate.tokens
            s.counts.reserved_calls += 1
        a.counts.reserved_nanos += estimate.nanos
        res = Reservation(
            f"r{next(self._ids)}", session_id, app, day, limits, estimate.nanos, estimate.tokens
        )
        self._held.add(res.id)
        return Decision(True, res, found, blocked)

    def _unreserve(self, res: Reservation) -> tuple[_Scope | None, _Scope]:
        # A session evicted while this call was in flight comes back without the reservation in it.
        had_session = res.session_id in self._sessions
        s = self._session(res.session_id, self._clock()) if res.session_id else None
        a = self._day(res.app, res.day)
        if res.held and res.id in self._held:
            self._held.discard(res.id)
            if s is not None and had_session:
                s.counts.reserved_nanos -= res.nanos
                s.counts.reserved_tokens -= res.tokens
                s.counts.reserved_calls -= 1
            a.counts.reserved_nanos -= res.nanos
        return s, a

    async def reconcile(self, reservation: Reservation, actual: Actual) -> Reconciled:
        s, a = self._unreserve(reservation)
        if s is not None:
            _add(s.counts, actual)
        a.counts.used_nanos += actual.nanos
        warned = []
        for name in reached(reservation.limits.caps(), s.counts if s else None, a.counts):
            scope = a if name == APP_DAILY_USD else s
            if scope is not None and name not in scope.warned:
                scope.warned.add(name)
                warned.append(name)
        return Reconciled(self._snapshot(s, a), tuple(warned))

    async def release(self, reservation: Reservation) -> None:
        self._unreserve(reservation)

    async def block(self, scope: str, name: str) -> None:
        self._blocked[scope].add(name)

    async def unblock(self, scope: str, name: str) -> None:
        self._blocked[scope].discard(name)

    async def is_blocked(self, scope: str, name: str) -> bool:
        return name in self._blocked[scope]

    async def usage(self, session_id: str, app: str, day: str) -> Snapshot:
        s = self._sessions.get(session_id) if session_id else None
        a = self._days.get((app, day))
        session = (s.counts if s else Counts()) if session_id else None
        return Snapshot(session.copy() if session else None, a.counts.copy() if a else Counts())

    def _snapshot(self, s: _Scope | None, a: _Scope) -> Snapshot:
        return Snapshot(s.counts.copy() if s else None, a.counts.copy())

    async def aclose(self) -> None:
        return None

    @classmethod
    def restore(
        cls,
        events: Iterable[CallEvent],
        now: float,
        *,
        charge: Callable[[CallEvent], float] | None = None,
        limits_for: Callable[[str], Limits] | None = None,
        session_ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> LocalCounters:
        """Counters rebuilt from stored events (pass those of the last ``session_ttl_s`` seconds).

        Sums cost, tokens, model calls and tool calls per session, and cost per app for the UTC day of
        ``now``. ``charge`` prices an event (default: its ``cost_usd``; pass
        ``functools.partial(charge_usd, prices=...)`` to charge unpriced calls as the live path does).
        With ``limits_for``, ceilings already at 80 % are marked as warned, so a restart does not repeat
        a warning.
        """
        counters = cls(session_ttl_s=session_ttl_s, clock=clock)
        today = utc_day(now)
        apps: dict[str, str] = {}
        for e in sorted(events, key=lambda ev: ev.started_at):
            if e.operation != "chat" or e.outcome in (REFUSED, CACHE_HIT):  # a cache hit uses no ceiling
                continue
            usd = charge(e) if charge is not None else (e.cost_usd or 0.0)
            actual = Actual(round(usd * NANOS), call_tokens(e.usage), 1, len(e.tool_uses))
            if e.session_id:
                _add(counters._session(e.session_id, e.started_at).counts, actual)
                apps[e.session_id] = e.app
            if utc_day(e.started_at) == today:
                counters._day(e.app, today).counts.used_nanos += actual.nanos
        if limits_for is not None:
            counters._mark_warned(limits_for, apps, today)
        return counters

    @classmethod
    def restore_totals(
        cls,
        sessions: Iterable[SessionCounters],
        unpriced: Iterable[CallEvent],
        app_day_usd: Mapping[str, float],
        now: float,
        *,
        charge: Callable[[CallEvent], float] | None = None,
        limits_for: Callable[[str], Limits] | None = None,
        session_ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> LocalCounters:
        """Counters rebuilt from the read side's totals (SPEC R-RS-1) instead of every event: ``sessions``
        last seen in the last ``session_ttl_s`` seconds; ``unpriced``: model calls without a price since
        their first call and since today's start (charged with ``charge``, as the live path does);
        ``app_day_usd``: each app's priced cost of the UTC day of ``now``."""
        counters = cls(session_ttl_s=session_ttl_s, clock=clock)
        today = utc_day(now)
        session_extra: dict[str, int] = defaultdict(int)
        day_extra: dict[str, int] = defaultdict(int)
        for e in unpriced:
            nanos = round((charge(e) if charge is not None else 0.0) * NANOS)
            session_extra[e.session_id] += nanos
            if utc_day(e.started_at) == today:
                day_extra[e.app] += nanos
        apps: dict[str, str] = {}
        for s in sorted(sessions, key=lambda x: x.last_seen):
            if not s.session_id:
                continue
            nanos = round(s.cost_usd * NANOS) + session_extra.get(s.session_id, 0)
            actual = Actual(nanos, s.tokens, s.model_calls, s.tool_calls)
            _add(counters._session(s.session_id, s.last_seen).counts, actual)
            apps[s.session_id] = s.app
        for app in sorted(set(app_day_usd) | set(day_extra)):
            used = round(app_day_usd.get(app, 0.0) * NANOS) + day_extra.get(app, 0)
            counters._day(app, today).counts.used_nanos += used
        if limits_for is not None:
            counters._mark_warned(limits_for, apps, today)
        return counters

    def _mark_warned(self, limits_for: Callable[[str], Limits], apps: dict[str, str], today: str) -> None:
        empty = Counts()
        for sid, scope in self._sessions.items():
            found = reached(limits_for(apps.get(sid, "default")).caps(), scope.counts, empty)
            scope.warned.update(n for n in found if n != APP_DAILY_USD)
        for (app, day), scope in self._days.items():
            if day == today and APP_DAILY_USD in reached(limits_for(app).caps(), None, scope.counts):
                scope.warned.add(APP_DAILY_USD)
