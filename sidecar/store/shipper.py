"""The shipper: a recorder sink that spools events and moves them to ClickHouse from its own thread.

See :mod:`sidecar.store.spool` for the delivery guarantees (durable first, claimed batches resent
unchanged until acknowledged, oldest-first drops only past the spool's byte cap), and
:mod:`sidecar.store.quarantine` for the one exception: a batch ClickHouse keeps rejecting is moved to a
dead-letter file instead of blocking every event behind it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.core.events import CallEvent
from sidecar.store.quarantine import DeadLetterFile, dead_letter_path, is_rejection
from sidecar.store.spool import DEFAULT_MAX_BYTES, Spool, SpoolBatch


class RemoteStore(Protocol):
    """What the shipper needs from the destination (``ClickHouseStore`` satisfies it)."""

    def open(self) -> None: ...

    def write_events(self, events: Sequence[CallEvent]) -> None: ...

    def close(self) -> None: ...


def _noop_count(n: int) -> None:
    return None


def _noop() -> None:
    return None


@dataclass(frozen=True, slots=True)
class ShipperOptions:
    batch_size: int = 1000
    interval_s: float = 1.0  # a partial batch waits at most this long
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    drain_timeout_s: float = 5.0  # what close() gives the final drain
    quarantine_after: int = 5  # rejections of one batch before it goes to the dead-letter file
    dead_letter_max_bytes: int = DEFAULT_MAX_BYTES  # past it, a rejected batch stays in the spool


@dataclass(frozen=True, slots=True)
class ShipperHooks:
    """Metrics callbacks (cheap, thread-safe): events shipped, failed attempts, events dropped at the cap,
    events quarantined in the dead-letter file."""

    on_shipped: Callable[[int], None] = _noop_count
    on_error: Callable[[], None] = _noop
    on_dropped: Callable[[int], None] = _noop_count
    on_quarantined: Callable[[int], None] = _noop_count


class Shipper:
    """Recorder sink (``name = "clickhouse"``) that spools events and ships them from its own thread.

    ``write`` (recorder thread) only appends to the spool; a daemon thread ships batches of up to
    ``batch_size`` as soon as a full batch waits, or every ``interval_s``, retrying failures with
    exponential backoff (jittered, ``backoff_min_s`` .. ``backoff_max_s``). The remote store is opened
    (and migrated) lazily by that thread, so a remote that is down at start-up delays nothing.
    An outage is retried for as long as it lasts; a batch the remote rejects ``quarantine_after`` times
    in a row goes to the dead-letter file beside the spool (``dead_letter``), and the next one ships.
    ``stop`` drains until its deadline; whatever is left stays in the spool file for the next start.
    """

    name = "clickhouse"

    def __init__(
        self,
        spool: Spool,
        remote: RemoteStore,
        options: ShipperOptions | None = None,
        hooks: ShipperHooks | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.spool = spool
        self.remote = remote
        self.options = opts = options or ShipperOptions()
        if opts.batch_size < 1 or opts.interval_s <= 0 or not 0 < opts.backoff_min_s <= opts.backoff_max_s:
            raise ValueError("batch_size >= 1, interval_s > 0 and 0 < backoff_min_s <= backoff_max_s needed")
        if opts.quarantine_after < 1:
            raise ValueError("quarantine_after >= 1 needed")
        self.dead_letter = DeadLetterFile(dead_letter_path(spool.path), max_bytes=opts.dead_letter_max_bytes)
        self.hooks = hooks or ShipperHooks()
        self._log = logger or logging.getLogger("sidecar.store.shipper")
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None
        self.errors = 0  # failed ship attempts since construction
        self.shipped = 0
        self._failing = 0  # consecutive failures; > 0 while an outage lasts
        self.quarantined = 0  # events moved to the dead-letter file
        self._rejected: tuple[int, int] = (-1, 0)  # (first spool id of the batch, rejections in a row)

    def depth(self) -> int:
        return self.spool.depth

    def lag_seconds(self) -> float:
        return self.spool.lag_seconds()

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: spool depth and bytes, ship lag, errors, drops."""
        return {
            "spool_pending": self.spool.depth,
            "spool_bytes": self.spool.size_bytes,
            "ship_lag_s": round(self.lag_seconds(), 3),
            "ship_errors": self.errors,
            "spool_dropped": self.spool.dropped,
            "quarantined_events": self.quarantined,
            "shipping": self._failing == 0,
        }

    def start(self) -> None:
        """Open the spool and start the thread. Idempotent; ``RuntimeError`` after ``stop``."""
        with self._state_lock:
            if self._stopping.is_set():
                raise RuntimeError("shipper is stopped")
            if self._thread is None:
                self.spool.open()
                self._thread = threading.Thread(target=self._run, name="sidecar-shipper", daemon=True)
                self._thread.start()

    def write(self, events: Sequence[CallEvent]) -> None:
        """Make ``events`` durable in the spool; raises if the disk write fails (the recorder counts it)."""
        self.spool.open()
        dropped = self.spool.append(events)
        if dropped:
            self.hooks.on_dropped(dropped)
            self._log.warning(
                "spool full: oldest events dropped",
                extra={"fields": {"dropped": dropped, "max_bytes": self.spool.max_bytes}},
            )
        if self.spool.depth >= self.options.batch_size:
            self._wakeup.set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Ask for an immediate ship and wait until the spool is empty; ``False`` on timeout."""
        end = time.monotonic() + timeout_s
        while self.spool.depth and time.monotonic() < end:
            self._wakeup.set()
            time.sleep(0.01)
        return self.spool.depth == 0

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop, shipping what it can within ``timeout_s`` (default ``drain_timeout_s``). Idempotent."""
        timeout = self.options.drain_timeout_s if timeout_s is None else timeout_s
        with self._state_lock:
            if self._stopping.is_set():
                return
            self._deadline = time.monotonic() + timeout
            self._stopping.set()
            thread = self._thread
        self._wakeup.set()
        if thread is None:
            self._close()
            return
        thread.join(timeout + 1.0)
        if thread.is_alive():
            self._log.error("shipper did not stop before its deadline; unshipped events stay in the spool")

    close = stop  # the recorder's Sink protocol

    def _run(self) -> None:
        delay = 0.0
        try:
            while not self._stopping.is_set():
                if delay:
                    self._stopping.wait(delay)
                elif self.spool.depth < self.options.batch_size:
                    self._wakeup.wait(self.options.interval_s)
                self._wakeup.clear()
                if self._stopping.is_set():
                    break
                delay = 0.0 if self._ship_pending() else self._backoff(delay)
        finally:
            try:
                self._ship_pending()
            finally:
                self._close()

    def _backoff(self, delay: float) -> float:
        o = self.options
        return min(o.backoff_max_s, max(o.backoff_min_s, delay * 2)) * random.uniform(0.8, 1.0)

    def _ship_pending(self) -> bool:
        """Ship batches until the spool is empty (or the stop deadline passes); ``False`` on a failure."""
        while self._deadline is None or time.monotonic() < self._deadline:
            try:
                self.remote.open()
                batch = self.spool.claim(self.options.batch_size)
                if batch is None:
                    return True
            except Exception as exc:
                self._failed(exc)
                return False
            try:
                self.remote.write_events(batch.events)
            except Exception as exc:
                if self._rejected_too_often(batch, exc) and self._quarantine(batch, exc):
                    continue
                return False
            try:
                self.spool.ack(batch.ids)
            except Exception as exc:
                self._failed(exc)
                return False
            self._shipped(len(batch.ids))
        return True

    def _rejected_too_often(self, batch: SpoolBatch, exc: Exception) -> bool:
        """Count a failed insert; ``True`` once this batch was rejected ``quarantine_after`` times in a
        row (an outage in between neither counts nor resets: the batch was not looked at)."""
        self._failed(exc)
        if not is_rejection(exc):
            return False
        first, count = self._rejected
        count = count + 1 if first == batch.ids[0] else 1
        self._rejected = (batch.ids[0], count)
        if count == 1:
            self._log.warning(
                "ClickHouse rejected a batch; retrying, then setting it aside",
                extra={"fields": {"events": len(batch.ids), "error": _describe(exc)}},
            )
        return count >= self.options.quarantine_after

    def _quarantine(self, batch: SpoolBatch, exc: Exception) -> bool:
        """Move the batch to the dead-letter file, then drop it from the spool; ``False`` if it could not
        be written (it stays in the spool, and is tried again)."""
        attempts = self._rejected[1]
        try:
            self.dead_letter.append(batch.events, error=_describe(exc), attempts=attempts)
            self.spool.ack(batch.ids)
        except Exception as write_exc:
            if attempts == self.options.quarantine_after:  # once per batch; ship errors count the rest
                where = str(self.dead_letter.path)
                self._log.error(
                    "could not quarantine a rejected batch; it stays in the spool",
                    extra={"fields": {"error": _describe(write_exc), "dead_letter": where}},
                )
            return False
        self._rejected, self._failing = (-1, 0), 0  # unblocked: the next batch ships at once
        self.quarantined += len(batch.ids)
        self._call(self.hooks.on_quarantined, len(batch.ids))
        fields = {"events": len(batch.ids), "attempts": attempts, "error": _describe(exc)}
        self._log.error(
            "ClickHouse kept rejecting a batch: quarantined, shipping goes on",
            extra={"fields": {**fields, "dead_letter": str(self.dead_letter.path)}},
        )
        return True

    def _shipped(self, n: int) -> None:
        self.shipped += n
        self._call(self.hooks.on_shipped, n)
        if self._failing:
            self._log.warning("shipping recovered", extra={"fields": {"failed_attempts": self._failing}})
            self._failing = 0

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._failing += 1
        self._call(self.hooks.on_error)
        if self._failing == 1:  # one line per outage; the counter tells the rest
            self._log.warning(
                "shipping failed; retrying with backoff, events wait in the spool",
                extra={"fields": {"error": _describe(exc)}},
            )

    def _call(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self._log.exception("shipper hook failed")

    def _close(self) -> None:
        left = self.spool.depth
        if left:
            self._log.warning(
                "events left in the spool for the next start", extra={"fields": {"events": left}}
            )
        for closing in (self.remote.close, self.spool.close):
            try:
                closing()
            except Exception:
                self._log.exception("shipper close failed")


def _describe(exc: BaseException) -> str:
    # The store's errors hold no secret (it scrubs the password); keep lines short all the same.
    return f"{type(exc).__name__}: {str(exc)[:300]}"
