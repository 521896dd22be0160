"""The fleet listener with real WebSocket clients (``websockets``) and a raw socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sidecar.fleet.registry import FleetRegistry, Member
from sidecar.fleet.server import FleetOptions, FleetServer
from sidecar.telemetry.metrics import declare_fleet_metrics
from tests.metrics_util import sample
from tests.waiting import SLACK_S, wait_until_async

INTERVAL, TIMEOUT = 0.1, 0.2


@pytest.fixture
def prom() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def fleet_server(prom: CollectorRegistry) -> AsyncIterator[FleetServer]:
    registry = FleetRegistry(declare_fleet_metrics(prom))
    server = FleetServer(
        registry,
        FleetOptions(port=0, ping_interval_s=INTERVAL, ping_timeout_s=TIMEOUT, close_timeout_s=0.5),
    )
    await server.start()
    yield server
    await server.stop()


def pinged(server: FleetServer, fleet: str, member_id: str, pings: int) -> bool:
    """``member_id`` has been pinged ``pings`` times and has answered."""
    f = server.registry.fleet(fleet)
    m = f.members.get(member_id) if f is not None else None
    return m is not None and m.pings >= pings and m.last_pong is not None


def url(server: FleetServer, fleet: str, member: str) -> str:
    return f"{server.connect_url}?fleet={fleet}&member={member}"


def member(server: FleetServer, fleet: str, member_id: str) -> Member:
    f = server.registry.fleet(fleet)
    assert f is not None
    return f.members[member_id]


async def test_healthy_members_stay_connected_with_rtt(
    fleet_server: FleetServer, prom: CollectorRegistry
) -> None:
    clients: list[ClientConnection] = [
        await connect(url(fleet_server, "voice", f"m{i}"), ping_interval=None) for i in range(3)
    ]
    # Each member must have answered several pings (one per interval, however long that takes here).
    assert await wait_until_async(lambda: all(pinged(fleet_server, "voice", f"m{i}", 5) for i in range(3)))
    doc = fleet_server.registry.snapshot(time.time())
    assert [f["fleet"] for f in doc] == ["voice"]
    assert doc[0]["connected"] == 3
    for m in doc[0]["members"]:
        assert m["connected"] is True
        assert m["missed_pongs"] == 0
        assert m["pings"] >= 5
        assert 0 < m["rtt_p50_s"] <= m["rtt_p99_s"] < 0.1  # loopback
        assert m["last_pong"] is not None
    text = generate_latest(prom).decode()
    assert sample(text, "sidecar_fleet_members", fleet="voice") == 3
    assert sample(text, "sidecar_fleet_connects_total", fleet="voice") == 3
    pings = sample(text, "sidecar_fleet_pings_total", fleet="voice")
    assert pings == sum(m["pings"] for m in doc[0]["members"])
    rtt_count = sample(text, "sidecar_fleet_heartbeat_rtt_seconds_count", fleet="voice")
    assert rtt_count is not None and pings - 3 <= rtt_count <= pings  # the last ping may be in flight
    assert sample(text, "sidecar_fleet_pongs_missed_total", fleet="voice") in (None, 0.0)
    for c in clients:
        await c.close()


async def test_status_message_shows_in_fleet_view(fleet_server: FleetServer) -> None:
    async with connect(url(fleet_server, "chat", "a1")) as ws:
        await ws.send('{"type":"status","calls_in_progress":3,"region":"eu","nested":{"x":1}}')
        await ws.send("not json")
        assert await wait_until_async(lambda: member(fleet_server, "chat", "a1").status is not None)
    assert member(fleet_server, "chat", "a1").status == {"calls_in_progress": 3, "region": "eu"}


def _raw_upgrade(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the handshake is read
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def _read_close_code(sock: socket.socket) -> int:
    """Read server frames (pings, then close) until the close frame; return its code."""
    sock.settimeout(3.0)
    buf = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, "connection ended without a close frame"
        buf += chunk
        while len(buf) >= 2:
            opcode, length = buf[0] & 0x0F, buf[1] & 0x7F  # server frames: unmasked, short
            if len(buf) < 2 + length:
                break
            payload, buf = buf[2 : 2 + length], buf[2 + length :]
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])


async def test_member_that_stops_reading_is_closed_with_1011(
    fleet_server: FleetServer, prom: CollectorRegistry
) -> None:
    assert fleet_server.port is not None
    path = "/sidecar/v1/fleet/connect?fleet=voice&member=frozen"
    sock = await asyncio.to_thread(_raw_upgrade, fleet_server.port, path)
    try:
        assert await wait_until_async(lambda: fleet_server.registry.fleet("voice") is not None)
        m = member(fleet_server, "voice", "frozen")
        assert await wait_until_async(lambda: not m.connected)
        assert m.disconnect_reason == "ping_timeout"
        assert m.close_code == 1011
        assert m.missed_pongs == 1
        assert m.connected_at is not None and m.disconnected_at is not None
        # First ping within one interval, then the timeout, plus what a loaded machine adds (the exact
        # times are checked on a hand-driven clock in test_heartbeat.py).
        assert m.disconnected_at - m.connected_at <= INTERVAL + TIMEOUT + SLACK_S
        assert await asyncio.to_thread(_read_close_code, sock) == 1011
    finally:
        sock.close()
    text = generate_latest(prom).decode()
    assert sample(text, "sidecar_fleet_pongs_missed_total", fleet="voice") == 1
    assert sample(text, "sidecar_fleet_disconnects_total", fleet="voice", reason="ping_timeout") == 1
    assert sample(text, "sidecar_fleet_members", fleet="voice") == 0


async def test_client_with_paused_reader_is_closed_and_sees_1011(fleet_server: FleetServer) -> None:
    ws = await connect(url(fleet_server, "voice", "paused"), ping_interval=None)
    assert await wait_until_async(lambda: member(fleet_server, "voice", "paused").pings >= 1)
    assert await wait_until_async(lambda: member(fleet_server, "voice", "paused").last_pong is not None)
    ws.transport.pause_reading()  # the client's event loop is alive but no longer reads frames
    m = member(fleet_server, "voice", "paused")
    assert await wait_until_async(lambda: not m.connected)
    assert m.disconnect_reason == "ping_timeout"
    ws.transport.resume_reading()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 3.0)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011


async def test_reconnects_and_replacements_are_counted(
    fleet_server: FleetServer, prom: CollectorRegistry
) -> None:
    async with connect(url(fleet_server, "voice", "r1")):
        pass  # clean close (1000)
    assert await wait_until_async(lambda: not member(fleet_server, "voice", "r1").connected)
    assert member(fleet_server, "voice", "r1").disconnect_reason == "client_close"
    first = await connect(url(fleet_server, "voice", "r1"))
    second = await connect(url(fleet_server, "voice", "r1"))  # same id again: replaces `first`
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(first.recv(), 3.0)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4000
    m = member(fleet_server, "voice", "r1")
    assert m.connected and m.connects == 3
    assert m.to_json(time.time())["reconnects"] == 2
    await second.close()
    assert await wait_until_async(lambda: not m.connected)
    text = generate_latest(prom).decode()
    assert sample(text, "sidecar_fleet_connects_total", fleet="voice") == 3
    assert sample(text, "sidecar_fleet_disconnects_total", fleet="voice", reason="client_close") == 2
    assert sample(text, "sidecar_fleet_disconnects_total", fleet="voice", reason="replaced") == 1
    assert sample(text, "sidecar_fleet_members", fleet="voice") == 0


async def test_abrupt_tcp_close_is_abnormal(fleet_server: FleetServer) -> None:
    assert fleet_server.port is not None
    sock = await asyncio.to_thread(
        _raw_upgrade, fleet_server.port, "/sidecar/v1/fleet/connect?fleet=f&member=x"
    )
    assert await wait_until_async(lambda: fleet_server.registry.connected_count("f") == 1)
    sock.close()
    assert await wait_until_async(lambda: fleet_server.registry.connected_count("f") == 0)
    assert member(fleet_server, "f", "x").disconnect_reason == "abnormal"
    assert member(fleet_server, "f", "x").close_code == 1006


async def test_bad_requests_are_refused(fleet_server: FleetServer) -> None:
    base = fleet_server.connect_url
    for target, status in [
        (base.replace("/connect", "/other") + "?fleet=a&member=b", 404),
        (base + "?fleet=a", 400),
        (base + "?fleet=a%20b&member=c", 400),
    ]:
        with pytest.raises(InvalidStatus) as info:
            await connect(target)
        assert info.value.response.status_code == status


async def test_ingest_token_guards_connects() -> None:
    registry = FleetRegistry(declare_fleet_metrics(CollectorRegistry()))
    server = FleetServer(registry, FleetOptions(port=0, ingest_token="s3cret"))
    await server.start()
    try:
        with pytest.raises(InvalidStatus) as info:
            await connect(url(server, "a", "b"))
        assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await connect(url(server, "a", "b") + "&token=wrong")
        async with connect(url(server, "a", "b") + "&token=s3cret"):
            pass
        async with connect(url(server, "a", "c"), additional_headers={"Authorization": "Bearer s3cret"}):
            pass
        assert registry.fleet("a") is not None and set(registry.fleet("a").members) == {"b", "c"}  # type: ignore[union-attr]
    finally:
        await server.stop()


async def test_shutdown_closes_members_with_1001(fleet_server: FleetServer) -> None:
    ws = await connect(url(fleet_server, "voice", "s1"))
    assert await wait_until_async(lambda: fleet_server.registry.connected_count("voice") == 1)
    await fleet_server.stop()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 3.0)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert member(fleet_server, "voice", "s1").disconnect_reason == "shutdown"
