"""Alert delivery: Alertmanager's v2 API and Slack-style webhooks, with retries and backoff.

:class:`Dispatcher` keeps one FIFO queue and one worker per receiver, so a slow receiver never delays
another and a receiver sees an alert's firing before its resolve. A delivery is retried on connection
errors, timeouts, 429 and 5xx with exponential backoff (jittered, capped); any other 4xx fails at once.
Every delivery is counted ``sidecar_alert_notifications_total{receiver, outcome}``: ``sent``,
``retried`` (per failed attempt that will be retried), ``failed`` (gave up), ``dropped`` (queue full).

Alertmanager forgets an alert whose ``endsAt`` passes without a re-post, so firing alerts carry
``endsAt = now + 4 x resend interval`` and the engine re-posts them (``KEEPALIVE``) every interval; a
resolve carries ``endsAt = now``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from sidecar.alerting.checks import FIRE, REMIND, RESOLVE
from sidecar.core.timestamps import iso_utc

KEEPALIVE = "keepalive"  # Alertmanager re-post of a firing alert; webhooks ignore it
ALERTNAME = "SidecarDeadManDown"
log = logging.getLogger("sidecar.alerting")


@dataclass(frozen=True, slots=True)
class Notification:
    event: str  # FIRE | REMIND | RESOLVE | KEEPALIVE
    key: str
    check: str
    kind: str
    status: str
    detail: str
    fired_at: float  # the outage's start (Alertmanager startsAt)
    at: float  # when this notification was decided
    member: str | None = None
    fleet: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def human(seconds: float) -> str:
    """``3725`` -> ``1h 2m``; ``42`` -> ``42s``."""
    s = int(max(0.0, seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def describe(n: Notification) -> str:
    what = f"check `{n.check}`" + (f" member `{n.member}`" if n.member else "")
    if n.event == RESOLVE:
        return f"[RESOLVED] dead-man {what} is {n.status} again after {human(n.at - n.fired_at)} down"
    prefix = "[FIRING]" if n.event == FIRE else "[STILL FIRING]"
    return f"{prefix} dead-man {what} is down: {n.detail} (down for {human(n.at - n.fired_at)})"


def alertmanager_alert(n: Notification, ttl_s: float) -> dict[str, Any]:
    labels = {
        **n.labels,
        "alertname": ALERTNAME,
        "check": n.check,
        "kind": n.kind,
        "source": "claude-sidecar",
    }
    labels.setdefault("severity", "critical")
    if n.fleet:
        labels["fleet"] = n.fleet
    if n.member:
        labels["member"] = n.member
    ends = n.at if n.event == RESOLVE else n.at + ttl_s
    return {
        "labels": labels,
        "annotations": {"summary": describe(n), "description": n.detail},
        "startsAt": iso_utc(n.fired_at),
        "endsAt": iso_utc(ends),
    }


def webhook_body(n: Notification, fmt: str) -> dict[str, Any]:
    text = describe(n)
    if fmt == "slack":
        return {"text": text}
    return {
        "text": text,
        "event": n.event,
        "status": "resolved" if n.event == RESOLVE else "firing",
        "check": n.check,
        "kind": n.kind,
        "fleet": n.fleet,
        "member": n.member,
        "detail": n.detail,
        "fired_at": n.fired_at,
        "at": n.at,
        "labels": dict(n.labels),
    }


class DeliveryError(Exception):
    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Receiver(Protocol):
    @property
    def label(self) -> str:
        """Metric label: ``alertmanager`` | ``webhook``."""
        ...

    @property
    def batch(self) -> bool:
        """Whether one request carries several notifications."""
        ...

    def accepts(self, n: Notification) -> bool: ...

    def request(self, batch: Sequence[Notification]) -> tuple[str, Any]:
        """URL and JSON body for one delivery."""
        ...


@dataclass(frozen=True)
class AlertmanagerReceiver:
    url: str  # base URL, e.g. http://alertmanager:9093
    ttl_s: float = 240.0
    label: str = "alertmanager"
    batch: bool = True

    def accepts(self, n: Notification) -> bool:
        return n.event in (FIRE, REMIND, RESOLVE, KEEPALIVE)

    def request(self, batch: Sequence[Notification]) -> tuple[str, Any]:
        return self.url + "/api/v2/alerts", [alertmanager_alert(n, self.ttl_s) for n in batch]


@dataclass(frozen=True)
class WebhookReceiver:
    url: str
    format: str = "slack"
    label: str = "webhook"
    batch: bool = False

    def accepts(self, n: Notification) -> bool:
        return n.event in (FIRE, REMIND, RESOLVE)

    def request(self, batch: Sequence[Notification]) -> tuple[str, Any]:
        return self.url, webhook_body(batch[0], self.format)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Backoff before retry ``attempt`` (1-based): base x 2^(attempt-1), capped, jittered to 50-100 %."""
        return float(min(self.cap_s, self.base_s * 2.0 ** (attempt - 1)) * (0.5 + 0.5 * rand()))


class Dispatcher:
    """Queues notifications per receiver and delivers them in the background. ``start`` before use."""

    def __init__(
        self,
        receivers: Sequence[Receiver],
        count: Callable[[str, str], None],
        retry: RetryPolicy | None = None,
        capacity: int = 1000,
    ) -> None:
        self.receivers = list(receivers)
        self.retry = retry or RetryPolicy()
        self._count = count
        self._capacity = capacity
        self._queues = [asyncio.Queue[Notification](capacity) for _ in self.receivers]
        self._workers: list[asyncio.Task[None]] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.retry.timeout_s)
        self._http = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "claude-sidecar"})
        self._workers = [
            asyncio.ensure_future(self._work(r, q)) for r, q in zip(self.receivers, self._queues, strict=True)
        ]

    def replace_receivers(self, receivers: Sequence[Receiver], drain_s: float = 5.0) -> None:
        """Reload (SIGHUP), on the serving loop: a receiver kept as it was keeps its queue and worker (its
        order of firing and resolve holds); a removed one delivers what it has queued (up to ``drain_s``)
        and stops; a new one starts empty."""
        started = self._http is not None
        queues, workers = [], []
        for r in receivers:
            if r in self.receivers:
                i = self.receivers.index(r)
                queues.append(self._queues[i])
                workers.extend(self._workers[i : i + 1])
                continue
            queue = asyncio.Queue[Notification](self._capacity)
            queues.append(queue)
            if started:
                workers.append(asyncio.ensure_future(self._work(r, queue)))
        for r, queue, worker in zip(self.receivers, self._queues, self._workers, strict=False):
            if r not in receivers:
                task = asyncio.ensure_future(self._retire(queue, worker, drain_s))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
        self.receivers, self._queues, self._workers = list(receivers), queues, workers

    @staticmethod
    async def _retire(queue: asyncio.Queue[Notification], worker: asyncio.Task[None], drain_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), drain_s)
        worker.cancel()

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Queue for every receiver that takes them. Never blocks; a full queue drops (counted)."""
        for receiver, queue in zip(self.receivers, self._queues, strict=True):
            for n in notifications:
                if not receiver.accepts(n):
                    continue
                try:
                    queue.put_nowait(n)
                except asyncio.QueueFull:
                    self._count(receiver.label, "dropped")
                    log.error("alert queue full, notification dropped", extra={"fields": {"check": n.check}})

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every queue is delivered (True) or ``timeout_s`` passes (False)."""
        try:
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float = 5.0) -> None:
        await self.drain(timeout_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, *self._retiring, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _work(self, receiver: Receiver, queue: asyncio.Queue[Notification]) -> None:
        while True:
            batch = [await queue.get()]
            while receiver.batch and not queue.empty() and len(batch) < 100:
                batch.append(queue.get_nowait())
            latest = {n.key: n for n in batch}  # one alert per key per request: the newest wins
            try:
                await self._deliver(receiver, list(latest.values()))
            except Exception:
                log.exception("alert delivery crashed")
            finally:
                for _ in batch:
                    queue.task_done()

    async def _deliver(self, receiver: Receiver, batch: Sequence[Notification]) -> None:
        url, body = receiver.request(batch)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await self._post(url, body)
            except DeliveryError as exc:
                if exc.retry and attempt < self.retry.attempts:
                    self._count(receiver.label, "retried")
                    await asyncio.sleep(self.retry.delay(attempt))
                    continue
                self._count(receiver.label, "failed")
                log.error(
                    "alert delivery failed",
                    extra={"fields": {"receiver": receiver.label, "error": str(exc), "attempts": attempt}},
                )
                return
            self._count(receiver.label, "sent")
            return

    async def _post(self, url: str, body: Any) -> None:
        assert self._http is not None, "Dispatcher.start() was not called"
        try:
            async with self._http.post(url, json=body) as resp:
                if resp.status < 300:
                    return
                text = (await resp.text())[:200]
                retry = resp.status == 429 or resp.status >= 500
                raise DeliveryError(f"HTTP {resp.status}: {text}", retry=retry)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retry=True) from exc
