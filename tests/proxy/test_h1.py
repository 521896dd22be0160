"""The lean upstream client (``sidecar.proxy.h1``) against scripted raw-socket upstreams on 127.0.0.1.

Each upstream is a few lines of asyncio that read one request head (and its body) and answer with
exact bytes, so framing, reuse, limits, timeouts and breakage are checked on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sidecar.errors import UpstreamBroken, UpstreamTimeout
from sidecar.proxy import h1
from sidecar.proxy.h1 import H1Pool, Origin, UpstreamBroke
from tests.waiting import wait_until_async

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Upstream:
    """Runs ``script(reader, writer, n)`` for the n-th request; records heads, bodies and connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed_connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.startswith(b"Content-Length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                await self.script(reader, writer, len(self.requests))
                if writer.is_closing():
                    break
        finally:
            self.closed_connections += 1
            writer.close()

    def pool(self, **kw: float) -> H1Pool:
        opts = {"limit": 10, "connect_timeout_s": 2.0, "read_timeout_s": 5.0, "keepalive_s": 4.0} | kw
        return H1Pool(
            Origin(f"http://127.0.0.1:{self.port}"),
            limit=int(opts["limit"]),
            connect_timeout_s=opts["connect_timeout_s"],
            read_timeout_s=opts["read_timeout_s"],
            keepalive_s=opts["keepalive_s"],
        )


def answer(raw: bytes, close: bool = False) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return script


async def body_of(resp: h1.H1Response) -> bytes:
    return b"".join([chunk async for chunk in resp.iter_chunks()])


async def test_request_head_is_what_aiohttp_sent_and_the_connection_is_reused() -> None:
    async with Upstream(answer(OK)) as up:
        pool = up.pool()
        for _ in range(3):
            resp = await pool.request("POST", "/v1/messages?beta=true", [(b"x-api-key", b"k")], b'{"a":1}')
            assert (resp.status, resp.content_type, await resp.read()) == (200, "application/json", b"{}")
            resp.close()
        assert up.connections == 1  # keep-alive: one connection for three calls
        assert up.requests[0] == (
            b"POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-api-key: k\r\n"
            b'Content-Length: 7\r\n\r\n{"a":1}' % up.port
        )
        get = await pool.request("GET", "/v1/models", [], b"")
        assert get.raw_headers == [(b"content-type", b"application/json"), (b"content-length", b"2")]
        get.close()
        assert up.requests[-1].endswith(b"Content-Length: 0\r\n\r\n")  # as aiohttp sends for an empty body
        await pool.close()


def test_origin_keeps_a_base_path_and_leaves_default_ports_out_of_host() -> None:
    o = Origin("https://api.example.com/prefix/")
    assert (o.tls, o.host, o.port, o.base_path, o.host_header) == (
        True,
        "api.example.com",
        443,
        "/prefix",
        b"api.example.com",
    )
    assert Origin("http://[::1]:8080").host_header == b"[::1]:8080"
    with pytest.raises(ValueError):
        Origin("ftp://x")


async def test_chunked_and_close_delimited_bodies_are_reassembled() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    async with Upstream(answer(chunked)) as up:
        pool = up.pool()
        resp = await pool.request("POST", "/x", [], b"")
        assert await body_of(resp) == b"abcde"
        await pool.close()
    until_close = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"
    async with Upstream(answer(until_close, close=True)) as up:
        pool = up.pool()
        resp = await pool.request("POST", "/x", [], b"")
        assert await body_of(resp) == b"all of it"
        await pool.close()


async def test_an_interim_answer_is_skipped() -> None:
    async with Upstream(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)) as up:
        pool = up.pool()
        resp = await pool.request("POST", "/x", [], b"")
        assert (resp.status, await resp.read()) == (200, b"{}")
        await pool.close()


@pytest.mark.parametrize(
    ("raw", "before_headers"),
    [
        (b"", True),  # closed without a byte
        (b"HTTP/1.1 200 OK\r\ncontent-le", True),  # closed mid-head
        (b"NOT HTTP AT ALL\r\n\r\n", True),  # garbage
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", False),  # body cut short
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", False),  # no last chunk
    ],
)
async def test_a_broken_answer_raises_upstream_broke(raw: bytes, before_headers: bool) -> None:
    async with Upstream(answer(raw, close=True)) as up:
        pool = up.pool()
        if before_headers:
            with pytest.raises(UpstreamBroke):
                await pool.request("POST", "/x", [], b"")
        else:
            resp = await pool.request("POST", "/x", [], b"")
            with pytest.raises(UpstreamBroken) as info:  # after the headers: the sidecar's own error
                await body_of(resp)
            assert isinstance(info.value.__cause__, UpstreamBroke)
        assert pool.open_connections == 0  # a broken connection is never pooled
        await pool.close()


async def test_silence_past_the_read_timeout_raises_timeout_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab")
        await asyncio.sleep(5)

    async with Upstream(silent) as up:
        pool = up.pool(read_timeout_s=0.2)
        resp = await pool.request("POST", "/x", [], b"")
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout) as info:
            await body_of(resp)
        assert isinstance(info.value.__cause__, TimeoutError)
        waited = asyncio.get_running_loop().time() - started
        assert 0.1 < waited < 2.0
        await pool.close()


async def test_bytes_keep_a_slow_answer_alive_past_the_read_timeout() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
        for byte in b"abcdef":  # 6 x 0.1 s: longer than the 0.25 s timeout in all, never silent for it
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
            await writer.drain()

    async with Upstream(trickle) as up:
        pool = up.pool(read_timeout_s=0.25)
        resp = await pool.request("POST", "/x", [], b"")
        assert await body_of(resp) == b"abcdef"
        await pool.close()


async def test_the_limit_makes_callers_wait_for_a_connection() -> None:
    gate = asyncio.Event()

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            await gate.wait()
        writer.write(OK)
        await writer.drain()

    async with Upstream(slow_first) as up:
        pool = up.pool(limit=1)
        first = asyncio.ensure_future(pool.request("POST", "/1", [], b""))
        assert await wait_until_async(lambda: len(up.requests) == 1)  # the first holds the only connection
        second = asyncio.ensure_future(pool.request("POST", "/2", [], b""))
        await asyncio.sleep(0.05)  # room for a wrong second connection to show (nothing signals its absence)
        assert not second.done() and up.connections == 1
        gate.set()
        for task in (first, second):
            resp = await task
            assert await resp.read() == b"{}"
        assert up.connections == 1 and len(up.requests) == 2
        await pool.close()


async def test_cancelled_call_and_unread_answer_never_return_their_connection() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # no answer; returns once the client drops the connection
            writer.close()
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            await writer.drain()

    async with Upstream(never) as up:
        pool = up.pool()
        call = asyncio.ensure_future(pool.request("POST", "/x", [], b""))
        assert await wait_until_async(lambda: len(up.requests) == 1)  # sent, waiting for its answer
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        resp = await pool.request("POST", "/x", [], b"")  # a new connection: the first one was dropped
        resp.close()  # walked away mid-body
        assert pool.open_connections == 0
        assert await wait_until_async(lambda: up.closed_connections == 2)  # the upstream saw both close
        assert up.connections == 2
        await pool.close()


async def test_idle_connections_past_keepalive_are_not_reused() -> None:
    async with Upstream(answer(OK)) as up:
        pool = up.pool(keepalive_s=0.05)
        (await pool.request("POST", "/x", [], b"")).close()
        await asyncio.sleep(0.1)  # the connection idles past the keep-alive
        (await pool.request("POST", "/x", [], b"")).close()
        assert up.connections == 2
        await pool.close()


async def test_a_large_answer_read_slowly_arrives_whole() -> None:
    big = bytes(range(256)) * 8192  # 2 MB: far past the pause threshold

    async with Upstream(answer(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big)) as up:
        pool = up.pool()
        resp = await pool.request("POST", "/x", [], b"")
        got = []
        async for chunk in resp.iter_chunks():
            got.append(chunk)
            await asyncio.sleep(0)  # a consumer slower than loopback
        assert b"".join(got) == big
        again = await pool.request("POST", "/x", [], b"")  # the paused connection was resumed and pooled
        assert len(await asyncio.wait_for(again.read(), 10)) == len(big)
        assert up.connections == 1
        await pool.close()


async def test_line_breaks_in_headers_are_refused_before_anything_is_sent() -> None:
    async with Upstream(answer(OK)) as up:
        pool = up.pool()
        for headers in ([(b"x-a", b"v\r\nx-evil: 1")], [(b"x-a\n", b"v")]):
            with pytest.raises(ValueError):
                await pool.request("POST", "/x", headers, b"")
        assert up.requests == []
        await pool.close()


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_connection_raises_os_error(unused_port: int) -> None:
    pool = H1Pool(Origin(f"http://127.0.0.1:{unused_port}"), limit=2, connect_timeout_s=2, read_timeout_s=2)
    with pytest.raises(OSError):
        await pool.request("POST", "/x", [], b"")
    assert pool.open_connections == 0
    await pool.close()


async def test_tls_origin_verifies_the_certificate_and_reuses_the_connection(tmp_path: Path) -> None:
    from tests.conftest import require_service

    require_service(shutil.which("openssl") is not None, "openssl (to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_cert = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    make_cert += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*make_cert, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    up = Upstream(answer(OK))
    server = await asyncio.start_server(up._serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        pool = H1Pool(
            Origin(f"https://127.0.0.1:{port}"),
            limit=4,
            connect_timeout_s=5,
            read_timeout_s=5,
            ssl_context=trusted,
        )
        for _ in range(2):
            resp = await pool.request("POST", "/v1/messages", [], b"{}")
            assert (resp.status, await resp.read()) == (200, b"{}")
        assert up.connections == 1
        assert up.requests[0].startswith(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)
        await pool.close()
        # The default context (system CAs) refuses the self-signed certificate: no silent downgrade.
        strict = H1Pool(Origin(f"https://127.0.0.1:{port}"), limit=4, connect_timeout_s=5, read_timeout_s=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            await strict.request("POST", "/v1/messages", [], b"{}")
        await strict.close()
    finally:
        server.close()


async def test_an_answer_saying_connection_close_is_read_whole_and_its_connection_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    async with Upstream(answer(closing)) as up:
        pool = up.pool()
        for _ in range(2):
            resp = await pool.request("POST", "/x", [], b"")
            assert await resp.read() == b"{}"
        assert up.connections == 2 and pool.open_connections == 0
        await pool.close()


async def test_a_burst_of_new_connections_resolves_the_host_once_and_tries_each_address(
    monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    import socket

    async with Upstream(answer(OK)) as up:
        pool = H1Pool(
            Origin(f"http://bench.invalid:{up.port}"), limit=20, connect_timeout_s=5, read_timeout_s=5
        )
        lookups: list[str] = []

        async def resolver(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
            lookups.append(host)
            await asyncio.sleep(0.01)  # a real lookup takes a while: the burst arrives meanwhile
            tcp = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
            # A dead address first: the next one must still be tried.
            return [(*tcp, ("127.0.0.1", unused_port)), (*tcp, ("127.0.0.1", port))]

        monkeypatch.setattr(pool.loop, "getaddrinfo", resolver)
        answers = await asyncio.gather(*(pool.request("POST", "/x", [], b"") for _ in range(10)))
        assert [await a.read() for a in answers] == [b"{}"] * 10
        assert lookups == ["bench.invalid"] and up.connections == 10
        assert up.requests[0].startswith(b"POST /x HTTP/1.1\r\nHost: bench.invalid:%d\r\n" % up.port)
        await pool.close()
