"""The shared ping loop with fake links and a hand-driven clock: exact ping and timeout times."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from sidecar.fleet.heartbeat import Heartbeat
from sidecar.fleet.registry import FleetRegistry
from sidecar.telemetry.metrics import declare_fleet_metrics
from tests.waiting import wait_until_async


class FakeLink:
    def __init__(self) -> None:
        self.pings: list[asyncio.Future[float]] = []
        self.closed: tuple[int, str] | None = None
        self.backlog = 0

    async def ping(self) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.pings.append(fut)
        return fut

    def write_backlog(self) -> int:
        return self.backlog

    def close_soon(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(interval: float = 10.0, timeout: float = 5.0) -> tuple[FleetRegistry, Heartbeat, Clock]:
    registry = FleetRegistry(declare_fleet_metrics(CollectorRegistry()))
    clock = Clock()
    hb = Heartbeat(
        registry,
        interval,
        timeout,
        clock=clock,
        wall=lambda: 1000.0 + clock.t,
        jitter=lambda: 1.0,
        rtt_clock=clock,  # RTT = from the ping's write to the pong's arrival, on this clock
    )
    return registry, hb, clock


async def at(hb: Heartbeat, clock: Clock, t: float) -> None:
    clock.t = t
    await hb.visit_due()


async def test_pings_every_interval_and_closes_on_timeout() -> None:
    registry, hb, clock = make(interval=10.0, timeout=5.0)
    link = FakeLink()
    member, _ = registry.connect("voice", "m1", link, 1000.0)
    hb.add(member)  # jitter 1.0: first ping one full interval after connect
    await at(hb, clock, 9.99)
    assert link.pings == []
    await at(hb, clock, 10.0)
    assert len(link.pings) == 1 and member.pings == 1
    clock.t = 10.25
    link.pings[0].set_result(0.0)  # the library's own (coarse) latency is not used
    await asyncio.sleep(0)  # the pong callback runs
    assert member.pending_since is None and member.last_pong == 1010.25 and member.rtt_quantile(0.5) == 0.25
    await at(hb, clock, 15.0)  # the timeout check of the answered ping: nothing to do
    await at(hb, clock, 19.99)
    assert len(link.pings) == 1
    await at(hb, clock, 20.0)
    assert len(link.pings) == 2  # not answered this time
    await at(hb, clock, 24.99)
    assert link.closed is None and member.connected
    await at(hb, clock, 25.0)  # 20 + timeout 5
    assert link.closed == (1011, "keepalive ping timeout")
    assert not member.connected and member.disconnect_reason == "ping_timeout" and member.missed_pongs == 1
    assert member.disconnected_at == 1025.0 and member.close_code == 1011
    assert len(hb) == 0  # nothing left to schedule


async def test_timeout_longer_than_interval_waits_for_the_pong() -> None:
    registry, hb, clock = make(interval=2.0, timeout=5.0)
    link = FakeLink()
    member, _ = registry.connect("f", "m", link, 0.0)
    hb.add(member)
    await at(hb, clock, 2.0)
    await at(hb, clock, 4.0)  # next ping would be due, but the first is still outstanding
    await at(hb, clock, 6.9)
    assert len(link.pings) == 1 and link.closed is None
    await at(hb, clock, 7.0)
    assert link.closed is not None


async def test_a_stuck_socket_gets_no_ping_but_still_times_out() -> None:
    registry, hb, clock = make(interval=10.0, timeout=5.0)
    link = FakeLink()
    link.backlog = 10**6
    member, _ = registry.connect("f", "m", link, 0.0)
    hb.add(member)
    await at(hb, clock, 10.0)
    assert link.pings == [] and member.pings == 1
    await at(hb, clock, 15.0)
    assert link.closed is not None and member.missed_pongs == 1


async def test_entries_of_an_old_connection_are_dropped() -> None:
    registry, hb, clock = make(interval=10.0, timeout=5.0)
    old, new = FakeLink(), FakeLink()
    member, _ = registry.connect("f", "m", old, 0.0)
    hb.add(member)
    clock.t = 3.0
    _, replaced = registry.connect("f", "m", new, 3.0)
    assert replaced is old and member.disconnect_reason is None
    hb.add(member)
    await at(hb, clock, 10.0)  # the old connection's entry comes up and is ignored
    assert old.pings == [] and new.pings == []
    await at(hb, clock, 13.0)
    assert len(new.pings) == 1
    # A pong for a ping of a connection that has since been replaced is ignored too.
    late = new.pings[0]
    registry.connect("f", "m", FakeLink(), 13.5)
    late.set_result(0.001)
    await asyncio.sleep(0)
    assert member.last_pong is None


async def test_run_loop_pings_on_real_time() -> None:
    registry = FleetRegistry(declare_fleet_metrics(CollectorRegistry()))
    hb = Heartbeat(registry, 0.05, 0.05)
    links = [FakeLink() for _ in range(300)]  # more than one yield batch
    for i, link in enumerate(links):
        member, _ = registry.connect("f", f"m{i}", link, 0.0)
        hb.add(member)
    task = asyncio.ensure_future(hb.run())
    # Nobody answers: every member is pinged, times out and is closed, on the loop's real clock.
    done = await wait_until_async(lambda: registry.connected_count("f") == 0)
    task.cancel()
    assert done
    assert all(link.closed == (1011, "keepalive ping timeout") for link in links)
