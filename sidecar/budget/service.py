"""The budget facade the proxy calls around each ``/v1/messages`` call (SPEC §7).

Contract for the caller: ``admit`` before forwarding (it raises ``BudgetExceeded`` to refuse, or
``ServiceUnavailable`` when the counters are unreachable in fail mode ``closed``); then exactly one of
``settle`` (the call reached the upstream; pass its priced event) or ``settle_failed`` (it never did).
Both are idempotent and never raise. Outcomes are counted through :class:`BudgetHooks` (each warning
and refusal once); the returned warnings are for the log line, the settlement for the
``x-sidecar-budget-remaining-usd`` header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sidecar.budget import (
    APP_SCOPE,
    SESSION_SCOPE,
    BudgetCounters,
    CountersUnavailable,
    Reservation,
    Snapshot,
)
from sidecar.core.budget_config import (
    APP_DAILY_USD,
    BLOCKED,
    FAIL_CLOSED,
    NANOS,
    SESSION_USD,
    WARN,
    BudgetConfig,
    Limits,
)
from sidecar.core.budget_counts import Breach, remaining_usd, utc_day
from sidecar.core.budget_estimate import Estimate, Rates, actual_of, estimate_call, worst_rates
from sidecar.core.events import CallEvent
from sidecar.core.money import format_usd
from sidecar.core.pricing import PriceTable
from sidecar.errors import BudgetExceeded, ServiceUnavailable

THRESHOLD, OVER_LIMIT = "threshold", "over_limit"  # BudgetWarning.kind
# on_backend_error kinds: admitted without counters (fail open), refused (fail closed), lost updates.
REDIS_UNAVAILABLE, REDIS_UNAVAILABLE_REFUSED, SETTLE_LOST = (
    "redis_unavailable",
    "redis_refused",
    "settle_lost",
)
BACKEND_ERROR_KINDS = (REDIS_UNAVAILABLE, REDIS_UNAVAILABLE_REFUSED, SETTLE_LOST)


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    """What the budget needs from a request. ``speed`` and ``inference_geo`` are the body's fields (a
    fast-mode call costs a multiple; an absent geo is reserved at the ``us`` price to stay an upper bound)."""

    session_id: str
    app: str
    model: str | None
    body_bytes: int
    max_tokens: int | None
    now: float  # unix seconds: picks the price period and the UTC day
    speed: str | None = None
    inference_geo: str | None = None
    regional_multiplier: float = 1.0  # a cloud's regional endpoint (SPEC §18): its price premium


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    app: str
    limit: str  # a LIMIT_NAMES value: the metric label
    kind: str  # THRESHOLD: 80 % reached (once) | OVER_LIMIT: warn mode, would have been refused
    message: str


@dataclass(slots=True)
class Admission:
    """An admitted call; hand it back to ``settle`` or ``settle_failed``."""

    reservation: Reservation
    warnings: tuple[BudgetWarning, ...] = ()
    degraded: bool = False  # admitted without counters (fail open)
    settled: bool = False


@dataclass(frozen=True, slots=True)
class Settlement:
    warnings: tuple[BudgetWarning, ...] = ()
    remaining_usd: float | None = None  # under the tightest USD ceiling; None when none applies
    snapshot: Snapshot | None = None


def _ignore(*_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class BudgetHooks:
    """Counters live in the metrics module; the service only reports outcomes through these."""

    on_refusal: Callable[[str, str], None] = _ignore  # (app, limit)
    on_warning: Callable[[str, str], None] = _ignore  # (app, limit)
    on_backend_error: Callable[[str], None] = _ignore  # (kind), one of BACKEND_ERROR_KINDS


class Budgets(Protocol):
    """What the proxy and admin routes depend on: :class:`BudgetService` or :class:`NullBudgetService`."""

    async def admit(self, req: AdmitRequest) -> Admission: ...

    async def settle(self, admission: Admission, event: CallEvent) -> Settlement: ...

    async def settle_failed(self, admission: Admission) -> None: ...


def _amount(limit: str, n: int) -> str:
    return format_usd(n / NANOS) if limit in (SESSION_USD, APP_DAILY_USD) else str(n)


def refusal_message(breach: Breach, session_id: str, app: str, day: str) -> str:
    """Names the ceiling, the limit and the amount used (R-CC-2)."""
    used = _amount(breach.limit, breach.used)
    if breach.reserved:
        used += f" + {_amount(breach.limit, breach.reserved)} reserved by calls in flight"
    head = f"{breach.limit} limit {_amount(breach.limit, breach.ceiling)}, used {used}"
    if breach.limit == APP_DAILY_USD:
        return f"App budget exceeded: {head} (app {app[:200]}, UTC day {day})"
    return f"Session budget exceeded: {head} (session {session_id[:200]})"


def _threshold_message(limit: str, res: Reservation, snapshot: Snapshot) -> str:
    caps = res.limits.caps()
    if limit == APP_DAILY_USD:
        used, who = snapshot.app_day.used_nanos, f"App {res.app[:200]} (UTC day {res.day})"
    else:
        s = snapshot.session
        assert s is not None
        values = {"session_usd": s.used_nanos, "session_tokens": s.used_tokens}
        used = values.get(limit, s.model_calls if limit == "session_model_calls" else s.tool_calls)
        who = f"Session {res.session_id[:200]}"
    ceiling = _amount(limit, caps[limit])
    return f"{who} reached 80 % of its {limit} ceiling: used {_amount(limit, used)} of {ceiling}"


def _blocked_message(scope: str | None, session_id: str, app: str) -> str:
    name = session_id if scope == SESSION_SCOPE else app
    return f"{str(scope).capitalize()} {name[:200]} is blocked by an administrator (limit {BLOCKED})"


class BudgetService:
    """Ceilings over a :class:`sidecar.budget.BudgetCounters` backend (local or Redis)."""

    def __init__(
        self,
        config: BudgetConfig,
        counters: BudgetCounters,
        prices: PriceTable,
        hooks: BudgetHooks | None = None,
    ) -> None:
        self._config = config
        self._counters = counters
        self._prices = prices
        self._hooks = hooks or BudgetHooks()
        self._worst: dict[tuple[str, bool, bool], Rates] = {}  # unknown-model rates by (day, fast, us)

    def _unknown_rates(self, day: str, at: float, speed: str | None, geo: str | None) -> Rates:
        fast, us = speed == "fast", geo is None or geo.strip().lower() == "us"
        key = (day, fast, us)
        found = self._worst.get(key)
        if found is None:
            if len(self._worst) > 16:  # only the current day's few keys are ever used
                self._worst.clear()
            found = worst_rates(
                self._prices, at, speed="fast" if fast else None, geo=None if us else "global"
            )
            self._worst[key] = found
        return found

    def replace_counters(self, counters: BudgetCounters) -> None:
        """Swap the backend (start-up: local counters rebuilt from the store)."""
        self._counters = counters

    @property
    def config(self) -> BudgetConfig:
        return self._config

    def limits_for(self, app: str) -> Limits:
        return self._config.limits_for(app)

    async def admit(self, req: AdmitRequest) -> Admission:
        """Reserve an upper bound of the call, or refuse it (see the module docstring)."""
        limits = self._config.limits_for(req.app)
        day = utc_day(req.now)
        if limits.caps():
            estimate = estimate_call(
                self._prices,
                req.model,
                req.body_bytes,
                req.max_tokens,
                req.now,
                speed=req.speed,
                inference_geo=req.inference_geo,
                unknown=self._unknown_rates(day, req.now, req.speed, req.inference_geo),
                regional_multiplier=req.regional_multiplier,
            )
        else:
            # No ceiling to keep: the estimate (the costly part) bounds nothing; usage is still counted.
            estimate = Estimate(0, 0)
        try:
            decision = await self._counters.try_reserve(req.session_id, req.app, day, limits, estimate)
        except CountersUnavailable:
            if self._config.fail_mode == FAIL_CLOSED:
                self._hooks.on_backend_error(REDIS_UNAVAILABLE_REFUSED)
                raise ServiceUnavailable(
                    "Budget counters are unavailable (Redis unreachable); retry shortly"
                ) from None
            self._hooks.on_backend_error(REDIS_UNAVAILABLE)
            held = Reservation("", req.session_id, req.app, day, limits, 0, 0, held=False)
            return Admission(held, degraded=True)
        blocked = decision.blocked
        over = [(BLOCKED, _blocked_message(blocked, req.session_id, req.app))] if blocked else []
        over += [(b.limit, refusal_message(b, req.session_id, req.app, day)) for b in decision.breaches]
        if decision.reservation is None:
            limit, message = over[0] if over else (BLOCKED, "Budget refused the call")
            self._hooks.on_refusal(req.app, limit)
            raise BudgetExceeded(message, limit)
        warnings = tuple(
            BudgetWarning(req.app, limit, OVER_LIMIT, f"warn mode: {msg}") for limit, msg in over
        )
        for w in warnings:
            self._hooks.on_warning(w.app, w.limit)
        return Admission(decision.reservation, warnings)

    async def check_blocked(self, session_id: str, app: str) -> BudgetWarning | None:
        """For an answer replayed from the response cache (SPEC R-RC-7): it uses no ceiling, even for a
        session over one, but a blocked session or app is refused like any call (``BudgetExceeded``,
        limit ``blocked``); in warn mode the would-be refusal is the returned warning (counted). Counters
        out of reach: the Redis fail mode decides, as for ``admit``."""
        try:
            scope = None
            if session_id and await self._counters.is_blocked(SESSION_SCOPE, session_id):
                scope = SESSION_SCOPE
            elif await self._counters.is_blocked(APP_SCOPE, app):
                scope = APP_SCOPE
        except CountersUnavailable:
            if self._config.fail_mode == FAIL_CLOSED:
                self._hooks.on_backend_error(REDIS_UNAVAILABLE_REFUSED)
                raise ServiceUnavailable(
                    "Budget counters are unavailable (Redis unreachable); retry shortly"
                ) from None
            self._hooks.on_backend_error(REDIS_UNAVAILABLE)
            return None
        if scope is None:
            return None
        message = _blocked_message(scope, session_id, app)
        if self._config.limits_for(app).mode == WARN:
            self._hooks.on_warning(app, BLOCKED)
            return BudgetWarning(app, BLOCKED, OVER_LIMIT, f"warn mode: {message}")
        self._hooks.on_refusal(app, BLOCKED)
        raise BudgetExceeded(message, BLOCKED)

    async def settle(self, admission: Admission, event: CallEvent) -> Settlement:
        """Reconcile with the real cost; report first-time 80 % warnings and the USD remaining."""
        if admission.settled:
            return Settlement()
        admission.settled = True
        res = admission.reservation
        try:
            unknown = None
            if event.cost_usd is None:
                unknown = self._unknown_rates(res.day, event.started_at, event.usage.speed, None)
            rec = await self._counters.reconcile(res, actual_of(event, self._prices, unknown))
        except CountersUnavailable:
            self._hooks.on_backend_error(SETTLE_LOST)
            return Settlement()
        caps = res.limits.caps()
        if not caps:  # the common case: usage counted, no ceiling to warn about or report against
            return Settlement(snapshot=rec.snapshot)
        warnings = tuple(
            BudgetWarning(res.app, name, THRESHOLD, _threshold_message(name, res, rec.snapshot))
            for name in rec.warned
        )
        for w in warnings:
            self._hooks.on_warning(w.app, w.limit)
        return Settlement(
            warnings, remaining_usd(caps, rec.snapshot.session, rec.snapshot.app_day), rec.snapshot
        )

    async def settle_failed(self, admission: Admission) -> None:
        """Release the reservation of a call that never reached the upstream (not a model call)."""
        if admission.settled:
            return
        admission.settled = True
        if admission.reservation.held:
            try:
                await self._counters.release(admission.reservation)
            except CountersUnavailable:
                self._hooks.on_backend_error(SETTLE_LOST)

    def reload(self, config: BudgetConfig, prices: PriceTable | None = None) -> None:
        """Swap in a reloaded config (SIGHUP); runtime overrides set through the admin API are kept."""
        self._config = config.with_runtime_of(self._config)
        if prices is not None:
            self._prices = prices
            self._worst.clear()

    def set_app_override(self, app: str, mapping: object) -> Limits:
        """Replace ``app``'s runtime ceilings (file keys; ``null`` removes one). Raises ``ConfigError``
        naming the bad key (the admin route answers 400). Held by this process only."""
        self._config = self._config.with_app_override(app, mapping)
        return self._config.limits_for(app)

    def clear_app_override(self, app: str) -> Limits:
        self._config = self._config.without_app_override(app)
        return self._config.limits_for(app)

    async def _admin(self, op: str, scope: str, name: str) -> bool:
        try:
            if op == "block":
                await self._counters.block(scope, name)
            elif op == "unblock":
                await self._counters.unblock(scope, name)
            return await self._counters.is_blocked(scope, name)
        except CountersUnavailable:
            raise ServiceUnavailable("Budget counters are unavailable (Redis unreachable)") from None

    async def block_session(self, session_id: str) -> bool:
        """Refuse the session's calls from now on (limit ``blocked``); returns the new blocked state."""
        return await self._admin("block", SESSION_SCOPE, session_id)

    async def unblock_session(self, session_id: str) -> bool:
        return await self._admin("unblock", SESSION_SCOPE, session_id)

    async def block_app(self, app: str) -> bool:
        return await self._admin("block", APP_SCOPE, app)

    async def unblock_app(self, app: str) -> bool:
        return await self._admin("unblock", APP_SCOPE, app)

    async def usage(self, session_id: str, app: str, now: float) -> tuple[Snapshot, bool, bool]:
        """Counters of a session and its app's UTC day, and whether each is blocked (admin API)."""
        try:
            snap = await self._counters.usage(session_id, app, utc_day(now))
            session_blocked = bool(session_id) and await self._counters.is_blocked(SESSION_SCOPE, session_id)
            return snap, session_blocked, await self._counters.is_blocked(APP_SCOPE, app)
        except CountersUnavailable:
            raise ServiceUnavailable("Budget counters are unavailable (Redis unreachable)") from None

    async def aclose(self) -> None:
        await self._counters.aclose()


class NullBudgetService:
    """No ceiling anywhere: admits everything without touching counters. It cannot block or hold
    runtime ceilings; use :class:`BudgetService` with local counters when those must work."""

    _NONE = Reservation("", "", "", "", Limits(), 0, 0, held=False)

    async def admit(self, req: AdmitRequest) -> Admission:
        return Admission(self._NONE, settled=True)

    async def settle(self, admission: Admission, event: CallEvent) -> Settlement:
        return Settlement()

    async def settle_failed(self, admission: Admission) -> None:
        return None
