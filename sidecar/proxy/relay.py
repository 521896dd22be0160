"""The answer's way back: relay the upstream's bytes to the client while the sans-I/O parsers read a copy.

Event streams go out chunk by chunk as they arrive; other bodies hold back one chunk so the last one
leaves with ``more_body=False``. An upstream that breaks mid-answer gets the same abrupt end relayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter

import aiohttp

from sidecar.errors import UpstreamUnavailable
from sidecar.proxy.asgi import Send, send_error
from sidecar.proxy.context import CallContext, ProxyDeps
from sidecar.proxy.rewrite import is_batch_object_path, rewrite_results_url
from sidecar.proxy.upstream import UpstreamAnswer
from sidecar.sansio import headers as hdr
from sidecar.sansio.encoding import make_decoder
from sidecar.sansio.messages import StreamParser, parse_message_body
from sidecar.sansio.request import BATCHES, CHAT

log = logging.getLogger("sidecar.proxy")
_MAX_JSON_COPY = 32_000_000  # the parser's copy of a JSON answer; past it, usage is not parsed


async def relay(deps: ProxyDeps, send: Send, ctx: CallContext, resp: UpstreamAnswer) -> None:
    """Relay the upstream's answer to the client as it arrives, feeding the parsers a copy."""
    ctx.t_headers = perf_counter()
    ctx.status = resp.status
    raw_headers = resp.raw_headers
    ctx.response_headers = raw_headers
    out_headers = hdr.response_headers_for_client(raw_headers)
    tee = ctx.cached  # the response cache keeps a copy of the answer
    if tee is not None and tee.response_header is not None:
        out_headers.append(tee.response_header)
    content_type = resp.content_type
    decoder = make_decoder(hdr.get_ci(raw_headers, b"content-encoding"))
    if ctx.op == BATCHES and is_batch_object_path(ctx.path) and "json" in content_type:
        body = await resp.read()
        origins = (deps.upstream_origin, deps.public_url or ctx.local_origin)
        body, out_headers = rewrite_results_url(body, out_headers, decoder, origins)
        await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
        ctx.t_first_byte_out = perf_counter()
        await send({"type": "http.response.body", "body": body, "more_body": False})
        ctx.response_bytes = len(body)
        ctx.complete = True
        return
    sse = content_type.startswith("text/event-stream") and ctx.op == CHAT
    if ctx.buffer_answer and not sse and decoder is not None:
        await _relay_buffered(deps, send, ctx, resp, out_headers, decoder)
        return
    parser = StreamParser() if sse and decoder is not None else None
    copy: list[bytes] | None = [] if not sse and ctx.op == CHAT and decoder is not None else None
    # Event streams go out chunk by chunk as they arrive. Other bodies hold back one chunk so the last
    # one leaves with more_body=False: one write fewer per answer, no delay that a client can see.
    immediate = content_type.startswith("text/event-stream")
    held: bytes | None = None
    await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
    ctx.t_first_byte_out = perf_counter()
    ctx.parser = parser
    try:
        async for chunk in resp.iter_chunks():
            if parser is not None and decoder is not None:
                p0 = perf_counter()
                piece = decoder(chunk)
                if parser.feed(piece) and ctx.t_first_token is None:
                    ctx.t_first_token = p0
                if tee is not None:
                    tee.feed(piece)
                ctx.parse_s += perf_counter() - p0
            elif copy is not None and ctx.response_bytes + len(chunk) <= _MAX_JSON_COPY:
                copy.append(chunk)
            ctx.response_bytes += len(chunk)
            if immediate:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                if held is not None:
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                held = chunk
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        # The upstream broke mid-answer: relay what came, then end the connection the same abrupt way.
        if held is not None:
            await send({"type": "http.response.body", "body": held, "more_body": True})
        ctx.fail(UpstreamUnavailable(f"upstream stream ended early: {type(exc).__name__}"), relayed=True)
        ctx.t_last_byte = perf_counter()
        return
    ctx.t_last_byte = perf_counter()
    await send({"type": "http.response.body", "body": held or b"", "more_body": False})
    ctx.complete = True
    if copy is not None and decoder is not None:
        decoded = decoder(b"".join(copy))
        ctx.summary = parse_message_body(decoded)
        ctx.t_first_token = ctx.t_headers
        if tee is not None:
            tee.feed(decoded)


async def _relay_buffered(
    deps: ProxyDeps,
    send: Send,
    ctx: CallContext,
    resp: UpstreamAnswer,
    out_headers: list[tuple[bytes, bytes]],
    decoder: Callable[[bytes], bytes],
) -> None:
    """A JSON answer read whole, so headers can say what the call cost (small bodies only)."""
    try:
        body = await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        ctx.fail(UpstreamUnavailable(f"upstream answer ended early: {type(exc).__name__}"))
        await send_error(send, UpstreamUnavailable("The upstream API closed the connection early."))
        return
    ctx.t_last_byte = perf_counter()
    ctx.t_first_token = ctx.t_headers
    decoded = decoder(body)
    ctx.summary = parse_message_body(decoded)
    ctx.response_bytes = len(body)
    if ctx.cached is not None:
        ctx.cached.feed(decoded)
    try:
        out_headers = out_headers + await deps.policies.response_headers(ctx)
    except Exception:
        deps.count_internal_error("policy")
        log.exception("response policy failed; relaying the answer without its headers")
    await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
    ctx.t_first_byte_out = perf_counter()
    await send({"type": "http.response.body", "body": body, "more_body": False})
    ctx.complete = True
