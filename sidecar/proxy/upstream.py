"""The one seam to the upstream API: a pooled aiohttp client and the mapping of its errors.

aiohttp was chosen over httpx by measurement (see README, "Performance"): it costs less CPU per
request and hands back raw response header bytes, so nothing is re-encoded on the way back.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from sidecar.errors import UpstreamTimeout, UpstreamUnavailable

# Headers aiohttp would add on its own; a faithful proxy sends only what the client sent.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class UpstreamOptions:
    base_url: str
    read_timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    pool_size: int = 1000


def _header_str(value: bytes) -> str:
    # aiohttp writes header values as UTF-8: decoding as UTF-8 gives back the very same bytes. The
    # handler refuses values that are not UTF-8 before they get here.
    return value.decode("utf-8", "replace")


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
    """Opens one pooled session for the process; ``send`` returns a response whose body is unread."""

    def __init__(self, options: UpstreamOptions) -> None:
        self.options = options
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None

    async def open(self) -> None:
        self._proxy = upstream_proxy(self.options.base_url)
        connector = aiohttp.TCPConnector(
            limit=self.options.pool_size,
            ttl_dns_cache=300,
            ssl=ssl.create_default_context(),
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
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        raw_path_qs: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> aiohttp.ClientResponse:
        """Send a request; the path is appended to the configured base URL, never replacing its host."""
        if self._session is None:
            raise UpstreamUnavailable("The upstream client is not open.")
        # encoded=True: the client's path and query go out byte for byte, never re-quoted.
        url = URL(self.options.base_url + raw_path_qs, encoded=True)
        hdrs = [(_header_str(n), _header_str(v)) for n, v in headers]
        with mapped_errors():
            return await self._session.request(
                method,
                url,
                headers=hdrs,
                data=body,
                allow_redirects=False,
                proxy=self._proxy,
                compress=None,
                chunked=None,
            )
