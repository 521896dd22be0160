"""The upstream client behind the seam (``sidecar.proxy.client``): which transport carries a call, when
the aiohttp session opens, and how each transport's failures map to the sidecar's errors.

Messages calls (a whole body in memory) go through the lean client in ``h1``; uploads streamed as they
arrive, HEAD, and every call behind a forward proxy go through aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
