"""The cloud routes (SPEC §18): ``/bedrock/…`` and ``/vertex/…``, each served by its provider.

The same hot path as ``/v1/*`` (``ProxyHandler``): inspect, decide (sessions, tools, budgets, prompt
cache), forward, relay while a sans-I/O parser reads a copy, record one event. What differs is asked of
the provider (``CloudProvider``): the call's address comes from its path (the model too: the body has
none), the client's credentials are swapped for the sidecar's after the last edit of the body — the
exact bytes that are signed are the bytes sent — the upstream is the route's origin, answers are read
by the provider's parser, and the sidecar's own errors take the provider's shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from time import perf_counter

from sidecar.core import events as outcomes
from sidecar.core.cloud import INFERENCE_PROFILES
from sidecar.errors import NotFound, SidecarError, UpstreamError
from sidecar.proxy.asgi import ASGIApp, ErrorParts, Receive, Scope, Send, send_bytes, send_error
from sidecar.proxy.context import CallContext, ProxyDeps, Timings
from sidecar.proxy.handler import ProxyHandler
from sidecar.proxy.origins import Origins
from sidecar.proxy.provider import CloudCall, CloudProvider
from sidecar.proxy.relay import relay

Headers = list[tuple[bytes, bytes]]


class CloudHandler(ProxyHandler):
    """ASGI callable for one provider's prefix (the router dispatches ``/bedrock/…``, ``/vertex/…``)."""

    def __init__(self, deps: ProxyDeps, provider: CloudProvider, origins: Origins) -> None:
        deps = dataclasses.replace(
            deps, error_parts=provider.error_parts, stream_parser=provider.stream_parser
        )
        super().__init__(deps)
        self.provider = provider
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = perf_counter()
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            route = self.provider.route(scope["method"], raw_path, query)
            if route.op == INFERENCE_PROFILES:
                answer = self.provider.local_answer(route, query)
                length = str(len(answer)).encode()
                json_type = (b"content-type", b"application/json")
                await send_bytes(send, 200, [json_type, (b"content-length", length)], answer)
                return
        except SidecarError as exc:  # not a call: an address no provider route serves
            await send_error(send, exc, parts=self.deps.error_parts)
            return
        request = self._call_request(scope, route.op, cloud=CloudCall(self.provider, route))
        await self._run(scope, receive, send, CallContext(request, Timings(t0)))

    def _check_client_auth(self, headers: Headers) -> None:
        """The sidecar holds the cloud credentials: with client tokens configured, callers need one."""
        if self._client_tokens:
            self._require_client_token(headers)

    def _inspect(self, ctx: CallContext, body: bytes, headers: Headers) -> None:
        cloud = ctx.request.cloud
        assert cloud is not None
        route = cloud.route
        inner = self.provider.messages_body(route, body)
        super()._inspect(ctx, inner if inner is not None else b"", headers)
        if inner is not body:
            ctx.doc = None  # a wrapped body (CountTokens) is never edited
        # The model is in the path (Vertex's count-tokens: in the body); a streamed route says so itself.
        info = ctx.info
        model, stream = route.model or info.model, route.stream or info.stream
        ctx.info = dataclasses.replace(info, model=model, stream=stream)
        credential = self.provider.client_credential(headers)
        fingerprint = self.deps.fingerprint_key([(b"x-api-key", credential)]) if credential else None
        ctx.caller.key_fingerprint = fingerprint

    async def _forward(
        self,
        send: Send,
        ctx: CallContext,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes] | None,
    ) -> None:
        cloud = ctx.request.cloud
        assert cloud is not None and isinstance(body, bytes)  # every cloud route reads its body whole
        route, response = cloud.route, ctx.response
        try:
            signed = await self.provider.authorize(route, headers, body)
            upstream = await self.origins.get(route.origin)
        except SidecarError as exc:  # no credentials (or too many hosts): nothing was sent
            response.refuse(exc)
            await send_error(send, exc, parts=self.deps.error_parts)
            return
        ctx.timings.sent = perf_counter()
        try:
            resp = await upstream.send(ctx.request.method, route.target, signed, body)
        except SidecarError as exc:
            if ctx.client_gone:
                response.outcome = outcomes.CLIENT_DISCONNECTED
                ctx.timings.last_byte = perf_counter()
                return
            if isinstance(exc, UpstreamError):
                response.fail(exc)
            else:  # headers the upstream client cannot send
                response.refuse(exc)
            await send_error(send, exc, parts=self.deps.error_parts)
            return
        try:
            await relay(self.deps, send, ctx, resp)
        finally:
            resp.close()


def not_configured(provider: str, error_parts: ErrorParts, hint: str) -> ASGIApp:
    """The answer of a provider prefix that is not set up: 404 in the provider's shape, naming the fix."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send_error(send, NotFound(f"{provider} is not configured: {hint}."), parts=error_parts)

    return app


__all__ = ["CloudHandler", "not_configured"]
