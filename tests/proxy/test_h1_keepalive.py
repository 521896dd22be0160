"""Stale keep-alive connections in the lean upstream client: origins that close idle connections.

The origin here is a plain threaded HTTP/1.1 server on 127.0.0.1 that answers each request with its
``x-request-id`` and, like real servers, closes a connection idle for its keep-alive timeout. A POST is
never replayed, so the only acceptable outcome is that the pool never writes to a connection the origin
is closing: no failed call, and every request id seen exactly once by the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from sidecar.errors import ConfigError
from sidecar.proxy.h1 import H1Pool, Origin, idle_limit
from sidecar.proxy.h1_wire import keep_alive_timeout
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import load_settings
from tests.conftest import require_service
from tests.waiting import wait_until_async


class IdleClosingOrigin:
    """One thread per connection. With ``idle_s`` it announces ``Keep-Alive: timeout=<idle_s>`` and
    holds to it: a connection that waits that long for its next request is closed."""

    def __init__(self, idle_s: float | None = None) -> None:
        self.idle_s = idle_s
        self.ids: list[str] = []  # request ids in arrival order
        self.connections = 0
        self._idle: set[socket.socket] = set()  # connections waiting for their next request
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        self.drop_idle()

    def drop_idle(self) -> int:
        """Close every idle connection now (FIN sent before this returns); how many were closed."""
        with self._lock:
            idle, self._idle = self._idle, set()
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(idle)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.idle_s)
        buffer = b""
        with self._lock:
            self._idle.add(conn)
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)  # the idle timeout: socket.timeout, an OSError
                    if not data:
                        return
                    with self._lock:
                        self._idle.discard(conn)
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
                fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
                while len(buffer) < int(fields.get(b"content-length", b"0")):
                    buffer += conn.recv(65536)
                buffer = buffer[int(fields.get(b"content-length", b"0")) :]
                rid = fields.get(b"x-request-id", b"")
                with self._lock:
                    self.ids.append(rid.decode())
                    self._idle.add(conn)  # idle from the moment its answer is out
                hint = b"" if self.idle_s is None else b"Keep-Alive: timeout=%d\r\n" % self.idle_s
                body = b'{"id":"%s"}' % rid
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + hint
                    + b"content-length: %d\r\n\r\n" % len(body)
                    + body
                )
        except OSError:
            return
        finally:
            with self._lock:
                self._idle.discard(conn)
            conn.close()


class LatencyRelay:
    """A TCP hop that delays each direction by ``delay_s``, end of stream included: what a network
    does to an origin's idle close racing a request (on loopback the close would arrive at once)."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._hops: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LatencyRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._hops:  # the client has closed its side: each hop ends within its delay
            await asyncio.wait(self._hops, timeout=5.0)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        hop = asyncio.current_task()
        assert hop is not None
        self._hops.add(hop)
        origin_r, origin_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(self._pipe(client_r, origin_w), self._pipe(origin_r, client_w))
        finally:
            for writer in (client_w, origin_w):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            self._hops.discard(hop)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(due - loop.time())
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                with contextlib.suppress(OSError):
                    await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        while True:
            try:
                data = await reader.read(65536)
            except OSError:  # reset: ends like a close
                data = b""
            queue.put_nowait((loop.time() + self.delay_s, data))
            if not data:
                break
        await delivering


@pytest.fixture
def origin_factory() -> Iterator[Callable[..., IdleClosingOrigin]]:
    made: list[IdleClosingOrigin] = []

    def make(idle_s: float | None = None) -> IdleClosingOrigin:
        made.append(IdleClosingOrigin(idle_s))
        return made[-1]

    yield make
    for origin in made:
        origin.close()


def pool_for(url: str, **kw: float) -> H1Pool:
    opts = {"connect_timeout_s": 5.0, "read_timeout_s": 10.0, "keepalive_s": 4.0} | kw
    return H1Pool(Origin(url), limit=int(opts.pop("limit", 50)), **opts)


async def call(pool: H1Pool, rid: str) -> bytes:
    resp = await pool.request("POST", "/v1/messages", [(b"x-request-id", rid.encode())], b"{}")
    return await resp.read()


def test_keep_alive_hint_is_parsed_and_leaves_a_margin() -> None:
    assert keep_alive_timeout(b"timeout=5, max=1000") == 5.0
    assert keep_alive_timeout(b"max=100, Timeout = 2") == 2.0
    assert [keep_alive_timeout(v) for v in (b"max=5", b"timeout=soon", b"timeout=-1", b"")] == [None] * 4
    assert idle_limit(4.0, None) == 4.0  # no hint: the pool's own limit
    assert idle_limit(4.0, 60.0) == 4.0  # a long hint never lengthens it
    assert idle_limit(4.0, 3.0) == 2.0  # a second before the origin's
    assert idle_limit(4.0, 1.0) == 0.5  # short hints keep half their span as the margin
    assert idle_limit(4.0, 0.0) == 0.0  # timeout=0: not reused at all


async def test_an_origin_enforcing_keep_alive_timeout_1_loses_no_call_under_load(
    origin_factory: Callable[..., IdleClosingOrigin],
) -> None:
    """Gaps right around the origin's 1 s idle timeout, from many callers at once, 50 ms away: without
    the hint the pool would write requests into connections the origin is closing (a 502 each)."""
    origin = origin_factory(idle_s=1.0)
    async with LatencyRelay(origin.port, delay_s=0.05) as hop:
        pool = pool_for(f"http://127.0.0.1:{hop.port}", keepalive_s=30.0)  # the hint alone must do
        failures, answered = await _load(pool)
        await pool.close()
    assert failures == []
    assert len(answered) == 80
    seen = Counter(origin.ids)
    assert sorted(seen) == sorted(answered) and max(seen.values()) == 1  # none lost, none doubled
    assert origin.connections < 80  # kept alive where it was safe


async def _load(pool: H1Pool) -> tuple[list[str], list[str]]:
    """16 callers, 5 calls each; returns (failures, answered request ids)."""
    rng = random.Random(7)
    failures: list[str] = []
    answered: list[str] = []

    async def caller(n: int) -> None:
        for i in range(5):
            rid = f"c{n}-{i}"
            try:
                assert await call(pool, rid) == b'{"id":"%s"}' % rid.encode()
                answered.append(rid)
            except Exception as exc:  # counted, not raised: the test reports every failure at once
                failures.append(f"{rid}: {type(exc).__name__}: {exc}")
            # Mostly 0.9-1.1 s (the origin's timeout), sometimes quick (connections are reused).
            await asyncio.sleep(rng.uniform(0.0, 0.2) if i % 2 else rng.uniform(0.9, 1.1))

    await asyncio.gather(*(caller(n) for n in range(16)))
    return failures, answered


@pytest.mark.parametrize("loop_saw_it", [True, False], ids=["eof-processed", "eof-in-socket"])
async def test_a_connection_closed_by_the_origin_while_idle_is_not_used(
    origin_factory: Callable[..., IdleClosingOrigin], loop_saw_it: bool
) -> None:
    origin = origin_factory()  # no idle timeout of its own: the test closes the connection
    pool = pool_for(origin.url)
    assert await call(pool, "first") == b'{"id":"first"}'
    assert origin.drop_idle() == 1
    if loop_saw_it:
        assert await wait_until_async(lambda: pool.open_connections == 0)  # the loop read the EOF
    else:
        time.sleep(0.1)  # the loop does not run: only the socket knows
    assert await call(pool, "second") == b'{"id":"second"}'
    assert origin.ids == ["first", "second"] and origin.connections == 2
    assert pool.open_connections == 1
    await pool.close()


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port on 127.0.0.1 that never answers a connect: a listener with a full accept queue, whose
    kernel drops further SYNs instead of refusing them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        answered = True
    except TimeoutError:
        answered = False
    except OSError:
        answered = True
    finally:
        probe.close()
    try:
        require_service(not answered, "a kernel that drops SYNs at a full accept queue (Linux default)")
        yield port
    finally:
        for s in (*fillers, listener):
            s.close()


async def test_a_dead_address_gets_only_its_share_of_the_connect_timeout(
    origin_factory: Callable[..., IdleClosingOrigin], blackhole_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = origin_factory()
    pool = pool_for(f"http://origin.invalid:{origin.port}", connect_timeout_s=3.0, keepalive_s=0.01)
    lookups: list[str] = []

    async def resolver(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        lookups.append(host)
        tcp = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
        return [(*tcp, ("127.0.0.1", blackhole_port)), (*tcp, ("127.0.0.1", port))]

    monkeypatch.setattr(pool.loop, "getaddrinfo", resolver)
    # The dead address had half of the 3 s, the live one the rest (one budget for both would be gone).
    assert await call(pool, "a") == b'{"id":"a"}'
    await asyncio.sleep(0.05)  # past keepalive_s: the next call needs a new connection
    started = pool.loop.time()
    assert await call(pool, "b") == b'{"id":"b"}'
    assert pool.loop.time() - started < 1.0  # the failed address now comes last (it would cost 1.5 s)
    assert lookups == ["origin.invalid"] and origin.connections == 2
    await pool.close()


async def test_cached_addresses_are_dropped_when_every_one_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = int(s.getsockname()[1])
    pool = pool_for(f"http://origin.invalid:{refused}")
    lookups: list[str] = []

    async def resolver(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(pool.loop, "getaddrinfo", resolver)
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            await call(pool, "x")
    assert len(lookups) == 2  # looked up again after the failure (the cache would serve 300 s)
    assert pool.open_connections == 0
    await pool.close()


def test_the_keepalive_setting_is_read_validated_and_reaches_the_upstream_pool(
    origin_factory: Callable[..., IdleClosingOrigin],
    make_sidecar: Callable[..., RunningSidecar],
) -> None:
    assert load_settings(env={}).upstream_keepalive_timeout == 4.0
    env = {"SIDECAR_UPSTREAM_KEEPALIVE_TIMEOUT": "0.3"}
    assert load_settings(env=env).upstream_keepalive_timeout == 0.3
    with pytest.raises(ConfigError, match="SIDECAR_UPSTREAM_KEEPALIVE_TIMEOUT"):
        load_settings(env={"SIDECAR_UPSTREAM_KEEPALIVE_TIMEOUT": "0"})
    origin = origin_factory()  # keeps connections open for as long as the client likes
    sidecar = make_sidecar(origin.url, upstream_keepalive_timeout=0.3)
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}
    with httpx.Client(base_url=sidecar.url, headers=headers) as client:
        for rid, pause in (("1", 0.0), ("2", 0.8), ("3", 0.0)):
            time.sleep(pause)
            resp = client.post("/v1/messages", content=b"{}", headers={"x-request-id": rid})
            assert resp.json() == {"id": rid}
    assert origin.ids == ["1", "2", "3"]
    assert origin.connections == 2  # reused within 0.3 s, not after 0.8 s idle
