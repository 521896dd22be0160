"""The one seam to the upstream API: two pooled clients behind one ``send``, and the mapping of errors.

Calls with a whole body in memory and no forward proxy (every Messages call) go through the lean
keep-alive client in ``h1``; the rest (uploads streamed as they arrive, ``HTTPS_PROXY``, HEAD) through
aiohttp, which was chosen over httpx by measurement (README, "Performance"). Both hand back raw
response header bytes, so nothing is re-encoded on the way back, as an ``UpstreamAnswer``.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from sidecar.errors import InvalidRequest, UpstreamTimeout, UpstreamUnavailable
from sidecar.proxy.h1 import H1Pool, Origin

# Headers aiohttp would add on its own; a faithful proxy sends only what the client sent.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class UpstreamOptions:
    base_url: str
    read_timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    pool_size: int = 1000
    keepalive_s: float = 4.0  # idle connections are not reused past this (SIDECAR_UPSTREAM_KEEPALIVE_TIMEOUT)


def _header_str(value: bytes) -> str:
    # aiohttp writes header values as UTF-8: decoding as UTF-8 gives back the very same bytes. The
    # handler refuses values that are not UTF-8 before they get here.
    return value.decode("utf-8", "replace")


class UpstreamAnswer(Protocol):
    """An answer whose headers are in and whose body is unread."""

    @property
    def status(self) -> int: ...
    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]: ...
    @property
    def content_type(self) -> str: ...
    def iter_chunks(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    def close(self) -> None: ...


class _AiohttpAnswer:
    __slots__ = ("_resp", "raw_headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.raw_headers = resp.raw_headers

    @property
    def content_type(self) -> str:
        return self._resp.headers.get("content-type", "")

    def iter_chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    async def read(self) -> bytes:
        return await self._resp.read()

    def close(self) -> None:
        self._resp.close()


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Map transport failures to the sidecar's error tree (one place, ``raise … from``)."""
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout("The upstream API did not answer in time.") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable("The upstream API could not be reached.") from exc
    except OSError as exc:
        raise UpstreamUnavailable("The upstream API could not be reached.") from exc


def upstream_proxy(base_url: str) -> str | None:
    """The proxy for the upstream host from the standard environment (``HTTPS_PROXY``, ``NO_PROXY``)."""
    parts = urlsplit(base_url)
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - missing from typeshed
    if parts.hostname and bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


class UpstreamClient:
    """Opens the pools for the process; ``send`` returns an answer whose body is unread."""

    def __init__(self, options: UpstreamOptions) -> None:
        self.options = options
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._lean: H1Pool | None = None

    async def open(self) -> None:
        self._proxy = upstream_proxy(self.options.base_url)
        tls = ssl.create_default_context()
        if self._proxy is None:
            self._lean = H1Pool(
                Origin(self.options.base_url),
                limit=self.options.pool_size,
                connect_timeout_s=self.options.connect_timeout_s,
                read_timeout_s=self.options.read_timeout_s,
                keepalive_s=self.options.keepalive_s,
                ssl_context=tls,
            )
        connector = aiohttp.TCPConnector(
            limit=self.options.pool_size,
            ttl_dns_cache=300,
            keepalive_timeout=self.options.keepalive_s,
            ssl=tls,
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
            # one upstream host is resolved once in open() instead (HTTPS_PROXY / NO_PROXY honoured).
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
            self._lean = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        raw_path_qs: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> UpstreamAnswer:
        """Send a request; the path is appended to the configured base URL, never replacing its host."""
        if self._session is None:
            raise UpstreamUnavailable("The upstream client is not open.")
        if self._lean is not None and isinstance(body, bytes) and method != "HEAD":
            with mapped_errors():
                try:
                    return await self._lean.request(method, raw_path_qs, headers, body)
                except ValueError:
                    raise InvalidRequest("A header name or value is not valid in HTTP/1.1.") from None
        # encoded=True: the client's path and query go out byte for byte, never re-quoted.
        url = URL(self.options.base_url + raw_path_qs, encoded=True)
        hdrs = [(_header_str(n), _header_str(v)) for n, v in headers]
        with mapped_errors():
            resp = await self._session.request(
                method,
                url,
                headers=hdrs,
                data=body,
                allow_redirects=False,
                proxy=self._proxy,
                compress=None,
                chunked=None,
            )
        return _AiohttpAnswer(resp)
