"""The answer's way back: relay the upstream's bytes to the client while the sans-I/O parsers read a copy.

Event streams go out chunk by chunk as they arrive; other bodies hold back one chunk so the last one
leaves with ``more_body=False``. An upstream that breaks mid-answer gets the same abrupt end relayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter

from sidecar.errors import UpstreamError
from sidecar.proxy.asgi import Send, send_error
from sidecar.proxy.context import CallContext, ProxyDeps
from sidecar.proxy.rewrite import is_batch_object_path, rewrite_results_url
from sidecar.proxy.upstream import UpstreamAnswer
from sidecar.sansio import headers as hdr
from sidecar.sansio.encoding import make_decoder
from sidecar.sansio.messages import parse_message_body
from sidecar.sansio.request import BATCHES, CHAT

log = logging.getLogger("sidecar.proxy")
_MAX_JSON_COPY = 32_000_000  # the parser's copy of a JSON answer; past it, usage is not parsed
_EVENT_STREAMS = (b"text/event-stream", b"application/vnd.amazon.eventstream")


async def relay(deps: ProxyDeps, send: Send, ctx: CallContext, resp: UpstreamAnswer) -> None:
    """Relay the upstream's answer to the client as it arrives, feeding the parsers a copy."""
    timings, response, op = ctx.timings, ctx.response, ctx.request.op
    timings.headers = perf_counter()
    status = response.status = resp.status
    raw_headers = response.headers = resp.raw_headers
    out_headers = hdr.response_headers_for_client(raw_headers)
    tee = ctx.policy.cached  # the response cache keeps a copy of the answer
    if tee is not None and tee.response_header is not None:
        out_headers.append(tee.response_header)
    content_type = hdr.get_ci(raw_headers, b"content-type") or b""
    decoder = make_decoder(hdr.get_ci(raw_headers, b"content-encoding"))
    if op == BATCHES and is_batch_object_path(ctx.request.path) and b"json" in content_type:
        await _relay_rewritten(deps, send, ctx, resp, out_headers, decoder)
        return
    # An event stream the parser reads: Anthropic SSE, or a cloud route's (Bedrock's event stream).
    parser = deps.stream_parser(content_type) if op == CHAT and decoder is not None else None
    if ctx.policy.buffer_answer and parser is None and decoder is not None:
        await _relay_buffered(deps, send, ctx, resp, out_headers, decoder)
        return
    copy: list[bytes] | None = [] if parser is None and op == CHAT and decoder is not None else None
    sse = parser is not None or content_type.startswith(_EVENT_STREAMS)
    # Event streams go out chunk by chunk as they arrive. Other bodies hold back one chunk so the last
    # one leaves with more_body=False: one write fewer per answer, no delay that a client can see.
    held: bytes | None = None
    await send({"type": "http.response.start", "status": status, "headers": out_headers})
    timings.first_byte_out = perf_counter()
    response.parser = parser
    try:
        async for chunk in resp.iter_chunks():
            if parser is not None and decoder is not None:
                p0 = perf_counter()
                piece = decoder(chunk)
                if parser.feed(piece) and timings.first_token is None:
                    timings.first_token = p0
                if tee is not None:
                    tee.feed(piece)
                timings.parse_s += perf_counter() - p0
            elif copy is not None and response.body_bytes + len(chunk) <= _MAX_JSON_COPY:
                copy.append(chunk)
            response.body_bytes += len(chunk)
            if sse:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                if held is not None:
                    await send({"type": "http.response.body", "body": held, "more_body": True})
                held = chunk
    except UpstreamError as exc:
        # The upstream broke mid-answer: relay what came, then end the connection the same abrupt way.
        if held is not None:
            await send({"type": "http.response.body", "body": held, "more_body": True})
        response.fail(exc, relayed=True)
        timings.last_byte = perf_counter()
        return
    timings.last_byte = perf_counter()
    await send({"type": "http.response.body", "body": held or b"", "more_body": False})
    response.complete = True
    if copy is not None and decoder is not None:
        decoded = decoder(b"".join(copy))
        response.summary = parse_message_body(decoded)
        timings.first_token = timings.headers
        if tee is not None:
            tee.feed(decoded)


async def _read(resp: UpstreamAnswer) -> bytes:
    parts = [chunk async for chunk in resp.iter_chunks()]
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _relay_rewritten(
    deps: ProxyDeps,
    send: Send,
    ctx: CallContext,
    resp: UpstreamAnswer,
    out_headers: list[tuple[bytes, bytes]],
    decoder: Callable[[bytes], bytes] | None,
) -> None:
    """A batch object, read whole so its ``results_url`` can point back at the sidecar."""
    try:
        body = await _read(resp)
    except UpstreamError as exc:
        ctx.response.fail(exc)
        await send_error(send, exc, parts=deps.error_parts)
        return
    origins = (deps.upstream_origin, deps.public_url or ctx.request.local_origin)
    body, out_headers = rewrite_results_url(body, out_headers, decoder, origins)
    await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
    ctx.timings.first_byte_out = perf_counter()
    await send({"type": "http.response.body", "body": body, "more_body": False})
    ctx.response.body_bytes = len(body)
    ctx.response.complete = True


async def _relay_buffered(
    deps: ProxyDeps,
    send: Send,
    ctx: CallContext,
    resp: UpstreamAnswer,
    out_headers: list[tuple[bytes, bytes]],
    decoder: Callable[[bytes], bytes],
) -> None:
    """A JSON answer read whole, so headers can say what the call cost (small bodies only)."""
    timings, response = ctx.timings, ctx.response
    try:
        body = await _read(resp)
    except UpstreamError as exc:
        response.fail(exc)
        await send_error(send, exc, parts=deps.error_parts)
        return
    timings.last_byte = perf_counter()
    timings.first_token = timings.headers
    decoded = decoder(body)
    response.summary = parse_message_body(decoded)
    response.body_bytes = len(body)
    if ctx.policy.cached is not None:
        ctx.policy.cached.feed(decoded)
    try:
        out_headers = out_headers + await deps.policies.response_headers(ctx)
    except Exception:
        deps.count_internal_error("policy")
        log.exception("response policy failed; relaying the answer without its headers")
    await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
    timings.first_byte_out = perf_counter()
    await send({"type": "http.response.body", "body": body, "more_body": False})
    response.complete = True
