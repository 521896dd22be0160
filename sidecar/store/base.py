"""The event store interface: what the recorder writes to and the admin API / reports read from.

Implementations: :class:`sidecar.store.sqlite.SQLiteStore` (embedded default). Callers depend on this
protocol only; ``sidecar.app`` picks the implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sidecar.core.events import CallEvent


@runtime_checkable
class EventStore(Protocol):
    """A durable home for :class:`CallEvent` records.

    Methods are synchronous and may block on disk I/O: call them from a worker thread (the recorder's)
    or through ``asyncio.to_thread``, never directly on the event loop's hot path.
    """

    def open(self) -> None:
        """Create or migrate the schema. Idempotent; must be called before any other method."""

    def write_events(self, events: Sequence[CallEvent]) -> None:
        """Persist ``events`` atomically. Idempotent by ``event_id``: a repeated id is ignored."""

    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> list[CallEvent]:
        """Events with ``since <= started_at < until`` (bounds optional), oldest first.

        ``limit`` keeps the first (oldest) ``limit`` matches.
        """
        ...

    def purge(self, older_than: float) -> int:
        """Delete events that started before ``older_than`` (unix seconds); return how many."""
        ...

    def close(self) -> None:
        """Release resources. Idempotent."""
