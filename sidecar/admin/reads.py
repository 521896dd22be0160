"""What the read routes share (SPEC §14): the service they read, time and scope parameters.

``scope=local`` (default) answers from this replica's embedded store, ``scope=fleet`` from ClickHouse
when the store is ClickHouse (R-RS-5). Every query runs in a worker thread: the stores are synchronous.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query

from sidecar.errors import InvalidRequest
from sidecar.store.queries import InvalidQuery, ReadStore

DEFAULT_WINDOW_S = 7 * 86400.0
FLUSH_TIMEOUT_S = 2.0
SCOPES = ("local", "fleet")


@dataclass(frozen=True)
class SessionsReader:
    """The read side the sessions and summary routes use. ``flush``: the recorder's ``flush(timeout_s)``
    (blocks, so run it off the loop) hands the store what is queued. ``fleet``: opens the ClickHouse
    read side (``None`` without a ClickHouse store). ``ratelimits``: this replica's latest rate-limit
    headroom rows."""

    reads: ReadStore
    flush: Callable[[float], bool]
    idle_timeout_s: float
    fleet: Callable[[], ReadStore] | None = None
    ratelimits: Callable[[], list[dict[str, Any]]] | None = None  # the latest headroom (summary)

    def pick(self, scope: str) -> ReadStore:
        """The read side of ``scope``; ``InvalidRequest`` naming ``scope`` when it cannot answer."""
        if scope == "local":
            return self.reads
        if scope == "fleet" and self.fleet is not None:
            return self.fleet()
        if scope == "fleet":
            raise InvalidRequest("scope: fleet needs a ClickHouse store (SIDECAR_STORE=clickhouse://...)")
        raise InvalidRequest(f"scope: must be one of {', '.join(SCOPES)}")


def sessions_reader() -> SessionsReader:
    raise LookupError("the admin app was built without a SessionsReader")  # bound by build_admin


Reader = Annotated[SessionsReader, Depends(sessions_reader)]
Scope = Annotated[
    str, Query(description="`local` (default): this replica's store; `fleet`: ClickHouse, every replica.")
]
Time = Annotated[str | None, Query(description="Unix seconds or RFC 3339 (`2026-01-31T12:00:00Z`).")]


def parse_time(name: str, text: str | None, default: float) -> float:
    """Unix seconds or an RFC 3339 time (a time without offset is UTC); ``InvalidRequest`` naming
    ``name`` otherwise."""
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise InvalidRequest(f"{name}: not unix seconds or an RFC 3339 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = when.timestamp()
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"{name}: must be a time after 1970")
    return value


def invalid(exc: InvalidQuery) -> InvalidRequest:
    """The API's 400 for a parameter the read side refused (its message names the parameter)."""
    return InvalidRequest(str(exc))
