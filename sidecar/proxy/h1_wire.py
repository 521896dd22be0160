"""One upstream connection and its answer, for the lean client in ``h1``.

``H1Connection`` is an asyncio protocol that feeds httptools (llhttp) and turns its callbacks into an
``H1Response``: status and raw header pairs, then body chunks in a buffer the handler drains. Reading
from the upstream pauses while more than ``_HIGH_WATER`` bytes wait for a slow client. The connection
goes back to its owner's pool when an answer completes on a keep-alive connection, and is dropped
otherwise; an answer that breaks off settles with ``UpstreamBroke``. An idle connection the upstream
closes (or writes to) leaves the pool at once, and ``reusable`` checks the socket itself before reuse.
"""

from __future__ import annotations

import asyncio
import math
import select
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol, cast

import httptools

from sidecar.errors import InvalidRequest, SidecarError, UpstreamBroken, UpstreamTimeout, UpstreamUnavailable

_HIGH_WATER = 256 * 1024  # buffered answer bytes before reading from the upstream pauses
_CT = b"content-type"
_KEEP_ALIVE = b"keep-alive"


def keep_alive_timeout(value: bytes) -> float | None:
    """The ``timeout=N`` of a ``Keep-Alive`` response header (seconds the origin keeps an idle
    connection open), or ``None`` when absent or malformed."""
    for part in value.split(b","):
        key, sep, raw = part.partition(b"=")
        if sep and key.strip().lower() == b"timeout":
            try:
                seconds = float(raw.strip().strip(b'"').decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                return None
            return seconds if seconds >= 0 and math.isfinite(seconds) else None
    return None


def _readable(fd: int) -> bool:
    """Whether the socket has something to read (or is broken) right now, without reading it."""
    poller = select.poll()  # not select(): descriptors past FD_SETSIZE are common with big pools
    try:
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class ConnectionOwner(Protocol):
    """The pool a connection reports to."""

    loop: asyncio.AbstractEventLoop

    def release(self, conn: H1Connection) -> None: ...
    def forget(self, conn: H1Connection) -> None: ...


class UpstreamBroke(ConnectionError):
    """The upstream's answer broke off, could not be parsed, or the connection closed first."""


def sidecar_error(exc: Exception, *, answered: bool) -> SidecarError:
    """This client's failure in the sidecar's tree (the one mapping; raise it ``from exc``).

    ``answered``: after the answer's headers were in. ``ValueError`` is a header the client refused
    to write; ``OSError`` anything from connecting to a broken or silent answer.
    """
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout()
    if isinstance(exc, ValueError):
        return InvalidRequest("A header name or value is not valid in HTTP/1.1.")
    return UpstreamBroken() if answered else UpstreamUnavailable()


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

    def __init__(self, conn: H1Connection) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._conn: H1Connection | None = conn
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
        """Body chunks as they arrive; ``UpstreamBroken`` / ``UpstreamTimeout`` if the answer breaks off."""
        try:
            while True:
                chunk = await self._next()
                if not chunk:
                    return
                yield chunk
        except OSError as exc:  # UpstreamBroke or TimeoutError, settled by the connection
            raise sidecar_error(exc, answered=True) from exc

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


class H1Connection(asyncio.Protocol):
    """One keep-alive connection; parses answers with httptools' callbacks (``on_*``)."""

    def __init__(self, pool: ConnectionOwner) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: H1Response | None = None
        self.headers_ready: asyncio.Future[None] | None = None
        self.closed = False
        self.paused = False
        self.expires_at = 0.0  # when an idle connection stops being reused (set by the pool)
        self.keep_alive_hint: float | None = None  # the origin's last ``Keep-Alive: timeout=N``
        self.last_io = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.fd = -1

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")  # under TLS too: the TCP socket beneath
        self.fd = sock.fileno() if sock is not None else -1

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
        if self.response is None:  # idle: closed by the upstream; out of the pool before anyone picks it
            self._detach()
        return False  # close the transport; connection_lost settles any answer

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
        if resp._keep_alive:
            self.keep_alive_hint = None
            for name, value in resp.raw_headers:
                if len(name) == 10 and name.lower() == _KEEP_ALIVE:
                    self.keep_alive_hint = keep_alive_timeout(value)
        else:
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
        else:  # the upstream said close: a clean close, not a reset
            self._detach()
            if self.transport is not None:
                self.transport.close()

    # -- helpers
    @property
    def is_open(self) -> bool:
        """Neither closed nor closing, as far as the loop knows."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def reusable(self) -> bool:
        """Whether this idle connection can carry a request: open, and nothing to read. Bytes or an EOF
        waiting on an idle connection mean the upstream closed it (or talks out of turn), even if the
        loop has not processed them yet; a request written there would be lost."""
        return self.is_open and (self.fd < 0 or not _readable(self.fd))

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
        self._detach()
        if self.transport is not None:
            self.transport.abort()

    def _detach(self) -> None:
        """Out of the pool for good; whoever ends the connection has settled its answer already."""
        self.closed = True
        self.response = None
        self.pool.forget(self)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
