"""Delivery to a real local HTTP receiver (aiohttp) that fails the first attempts: retries, backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from sidecar.alerting.checks import FIRE, REMIND, RESOLVE
from sidecar.alerting.notifiers import (
    KEEPALIVE,
    AlertmanagerReceiver,
    Dispatcher,
    Notification,
    RetryPolicy,
    WebhookReceiver,
    alertmanager_alert,
    describe,
    human,
)

FAST = RetryPolicy(attempts=4, base_s=0.01, cap_s=0.05, timeout_s=2.0)


@dataclass
class Receiver:
    """Answers ``fail_first`` requests with ``fail_status``, then 200; records every body."""

    fail_first: int = 0
    fail_status: int = 503
    bodies: list[Any] = field(default_factory=list)
    attempts: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return web.Response(status=self.fail_status, text="not now")
        self.bodies.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


def note(event: str, **kw: Any) -> Notification:
    base: dict[str, Any] = dict(
        event=event, key="job", check="job", kind="checkin", status="down", detail="last ping 95s ago"
    )
    base.update(fired_at=1_700_000_000.0, at=1_700_000_095.0)
    base.update(kw)
    return Notification(**base)


class Counts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, receiver: str, outcome: str) -> None:
        self.seen.append((receiver, outcome))


async def test_webhook_retries_until_the_receiver_recovers(receiver: Receiver) -> None:
    receiver.fail_first = 2
    counts = Counts()
    d = Dispatcher([WebhookReceiver(receiver.url + "/hook")], counts, FAST)
    await d.start()
    d.submit([note(FIRE), note(KEEPALIVE)])  # webhooks take no keepalives
    assert await d.drain(5.0)
    await d.stop()
    assert receiver.attempts == 3
    assert receiver.bodies == [{"text": describe(note(FIRE))}]
    assert counts.seen == [("webhook", "retried"), ("webhook", "retried"), ("webhook", "sent")]


async def test_gives_up_after_the_last_attempt_and_never_retries_a_400(receiver: Receiver) -> None:
    receiver.fail_first = 100
    counts = Counts()
    d = Dispatcher([WebhookReceiver(receiver.url)], counts, FAST)
    await d.start()
    d.submit([note(FIRE)])
    assert await d.drain(5.0)
    assert receiver.attempts == 4 and counts.seen[-1] == ("webhook", "failed")
    receiver.attempts, receiver.fail_status, counts.seen = 0, 400, []
    d.submit([note(RESOLVE)])
    assert await d.drain(5.0)
    await d.stop()
    assert receiver.attempts == 1 and counts.seen == [("webhook", "failed")]


async def test_unreachable_receiver_is_retried_then_failed() -> None:
    counts = Counts()
    d = Dispatcher([WebhookReceiver("http://127.0.0.1:9")], counts, FAST)  # discard port: refused
    await d.start()
    d.submit([note(FIRE)])
    assert await d.drain(5.0)
    await d.stop()
    assert counts.seen == [("webhook", "retried")] * 3 + [("webhook", "failed")]


async def test_alertmanager_batches_and_json_webhook(receiver: Receiver) -> None:
    counts = Counts()
    am = AlertmanagerReceiver(receiver.url, ttl_s=240.0)
    hook = WebhookReceiver(receiver.url + "/json", format="json")
    d = Dispatcher([am, hook], counts, FAST)
    await d.start()
    d.submit([note(FIRE, key="a", check="a"), note(KEEPALIVE, key="b", check="b")])
    assert await d.drain(5.0)
    await d.stop()
    am_bodies = [b for b in receiver.bodies if isinstance(b, list)]
    hook_bodies = [b for b in receiver.bodies if isinstance(b, dict)]
    assert len(am_bodies) in (1, 2) and sum(len(b) for b in am_bodies) == 2
    assert [b["check"] for b in hook_bodies] == ["a"] and hook_bodies[0]["status"] == "firing"
    assert counts.seen.count(("webhook", "sent")) == 1


async def test_a_batch_carries_only_the_newest_notification_per_alert(receiver: Receiver) -> None:
    counts = Counts()
    d = Dispatcher([AlertmanagerReceiver(receiver.url)], counts, FAST)
    d.submit([note(FIRE), note(KEEPALIVE, key="other", check="other"), note(RESOLVE, status="up")])
    await d.start()  # all three are queued before the worker takes its first batch
    assert await d.drain(5.0)
    await d.stop()
    (body,) = receiver.bodies
    assert [(a["labels"]["check"], a["endsAt"]) for a in body] == [
        ("job", "2023-11-14T22:14:55.000Z"),  # the resolve (endsAt = its decision time), not the firing
        ("other", "2023-11-14T22:18:55.000Z"),
    ]
    assert counts.seen == [("alertmanager", "sent")]


def test_alertmanager_alert_shape() -> None:
    firing = alertmanager_alert(note(FIRE, labels={"team": "ml", "alertname": "ignored"}), ttl_s=240.0)
    assert firing["labels"] == {
        "alertname": "SidecarDeadManDown",
        "check": "job",
        "kind": "checkin",
        "source": "claude-sidecar",
        "severity": "critical",
        "team": "ml",
    }
    # fired 1_700_000_000 = 2023-11-14T22:13:20Z; decided 95 s later; endsAt = decided + 240 s.
    assert firing["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert firing["endsAt"] == "2023-11-14T22:18:55.000Z"  # 22:14:55 + 4 min
    resolved = alertmanager_alert(note(RESOLVE, member="m1", fleet="voice"), ttl_s=240.0)
    assert resolved["endsAt"] == "2023-11-14T22:14:55.000Z"  # resolved: endsAt = now
    assert resolved["labels"]["member"] == "m1" and resolved["labels"]["fleet"] == "voice"


def test_texts_and_backoff() -> None:
    assert human(3725) == "1h 2m" and human(42) == "42s" and human(90061) == "1d 1h" and human(0) == "0s"
    assert (
        describe(note(FIRE)) == "[FIRING] dead-man check `job` is down: last ping 95s ago (down for 1m 35s)"
    )
    assert describe(note(REMIND)).startswith("[STILL FIRING]")
    assert describe(note(RESOLVE, status="up", member="m1")) == (
        "[RESOLVED] dead-man check `job` member `m1` is up again after 1m 35s down"
    )
    policy = RetryPolicy(base_s=0.5, cap_s=30.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 7, 8)] == [0.5, 1.0, 2.0, 30.0, 30.0]
    assert policy.delay(3, rand=lambda: 0.0) == 1.0  # jitter floor: half of 2.0


async def test_full_queue_drops_and_counts() -> None:
    counts = Counts()
    d = Dispatcher([WebhookReceiver("http://127.0.0.1:9")], counts, FAST, capacity=2)
    d.submit([note(FIRE), note(FIRE), note(FIRE)])  # not started: nothing is taken off the queue
    assert counts.seen == [("webhook", "dropped")]
    await asyncio.sleep(0)
