"""A lean HTTP/1.1 client for the common upstream call: a keep-alive pool to one origin, a byte pump.

aiohttp's client cost ~125 µs of CPU per proxied call here, about a quarter of the sidecar's whole cost
(py-spy, ``bench/``): it builds a request object, cookie and auth state, a multidict of headers, timer
contexts and a parsed response. The proxy needs none of that: it sends header bytes it already has and
relays body bytes. This client writes the request head and body in one write and parses the answer with
httptools (llhttp, the parser uvicorn uses), handing raw header pairs and body chunks to the handler.

Scope (``UpstreamClient`` sends everything else through aiohttp): requests with a whole body in memory,
no forward proxy, any method but HEAD. Behaviour kept from aiohttp: ``Host`` and ``Content-Length``
headers added the same way, idle connections closed after ``KEEPALIVE_S``, at most ``limit`` connections
(callers wait for one beyond that), a read timeout between bytes, no retries (a POST is never replayed).

Errors: connecting raises ``OSError`` / ``TimeoutError``; an answer that breaks off, cannot be parsed or
goes silent past the read timeout raises ``UpstreamBroke`` (a ``ConnectionError``) or ``TimeoutError``,
before the headers from ``request`` and after them from the body iterators.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools

KEEPALIVE_S = 15.0  # aiohttp's default idle keep-alive; upstreams close idle connections on their own
_HIGH_WATER = 256 * 1024  # buffered answer bytes before reading from the upstream pauses
_CT = b"content-type"


class UpstreamBroke(ConnectionError):
    """The upstream's answer broke off, could not be parsed, or the connection closed first."""


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


class H1Response:
    """One answer: status and raw headers once ``request`` returns, then the body as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_done",
        "_eof_body",
        "_error",
        "_keep_alive",
        "_waiter",
        "raw_headers",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._conn: _Connection | None = conn
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None
        self._keep_alive = False
        self._eof_body = False  # neither length nor chunked: the body ends when the connection does

    @property
    def content_type(self) -> str:
        for name, value in self.raw_headers:
            if len(name) == 12 and name.lower() == _CT:
                return value.decode("latin-1")
        return ""

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; raises ``UpstreamBroke`` / ``TimeoutError`` if the answer breaks."""
        while True:
            chunk = await self._next()
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.iter_chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Done with the answer: an unfinished one takes its connection down with it (never reused)."""
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.abort()

    async def _next(self) -> bytes:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                conn = self._conn
                if conn is not None and conn.paused and self._buffered < _HIGH_WATER // 2:
                    conn.resume()
                return chunk
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if not self._done and self._error is None:
            self._error = exc
            self._wake()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses answers with httptools' callbacks (``on_*``)."""

    def __init__(self, pool: H1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: H1Response | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.last_io = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # nothing asked: an upstream talking out of turn cannot be trusted
            self.abort()
            return
        self.last_io = self.pool.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._broke(UpstreamBroke(f"the upstream sent an invalid HTTP answer: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        resp = self.response
        if resp is None:
            return
        if resp._eof_body and self.headers_ready is None:  # a body delimited by the connection's end
            self.response, resp._conn = None, None
            resp._finish()
        else:
            self._broke(UpstreamBroke("the upstream closed the connection before its answer was complete"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        resp = self.response
        if resp is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim answer (none is asked for): the real one follows
            resp.raw_headers.clear()
            return
        resp.status = status
        resp._keep_alive = self.parser.should_keep_alive()
        if not resp._keep_alive:
            resp._eof_body = not any(
                n.lower() in (b"content-length", b"transfer-encoding") for n, _ in resp.raw_headers
            )
        ready, self.headers_ready = self.headers_ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        resp = self.response
        if resp is None or resp.status == 0:  # the end of an interim answer
            return
        self.response = None
        self.stop_timer()
        resp._conn = None
        resp._finish()
        if resp._keep_alive:
            self.resume()  # paused for this answer's buffer, which no longer needs the connection
            self.pool.release(self)
        else:
            self.abort()

    # -- helpers
    def _broke(self, exc: BaseException) -> None:
        ready, self.headers_ready = self.headers_ready, None
        if ready is not None and not ready.done():
            ready.set_exception(exc)
        resp, self.response = self.response, None
        if resp is not None:
            resp._fail(exc)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def timed_out(self) -> None:
        self._broke(TimeoutError("the upstream sent nothing within the read timeout"))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        self.response = None  # whoever aborts has settled the answer already
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()


class H1Pool:
    """Keep-alive connections to one origin, most recently used first."""

    def __init__(
        self,
        origin: Origin,
        *,
        limit: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = origin
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.ssl = (ssl_context or ssl.create_default_context()) if origin.tls else None
        self.loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> H1Response:
        """Send one request; returns once the answer's headers are in (the body follows)."""
        head = self._head(method, target, headers, len(body))
        conn = await self._acquire()
        resp = H1Response(conn)
        conn.response = resp
        ready = conn.headers_ready = self.loop.create_future()
        conn.last_io = self.loop.time()
        self._arm(conn)
        assert conn.transport is not None
        conn.transport.write(head + body if len(body) <= 65536 else head)
        if len(body) > 65536:
            conn.transport.write(body)
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
            raise ValueError("header names and values must not contain line breaks")
        lines = [
            f"{method} {self.origin.base_path}{target} HTTP/1.1\r\n".encode("latin-1"),
            b"Host: " + self.origin.host_header + b"\r\n",
        ]
        for name, value in headers:
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"Content-Length: %d\r\n\r\n" % length)
        return b"".join(lines)

    async def _acquire(self) -> _Connection:
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > KEEPALIVE_S:
                conn.abort()
                continue
            return conn
        while len(self._open) >= self.limit:
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
            if self._idle:
                return await self._acquire()
        return await self._connect()

    async def _connect(self) -> _Connection:
        if self._closed:
            raise UpstreamBroke("the upstream client is closed")
        conn = _Connection(self)
        self._open.add(conn)  # counted while connecting, so the limit holds
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: conn,
                    self.origin.host,
                    self.origin.port,
                    ssl=self.ssl,
                    server_hostname=self.origin.host if self.ssl else None,
                ),
                self.connect_timeout_s,
            )
        except BaseException:
            self.forget(conn)
            raise
        return conn

    def release(self, conn: _Connection) -> None:
        if self._closed or conn.closed:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        # The oldest idle connection is the likeliest to have been closed by the upstream already.
        if len(self._idle) > 1 and conn.idle_since - self._idle[0].idle_since > KEEPALIVE_S:
            self._idle.pop(0).abort()
        self._wake_waiter()

    def forget(self, conn: _Connection) -> None:
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

    def _arm(self, conn: _Connection) -> None:
        """One timer per answer, pushed back lazily: bytes arriving only update ``last_io``."""
        conn.timer = self.loop.call_at(conn.last_io + self.read_timeout_s, self._check, conn)

    def _check(self, conn: _Connection) -> None:
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
