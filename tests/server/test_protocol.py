"""The sidecar's HTTP/1.1 protocol under uvicorn, driven with a recording transport (no sockets).

Checks the bytes it writes and when: head and body in one write, the head alone when no body bytes
come in the same loop turn, uvicorn's framing (length, chunked, HEAD) kept, bad headers refused, and
the disconnect hook called only for a call still in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from sidecar.proxy.asgi import DISCONNECT_HOOK
from sidecar.server.protocol import DisconnectHook, SidecarHttpProtocol

App = Callable[[Any, Any, Any], Awaitable[None]]
REQUEST = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8787), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def drive(app: App, request: bytes = REQUEST, settle_s: float = 0.0) -> tuple[RecordingTransport, Any]:
    """Feed ``request`` to a fresh protocol; return its transport once the app's task is done."""
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    config.load()
    state = ServerState()
    proto = SidecarHttpProtocol(config, state, {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    proto.connection_made(transport)
    proto.data_received(request)
    await asyncio.gather(*state.tasks)
    await asyncio.sleep(settle_s)  # lets a pending head flush
    return transport, proto


def answer(headers: list[tuple[bytes, bytes]], *bodies: tuple[bytes, bool], pause_s: float = 0.0) -> App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if pause_s:
            await asyncio.sleep(pause_s)
        for body, more in bodies:
            await send({"type": "http.response.body", "body": body, "more_body": more})

    return app


async def test_head_and_body_leave_in_one_write() -> None:
    app = answer([(b"Content-Type", b"application/json"), (b"content-length", b"2")], (b"{}", False))
    transport, _ = await drive(app)
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    ]


async def test_head_goes_out_alone_when_the_body_is_not_ready_in_the_same_turn() -> None:
    heads: list[list[bytes]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await asyncio.sleep(0.05)  # a slow first chunk: the client must not wait for the headers
        heads.append(list(transport_ref[0].writes))
        await send({"type": "http.response.body", "body": b"ok"})

    transport_ref: list[RecordingTransport] = []
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    proto = SidecarHttpProtocol(config, state, {}, asyncio.get_running_loop())
    transport_ref.append(RecordingTransport())
    proto.connection_made(transport_ref[0])
    proto.data_received(REQUEST)
    await asyncio.gather(*state.tasks)
    assert heads == [[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"]]  # before the body existed
    assert transport_ref[0].writes[1:] == [b"ok"]


async def test_streamed_chunked_answer_keeps_uvicorns_framing() -> None:
    app = answer([(b"content-type", b"text/event-stream")], (b"event: a\n\n", True), (b"", False))
    transport, _ = await drive(app)
    assert b"".join(transport.writes) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        b"a\r\nevent: a\n\n\r\n0\r\n\r\n"
    )
    assert len(transport.writes) == 2  # head with the first event, then the terminator


async def test_head_request_gets_headers_only_and_connection_close_is_honoured() -> None:
    app = answer([(b"content-length", b"5"), (b"connection", b"Keep-Alive, Close")], (b"", False))
    transport, _ = await drive(app, b"HEAD /x HTTP/1.1\r\nhost: t\r\n\r\n")
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: Keep-Alive, Close\r\n\r\n"
    assert transport.writes == [head]
    assert transport.closed


async def test_length_mismatch_and_header_injection_are_refused() -> None:
    errors: list[str] = []

    def catching(app: App) -> App:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            try:
                await app(scope, receive, send)
            except RuntimeError as exc:
                errors.append(str(exc))

        return wrapped

    await drive(catching(answer([(b"content-length", b"1")], (b"too long", False))))
    await drive(catching(answer([(b"x-ok", b"a\r\nset-cookie: evil")], (b"", False))))
    await drive(catching(answer([(b"bad name", b"v")], (b"", False))))
    assert errors == [
        "Response content longer than Content-Length",
        "Invalid HTTP header value.",
        "Invalid HTTP header name.",
    ]


async def test_disconnect_hook_fires_only_while_the_call_is_in_flight() -> None:
    seen: list[DisconnectHook] = []
    fired: list[str] = []
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        hook = scope["extensions"][DISCONNECT_HOOK]
        seen.append(hook)
        hook.callback = lambda: fired.append(scope["path"])
        await release.wait()

    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    state = ServerState()
    proto = SidecarHttpProtocol(config, state, {}, asyncio.get_running_loop())
    proto.connection_made(RecordingTransport())
    proto.data_received(REQUEST)
    await asyncio.sleep(0)
    assert len(seen) == 1 and fired == []
    proto.connection_lost(None)
    assert fired == ["/x"]
    release.set()
    await asyncio.gather(*state.tasks)

    # After a complete response, losing the connection is the normal end of keep-alive: no callback.
    fired.clear()
    done = answer([(b"content-length", b"0")], (b"", False))

    async def app2(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"][DISCONNECT_HOOK].callback = lambda: fired.append("late")
        await done(scope, receive, send)

    _, proto2 = await drive(app2)
    proto2.connection_lost(None)
    assert fired == []


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_are_not_chunked(status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport, _ = await drive(app)
    assert b"transfer-encoding" not in b"".join(transport.writes)
