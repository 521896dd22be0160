"""The response cache around a Messages call (SPEC §19): the glue between the proxy's call state and
:mod:`sidecar.respcache`, used by :class:`sidecar.policy.calls.SidecarPolicies`."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.core.events import CACHE_HIT, CallEvent
from sidecar.proxy.context import CallContext
from sidecar.respcache.call import CacheCall
from sidecar.respcache.service import CacheRequest, Completed, ResponseCache
from sidecar.sansio.headers import get_ci

Headers = Sequence[tuple[bytes, bytes]]


async def look_up(cache: ResponseCache, ctx: CallContext, headers: Headers) -> bool:
    """Give the call its part in the cache (``ctx.cached``); True when it is answered from there.

    Must run before the sidecar edits the body (the key is the client's own request). Waits while an
    identical call is in flight.
    """
    req = ctx.request
    if req.method != "POST":
        return False
    tenant, render = None, True
    if req.cloud is not None:  # the route names the model; the provider says who the caller is
        route, render = req.cloud.provider.cache_route(req.cloud.route)
        tenant = req.cloud.provider.client_credential(headers) or b""
    else:
        route = req.path.encode("latin-1", "replace") + (b"?" + req.query if req.query else b"")
    call = await cache.begin(
        CacheRequest(req.app, route, headers, ctx.doc, ctx.info.stream, req.started_at, tenant, render)
    )
    ctx.policy.cached = call
    return call is not None and call.answer is not None


def finish(cache: ResponseCache, ctx: CallContext, event: CallEvent) -> None:
    """Keep the call's answer when it may be kept; a hit's event gets what the stored answer had cost."""
    call = ctx.policy.cached
    if not isinstance(call, CacheCall):
        return
    done = Completed(
        status=event.status,
        outcome=event.outcome,
        summary=ctx.response.final_summary(),
        content_type=get_ci(ctx.response.headers, b"content-type") or b"",
        cost_usd=event.cost_usd,
        model=event.model_canonical,
        now=event.ended_at,
    )
    savings = cache.finish(call, done)
    if savings is not None and event.outcome == CACHE_HIT:
        event.response_cache_savings_usd = savings
