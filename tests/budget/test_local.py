"""The budget service over in-process counters: refusals, bursts, warnings, blocks, restore."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import pytest

from sidecar.budget import BudgetCounters, CountersUnavailable, Decision, Reconciled, Reservation, Snapshot
from sidecar.budget.local import LocalCounters
from sidecar.budget.service import (
    OVER_LIMIT,
    REDIS_UNAVAILABLE,
    REDIS_UNAVAILABLE_REFUSED,
    THRESHOLD,
    AdmitRequest,
    BudgetHooks,
    BudgetService,
    NullBudgetService,
)
from sidecar.core.budget_config import FAIL_CLOSED, BudgetConfig, Limits
from sidecar.core.budget_counts import Counts
from sidecar.core.budget_estimate import Actual, Estimate, charge_usd
from sidecar.core.events import REFUSED, CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage
from sidecar.errors import BudgetExceeded, ConfigError, ServiceUnavailable

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
MODEL = "claude-sonnet-4-5"
# Estimate of a 1000-byte body with max_tokens 2000 on Sonnet 4.5: 1512 * $6/M + 2000 * $15/M = $0.039072,
# above the $0.03 every test call really costs, as the reservation scheme requires.
BODY, MAX_TOKENS, COST = 1000, 2000, 0.03


def clock() -> float:
    """The counters' clock in these tests: fixed at ``NOW``, the date the calls carry (with the real
    clock, sessions restored at ``NOW`` would expire once the calendar passed ``NOW`` + their TTL)."""
    return NOW


@dataclass
class Recorded:
    refusals: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    backend: list[str] = field(default_factory=list)

    def hooks(self) -> BudgetHooks:
        return BudgetHooks(
            on_refusal=lambda app, limit: self.refusals.append((app, limit)),
            on_warning=lambda app, limit: self.warnings.append((app, limit)),
            on_backend_error=self.backend.append,
        )


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def service(
    prices: PriceTable,
    limits: Limits,
    rec: Recorded | None = None,
    counters: BudgetCounters | None = None,
    fail_mode: str = "open",
) -> BudgetService:
    config = BudgetConfig(limits, fail_mode=fail_mode)
    return BudgetService(config, counters or LocalCounters(clock=clock), prices, rec.hooks() if rec else None)


def req(session: str = "s-1", app: str = "app", body: int = BODY, now: float = NOW) -> AdmitRequest:
    return AdmitRequest(session, app, MODEL, body, MAX_TOKENS, now)


def event(cost: float | None = COST, session: str = "s-1", app: str = "app", **kw: object) -> CallEvent:
    values: dict[str, object] = {
        "event_id": "e",
        "started_at": NOW,
        "app": app,
        "session_id": session,
        "session_source": "header",
        "method": "POST",
        "path": "/v1/messages",
        "operation": "chat",
        "stream": False,
        "model": MODEL,
        "cost_usd": cost,
        "usage": Usage(input_tokens=100, output_tokens=50),
    }
    return CallEvent(**{**values, **kw})  # type: ignore[arg-type]


async def call(svc: BudgetService, request: AdmitRequest | None = None, cost: float = COST) -> float | None:
    admission = await svc.admit(request or req())
    settlement = await svc.settle(admission, event(cost, request.session_id if request else "s-1"))
    return settlement.remaining_usd


async def test_sequential_calls_are_refused_once_the_ceiling_is_really_reached(prices: PriceTable) -> None:
    rec = Recorded()
    svc = service(prices, Limits(session_usd=0.10), rec)
    remaining = [await call(svc) for _ in range(4)]  # used before each: 0, .03, .06, .09 < .10
    assert remaining == pytest.approx([0.07, 0.04, 0.01, 0.0])
    with pytest.raises(BudgetExceeded) as info:
        await svc.admit(req())
    assert info.value.limit == "session_usd"
    assert (
        info.value.message == "Session budget exceeded: session_usd limit $0.10, used $0.12 (session s-1)"
    )
    assert rec.refusals == [("app", "session_usd")]
    snap, _, _ = await svc.usage("s-1", "app", NOW)
    assert snap.session == Counts(120_000_000, 600, 4, 0, 0, 0, 0)  # refused calls are not model calls


async def test_own_estimate_never_refuses_a_call(prices: PriceTable) -> None:
    svc = service(prices, Limits(session_usd=0.10))
    await call(svc, cost=0.09)
    # A 1 MB body reserves about $6, far above the $0.01 left: admitted, its estimate is its own.
    admission = await svc.admit(req(body=1_000_000))
    assert admission.reservation.nanos > 6 * 10**9
    await svc.settle(admission, event(0.005))
    snap, _, _ = await svc.usage("s-1", "app", NOW)
    assert snap.session is not None and snap.session.used_nanos == 95_000_000


async def burst(services: Sequence[BudgetService], tasks: int, seed: int, session: str = "s-1") -> int:
    """``tasks`` clients (spread over ``services``, e.g. replicas) each calling in a loop with random
    pauses between admit and settle. A refused client retries later while other calls are in flight
    (their reservations may be what refused it) and stops once nothing is. Returns the admitted count."""
    rng = random.Random(seed)
    admitted = 0

    async def client(svc: BudgetService) -> None:
        nonlocal admitted
        while True:
            await asyncio.sleep(rng.random() * 0.002)
            try:
                admission = await svc.admit(req(session))
            except BudgetExceeded:
                snap, _, _ = await svc.usage(session, "app", NOW)
                if snap.session is None or snap.session.reserved_calls == 0:
                    return
                continue
            admitted += 1
            await asyncio.sleep(rng.random() * 0.003)
            await svc.settle(admission, event(COST, session))

    await asyncio.gather(*(client(services[i % len(services)]) for i in range(tasks)))
    return admitted


@pytest.mark.parametrize("seed", range(5))
async def test_parallel_burst_overshoots_by_at_most_one_request(prices: PriceTable, seed: int) -> None:
    svc = service(prices, Limits(session_usd=0.10))
    admitted = await burst([svc], 20, seed)
    snap, _, _ = await svc.usage("s-1", "app", NOW)
    assert snap.session is not None
    used = snap.session.used_nanos
    # Bound: used < ceiling + one call ($0.13); and the ceiling was really reached (used >= $0.10).
    assert 100_000_000 <= used < 130_000_000
    assert admitted == 4 and used == 120_000_000
    assert snap.session.reserved_nanos == snap.session.reserved_calls == 0


async def test_parallel_burst_never_overshoots_the_model_call_ceiling(prices: PriceTable) -> None:
    rec = Recorded()
    svc = service(prices, Limits(session_model_calls=5), rec)
    results = await asyncio.gather(*(svc.admit(req()) for _ in range(20)), return_exceptions=True)
    admissions = [r for r in results if not isinstance(r, BaseException)]
    assert len(admissions) == 5
    assert rec.refusals == [("app", "session_model_calls")] * 15
    refusal = next(r for r in results if isinstance(r, BudgetExceeded))
    assert refusal.message == (
        "Session budget exceeded: session_model_calls limit 5, "
        "used 0 + 5 reserved by calls in flight (session s-1)"
    )
    for a in admissions[:2]:
        await svc.settle_failed(a)  # never reached the upstream: not model calls
    await asyncio.gather(*(svc.settle(a, event()) for a in admissions[2:]))
    snap, _, _ = await svc.usage("s-1", "app", NOW)
    assert snap.session is not None and (snap.session.model_calls, snap.session.reserved_calls) == (3, 0)
    assert len([await svc.admit(req()) for _ in range(2)]) == 2


async def test_token_and_tool_ceilings(prices: PriceTable) -> None:
    svc = service(prices, Limits(session_tokens=300, session_tool_calls=3))
    a = await svc.admit(req())
    await svc.settle(a, event(tool_uses=("search", "read")))  # 150 tokens, 2 tools
    a = await svc.admit(req())  # 150 < 300 tokens, 2 < 3 tools
    await svc.settle(a, event(tool_uses=("search", "read")))
    with pytest.raises(BudgetExceeded) as info:
        await svc.admit(req())
    assert info.value.limit == "session_tokens"
    assert "session_tokens limit 300, used 300" in info.value.message


async def test_app_daily_ceiling_is_per_utc_day(prices: PriceTable) -> None:
    svc = service(prices, Limits(app_daily_usd=0.05))
    await call(svc, req("s-1"))
    await call(svc, req("s-2"))  # $0.03 < $0.05: admitted; now $0.06
    with pytest.raises(BudgetExceeded) as info:
        await svc.admit(req("s-3"))
    assert info.value.message == (
        "App budget exceeded: app_daily_usd limit $0.05, used $0.06 (app app, UTC day 2026-11-20)"
    )
    assert (await svc.admit(req("s-3", app="other"))).reservation.held
    tomorrow = NOW + 86400
    admission = await svc.admit(req("s-3", now=tomorrow))
    assert admission.reservation.day == "2026-11-21"


async def test_soft_warning_once_per_session_and_ceiling(prices: PriceTable) -> None:
    rec = Recorded()
    svc = service(prices, Limits(session_usd=0.10, app_daily_usd=0.20), rec)
    first = [await svc.settle(await svc.admit(req()), event()) for _ in range(3)]
    assert [len(s.warnings) for s in first] == [0, 0, 1]  # $0.09 >= 80 % of $0.10
    warning = first[2].warnings[0]
    assert (warning.limit, warning.kind) == ("session_usd", THRESHOLD)
    assert warning.message == "Session s-1 reached 80 % of its session_usd ceiling: used $0.09 of $0.10"
    fourth = await svc.settle(await svc.admit(req()), event())
    assert fourth.warnings == ()
    # Another session warns for itself; the app's day crosses $0.16 once.
    other = [await svc.settle(await svc.admit(req("s-2")), event(session="s-2")) for _ in range(3)]
    assert [[w.limit for w in s.warnings] for s in other] == [[], ["app_daily_usd"], ["session_usd"]]
    assert rec.warnings == [("app", "session_usd"), ("app", "app_daily_usd"), ("app", "session_usd")]


async def test_warn_mode_admits_and_reports_would_be_refusals(prices: PriceTable) -> None:
    rec = Recorded()
    svc = service(prices, Limits(session_usd=0.05, mode="warn"), rec)
    for _ in range(2):
        await call(svc)
    admission = await svc.admit(req())
    assert [(w.limit, w.kind) for w in admission.warnings] == [("session_usd", OVER_LIMIT)]
    assert admission.warnings[0].message.startswith(
        "warn mode: Session budget exceeded: session_usd limit $0.05"
    )
    assert rec.refusals == []
    assert rec.warnings == [("app", "session_usd"), ("app", "session_usd")]  # 80 % once, then the would-be


async def test_block_and_unblock(prices: PriceTable) -> None:
    rec = Recorded()
    svc = service(prices, Limits(), rec)
    assert await svc.block_session("s-1") is True
    with pytest.raises(BudgetExceeded) as info:
        await svc.admit(req("s-1"))
    assert info.value.limit == "blocked"
    assert info.value.message == "Session s-1 is blocked by an administrator (limit blocked)"
    await svc.admit(req("s-2"))
    assert await svc.unblock_session("s-1") is False
    await svc.admit(req("s-1"))
    await svc.block_app("app")
    with pytest.raises(BudgetExceeded, match="App app is blocked"):
        await svc.admit(req("s-9"))
    await svc.admit(req("s-9", app="other"))
    assert (await svc.usage("s-9", "app", NOW))[1:] == (False, True)
    await svc.unblock_app("app")
    await svc.admit(req("s-9"))
    assert rec.refusals == [("app", "blocked"), ("app", "blocked")]


async def test_settle_is_idempotent_and_degraded_calls_still_count(prices: PriceTable) -> None:
    svc = service(prices, Limits(session_usd=1.0))
    admission = await svc.admit(req())
    await svc.settle(admission, event())
    assert (await svc.settle(admission, event())).remaining_usd is None
    await svc.settle_failed(admission)
    snap, _, _ = await svc.usage("s-1", "app", NOW)
    assert snap.session == Counts(30_000_000, 150, 1, 0, 0, 0, 0)


async def test_unpriced_calls_are_charged(prices: PriceTable) -> None:
    svc = service(prices, Limits(session_usd=1.0))
    admission = await svc.admit(AdmitRequest("s-1", "app", "claude-new-9", 500, 100, NOW))
    settlement = await svc.settle(admission, event(None, model="claude-new-9"))
    # 100 input at $55/M + 50 output at $137.5/M (the table's dearest, geo us): $0.012375.
    assert settlement.remaining_usd == pytest.approx(1.0 - 0.012375)


async def test_runtime_override_and_reload(prices: PriceTable) -> None:
    svc = service(prices, Limits(session_usd=1.0))
    assert svc.set_app_override("app", {"session_max_usd": 0.02}).session_usd == 0.02
    await call(svc)
    with pytest.raises(BudgetExceeded):
        await svc.admit(req())
    svc.reload(BudgetConfig(Limits(session_usd=5.0, session_tool_calls=9)))
    assert svc.limits_for("app") == Limits(0.02, None, None, 9, None)  # the runtime layer survives
    assert svc.clear_app_override("app").session_usd == 5.0
    await svc.admit(req())
    with pytest.raises(ConfigError):
        svc.set_app_override("app", {"session_max_usd": -1})


class DownCounters(LocalCounters):
    """Counters whose store is unreachable: every call fails as RedisCounters does."""

    async def try_reserve(
        self, session_id: str, app: str, day: str, limits: Limits, estimate: Estimate
    ) -> Decision:
        raise CountersUnavailable("down")

    async def reconcile(self, reservation: Reservation, actual: Actual) -> Reconciled:
        raise CountersUnavailable("down")

    async def usage(self, session_id: str, app: str, day: str) -> Snapshot:
        raise CountersUnavailable("down")


async def test_fail_modes(prices: PriceTable) -> None:
    rec = Recorded()
    svc = service(prices, Limits(session_usd=0.1), rec, counters=DownCounters(clock=clock))
    admission = await svc.admit(req())
    assert admission.degraded and not admission.reservation.held
    assert (await svc.settle(admission, event())).remaining_usd is None
    assert rec.backend == [REDIS_UNAVAILABLE, "settle_lost"]
    down = DownCounters(clock=clock)
    closed = service(prices, Limits(session_usd=0.1), rec, counters=down, fail_mode=FAIL_CLOSED)
    with pytest.raises(ServiceUnavailable):
        await closed.admit(req())
    assert rec.backend[-1] == REDIS_UNAVAILABLE_REFUSED
    with pytest.raises(ServiceUnavailable):
        await closed.usage("s-1", "app", NOW)


async def test_null_service_admits_everything() -> None:
    svc = NullBudgetService()
    admission = await svc.admit(req())
    assert (await svc.settle(admission, event())).remaining_usd is None
    await svc.settle_failed(admission)


async def test_restore_rebuilds_sessions_and_today(prices: PriceTable) -> None:
    yesterday = NOW - 86400
    events = [
        event(0.05, "s-1", started_at=yesterday, tool_uses=("a",)),
        event(0.04, "s-1", tool_uses=("a", "b")),
        event(0.50, "s-1", outcome=REFUSED),  # refused: not a model call
        event(0.50, "s-1", operation="count_tokens"),
        event(0.02, "s-2", app="other"),
        event(None, "s-3", usage=Usage(input_tokens=1000, output_tokens=100)),  # unpriced
        event(0.01, "", app="app"),  # no session: counts for the app only
    ]
    counters = LocalCounters.restore(events, NOW, charge=partial(charge_usd, prices=prices), clock=clock)

    s1 = await counters.usage("s-1", "app", "2026-11-20")
    assert s1.session == Counts(90_000_000, 300, 2, 3, 0, 0, 0)
    # Today in "app": $0.04 (s-1) + $0.06875 (s-3 at the dearest rates) + $0.01 (no session).
    assert s1.app_day.used_nanos == 40_000_000 + 68_750_000 + 10_000_000
    assert (await counters.usage("s-2", "other", "2026-11-20")).app_day.used_nanos == 20_000_000


async def test_restore_marks_crossed_ceilings_as_warned(prices: PriceTable) -> None:
    limits = Limits(session_usd=0.10)
    counters = LocalCounters.restore([event(0.085)], NOW, limits_for=lambda app: limits, clock=clock)
    rec = Recorded()
    svc = BudgetService(BudgetConfig(limits), counters, prices, rec.hooks())
    settlement = await svc.settle(await svc.admit(req()), event(0.001))
    assert settlement.warnings == () and rec.warnings == []
    assert settlement.remaining_usd == pytest.approx(0.014)  # $0.10 - $0.086


async def test_idle_sessions_are_forgotten() -> None:
    now = [NOW]
    counters = LocalCounters(session_ttl_s=60, clock=lambda: now[0])
    limits = Limits(session_usd=1.0)
    decision = await counters.try_reserve("old", "app", "2026-11-20", limits, Estimate(5, 5))
    assert decision.reservation is not None
    await counters.reconcile(decision.reservation, Actual(7))
    now[0] += 61
    await counters.try_reserve("new", "app", "2026-11-20", limits, Estimate(5, 5))
    assert (await counters.usage("old", "app", "2026-11-20")).session == Counts()


async def test_a_call_without_session_counts_for_its_app_only(prices: PriceTable) -> None:
    svc = service(prices, Limits(session_usd=0.01, app_daily_usd=1.0))
    for _ in range(3):  # $0.03 each: far above the session ceiling, which does not apply
        settlement = await svc.settle(await svc.admit(req("")), event(session=""))
    assert settlement.remaining_usd == pytest.approx(0.91)
    snap, session_blocked, _ = await svc.usage("", "app", NOW)
    assert snap.session is None and snap.app_day.used_nanos == 90_000_000 and not session_blocked
