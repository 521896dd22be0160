"""The upstream client the app wires behind the seam: two transports, one ``send``.

Calls with a whole body in memory and no forward proxy (every Messages call) go through the lean
keep-alive client in ``h1``; the rest (uploads streamed as they arrive, ``HTTPS_PROXY``, HEAD) through
``aiohttp_client``, whose session opens only when such a call comes. Both hand back raw response header
bytes, so nothing is re-encoded on the way back, and both raise only the sidecar's errors.
"""

from __future__ import annotations

import ssl

from sidecar.errors import UpstreamUnavailable
from sidecar.proxy.aiohttp_client import AiohttpUpstream
from sidecar.proxy.h1 import H1Pool, Origin, sidecar_error
from sidecar.proxy.upstream import Headers, RequestBody, UpstreamAnswer, UpstreamOptions, upstream_proxy


class UpstreamClient:
    """Implements ``upstream.Upstream``. ``open`` resolves the forward proxy and sets the lean pool up
    (no connection is made before the first call); ``close`` closes what was opened."""

    def __init__(self, options: UpstreamOptions) -> None:
        self.options = options
        self._lean: H1Pool | None = None
        self._fallback: AiohttpUpstream | None = None

    @property
    def fallback(self) -> AiohttpUpstream | None:
        """The aiohttp client once open (its session opens on the first call it carries)."""
        return self._fallback

    async def open(self) -> None:
        proxy = upstream_proxy(self.options.base_url)
        tls = ssl.create_default_context()
        if proxy is None:
            self._lean = H1Pool(
                Origin(self.options.base_url),
                limit=self.options.pool_size,
                connect_timeout_s=self.options.connect_timeout_s,
                read_timeout_s=self.options.read_timeout_s,
                keepalive_s=self.options.keepalive_s,
                ssl_context=tls,
            )
        self._fallback = AiohttpUpstream(self.options, proxy, tls)

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
            self._lean = None
        if self._fallback is not None:
            await self._fallback.close()

    async def send(self, method: str, target: str, headers: Headers, body: RequestBody) -> UpstreamAnswer:
        """Send a request; the path is appended to the configured base URL, never replacing its host."""
        lean = self._lean
        if lean is not None and isinstance(body, bytes) and method != "HEAD":
            try:
                return await lean.request(method, target, headers, body)
            except (OSError, ValueError) as exc:
                raise sidecar_error(exc, answered=False) from exc
        if self._fallback is None:
            raise UpstreamUnavailable("The upstream client is not open.")
        return await self._fallback.send(method, target, headers, body)


__all__ = ["UpstreamClient"]
