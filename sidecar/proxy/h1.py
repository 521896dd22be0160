"""A lean HTTP/1.1 client for the common upstream call: a keep-alive pool to one origin, a byte pump.

aiohttp's client cost ~125 µs of CPU per proxied call here, about a quarter of the sidecar's whole cost
(py-spy, ``bench/``): it builds a request object, cookie and auth state, a multidict of headers, timer
contexts and a parsed response. The proxy needs none of that: it sends header bytes it already has and
relays body bytes. This client writes the request head and body in one write and parses the answer with
httptools (llhttp, the parser uvicorn uses), handing raw header pairs and body chunks to the handler.

Scope (``client.UpstreamClient`` sends everything else through aiohttp): requests with a whole body in memory,
no forward proxy, any method but HEAD. ``Host`` and ``Content-Length`` headers are added the same way as
aiohttp's, at most ``limit`` connections are open (callers wait for one beyond that), and addresses are
cached for ``DNS_TTL_S`` and tried in turn.

Stale keep-alive connections: an origin closes idle connections on its own schedule, and a request
written as that close crosses it is lost. A POST that may have reached the origin is never replayed
(RFC 9110 §9.2.2), so the pool avoids the race instead: an idle connection is reused only within
``keepalive_s`` and within the origin's own ``Keep-Alive: timeout=N`` less a margin (as undici does),
and only if it is still open with nothing to read (an EOF already received or waiting in the socket).
The one retry is for a request that provably never left: a connection found dead before a byte was
written to it. Connecting gives each address an even share of what is left of the connect timeout, so
one dead address cannot use it all; a failed address goes to the back of the cache, and a lookup whose
addresses all failed is forgotten.

Errors: connecting raises ``OSError`` / ``TimeoutError``; an answer that breaks off, cannot be parsed or
goes silent past the read timeout raises ``UpstreamBroke`` (a ``ConnectionError``) or ``TimeoutError``
from ``request`` before the headers. After them the body iterators raise the sidecar's ``UpstreamBroken``
/ ``UpstreamTimeout``, mapped by ``h1_wire.sidecar_error``, which the caller of ``request`` uses too.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

from sidecar.proxy.h1_wire import H1Connection, H1Response, UpstreamBroke, sidecar_error

KEEPALIVE_S = 4.0  # default idle expiry (SIDECAR_UPSTREAM_KEEPALIVE_TIMEOUT; see settings for why 4 s)
HINT_MARGIN_S = 1.0  # reuse stops this long before the origin's Keep-Alive timeout ...
HINT_MIN_SHARE = 0.5  # ... or at half of it, for short ones (timeout=1: 0.5 s, not 0)
DNS_TTL_S = 300.0  # how long resolved addresses are reused (the sidecar configured aiohttp's cache so)
_UNSENT_RETRIES = 2  # fresh connections found closed before the request was written to them


def idle_limit(keepalive_s: float, hint: float | None) -> float:
    """How long an idle connection may be reused: the pool's own limit, shortened to stay clear of the
    origin's announced idle timeout (0: do not reuse it at all)."""
    if hint is None:
        return keepalive_s
    return min(keepalive_s, max(hint - HINT_MARGIN_S, hint * HINT_MIN_SHARE))


class Origin:
    """Where requests go: scheme, host, port, base path, and the ``Host`` header aiohttp would send."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        default = 443 if self.tls else 80
        self.port = parts.port or default
        name = f"[{self.host}]" if ":" in self.host else self.host
        host = name if self.port == default else f"{name}:{self.port}"
        self.host_header = host.encode() if host.isascii() else host.encode("idna")
        self.base_path = parts.path.rstrip("/")


class H1Pool:
    """Keep-alive connections to one origin, most recently used first."""

    def __init__(
        self,
        origin: Origin,
        *,
        limit: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        keepalive_s: float = KEEPALIVE_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = origin
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self.ssl = (ssl_context or ssl.create_default_context()) if origin.tls else None
        self.loop = asyncio.get_running_loop()
        self._idle: list[H1Connection] = []
        self._open: set[H1Connection] = set()
        self._connecting = 0  # connections being opened, counted against the limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._dns: tuple[float, list[tuple[str, int]]] | None = None  # (expiry, addresses)
        self._resolving: asyncio.Future[list[tuple[str, int]]] | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open) + self._connecting

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> H1Response:
        """Send one request; returns once the answer's headers are in (the body follows)."""
        head = self._head(method, target, headers, len(body))
        conn = await self._acquire()
        retries = 0
        while not conn.is_open:  # a new connection closed before a byte was written: another is safe
            conn.abort()
            retries += 1
            if retries > _UNSENT_RETRIES:
                raise UpstreamBroke("the upstream closed new connections before the request was sent")
            conn = await self._acquire()
        resp = H1Response(conn)
        conn.response = resp
        ready = conn.headers_ready = self.loop.create_future()
        conn.last_io = self.loop.time()
        self._arm(conn)
        assert conn.transport is not None
        conn.transport.writelines((head, body))  # one writev under uvloop, the body not copied
        try:
            await ready
        except BaseException:
            resp.close()  # cancelled or failed before the headers: the connection cannot be reused
            raise
        return resp

    def _head(self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], length: int) -> bytes:
        values = b"".join(v for _, v in headers)
        names = b"".join(n for n, _ in headers)
        if b"\r" in values or b"\n" in values or b"\r" in names or b"\n" in names or b":" in names:
            raise ValueError("header names and values must not contain line breaks (names: no colon)")
        lines = [
            f"{method} {self.origin.base_path}{target} HTTP/1.1\r\n".encode("latin-1"),
            b"Host: " + self.origin.host_header + b"\r\n",
        ]
        for name, value in headers:
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"Content-Length: %d\r\n\r\n" % length)
        return b"".join(lines)

    async def _acquire(self) -> H1Connection:
        """The most recently used live idle connection, else a new one; at the limit, wait for either.
        Idle connections are checked here, right before the caller writes to them (no await between)."""
        while True:
            now = self.loop.time()
            while self._idle:
                conn = self._idle.pop()
                if now < conn.expires_at and conn.reusable():
                    return conn
                conn.abort()
            if len(self._open) + self._connecting < self.limit:
                return await self._connect()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    async def _connect(self) -> H1Connection:
        if self._closed:
            raise UpstreamBroke("the upstream client is closed")
        self._connecting += 1  # counted while connecting, so the limit holds
        try:
            conn = await self._connect_to_any(self.loop.time() + self.connect_timeout_s)
        except BaseException:
            self._connecting -= 1
            self._wake_waiter()  # the slot it held is free again
            raise
        self._connecting -= 1
        if self._closed:
            conn.abort()
            raise UpstreamBroke("the upstream client is closed")
        self._open.add(conn)
        return conn

    async def _connect_to_any(self, deadline: float) -> H1Connection:
        """Each resolved address in turn, as aiohttp does, each with an even share of the time left; TLS
        still checks the origin's host name. A fresh protocol per attempt: a timed-out one may have
        seen its transport made and lost."""
        async with asyncio.timeout_at(deadline):
            addresses = await self._addresses()
        error: OSError | None = None
        failed: list[tuple[str, int]] = []
        for i, address in enumerate(addresses):
            share = (deadline - self.loop.time()) / (len(addresses) - i)
            if share <= 0:
                break
            conn = H1Connection(self)
            try:
                async with asyncio.timeout(share):
                    await self.loop.create_connection(
                        lambda: conn,  # noqa: B023 - awaited within this iteration
                        address[0],
                        address[1],
                        ssl=self.ssl,
                        server_hostname=self.origin.host if self.ssl else None,
                    )
            except OSError as exc:  # TimeoutError included
                error = exc
                failed.append(address)
                continue
            self._demote(failed)
            return conn
        self._dns = None  # every address failed: look the name up again next time
        if error is not None:
            raise error
        if not addresses:
            raise OSError(f"no address for {self.origin.host}")
        raise TimeoutError(f"no time left to connect to {self.origin.host}")

    def _demote(self, failed: list[tuple[str, int]]) -> None:
        """Addresses that just failed go to the back of the cache, so new connections try them last."""
        if failed and self._dns is not None:
            expiry, addresses = self._dns
            kept = [a for a in addresses if a not in failed]
            self._dns = (expiry, kept + [a for a in addresses if a in failed])

    async def _addresses(self) -> list[tuple[str, int]]:
        """The origin's addresses, resolved at most once per ``DNS_TTL_S`` (as aiohttp's cache): a burst
        of new connections costs one lookup, not one thread-pool round trip each."""
        if self._dns is not None and self.loop.time() < self._dns[0]:
            return self._dns[1]
        if self._resolving is None:
            self._resolving = asyncio.ensure_future(self._resolve())
        resolving = self._resolving
        try:
            return await asyncio.shield(resolving)
        finally:
            if resolving.done() and self._resolving is resolving:
                self._resolving = None

    async def _resolve(self) -> list[tuple[str, int]]:
        infos = await self.loop.getaddrinfo(self.origin.host, self.origin.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((str(info[4][0]), int(info[4][1])) for info in infos))
        self._dns = (self.loop.time() + DNS_TTL_S, addresses)
        return addresses

    def release(self, conn: H1Connection) -> None:
        """Back to the pool after a complete keep-alive answer, until its idle limit passes."""
        limit = idle_limit(self.keepalive_s, conn.keep_alive_hint)
        if self._closed or conn.closed or limit <= 0:
            conn.abort()  # nothing is in flight on it: an abort loses nothing
            return
        now = self.loop.time()
        conn.expires_at = now + limit
        self._idle.append(conn)
        # The oldest idle connections are the likeliest to be past their limit or closed already.
        while len(self._idle) > 1 and (self._idle[0].closed or self._idle[0].expires_at <= now):
            self._idle.pop(0).abort()
        self._wake_waiter()

    def forget(self, conn: H1Connection) -> None:
        conn.stop_timer()
        if conn in self._open:
            self._open.discard(conn)
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _arm(self, conn: H1Connection) -> None:
        """One timer per answer, pushed back lazily: bytes arriving only update ``last_io``."""
        conn.timer = self.loop.call_at(conn.last_io + self.read_timeout_s, self._check, conn)

    def _check(self, conn: H1Connection) -> None:
        conn.timer = None
        if conn.response is None:
            return
        if conn.paused:  # the client reads slowly; the upstream is not the one being silent
            conn.last_io = self.loop.time()
        due = conn.last_io + self.read_timeout_s
        if self.loop.time() >= due:
            conn.timed_out()
        else:
            conn.timer = self.loop.call_at(due, self._check, conn)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(UpstreamBroke("the upstream client is closed"))
        self._waiters.clear()


__all__ = ["DNS_TTL_S", "KEEPALIVE_S", "H1Pool", "H1Response", "Origin", "UpstreamBroke", "sidecar_error"]
