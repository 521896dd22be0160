"""aiohttp behind the upstream seam, for what the lean client in ``h1`` does not carry.

That is: uploads streamed as they arrive (files, batches), HEAD, and every call when ``HTTPS_PROXY``
names a forward proxy for the upstream host. aiohttp was chosen over httpx for these by measurement
(README, "Performance"). The session opens on the first such call, so a sidecar that only relays
Messages calls never builds one. This is the one module that imports aiohttp on the proxy's path: its
exceptions are mapped to the sidecar's here, once for the request and once for the body.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from sidecar.errors import InvalidRequest, UpstreamBroken, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from sidecar.proxy.upstream import Headers, RequestBody, UpstreamOptions

# Headers aiohttp would add on its own; a faithful proxy sends only what the client sent.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_FAILURES = (TimeoutError, aiohttp.ClientError, OSError)


def _mapped(exc: BaseException, *, answered: bool) -> UpstreamError:
    """aiohttp's failure in the sidecar's tree; ``answered``: after the answer's headers were in."""
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return UpstreamTimeout()
    return UpstreamBroken() if answered else UpstreamUnavailable()


def _header_str(name: bytes, text: bytes) -> str:
    # aiohttp writes headers as UTF-8 text: bytes that are not UTF-8 would go out altered, so they are
    # refused. The lean client sends header bytes as they are and has no such limit.
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"Header {name.decode('latin-1')!r} is not valid UTF-8.") from None


class AiohttpAnswer:
    __slots__ = ("_resp", "raw_headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.raw_headers = resp.raw_headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except _FAILURES as exc:
            raise _mapped(exc, answered=True) from exc

    def close(self) -> None:
        self._resp.close()


class AiohttpUpstream:
    """One aiohttp session for the process, opened by the first ``send``; ``proxy``: a forward proxy."""

    def __init__(self, options: UpstreamOptions, proxy: str | None, tls: ssl.SSLContext) -> None:
        self.options = options
        self.proxy = proxy
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        """Whether a call has needed the session yet (and it is not closed)."""
        return self._session is not None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.options.pool_size,
            ttl_dns_cache=300,
            keepalive_timeout=self.options.keepalive_s,
            ssl=self._tls,
            enable_cleanup_closed=True,
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.options.connect_timeout_s,
            sock_read=self.options.read_timeout_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO,
            # trust_env would look proxies and netrc up in a thread on every request; the proxy for the
            # one upstream host is resolved once when the client opens instead (HTTPS_PROXY / NO_PROXY).
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def send(self, method: str, target: str, headers: Headers, body: RequestBody) -> AiohttpAnswer:
        if self._closed:
            raise UpstreamUnavailable("The upstream client is closed.")
        session = self._session or self._open()
        # encoded=True: the client's path and query go out byte for byte, never re-quoted.
        url = URL(self.options.base_url + target, encoded=True)
        hdrs = [(_header_str(name, name), _header_str(name, value)) for name, value in headers]
        try:
            resp = await session.request(
                method,
                url,
                headers=hdrs,
                data=body,
                allow_redirects=False,
                proxy=self.proxy,
                compress=None,
                chunked=None,
            )
        except _FAILURES as exc:
            raise _mapped(exc, answered=False) from exc
        except ValueError as exc:  # a line break in a header: aiohttp will not write it
            raise InvalidRequest("A header name or value is not valid in HTTP/1.1.") from exc
        return AiohttpAnswer(resp)

    async def close(self) -> None:
        """Close the session if one was opened; later calls fail as ``UpstreamUnavailable``."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


__all__ = ["AiohttpAnswer", "AiohttpUpstream"]
