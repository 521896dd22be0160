"""The budget facade the proxy calls around each ``/v1/messages`` call (SPEC §7).

Contract for the caller: ``admit`` before forwarding (it raises ``BudgetExceeded`` to refuse, or
``ServiceUnavailable`` when the counters are unreachable in fail mode ``closed``); then exactly one of
``settle`` (the call reached the upstream; pass its priced event) or ``settle_failed`` (it never did).
Both are idempotent and never raise. Outcomes are counted through :class:`BudgetHooks` (each warning
and refusal once); the returned warnings are for the log line, the settlement for the
``x-sidecar-budget-remaining-usd`` header.
"""

from __future__ import annotations

from sidecar.budget import (
    APP_SCOPE,
    SESSION_SCOPE,
    BudgetCounters,
    CountersUnavailable,
    Reservation,
    Snapshot,
)
from sidecar.budget.admission import (
    BACKEND_ERROR_KINDS,
    OVER_LIMIT,
    REDIS_UNAVAILABLE,
    REDIS_UNAVAILABLE_REFUSED,
    SETTLE_LOST,
    THRESHOLD,
    Admission,
    AdmitRequest,
    BudgetHooks,
    Budgets,
    BudgetWarning,
    NullBudgetService,
    Settlement,
)
from sidecar.budget.messages import blocked_message, refusal_message, threshold_message
from sidecar.core.budget_config import (
    BLOCKED,
    FAIL_CLOSED,
    WARN,
    BudgetConfig,
    Limits,
)
from sidecar.core.budget_counts import remaining_usd, utc_day
from sidecar.core.budget_estimate import Estimate, Rates, actual_of, estimate_call, worst_rates
from sidecar.core.events import CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.errors import BudgetExceeded, ServiceUnavailable


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

    def _counters_unavailable(self) -> None:
        """Counters out of reach: in fail mode ``closed`` refuse the call (``ServiceUnavailable``),
        otherwise count it and let the caller go on without them."""
        if self._config.fail_mode == FAIL_CLOSED:
            self._hooks.on_backend_error(REDIS_UNAVAILABLE_REFUSED)
            raise ServiceUnavailable(
                "Budget counters are unavailable (Redis unreachable); retry shortly"
            ) from None
        self._hooks.on_backend_error(REDIS_UNAVAILABLE)

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
            self._counters_unavailable()
            held = Reservation("", req.session_id, req.app, day, limits, 0, 0, held=False)
            return Admission(held, degraded=True)
        blocked = decision.blocked
        over = [(BLOCKED, blocked_message(blocked, req.session_id, req.app))] if blocked else []
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
            self._counters_unavailable()
            return None
        if scope is None:
            return None
        message = blocked_message(scope, session_id, app)
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
            BudgetWarning(res.app, name, THRESHOLD, threshold_message(name, res, rec.snapshot))
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


__all__ = [
    "BACKEND_ERROR_KINDS",
    "OVER_LIMIT",
    "REDIS_UNAVAILABLE",
    "REDIS_UNAVAILABLE_REFUSED",
    "SETTLE_LOST",
    "THRESHOLD",
    "Admission",
    "AdmitRequest",
    "BudgetHooks",
    "BudgetService",
    "BudgetWarning",
    "Budgets",
    "NullBudgetService",
    "Settlement",
    "refusal_message",
]
