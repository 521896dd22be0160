from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from sidecar.core.events import CallEvent, Sink
from sidecar.infra.sched import BACKGROUND_NICE
from sidecar.telemetry.recorder import Recorder, RecorderHooks


def make_event(i: int) -> CallEvent:
    return CallEvent(
        event_id=f"ev-{i}",
        started_at=1_700_000_000.0 + i,
        app="app",
        session_id="s",
        session_source="header",
        method="POST",
        path="/v1/messages",
        operation="chat",
        stream=False,
    )


class CollectSink:
    def __init__(self, name: str = "collect") -> None:
        self.name = name
        self.events: list[CallEvent] = []
        self.batch_sizes: list[int] = []
        self.closed = threading.Event()
        self.close_calls = 0

    def write(self, events: Sequence[CallEvent]) -> None:
        self.batch_sizes.append(len(events))
        self.events.extend(events)

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


class FailingSink(CollectSink):
    """Raises while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__("failing")
        self.failing = True

    def write(self, events: Sequence[CallEvent]) -> None:
        if self.failing:
            raise OSError("disk on fire")
        super().write(events)


class BlockingSink(CollectSink):
    """Blocks inside ``write`` until ``release`` is set; ``entered`` tells the test it is stuck."""

    def __init__(self) -> None:
        super().__init__("blocking")
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, events: Sequence[CallEvent]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        super().write(events)


class HookLog:
    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()
        self.results: Counter[tuple[str, str]] = Counter()
        self.depths: list[int] = []
        self.lock = threading.Lock()

    def hooks(self) -> RecorderHooks:
        return RecorderHooks(
            on_dropped=self.on_dropped, on_sink_result=self.on_result, on_queue_depth=self.depths.append
        )

    def on_dropped(self, reason: str, n: int) -> None:
        with self.lock:
            self.dropped[reason] += n

    def on_result(self, sink: str, outcome: str, n: int) -> None:
        self.results[(sink, outcome)] += n


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records() -> Iterator[tuple[logging.Logger, list[logging.LogRecord]]]:
    logger = logging.getLogger("test.recorder")
    handler = ListHandler()
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, handler.records
    logger.removeHandler(handler)


def test_every_event_reaches_every_sink_exactly_once_in_order() -> None:
    a, b = CollectSink("a"), CollectSink("b")
    hooks = HookLog()
    rec = Recorder([a, b], batch_size=7, flush_interval_s=0.01, hooks=hooks.hooks())
    rec.start()
    sent = [make_event(i) for i in range(1000)]
    for e in sent:
        rec.submit(e)
    assert rec.flush(5)
    rec.stop()
    assert a.events == sent
    assert b.events == sent
    assert max(a.batch_sizes) <= 7
    assert len(a.batch_sizes) >= 1000 // 7  # at least ceil(1000/7)=143 batches, more if the timer fired early
    assert hooks.results == {("a", "ok"): 1000, ("b", "ok"): 1000}
    assert hooks.dropped == {}
    assert rec.pending == 0


def test_failing_sink_is_isolated_counted_and_logged_once_per_burst(
    log_records: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = log_records
    bad, good = FailingSink(), CollectSink("good")
    hooks = HookLog()
    rec = Recorder(
        [bad, good], batch_size=10, slice_size=10, flush_interval_s=0.01, hooks=hooks.hooks(), logger=logger
    )
    rec.start()
    for i in range(50):
        rec.submit(make_event(i))
    assert rec.flush(5)
    assert len(good.events) == 50
    assert hooks.results[("failing", "error")] == 50
    assert hooks.results[("good", "ok")] == 50
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # five failed batches, one log line
    assert errors[0].exc_info is not None
    assert errors[0].fields["sink"] == "failing"  # type: ignore[attr-defined]

    bad.failing = False
    rec.submit(make_event(50))
    assert rec.flush(5)
    assert [e.event_id for e in bad.events] == ["ev-50"]
    recovered = [r for r in records if r.getMessage() == "sink recovered"]
    assert recovered[0].fields == {"sink": "failing", "failed_batches": 5}  # type: ignore[attr-defined]

    bad.failing = True  # a new burst is logged again
    rec.submit(make_event(51))
    assert rec.flush(5)
    assert len([r for r in records if r.levelno == logging.ERROR]) == 2
    rec.stop()
    assert len(good.events) == 52


def test_queue_full_drops_are_counted_and_submit_does_not_block(
    log_records: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = log_records
    sink = BlockingSink()
    hooks = HookLog()
    rec = Recorder(
        [sink], capacity=10, batch_size=1, flush_interval_s=0.01, hooks=hooks.hooks(), logger=logger
    )
    rec.start()
    rec.submit(make_event(0))
    assert sink.entered.wait(5)  # the worker holds event 0 and is stuck in the sink
    started = time.perf_counter()
    for i in range(1, 16):  # 10 fit in the queue, 5 are dropped
        rec.submit(make_event(i))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # would be >= 10 s if submit waited for the sink
    assert rec.pending == 11  # 10 queued + 1 in flight
    assert rec.dropped == 5
    assert hooks.dropped == {"queue_full": 5}
    sink.release.set()
    assert rec.flush(5)
    assert [e.event_id for e in sink.events] == [f"ev-{i}" for i in range(11)]
    rec.stop()
    drop_logs = [r for r in records if r.getMessage() == "events dropped"]
    assert sum(r.fields["dropped"] for r in drop_logs) == 5  # type: ignore[attr-defined]


def test_stop_drains_then_closes_sinks_and_is_idempotent() -> None:
    sink = CollectSink()
    rec = Recorder([sink], batch_size=100, flush_interval_s=5.0)  # timer alone would not deliver in time
    rec.start()
    for i in range(250):
        rec.submit(make_event(i))
    started = time.perf_counter()
    rec.stop(timeout_s=5)
    assert time.perf_counter() - started < 2
    assert len(sink.events) == 250
    assert sink.close_calls == 1
    rec.stop()
    assert sink.close_calls == 1


def test_stop_respects_deadline_and_counts_leftovers_as_shutdown_drops() -> None:
    class SlowSink(CollectSink):
        def write(self, events: Sequence[CallEvent]) -> None:
            time.sleep(0.05)
            super().write(events)

    sink = SlowSink()
    hooks = HookLog()
    rec = Recorder([sink], batch_size=1, flush_interval_s=0.01, hooks=hooks.hooks())
    rec.start()
    for i in range(100):  # 100 x 50 ms = 5 s of work
        rec.submit(make_event(i))
    started = time.perf_counter()
    rec.stop(timeout_s=0.3)
    assert time.perf_counter() - started < 1.5
    assert sink.closed.is_set()
    assert 0 < len(sink.events) < 100
    assert hooks.dropped == {"shutdown": 100 - len(sink.events)}


def test_stop_with_a_stuck_sink_returns_and_closes_sinks_when_it_unsticks() -> None:
    sink = BlockingSink()
    other = CollectSink("other")
    hooks = HookLog()
    rec = Recorder([sink, other], batch_size=1, flush_interval_s=0.01, hooks=hooks.hooks())
    rec.start()
    for i in range(5):
        rec.submit(make_event(i))
    assert sink.entered.wait(5)
    started = time.perf_counter()
    rec.stop(timeout_s=0.2)
    assert time.perf_counter() - started < 2.5  # deadline + close grace
    assert not sink.closed.is_set()
    sink.release.set()
    assert other.closed.wait(5)
    assert sink.closed.is_set()
    # The in-flight batch finished; the four queued behind it missed the deadline.
    assert [e.event_id for e in other.events] == ["ev-0"]
    assert hooks.dropped == {"shutdown": 4}


def test_submit_after_stop_is_dropped_without_raising() -> None:
    hooks = HookLog()
    rec = Recorder([CollectSink()], hooks=hooks.hooks())
    rec.start()
    rec.stop()
    rec.submit(make_event(1))
    assert hooks.dropped == {"shutdown": 1}
    with pytest.raises(RuntimeError):
        rec.start()


def test_stop_without_start_delivers_in_the_callers_thread() -> None:
    sink = CollectSink()
    rec = Recorder([sink])
    rec.submit(make_event(1))
    assert rec.pending == 1
    assert rec.flush(0.1) is False  # no worker to deliver it
    rec.stop()
    assert [e.event_id for e in sink.events] == ["ev-1"]
    assert sink.close_calls == 1


def test_submit_from_many_threads() -> None:
    sink = CollectSink()
    rec = Recorder([sink], batch_size=64, flush_interval_s=0.01)
    rec.start()
    n_threads, per_thread = 8, 2000

    def produce(t: int) -> None:
        for i in range(per_thread):
            rec.submit(make_event(t * per_thread + i))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.flush(5)
    rec.stop()
    ids = [e.event_id for e in sink.events]
    assert len(ids) == 16_000
    assert set(ids) == {f"ev-{i}" for i in range(16_000)}


def test_flush_delivers_before_the_interval_and_times_out_on_a_stuck_sink() -> None:
    sink = CollectSink()
    rec = Recorder([sink], batch_size=1000, flush_interval_s=30.0)
    rec.start()
    for i in range(5):
        rec.submit(make_event(i))
    started = time.perf_counter()
    assert rec.flush(2)
    assert time.perf_counter() - started < 1  # not the 30 s timer
    assert len(sink.events) == 5
    assert rec.flush(1)  # nothing pending: immediate
    rec.stop()

    stuck = BlockingSink()
    rec = Recorder([stuck], flush_interval_s=0.01)
    rec.start()
    rec.submit(make_event(0))
    assert stuck.entered.wait(5)
    assert rec.flush(0.05) is False
    stuck.release.set()
    assert rec.flush(5)
    rec.stop()


def test_raising_hooks_never_reach_the_caller(
    log_records: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, records = log_records

    def boom(*_: object) -> None:
        raise ValueError("hook bug")

    sink = CollectSink()
    hooks = RecorderHooks(on_dropped=boom, on_sink_result=boom, on_queue_depth=boom)
    rec = Recorder([sink], capacity=1, flush_interval_s=0.01, hooks=hooks, logger=logger)
    rec.submit(make_event(0))
    rec.submit(make_event(1))  # queue full -> on_dropped raises, swallowed
    rec.start()
    assert rec.flush(5)
    rec.stop()
    assert [e.event_id for e in sink.events] == ["ev-0"]
    assert len([r for r in records if "hook failed" in r.getMessage()]) == 1


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        Recorder([], capacity=0)
    with pytest.raises(ValueError):
        Recorder([], flush_interval_s=0)


def test_sink_protocol_is_satisfied_by_the_test_sinks() -> None:
    sinks: list[Sink] = [CollectSink(), FailingSink(), BlockingSink()]
    assert [s.name for s in sinks] == ["collect", "failing", "blocking"]


def test_a_large_batch_reaches_sinks_in_slices_in_order() -> None:
    """Slices keep the worker's hold on a shared core short; every event still arrives once, in order."""
    sink = CollectSink()
    rec = Recorder([sink], batch_size=100, flush_interval_s=10.0, slice_size=16)
    for i in range(250):
        rec.submit(make_event(i))
    rec.start()
    assert rec.flush(5)
    rec.stop()
    assert [e.event_id for e in sink.events] == [f"ev-{i}" for i in range(250)]
    assert max(sink.batch_sizes) == 16
    # Batches of 100, 100 and 50 events, each cut into slices of 16.
    assert sink.batch_sizes == [16] * 6 + [4] + [16] * 6 + [4] + [16] * 3 + [2]


def test_whole_batch_sinks_get_each_batch_in_one_call_while_others_get_slices() -> None:
    class Transactional(CollectSink):
        whole_batches = True

    whole, sliced = Transactional("whole"), CollectSink("sliced")
    rec = Recorder([whole, sliced], batch_size=40, flush_interval_s=10.0, slice_size=8)
    for i in range(40):
        rec.submit(make_event(i))
    rec.start()
    assert rec.flush(5)
    rec.stop()
    assert whole.batch_sizes == [40] and sliced.batch_sizes == [8] * 5
    assert whole.events == sliced.events and len(whole.events) == 40


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is Linux's")
def test_sinks_run_below_the_event_loops_priority() -> None:
    # On a core shared with the event loop, a request that arrives mid-batch should preempt the sinks.
    niceness: list[int] = []

    class NiceSink(CollectSink):
        def write(self, events: Sequence[CallEvent]) -> None:
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            super().write(events)

    sink = NiceSink()
    rec = Recorder([sink], batch_size=1, flush_interval_s=0.01)
    rec.start()
    rec.submit(make_event(0))
    assert rec.flush()
    rec.stop()
    process = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness and niceness[0] == min(process + BACKGROUND_NICE, 19)
