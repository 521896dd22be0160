"""The upstream client behind the seam (``sidecar.proxy.client``): which transport carries a call, when
the aiohttp session opens, and that a failure reads the same whichever transport met it.

Messages calls (a whole body in memory) go through the lean client in ``h1``; uploads streamed as they
arrive and HEAD go through aiohttp. The faults come from raw-socket upstreams on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.errors import InvalidRequest, UpstreamBroken, UpstreamTimeout, UpstreamUnavailable
from sidecar.proxy.client import UpstreamClient
from sidecar.proxy.upstream import UpstreamOptions
from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.net import free_port

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
MESSAGES_BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "Hi"}],
}
UNREACHABLE = (502, "api_error", "The upstream API could not be reached.", "true")
SILENT = (504, "timeout_error", "The upstream API did not answer in time.", "true")
MakeSidecar = Callable[..., RunningSidecar]
Script = Callable[[socket.socket], None]


def fallback_opened(sidecar: RunningSidecar) -> bool:
    fallback = sidecar.sidecar.upstream.fallback
    assert fallback is not None  # the client opened with the app
    return fallback.opened


# --- the aiohttp session opens only for a call that needs it -----------------------------------------


def test_messages_calls_never_open_the_aiohttp_session(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    model, messages = MESSAGES_BODY["model"], MESSAGES_BODY["messages"]
    client.messages.create(model=model, max_tokens=8, messages=messages)
    with client.messages.stream(model=model, max_tokens=8, messages=messages) as stream:
        stream.get_final_message()
    client.messages.count_tokens(model=model, messages=messages)
    client.models.list()  # a GET: no body to stream, the lean client carries it too
    assert len(fake.requests) == 4
    assert not fallback_opened(sidecar)
    # HEAD is aiohttp's: the session opens for it, and the answer is relayed.
    assert httpx.head(sidecar.url + "/v1/models", headers=HEADERS).status_code == 200
    assert fallback_opened(sidecar)


def test_a_streamed_upload_opens_the_aiohttp_session(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    assert not fallback_opened(sidecar)
    uploaded = client.beta.files.upload(file=("notes.txt", b"hello", "text/plain"))
    assert uploaded.filename == "notes.txt" and uploaded.size_bytes == 5
    assert fallback_opened(sidecar)


async def test_with_a_forward_proxy_every_call_goes_through_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    targets: list[bytes] = []

    async def forward_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        targets.append(head.split(b"\r\n")[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(forward_proxy, "127.0.0.1", 0)
    async with proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        upstream = f"http://127.0.0.1:{free_port()}"  # reached only through the proxy
        client = UpstreamClient(UpstreamOptions(base_url=upstream))
        await client.open()
        assert client.fallback is not None and not client.fallback.opened  # opened by the first call
        try:
            answer = await client.send("POST", "/v1/messages?beta=true", [], b"{}")
            assert answer.status == 200 and [c async for c in answer.iter_chunks()] == [b"{}"]
            answer.close()
            assert client.fallback.opened
        finally:
            await client.close()
    assert targets == [f"POST {upstream}/v1/messages?beta=true HTTP/1.1".encode()]  # absolute form


async def test_closing_a_client_whose_session_never_opened_is_a_no_op() -> None:
    client = UpstreamClient(UpstreamOptions(base_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(UpstreamUnavailable, match="not open"):
        await client.send("GET", "/v1/models", [], b"")
    await client.open()
    assert client.fallback is not None and not client.fallback.opened
    await client.close()
    assert not client.fallback.opened
    await client.close()  # twice is fine
    with pytest.raises(UpstreamUnavailable):  # closed: neither client takes a call
        await client.send("HEAD", "/v1/models", [], None)
    assert not client.fallback.opened


# --- the same failure, the same error, whichever client met it -----------------------------------


def read_request(conn: socket.socket) -> bytes:
    """One request off ``conn``: its head, then a body by content-length or to the last chunk."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")]
    length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), None)
    chunked = any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in lines)
    while (length is not None and len(body) < length) or (chunked and not body.endswith(b"0\r\n\r\n")):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data


@contextmanager
def scripted_upstream(script: Script) -> Iterator[str]:
    """A raw-socket upstream on 127.0.0.1 running ``script`` on each connection (a thread each)."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    def run(conn: socket.socket) -> None:
        with conn, suppress(OSError):  # the sidecar hung up first
            script(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        server.close()


@contextmanager
def nothing_listening() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"  # the connection is refused


def hang(conn: socket.socket) -> None:
    read_request(conn)
    conn.settimeout(10)
    conn.recv(1)  # until the caller gives up and closes


def close_before_answering(conn: socket.socket) -> None:
    read_request(conn)


def cut_body_short(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"id":')


def post_messages(url: str) -> httpx.Response:
    return httpx.post(url + "/v1/messages", headers=HEADERS, json=MESSAGES_BODY, timeout=10)


def post_upload(url: str) -> httpx.Response:
    chunks = iter([b"--b\r\ncontent-disposition: form-data; ", b'name="file"\r\n\r\nhi\r\n--b--\r\n'])
    headers = {**HEADERS, "content-type": "multipart/form-data; boundary=b"}
    return httpx.post(url + "/v1/files", headers=headers, content=chunks, timeout=10)


def answer_of(resp: httpx.Response) -> tuple[int, str, str, str]:
    """Status, error type and message, and the retry hint of an answer in Anthropic's error shape."""
    doc = resp.json()
    assert doc["type"] == "error" and doc["request_id"] == resp.headers["request-id"]
    assert resp.headers["content-type"] == "application/json"
    return resp.status_code, doc["error"]["type"], doc["error"]["message"], resp.headers["x-should-retry"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [(None, UNREACHABLE), (close_before_answering, UNREACHABLE), (hang, SILENT)],
    ids=["refused", "closed-before-answering", "silent"],
)
def test_no_answer_reads_the_same_from_both_clients(
    make_sidecar: MakeSidecar, script: Script | None, expected: tuple[object, ...]
) -> None:
    with scripted_upstream(script) if script else nothing_listening() as url:
        sidecar = make_sidecar(url, upstream_timeout=0.5)
        lean = post_messages(sidecar.url)
        assert not fallback_opened(sidecar)  # the Messages call went through the lean client
        streamed = post_upload(sidecar.url)
        assert fallback_opened(sidecar)  # the upload through aiohttp
    assert answer_of(lean) == answer_of(streamed) == expected
    events = sidecar.wait_events(2)
    assert sorted(e.operation for e in events) == ["chat", "files"]
    status, error_type = expected[:2]
    assert {(e.status, e.outcome, e.error_type) for e in events} == {(status, "upstream_error", error_type)}


def received(url: str, path: str, content: Any, headers: dict[str, str]) -> tuple[int, bytes, bool]:
    """Status, the body bytes that arrived, and whether the connection ended before the body did."""
    data = b""
    with httpx.stream("POST", url + path, headers=headers, content=content, timeout=10) as resp:
        try:
            for chunk in resp.iter_raw():
                data += chunk
        except httpx.HTTPError:
            return resp.status_code, data, True
    return resp.status_code, data, False


def test_an_answer_broken_off_reads_the_same_from_both_clients(make_sidecar: MakeSidecar) -> None:
    with scripted_upstream(cut_body_short) as url:
        sidecar = make_sidecar(url)
        lean = received(sidecar.url, "/v1/messages", json.dumps(MESSAGES_BODY).encode(), HEADERS)
        upload = iter([b"--b\r\n", b"--b--\r\n"])
        form = {**HEADERS, "content-type": "multipart/form-data; boundary=b"}
        streamed = received(sidecar.url, "/v1/files", upload, form)
        assert fallback_opened(sidecar)
    # What came is relayed, then the connection ends the same abrupt way.
    assert lean == streamed == (200, b'{"id":', True)
    events = sidecar.wait_events(2)
    interrupted = (200, "upstream_error", "stream_interrupted")
    assert {(e.status, e.outcome, e.error_type) for e in events} == {interrupted}


# --- the mapping itself, on the client directly -------------------------------------------------


async def upload(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An upstream that records each request's head and answers 200 with an empty body."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
        except asyncio.IncompleteReadError:  # the client connected, then sent nothing
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads


@pytest.mark.parametrize("streamed", [False, True], ids=["lean", "aiohttp"])
async def test_line_breaks_in_a_header_are_refused_by_both_clients(
    echo_server: tuple[str, list[bytes]], streamed: bool
) -> None:
    url, heads = echo_server
    client = UpstreamClient(UpstreamOptions(base_url=url))
    await client.open()
    try:
        with pytest.raises(InvalidRequest) as info:
            body = upload(b"x") if streamed else b"x"
            await client.send("POST", "/v1/files", [(b"x-a", b"v\r\nx-evil: 1")], body)
        assert isinstance(info.value.__cause__, ValueError)  # mapped from the transport's own error
        assert heads == []
    finally:
        await client.close()


async def test_header_bytes_that_are_not_utf8_go_out_as_they_are_or_are_refused(
    echo_server: tuple[str, list[bytes]],
) -> None:
    url, heads = echo_server
    client = UpstreamClient(UpstreamOptions(base_url=url))
    await client.open()
    value = b"caf\xe9 \xff"
    try:
        answer = await client.send("POST", "/v1/messages", [(b"x-note", value)], b"{}")
        answer.close()
        assert b"\r\nx-note: " + value + b"\r\n" in heads[0]  # the lean client writes bytes
        # aiohttp writes text: the value would go out altered, so it is refused before anything is sent.
        with pytest.raises(InvalidRequest, match="x-note"):
            await client.send("POST", "/v1/files", [(b"x-note", value)], upload(b"x"))
        assert len(heads) == 1
    finally:
        await client.close()


@pytest.mark.parametrize("streamed", [False, True], ids=["lean", "aiohttp"])
async def test_body_failures_map_to_the_sidecars_errors(streamed: bool) -> None:
    """Cut short → ``UpstreamBroken``; silent past the read timeout → ``UpstreamTimeout``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"transfer-encoding: chunked" in head.lower():
            await reader.readuntil(b"0\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        if b"/silent" in head:
            await reader.read()  # until the client gives up
        writer.transport.abort()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = UpstreamClient(UpstreamOptions(base_url=url, read_timeout_s=0.3))
        await client.open()
        try:
            for path, error in (("/cut", UpstreamBroken), ("/silent", UpstreamTimeout)):
                resp = await client.send("POST", path, [], upload(b"x") if streamed else b"x")
                assert resp.status == 200
                got = b""
                with pytest.raises(error) as info:
                    async for chunk in resp.iter_chunks():
                        got += chunk
                resp.close()
                assert got == b"abc" and info.value.__cause__ is not None
            assert client.fallback is not None and client.fallback.opened is streamed
        finally:
            await client.close()
