"""A hit of the response cache (SPEC R-RC-3): the stored answer goes to the client instead of a call."""

from __future__ import annotations

from time import perf_counter

from sidecar.core import events as outcomes
from sidecar.proxy.asgi import Send
from sidecar.proxy.context import CachedAnswer, CallContext

_SLICE = 1 << 16  # a long stored stream goes out in pieces the server can write without copying it all


async def send_cached(send: Send, ctx: CallContext, answer: CachedAnswer) -> None:
    """Send ``answer`` and record the call as a ``cache_hit``: no upstream call, no usage."""
    response, timings = ctx.response, ctx.timings
    response.status, response.outcome, response.summary = answer.status, outcomes.CACHE_HIT, answer.summary
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    timings.first_byte_out = perf_counter()
    body = answer.body
    for start in range(0, max(len(body), 1), _SLICE):
        piece = body[start : start + _SLICE]
        await send({"type": "http.response.body", "body": piece, "more_body": start + _SLICE < len(body)})
    response.body_bytes = len(body)
    timings.last_byte = perf_counter()
    response.complete = True
