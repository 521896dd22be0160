"""The hot path: a pure-ASGI handler that forwards one ``/v1/*`` call and observes a copy of it.

Data flow: read + inspect the request (pure) → decide (policies) → forward (I/O) → pump bytes to the
client while a sans-I/O parser reads a copy → build the event exactly once in ``finally`` → recorder.
Nothing here may make a call fail that would succeed without the sidecar: policy and accounting
failures are logged and counted, and the bytes keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from functools import partial
from time import perf_counter
from types import MappingProxyType
from typing import Any

from sidecar.core import events as outcomes
from sidecar.core.events import CallEvent, new_event_id
from sidecar.errors import InternalError, SidecarError, Unauthorized, UpstreamError
from sidecar.proxy.asgi import DISCONNECT_HOOK, ClientGone, Receive, Scope, Send, send_error
from sidecar.proxy.body import request_body
from sidecar.proxy.context import UNPARSED, CallContext, CallRequest, ProxyDeps, Timings
from sidecar.proxy.provider import CloudCall
from sidecar.proxy.relay import relay
from sidecar.proxy.replay import send_cached
from sidecar.sansio import headers as hdr
from sidecar.sansio.identity import resolve_agents, resolve_app, resolve_session
from sidecar.sansio.request import (
    BATCHES,
    CHAT,
    COUNT_TOKENS,
    FILES,
    classify_path,
    inspect_doc,
    parse_object,
)
from sidecar.sansio.traceparent import new_ref

log = logging.getLogger("sidecar.proxy")

_NO_EXTENSIONS: Mapping[str, Any] = MappingProxyType({})


class ProxyHandler:
    """ASGI callable for every ``/v1/*`` request."""

    def __init__(self, deps: ProxyDeps) -> None:
        self.deps = deps
        s = deps.settings
        self._limits = {
            CHAT: s.max_body_messages,
            COUNT_TOKENS: s.max_body_messages,
            BATCHES: s.max_body_batches,
            FILES: s.max_body_files,
        }
        self._session_header = s.session_header.encode()
        self._app_header = s.app_header.encode()
        self._client_tokens = frozenset(t.encode() for t in s.client_tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = perf_counter()
        op = classify_path(scope["path"])
        request = self._call_request(scope, op, query=scope.get("query_string", b""))
        await self._run(scope, receive, send, CallContext(request, Timings(t0)))

    def _call_request(
        self, scope: Scope, op: str, *, query: bytes = b"", cloud: CloudCall | None = None
    ) -> CallRequest:
        server = scope.get("server")
        return CallRequest(
            op=op,
            method=scope["method"],
            path=scope["path"],
            app=resolve_app(scope["headers"], self._app_header),
            started_at=time.time(),
            local_origin=f"http://{server[0]}:{server[1]}" if server else "",
            query=query,
            cloud=cloud,
        )

    async def _run(self, scope: Scope, receive: Receive, send: Send, ctx: CallContext) -> None:
        """Handle the call, then record it exactly once, whatever happened."""
        try:
            await self._handle(scope, receive, send, ctx, scope["headers"])
        except Exception:  # a bug, not a failure the call can have: answer (or end) it, then record it
            await self._crashed(send, ctx)
        finally:
            await self._finish(ctx)

    async def _crashed(self, send: Send, ctx: CallContext) -> None:
        """Answer 500 ``api_error`` if no response header was sent yet; otherwise end the stream the same
        abrupt way as an upstream reset (returning with the response unfinished closes the connection)."""
        self.deps.count_internal_error("proxy")
        log.exception("unexpected error in the proxy; the call ends with a sidecar error")
        response, timings = ctx.response, ctx.timings
        response.outcome = outcomes.SIDECAR_ERROR
        if timings.first_byte_out is not None:
            response.error_type = "stream_interrupted"
            timings.last_byte = timings.last_byte or perf_counter()
            return
        error = InternalError("The sidecar failed to handle the request.")
        response.status, response.error_type = error.status, error.error_type
        # If the failure was in sending the response head itself, this fails too and the server closes
        # the connection of the unfinished response: an abrupt end either way.
        with contextlib.suppress(Exception):
            await send_error(send, error, parts=self.deps.error_parts)

    # -- request side -------------------------------------------------------------------------

    def _check_client_auth(self, headers: list[tuple[bytes, bytes]]) -> None:
        if self.deps.settings.upstream_api_key:
            self._require_client_token(headers)

    def _require_client_token(self, headers: list[tuple[bytes, bytes]]) -> None:
        """One of the configured client tokens, as ``x-api-key`` or a bearer ``Authorization``."""
        token = hdr.get(headers, b"x-api-key")
        if token is None:
            auth = hdr.get(headers, b"authorization") or b""
            token = auth[7:].strip() if auth[:7].lower() == b"bearer " else None
        if token is None or token not in self._client_tokens:
            raise Unauthorized("Invalid sidecar client token.")

    def _upstream_headers(
        self, headers: list[tuple[bytes, bytes]], ctx: CallContext
    ) -> list[tuple[bytes, bytes]]:
        out = hdr.request_headers_for_upstream(headers)
        if self.deps.tracing:
            ctx.trace = new_ref(hdr.get(headers, b"traceparent"))
            out = [(n, v) for n, v in out if n != b"traceparent"]
            out.append((b"traceparent", ctx.trace.header()))
        key = self.deps.settings.upstream_api_key
        if key:
            out = [(n, v) for n, v in out if n not in (b"x-api-key", b"authorization")]
            out.append((b"x-api-key", key.encode()))
        for name, value in ctx.policy.upstream_header_overrides:
            out = [(n, v) for n, v in out if n != name]
            out.append((name, value))
        return out

    async def _request_body(
        self, receive: Receive, ctx: CallContext, headers: list[tuple[bytes, bytes]]
    ) -> bytes | AsyncIterator[bytes] | None:
        limit = self._limits.get(ctx.request.op, self.deps.settings.max_body_default)
        return await request_body(receive, ctx, headers, limit)

    def _inspect(self, ctx: CallContext, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        op = ctx.request.op
        doc = parse_object(body) if op in (CHAT, COUNT_TOKENS) else None
        info = inspect_doc(doc) if doc is not None else UNPARSED
        ctx.info = info
        ctx.doc = doc if op == CHAT else None  # parsed once; the prompt-cache planner reads it too
        caller = ctx.caller
        caller.session_id, caller.session_source = resolve_session(headers, info, self._session_header)
        caller.agent_id, caller.parent_agent_id = resolve_agents(headers)
        retry = hdr.get(headers, b"x-stainless-retry-count")
        # SDKs send small numbers; anything else is not a retry count (and must not overflow a column).
        caller.retry_count = int(retry) if retry is not None and retry.isdigit() and len(retry) <= 4 else 0
        caller.key_fingerprint = self.deps.fingerprint_key(headers)

    # -- the call --------------------------------------------------------------------------------

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, ctx: CallContext, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            self._check_client_auth(headers)
            body = await self._request_body(receive, ctx, headers)
            if isinstance(body, bytes):
                self._inspect(ctx, body, headers)
                body = await self.deps.policies.before_forward(ctx, body, headers)
                cached = ctx.policy.cached
                if cached is not None and cached.answer is not None:
                    await send_cached(send, ctx, cached.answer)  # the response cache answers
                    return
            else:
                ctx.caller.key_fingerprint = self.deps.fingerprint_key(headers)
            upstream_headers = self._upstream_headers(headers, ctx)
        except ClientGone:
            ctx.response.outcome = outcomes.CLIENT_DISCONNECTED
            ctx.recordable = False
            return
        except SidecarError as exc:
            ctx.response.refuse(exc)
            await send_error(send, exc, parts=self.deps.error_parts)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        qs = ctx.request.query
        target = raw_path.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")
        task = asyncio.current_task()
        watchers: list[asyncio.Future[None]] = []
        hook = (scope.get("extensions") or _NO_EXTENSIONS).get(DISCONNECT_HOOK)

        def watch() -> None:
            if hook is not None:  # the sidecar's own server tells: no task parked in receive() per call
                hook.callback = partial(self._client_left, ctx, task)
            else:
                watchers.append(asyncio.ensure_future(self._watch_disconnect(receive, ctx, task)))

        if ctx.body_done:
            watch()
        else:
            ctx.on_body_done = watch  # a streamed upload: watch once its last chunk is read
        try:
            await self._forward(send, ctx, target, upstream_headers, body)
        except asyncio.CancelledError:
            if not ctx.client_gone or task is None:
                raise
            task.uncancel()
            ctx.response.outcome = outcomes.CLIENT_DISCONNECTED
            timings = ctx.timings
            timings.last_byte = timings.last_byte or perf_counter()  # the call ran until the client left
        finally:
            ctx.done = True
            if hook is not None:
                hook.callback = None
            for watcher in watchers:
                watcher.cancel()

    async def _watch_disconnect(
        self, receive: Receive, ctx: CallContext, task: asyncio.Task[None] | None
    ) -> None:
        """Cancel the call promptly when the client goes away (uvicorn's send() is silent about it)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        self._client_left(ctx, task)

    @staticmethod
    def _client_left(ctx: CallContext, task: asyncio.Task[None] | None) -> None:
        if not ctx.done and task is not None:
            ctx.client_gone = True
            task.cancel()

    async def _forward(
        self,
        send: Send,
        ctx: CallContext,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> None:
        ctx.timings.sent = perf_counter()
        try:
            resp = await self.deps.upstream.send(ctx.request.method, target, headers, body)
        except SidecarError as exc:
            response = ctx.response
            if ctx.client_gone:  # the client left mid-upload: nobody to answer
                response.outcome = outcomes.CLIENT_DISCONNECTED
                ctx.timings.last_byte = perf_counter()
                return
            # An upload past its limit is refused as such, whatever the transport made of the error.
            error = response.refusal or exc
            if isinstance(error, UpstreamError):
                response.fail(error)
            else:  # the sidecar's own refusal: too large, or headers the client cannot send
                response.refuse(error)
            await send_error(send, error, parts=self.deps.error_parts)
            return
        try:
            await relay(self.deps, send, ctx, resp)
        finally:
            resp.close()

    # -- accounting --------------------------------------------------------------------------------

    async def _finish(self, ctx: CallContext) -> None:
        """Build and submit the event exactly once. Never raises: accounting must not fail a call."""
        if not ctx.recordable:
            return
        event: CallEvent | None = None
        try:
            event = ctx.to_event(new_event_id())
            self.deps.price(event)
            await self.deps.policies.after_call(ctx, event)
            if ctx.response.headers:
                self.deps.observe_response_headers(ctx.request.app, ctx.response.headers)
        except Exception:
            self.deps.count_internal_error("accounting")
            log.exception("accounting failed for a call; the request itself was not affected")
        try:
            if event is not None:  # recorded as far as it got (unpriced, say) rather than lost
                event.overhead_s = ctx.timings.overhead(perf_counter())
                self.deps.submit(event)
        finally:
            if ctx.policy.cached is not None:
                ctx.policy.cached.close()  # frees identical calls waiting on this one


__all__ = ["CallEvent", "ProxyHandler"]
