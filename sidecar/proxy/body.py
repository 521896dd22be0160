"""The request body of a proxied call: read whole for the calls the sidecar inspects, streamed upstream
for uploads, and held to the route's size limit either way (413 ``request_too_large``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from sidecar.errors import RequestTooLarge, SidecarError
from sidecar.proxy.asgi import ClientGone, Receive, read_body
from sidecar.proxy.context import CallContext
from sidecar.sansio import headers as hdr
from sidecar.sansio.request import CHAT, COMPLETE, COUNT_TOKENS

_BUFFERED_OPS = frozenset({CHAT, COUNT_TOKENS, COMPLETE})


async def request_body(
    receive: Receive, ctx: CallContext, headers: list[tuple[bytes, bytes]], limit: int
) -> bytes | AsyncIterator[bytes] | None:
    """The call's body: read whole (calls the sidecar inspects, and bodiless methods), or a stream
    for uploads; past ``limit`` bytes (declared or read) ``RequestTooLarge``."""
    op, method = ctx.request.op, ctx.request.method
    declared = hdr.get(headers, b"content-length")
    too_large = _too_large(limit)
    if declared is not None:
        digits = declared.strip().lstrip(b"0") or b"0"
        # Compare lengths first: int() of thousands of digits raises (and costs) before any limit.
        if digits.isdigit() and (len(digits) > len(str(limit)) or int(digits) > limit):
            raise too_large()
    if op in _BUFFERED_OPS or method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        body = await read_body(receive, limit, too_large)
        ctx.request_bytes = len(body)
        ctx.body_done = True
        return body
    return _stream_body(receive, ctx, limit)


def _too_large(limit: int) -> Callable[[], SidecarError]:
    def make() -> SidecarError:
        return RequestTooLarge(f"Request exceeds the maximum allowed size of {limit} bytes for this route.")

    return make


async def _stream_body(receive: Receive, ctx: CallContext, limit: int) -> AsyncIterator[bytes]:
    """Uploads (files, batches) go upstream as they arrive; the size limit is still enforced.

    Once the last chunk is read, the disconnect watcher takes over ``receive`` (see ``ProxyHandler._handle``).
    """
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            ctx.client_gone = True
            raise ClientGone()
        chunk = message.get("body", b"")
        ctx.request_bytes += len(chunk)
        if ctx.request_bytes > limit:
            refusal = ctx.response.refusal = RequestTooLarge(
                f"Request exceeds the maximum allowed size of {limit} bytes for this route."
            )
            raise refusal
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            ctx.body_done = True
            if ctx.on_body_done is not None:
                ctx.on_body_done()
            return
