"""The decisions around each call, in one place: tool-latency matching, the response cache, cost
ceilings, the prompt cache (planning, busting, why a call missed) and the rate-limit headers of each answer.

The proxy calls ``before_forward`` once the request is read (it may refuse or return a new body),
``response_headers`` just before relaying the answer, and ``after_call`` once the call is over and
priced. All must be fast on the common path; none may fail a call that would otherwise succeed
(a budget refusal is a deliberate answer, not a failure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sidecar.budget.service import Admission, AdmitRequest, BudgetService, BudgetWarning
from sidecar.cache import policy as cache_policy
from sidecar.cache.diagnosis import CacheDiagnoser, CacheProbe
from sidecar.core.cache_busting import CacheBustingDetector, shape_of_details
from sidecar.core.cache_effect import WasteTracker, totals
from sidecar.core.events import CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.prompt_text import BlockDetail
from sidecar.core.tools import ToolLatencyMatcher
from sidecar.policy import response_cache
from sidecar.proxy.context import CallContext
from sidecar.respcache.service import ResponseCache
from sidecar.sansio import headers as hdr
from sidecar.sansio.ratelimit import parse_ratelimits
from sidecar.sansio.request import CHAT

Headers = Sequence[tuple[bytes, bytes]]
REMAINING_HEADER = b"x-sidecar-budget-remaining-usd"
log = logging.getLogger("sidecar.budget")


def _log_warnings(warnings: Sequence[BudgetWarning], ctx: CallContext) -> None:
    for w in warnings:
        log.warning(
            w.message,
            extra={
                "fields": {
                    "app": w.app,
                    "limit": w.limit,
                    "kind": w.kind,
                    "session_id": ctx.caller.session_id,
                }
            },
        )


class CacheMetrics(Protocol):
    def on_cache_plan(self, reason: str) -> None: ...
    def on_cache_busting(self, app: str, busting: bool) -> None: ...
    def on_wasted_writes(self, model: str, app: str, tokens: int) -> None: ...
    def count_internal_error(self, component: str) -> None: ...


RATELIMIT_EVERY_S = 0.05
_MAX_RATELIMIT_SOURCES = 10_000


def diagnosis_key(session_id: str, agent_id: str | None) -> str:
    """Whose previous call a call's prefix is compared with: its session's, or, when Claude Code names the
    agent, that agent's in the session (sub-agents running side by side each keep their own prefix)."""
    return f"{session_id}\x1f{agent_id}" if session_id and agent_id else session_id


class SidecarPolicies:
    def __init__(
        self,
        tools: ToolLatencyMatcher,
        budgets: BudgetService,
        price: Callable[[CallEvent], None],
        cache: cache_policy.CacheSettings,
        prices: Callable[[], PriceTable],
        metrics: CacheMetrics,
        response_cache: ResponseCache | None = None,
        diagnoser: CacheDiagnoser | None = None,
    ) -> None:
        self.tools = tools
        self.budgets = budgets
        self._price = price
        self.cache = cache
        self._prices = prices
        self._metrics = metrics
        self.response_cache = response_cache  # None when off: the call never consults it
        self.busting = CacheBustingDetector()
        self.waste = WasteTracker()
        self.diagnoser = diagnoser or CacheDiagnoser()
        self._ratelimits_read: dict[tuple[str, str | None], float] = {}  # (app, key) -> last read (monotonic)

    def _plan_cache(self, ctx: CallContext, body: bytes, headers: Headers) -> bytes:
        """Add prompt-cache breakpoints where they pay off; the client's original bytes otherwise. Then
        fingerprint the call for the cache diagnosis (and, in ``api`` mode, ask the API for its own)."""
        value = hdr.get(headers, cache_policy.HEADER)
        header = value.decode("latin-1") if value else None
        # The handler's parsed copy of the body is reused, then let go (large bodies, long streams).
        doc, ctx.doc = ctx.doc, None
        model, app = ctx.info.model, ctx.request.app
        new, plan = cache_policy.apply(self.cache, self._prices(), body, model, app, header, doc)
        ctx.policy.cache_breakpoint_injected = plan.changed
        self._metrics.on_cache_plan(plan.reason)
        if doc is None:
            return new
        try:
            probe = self._probe(ctx, doc, body, plan.markers_added)
            self._observe_busting(ctx, doc, probe)
            if ctx.request.cloud is None:  # the API's diagnosis is Anthropic's API only, not Bedrock/Vertex
                new, ctx.policy.upstream_header_overrides = self.diagnoser.opt_in(probe, doc, new, headers)
        except Exception:  # a diagnosis must never fail the call
            self._metrics.count_internal_error("policy")
            log.exception("cache diagnosis failed for a call; the request itself was not affected")
        return new

    def _probe(self, ctx: CallContext, doc: dict[str, Any], body: bytes, added: int) -> CacheProbe | None:
        requested = ctx.info.model
        model = requested and (self._prices().canonical(requested) or requested)
        probe = self.diagnoser.probe(
            diagnosis_key(ctx.caller.session_id, ctx.caller.agent_id), doc, body, model, added
        )
        ctx.policy.cache_probe = probe
        return probe

    def _system_details(self, doc: dict[str, Any], probe: CacheProbe | None) -> list[BlockDetail]:
        if probe is not None:
            return [b.detail for b in probe.fingerprint.system if b.detail is not None]
        system = doc.get("system")
        blocks = [{"text": system}] if isinstance(system, str) else system if isinstance(system, list) else []
        texts = [b.get("text") for b in blocks if isinstance(b, dict)]
        return [self.diagnoser.details.get(hash(t), t) for t in texts if isinstance(t, str) and t]

    def _observe_busting(self, ctx: CallContext, doc: dict[str, Any], probe: CacheProbe | None) -> None:
        digest, app = ctx.info.system_hash, ctx.request.app
        if digest is None:
            return
        # The shape (ids and digit runs masked) comes from the per-block details the diagnosis keeps.
        needed = self.busting.needs_shape(app, digest)
        shape = shape_of_details(self._system_details(doc, probe)) if needed else None
        verdict = self.busting.observe(app, digest, shape)
        if verdict is None:
            return
        (log.warning if verdict.busting else log.info)(verdict.message(), extra={"fields": {"app": app}})
        self._metrics.on_cache_busting(app, verdict.busting)

    async def before_forward(self, ctx: CallContext, body: bytes, headers: Headers) -> bytes:
        if ctx.request.op != CHAT:
            return body
        session_id, started_at = ctx.caller.session_id, ctx.request.started_at
        if session_id and ctx.info.tool_results:
            ctx.policy.tool_results = tuple(self.tools.match(session_id, ctx.info.tool_results, started_at))
        cache = self.response_cache
        if cache is not None and await response_cache.look_up(cache, ctx, headers):
            # A stored answer: no ceiling is used, but a blocked session or app is refused.
            warning = await self.budgets.check_blocked(session_id, ctx.request.app)
            _log_warnings((warning,) if warning else (), ctx)
            return body
        admission = await self.budgets.admit(
            AdmitRequest(
                session_id=session_id,
                app=ctx.request.app,
                model=ctx.info.model,
                body_bytes=len(body),
                max_tokens=ctx.info.max_tokens,
                now=started_at,
                regional_multiplier=self._regional_multiplier(ctx),
            )
        )
        ctx.policy.admission = admission
        _log_warnings(admission.warnings, ctx)
        limits = admission.reservation.limits
        ctx.policy.buffer_answer = not ctx.info.stream and (
            limits.session_usd is not None or limits.app_daily_usd is not None
        )
        return self._plan_cache(ctx, body, headers)

    def _regional_multiplier(self, ctx: CallContext) -> float:
        """A call to a cloud's regional endpoint reserves that provider's premium (SPEC §18)."""
        cloud = ctx.request.cloud
        if cloud is None or not cloud.regional:
            return 1.0
        return self._prices().regional_multiplier(cloud.route.provider)

    async def response_headers(self, ctx: CallContext) -> list[tuple[bytes, bytes]]:
        """For a buffered (non-streaming) answer under a USD ceiling: settle now and say what remains."""
        admission = ctx.policy.admission
        if not isinstance(admission, Admission) or not ctx.policy.buffer_answer:
            return []
        event = ctx.to_event("")
        self._price(event)
        settlement = await self.budgets.settle(admission, event)
        _log_warnings(settlement.warnings, ctx)
        if settlement.remaining_usd is None:
            return []
        return [(REMAINING_HEADER, f"{settlement.remaining_usd:.6f}".encode())]

    async def after_call(self, ctx: CallContext, event: CallEvent) -> None:
        if self.response_cache is not None:
            response_cache.finish(self.response_cache, ctx, event)
        if event.operation == CHAT and event.outcome == "ok" and 200 <= event.status < 300:
            self.waste.observe(
                session_id=event.session_id,
                app=event.app,
                model=event.model_canonical or "other",
                system_hash=event.system_hash,
                at=event.started_at,
                usage=event.usage,
            )
        event.tool_results = ctx.policy.tool_results
        try:
            if ctx.response.headers and self._ratelimit_due(event):
                event.ratelimits = parse_ratelimits(ctx.response.headers)
            if event.operation == CHAT:
                self._finish_diagnosis(ctx, event)
        except Exception:  # the event is recorded all the same, without these fields
            self._metrics.count_internal_error("policy")
            log.exception("reading a call's cache diagnosis or rate limits failed; the call is recorded")
        if event.tool_use_ids and event.session_id:
            self.tools.remember(event.session_id, event.tool_use_ids, event.tool_uses, event.ended_at)
        admission = ctx.policy.admission
        if isinstance(admission, Admission) and not admission.settled:
            if ctx.timings.headers is None and event.outcome != "client_disconnected":
                await self.budgets.settle_failed(admission)  # never reached the upstream
            else:
                settlement = await self.budgets.settle(admission, event)
                _log_warnings(settlement.warnings, ctx)

    def _ratelimit_due(self, event: CallEvent) -> bool:
        """Whether to read this answer's rate-limit headers: the gauges and the headroom show the latest
        values per app and key, so reading them every ``RATELIMIT_EVERY_S`` (and on every 429) is as
        good as reading every answer, and keeps the parsing off most calls."""
        source, now = (event.app, event.key_fingerprint), time.monotonic()
        last = self._ratelimits_read.get(source)
        if last is not None and now - last < RATELIMIT_EVERY_S and event.status != 429:
            return False
        if last is None and len(self._ratelimits_read) >= _MAX_RATELIMIT_SOURCES:
            self._ratelimits_read.clear()  # many keys: forget them all rather than grow
        self._ratelimits_read[source] = now
        return True

    def _finish_diagnosis(self, ctx: CallContext, event: CallEvent) -> None:
        summary = ctx.response.summary
        if self.diagnoser.mode == "off":
            return
        if summary is not None:
            event.api_cache_miss_reason = summary.api_cache_miss_reason
        probe = ctx.policy.cache_probe
        if isinstance(probe, CacheProbe):
            message_id = summary.message_id if summary is not None else None
            self.diagnoser.finish(probe, event, self._prices(), message_id)

    async def expire(self, now: float, idle_timeout_s: float) -> None:
        self.tools.expire(now, idle_timeout_s)
        for (model, app), tokens in totals(self.waste.expire(now)).items():
            self._metrics.on_wasted_writes(model, app, tokens)
