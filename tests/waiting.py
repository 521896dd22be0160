"""Bounded waits for tests: poll a condition every few ms up to a generous deadline, then assert.

A fixed sleep before an assert guesses how long the machine needs; on a loaded 2-core CI machine the
guess is sometimes wrong. Polling returns as soon as the condition holds and fails only after
``timeout`` seconds, so a slow machine costs time, never a false failure. (A sleep that stands for
time passing in the system under test, or one before checking that something did *not* happen, is
a different thing and stays a sleep.)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_S = 10.0
INTERVAL_S = 0.01
# How much later than its true value a duration measured through a real server may come out on a
# loaded 2-core CI machine (a thread descheduled, a GC pause, the SDK's own work): upper bounds on
# measured durations use this; the tight figures are the benchmark's business.
SLACK_S = 1.0


def wait_until(predicate: Callable[[], T], timeout: float = TIMEOUT_S, interval: float = INTERVAL_S) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that;
    after ``timeout`` seconds return its last (falsy) value, so write ``assert wait_until(...)``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)
    return value


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = TIMEOUT_S, interval: float = INTERVAL_S
) -> T:
    """:func:`wait_until` inside an event loop: sleeps with ``asyncio.sleep`` so the loop keeps running;
    ``predicate`` may be a plain function or return an awaitable (e.g. an ``async def``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        value: T = await got if inspect.isawaitable(got) else got  # type: ignore[assignment]
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)
