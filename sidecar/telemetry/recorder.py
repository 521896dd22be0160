"""Recorder: fans finished :class:`CallEvent` records out to sinks, off the request path.

Modelled on OpenTelemetry's batch span processor. The proxy calls :meth:`Recorder.submit` once per
upstream call; that appends to a bounded in-memory queue and returns. A daemon worker thread (sinks such
as sqlite3 are synchronous) takes batches by size or by interval and hands each batch to every sink in
turn: whole to sinks that want one call per batch (``whole_batches``, e.g. a transaction), in small slices
to the others, yielding the core between slices so the event loop sharing it is not held up. Guarantees:

* ``submit`` never blocks and never raises. An event is dropped only when the queue is at capacity
  (``"queue_full"``) or the recorder is stopping (``"shutdown"``); every drop is counted via
  ``RecorderHooks.on_dropped`` and logged once per burst by the worker.
* Sinks are isolated: an exception in one is caught, counted (``on_sink_result(name, "error", n)``) and
  logged once per burst of failures; the other sinks still receive the batch. A sink that kept all but
  some events raises ``PartialWrite``: only those count as errors.
* ``stop`` drains what was queued until a deadline, then closes every sink.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sidecar.core.events import CallEvent, PartialWrite, Sink
from sidecar.infra.sched import lower_this_thread, yield_cpu

QUEUE_FULL = "queue_full"
SHUTDOWN = "shutdown"
_CLOSE_GRACE_S = 1.0  # extra time stop() waits for sinks to close once the drain deadline has passed
_DROP_LOG_EVERY_S = 10.0


def _ignore_dropped(reason: str, n: int) -> None:
    return None


def _ignore_sink_result(sink: str, outcome: str, n: int) -> None:
    return None


def _ignore_depth(depth: int) -> None:
    return None


@dataclass(frozen=True)
class RecorderHooks:
    """Callbacks through which the metrics module observes the recorder; all no-ops by default.

    ``on_dropped`` may be called from any thread that calls ``submit``; the others from the worker.
    They must be cheap and thread-safe; exceptions they raise are swallowed (logged once).
    """

    on_dropped: Callable[[str, int], None] = _ignore_dropped
    on_sink_result: Callable[[str, str, int], None] = _ignore_sink_result
    on_queue_depth: Callable[[int], None] = _ignore_depth


class _FlushMarker:
    """Queued by ``flush``; set by the worker once every event queued before it reached the sinks."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _SinkState:
    __slots__ = ("failures", "sink")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.failures = 0  # consecutive failed batches; > 0 means a failure burst is in progress


class Recorder:
    """Bounded, batching, never-blocking fan-out of events to sinks. See the module docstring."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        capacity: int = 100_000,
        batch_size: int = 512,
        flush_interval_s: float = 0.2,
        hooks: RecorderHooks | None = None,
        logger: logging.Logger | None = None,
        slice_size: int = 8,
    ) -> None:
        if capacity < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("capacity and batch_size must be >= 1 and flush_interval_s > 0")
        self._sinks = [_SinkState(s) for s in sinks]
        self._whole = [st for st in self._sinks if getattr(st.sink, "whole_batches", False)]
        self._sliced = [st for st in self._sinks if st not in self._whole]
        self._capacity = capacity
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._slice = max(1, slice_size)
        self._hooks = hooks or RecorderHooks()
        self._log = logger or logging.getLogger("sidecar.telemetry.recorder")
        self._queue: deque[CallEvent | _FlushMarker] = deque()
        self._wakeup = threading.Event()
        self._state_lock = threading.Lock()  # start/stop transitions and the drop counter, never per event
        self._thread: threading.Thread | None = None
        self._closed = False  # set by stop(); submit drops from then on
        self._deadline: float | None = None  # monotonic drain deadline, set by stop()
        self._inflight = 0  # events taken from the queue but not yet handed to every sink
        self._dropped = 0
        self._drops_reported = 0
        self._drops_logged_at = float("-inf")
        self._hook_failed = False

    @property
    def pending(self) -> int:
        """Events submitted but not yet handed to every sink (queued + the batch in flight); a flush
        waiting in the queue counts as one."""
        return len(self._queue) + self._inflight

    @property
    def dropped(self) -> int:
        """Events dropped since construction (all reasons)."""
        return self._dropped

    def start(self) -> None:
        """Start the worker thread. Idempotent; raises ``RuntimeError`` after ``stop``."""
        with self._state_lock:
            if self._closed:
                raise RuntimeError("recorder is stopped")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="sidecar-recorder", daemon=True)
            self._thread.start()

    def submit(self, event: CallEvent) -> None:
        """Queue ``event`` for every sink. O(1), thread-safe, never blocks, never raises.

        Safe to call from the asyncio event loop. Events submitted before ``start`` wait in the queue.
        """
        queue = self._queue
        # len() then append() is not atomic, so concurrent producers may overshoot the capacity by at most
        # one event each; a lock here would cost every call to save a handful of events.
        if self._closed:
            self._drop(SHUTDOWN)
        elif len(queue) >= self._capacity:
            self._drop(QUEUE_FULL)
        else:
            queue.append(event)
            # Wake the worker early only for a full batch; otherwise its interval timer picks the event up.
            # is_set() is a plain read, so steady traffic does not pay for Event.set()'s lock per event.
            if len(queue) >= self._batch_size and not self._wakeup.is_set():
                self._wakeup.set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Block until every event submitted before this call has been handed to every sink.

        Returns ``False`` if that did not happen within ``timeout_s`` (or the worker is not running and
        events are still queued). Do not call from the event loop: it blocks.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or self._closed:
            return self.pending == 0
        marker = _FlushMarker()
        self._queue.append(marker)  # a marker bypasses the capacity check: it must never be dropped
        self._wakeup.set()
        return marker.done.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting events, deliver what is queued until ``timeout_s`` passes, then close the sinks.

        Events still queued at the deadline are dropped (counted as ``"shutdown"``). Idempotent. Returns
        within about ``timeout_s`` plus one second; if a sink is stuck past that, the worker closes the
        sinks whenever the stuck call returns.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + timeout_s
            thread = self._thread
        self._wakeup.set()
        if thread is None:  # never started: drain in the caller's thread
            self._finish()
            return
        thread.join(max(0.0, self._deadline - time.monotonic()) + _CLOSE_GRACE_S)
        if thread.is_alive():
            self._log.error(
                "recorder worker did not finish before the shutdown deadline",
                extra={"fields": {"pending": self.pending, "timeout_s": timeout_s}},
            )

    # --- worker ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        lower_this_thread()  # the event loop preempts the recorder on a shared core (tail latency)
        try:
            while self._deadline is None:
                try:
                    self._cycle()
                except Exception:  # sinks and hooks are isolated already; this guards against our own bugs
                    self._log.exception("recorder worker cycle failed")
                    time.sleep(self._interval)
        finally:
            self._finish()

    def _cycle(self) -> None:
        if len(self._queue) < self._batch_size:
            self._wakeup.wait(self._interval)
        # Clear before draining: a set() racing with the drain then just causes one spare pass.
        self._wakeup.clear()
        self._drain()
        self._report_drops()
        self._call_hook(self._hooks.on_queue_depth, len(self._queue))

    def _finish(self) -> None:
        """Final drain up to the deadline, count leftovers as dropped, close every sink."""
        try:
            self._drain()
        finally:
            leftover = sum(1 for item in self._queue if not isinstance(item, _FlushMarker))
            self._queue.clear()
            if leftover:
                self._drop(SHUTDOWN, leftover)
            self._report_drops(force=True)
            self._close_sinks()

    def _drain(self) -> None:
        """Deliver batches until the queue is empty or the shutdown deadline (if any) has passed."""
        while True:
            deadline = self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                return
            batch, marker = self._take()
            if batch:
                self._inflight = len(batch)
                try:
                    self._deliver_in_slices(batch)
                finally:
                    self._inflight = 0
                self._call_hook(self._hooks.on_queue_depth, len(self._queue))
                self._report_drops()
            if marker is not None:
                marker.done.set()
            elif not batch:
                return

    def _take(self) -> tuple[list[CallEvent], _FlushMarker | None]:
        """Pop up to ``batch_size`` events, stopping early at a flush marker (returned with them)."""
        batch: list[CallEvent] = []
        queue = self._queue
        while len(batch) < self._batch_size:
            try:
                item = queue.popleft()
            except IndexError:
                break
            if isinstance(item, _FlushMarker):
                return batch, item
            batch.append(item)
        return batch, None

    def _deliver_in_slices(self, batch: list[CallEvent]) -> None:
        """Hand the batch to each sink ``slice_size`` events at a time, yielding the CPU between slices.

        The worker usually shares a core with the event loop: a request that arrives mid-batch then
        waits for one slice (a fraction of a millisecond) instead of a scheduler time slice (several ms).
        Sinks with ``whole_batches = True`` (one transaction per call) get the whole batch at once and
        yield inside it themselves.
        """
        events = tuple(batch)
        if self._whole:
            self._deliver(events, self._whole)
        if not self._sliced:
            return
        size = self._slice
        for start in range(0, len(events), size):
            if start or self._whole:
                yield_cpu()
            self._deliver(events[start : start + size], self._sliced)

    def _deliver(self, batch: tuple[CallEvent, ...], sinks: Sequence[_SinkState]) -> None:
        n = len(batch)
        for state in sinks:
            name = state.sink.name
            try:
                state.sink.write(batch)
            except PartialWrite as exc:  # the sink kept the rest and logged the failed events itself
                self._call_hook(self._hooks.on_sink_result, name, "ok", n - exc.failed)
                self._call_hook(self._hooks.on_sink_result, name, "error", exc.failed)
            except Exception:
                self._call_hook(self._hooks.on_sink_result, name, "error", n)
                if state.failures == 0:
                    self._log.exception(
                        "sink write failed; further failures are counted, not logged, until it recovers",
                        extra={"fields": {"sink": name, "events": n}},
                    )
                state.failures += 1
            else:
                self._call_hook(self._hooks.on_sink_result, name, "ok", n)
                if state.failures:
                    self._log.warning(
                        "sink recovered",
                        extra={"fields": {"sink": name, "failed_batches": state.failures}},
                    )
                    state.failures = 0

    def _close_sinks(self) -> None:
        for state in self._sinks:
            try:
                state.sink.close()
            except Exception:
                self._log.exception("sink close failed", extra={"fields": {"sink": state.sink.name}})

    # --- drops and hooks ------------------------------------------------------------------------------

    def _drop(self, reason: str, n: int = 1) -> None:
        with self._state_lock:
            self._dropped += n
        self._call_hook(self._hooks.on_dropped, reason, n)

    def _report_drops(self, *, force: bool = False) -> None:
        """Log drops from the worker (producers never pay for logging): the first drop of a burst at once,
        then at most one aggregated line per ``_DROP_LOG_EVERY_S``."""
        total = self._dropped
        new = total - self._drops_reported
        now = time.monotonic()
        if new and (force or now - self._drops_logged_at >= _DROP_LOG_EVERY_S):
            self._drops_reported = total
            self._drops_logged_at = now
            self._log.warning(
                "events dropped",
                extra={"fields": {"dropped": new, "dropped_total": total, "capacity": self._capacity}},
            )

    def _call_hook(self, hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            if not self._hook_failed:
                self._hook_failed = True
                self._log.exception("recorder hook failed; later hook failures are not logged")
