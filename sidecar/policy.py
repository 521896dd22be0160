"""The decisions around each call, in one place: tool-latency matching, cost ceilings, prompt caching.

The proxy calls ``before_forward`` once the request is read (it may refuse or return a new body) and
``after_call`` once the call is over and priced. Both must be fast on the common path.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.tools import ToolLatencyMatcher
from sidecar.proxy.context import CallContext
from sidecar.sansio.request import CHAT

Headers = Sequence[tuple[bytes, bytes]]


class SidecarPolicies:
    def __init__(self, tools: ToolLatencyMatcher) -> None:
        self.tools = tools

    async def before_forward(self, ctx: CallContext, body: bytes, headers: Headers) -> bytes:
        if ctx.op != CHAT or not ctx.session_id:
            return body
        if ctx.info.tool_results:
            matched: list[ToolResult] = self.tools.match(
                ctx.session_id, ctx.info.tool_results, ctx.started_at
            )
            ctx.tool_results = tuple(matched)
        return body

    async def after_call(self, ctx: CallContext, event: CallEvent) -> None:
        event.tool_results = ctx.tool_results
        if event.tool_use_ids and event.session_id:
            self.tools.remember(event.session_id, event.tool_use_ids, event.tool_uses, event.ended_at)

    async def expire(self, now: float, idle_timeout_s: float) -> None:
        self.tools.expire(now, idle_timeout_s)
