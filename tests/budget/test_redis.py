"""Redis counters against a real ``redis-server`` on 127.0.0.1: shared ceilings across replicas, exact
nano-dollar accounting, fail modes while the server is down, recovery when it returns."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import pytest
import redis.asyncio as aioredis

from sidecar.budget import CountersUnavailable
from sidecar.budget.redis_counters import RedisCounters
from sidecar.budget.service import REDIS_UNAVAILABLE, REDIS_UNAVAILABLE_REFUSED, BudgetService
from sidecar.core.budget_config import FAIL_CLOSED, BudgetConfig, Limits
from sidecar.core.budget_counts import Counts
from sidecar.core.budget_estimate import Actual, Estimate
from sidecar.core.pricing import PriceTable
from sidecar.errors import BudgetExceeded, ServiceUnavailable
from tests.budget.test_local import COST, Recorded, burst, event, req
from tests.redis_server import RedisServer
from tests.waiting import SLACK_S, wait_until_async

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
DAY = "2026-11-20"


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    return redis_server


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


@pytest.fixture
async def replicas(server: RedisServer) -> AsyncIterator[tuple[RedisCounters, RedisCounters]]:
    a, b = RedisCounters.from_url(server.url), RedisCounters.from_url(server.url)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.mark.parametrize("seed", range(3))
async def test_two_replicas_hold_one_session_ceiling(
    prices: PriceTable, replicas: tuple[RedisCounters, RedisCounters], seed: int
) -> None:
    config = BudgetConfig(Limits(session_usd=0.10))
    services = [BudgetService(config, r, prices) for r in replicas]
    admitted = await asyncio.wait_for(burst(services, 20, seed), timeout=20)
    snap = await replicas[1].usage("s-1", "app", DAY)
    assert snap.session is not None
    # Same bound as one process: below $0.10 + one call, and the ceiling was reached.
    assert admitted == 4 and snap.session.used_nanos == 4 * round(COST * 1e9) == 120_000_000
    assert (snap.session.reserved_nanos, snap.session.reserved_calls) == (0, 0)
    assert snap.app_day.used_nanos == 120_000_000


async def test_model_call_ceiling_across_replicas(replicas: tuple[RedisCounters, RedisCounters]) -> None:
    limits = Limits(session_model_calls=5)
    tries = [replicas[i % 2].try_reserve("s-1", "app", DAY, limits, Estimate(1, 1)) for i in range(20)]
    decisions = await asyncio.gather(*tries)
    assert sum(d.admitted for d in decisions) == 5
    assert {b.limit for d in decisions if not d.admitted for b in d.breaches} == {"session_model_calls"}


async def test_nano_dollar_accounting_is_exact(
    server: RedisServer, replicas: tuple[RedisCounters, ...]
) -> None:
    a, b = replicas
    limits = Limits(session_usd=1000.0)
    # A reservation above 2^47 nano-dollars ($123,456.78...): Lua would print it in exponent form.
    big = Estimate(123_456_789_012_345, 10**9)
    amounts = [0.1, 0.2, 1e-9, 0.000123456]
    for i, usd in enumerate(amounts):
        counters = (a, b)[i % 2]
        decision = await counters.try_reserve("s-1", "app", DAY, limits, big)
        assert decision.reservation is not None
        await counters.reconcile(decision.reservation, Actual(round(usd * 1e9), 10, 1, 0))
    # By hand: 100,000,000 + 200,000,000 + 1 + 123,456 nano-dollars (0.1 + 0.2 != 0.3 in floats).
    expected = 100_000_000 + 200_000_000 + 1 + 123_456
    snap = await a.usage("s-1", "app", DAY)
    assert snap.session == Counts(expected, 40, 4, 0, 0, 0, 0)
    assert snap.app_day.used_nanos == expected and snap.app_day.reserved_nanos == 0
    raw = aioredis.Redis.from_url(server.url)
    assert await raw.hget("sidecar:s:s-1", "used_nanos") == str(expected).encode()
    assert await raw.ttl("sidecar:s:s-1") > 6 * 86400
    assert 2 * 86400 < await raw.ttl(f"sidecar:a:app:{DAY}") <= 3 * 86400
    await raw.aclose()


async def test_soft_warning_once_across_replicas(
    prices: PriceTable, replicas: tuple[RedisCounters, ...]
) -> None:
    rec = Recorded()
    config = BudgetConfig(Limits(session_usd=1.0))
    services = [BudgetService(config, r, prices, rec.hooks()) for r in replicas]
    admissions = [await services[i % 2].admit(req()) for i in range(6)]
    await asyncio.gather(*(services[i % 2].settle(a, event(0.15)) for i, a in enumerate(admissions)))
    assert rec.warnings == [("app", "session_usd")]  # $0.90 >= $0.80, counted by one replica only


async def test_block_is_shared(prices: PriceTable, replicas: tuple[RedisCounters, ...]) -> None:
    config = BudgetConfig(Limits())
    one, two = (BudgetService(config, r, prices) for r in replicas)
    await one.block_session("s-1")
    with pytest.raises(BudgetExceeded) as info:
        await two.admit(req("s-1"))
    assert info.value.limit == "blocked"
    await two.block_app("app")
    with pytest.raises(BudgetExceeded, match="App app is blocked"):
        await one.admit(req("s-2"))
    await one.unblock_app("app")
    await two.unblock_session("s-1")
    await one.admit(req("s-1"))


async def test_abandoned_reservations_expire(server: RedisServer) -> None:
    counters = RedisCounters.from_url(server.url, reservation_ttl_s=0.05)
    limits = Limits(session_model_calls=1)
    first = await counters.try_reserve("s-1", "app", DAY, limits, Estimate(10, 10))
    assert first.admitted  # ... and its replica dies without reconciling
    assert not (await counters.try_reserve("s-1", "app", DAY, limits, Estimate(10, 10))).admitted
    await asyncio.sleep(0.1)  # time passes beyond the reservation's 0.05 s TTL (on Redis's clock)
    assert (await counters.try_reserve("s-1", "app", DAY, limits, Estimate(10, 10))).admitted
    snap = await counters.usage("s-1", "app", DAY)
    assert snap.session == Counts(0, 0, 0, 0, 10, 10, 1)  # only the new reservation is held
    await counters.aclose()


async def reachable(counters: RedisCounters) -> bool:
    """The counters answer again (a call in the cool-down after an error fails at once)."""
    try:
        await counters.usage("probe", "app", DAY)
    except CountersUnavailable:
        return False
    return True


async def test_fail_modes_while_redis_is_down_and_recovery(prices: PriceTable, server: RedisServer) -> None:
    rec = Recorded()
    counters = RedisCounters.from_url(server.url, timeout_s=0.1, cooldown_s=0.05)
    limits = Limits(session_usd=0.10)
    open_svc = BudgetService(BudgetConfig(limits), counters, prices, rec.hooks())
    closed_svc = BudgetService(BudgetConfig(limits, fail_mode=FAIL_CLOSED), counters, prices, rec.hooks())
    await open_svc.settle(await open_svc.admit(req()), event())
    server.stop()
    started = time.monotonic()
    admission = await asyncio.wait_for(open_svc.admit(req()), timeout=2)
    assert admission.degraded and rec.backend == [REDIS_UNAVAILABLE]
    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(closed_svc.admit(req()), timeout=2)
    assert rec.backend[-1] == REDIS_UNAVAILABLE_REFUSED
    assert time.monotonic() - started < 1.0
    server.start()  # same port, empty data (no persistence)
    assert await wait_until_async(partial(reachable, counters))  # past the cool-down, reconnected
    await asyncio.wait_for(open_svc.settle(admission, event()), timeout=2)  # the degraded call still counts
    fresh = await asyncio.wait_for(closed_svc.admit(req()), timeout=2)
    assert fresh.reservation.held and not fresh.degraded
    snap = await counters.usage("s-1", "app", DAY)
    assert snap.session is not None and snap.session.used_nanos == 30_000_000
    await counters.aclose()


async def test_unresponsive_server_times_out_quickly(prices: PriceTable) -> None:
    # A socket that accepts connections and never answers: the worst case for a request path.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        rec = Recorded()
        counters = RedisCounters.from_url(url, timeout_s=0.1)
        svc = BudgetService(BudgetConfig(Limits(session_usd=1.0)), counters, prices, rec.hooks())
        started = time.monotonic()
        admission = await asyncio.wait_for(svc.admit(req()), timeout=2)
        # Bounded by the counters' own 0.1 s timeout (plus a loaded machine's slack), not by the server.
        assert admission.degraded and time.monotonic() - started < 0.1 + SLACK_S
        assert rec.backend == [REDIS_UNAVAILABLE]
        await counters.aclose()


async def test_a_call_without_session_counts_for_its_app_only(
    prices: PriceTable, replicas: tuple[RedisCounters, ...]
) -> None:
    svc = BudgetService(BudgetConfig(Limits(session_usd=0.01, app_daily_usd=1.0)), replicas[0], prices)
    for _ in range(3):
        settlement = await svc.settle(await svc.admit(req("")), event(session=""))
    assert settlement.remaining_usd == pytest.approx(0.91)
    snap = await replicas[1].usage("", "app", DAY)
    assert snap.session is None and snap.app_day == Counts(used_nanos=90_000_000)
