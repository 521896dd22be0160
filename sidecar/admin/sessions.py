"""Sessions API (SPEC R-AC-5, §13): ``GET /sidecar/v1/sessions`` and ``GET /sidecar/v1/sessions/{id}``.

Answers from the local store (fresh for this replica), aggregated by the pure functions of
``core.sessions`` — the same ones ``report`` uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from sidecar.core.sessions import list_sessions, session_summary
from sidecar.errors import NotFound
from sidecar.store.base import EventStore

DEFAULT_WINDOW_S = 7 * 86400.0
MAX_LIMIT = 1000
FLUSH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SessionsReader:
    """The events the sessions routes read, once the recorder has handed it what is queued."""

    store: EventStore
    flush: Callable[[float], bool]  # the recorder's ``flush(timeout_s)``; blocks, so run off the loop
    idle_timeout_s: float


def sessions_reader() -> SessionsReader:
    raise LookupError("the admin app was built without a SessionsReader")  # bound by build_admin


Reader = Annotated[SessionsReader, Depends(sessions_reader)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolStats(_Closed):
    count: int
    measured: int
    errors: int
    p50_s: float | None
    p95_s: float | None
    total_s: float


class ToolResult(_Closed):
    tool_use_id: str
    name: str
    latency_s: float
    is_error: bool


class Call(_Closed):
    request_id: str | None
    started_at: str
    started_at_ts: float
    operation: str
    model: str | None
    stream: bool
    status: int
    outcome: str
    error_type: str | None
    stop_reason: str | None
    retry_count: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_usd: float | None
    ttft_s: float | None
    duration_s: float
    tool_uses: list[str]
    tool_results: list[ToolResult]
    cache_outcome: str | None = Field(
        description="hit | write | miss | none (SPEC R-CD-1); null: not diagnosed"
    )
    cache_miss_reason: str | None = Field(
        description="For a miss: ttl_expired | model_changed | system_changed | tools_changed | "
        "messages_changed | breakpoint_moved | evicted"
    )
    cache_miss_detail: str | None = Field(description="Where the prefix changed; never prompt text")
    cache_missed_tokens: int | None
    cache_miss_cost_usd: float | None = Field(description="Paid for the missed tokens minus reading them")
    api_cache_miss_reason: str | None = Field(
        description="The API's diagnostics.cache_miss_reason.type when the answer carried one; pending: null"
    )


class Session(_Closed):
    """One session (SPEC §13); ``calls`` only in ``GET /sidecar/v1/sessions/{id}``."""

    session_id: str
    session_source: str
    app: str
    started_at: str
    started_at_ts: float
    last_seen_at: str
    last_seen_at_ts: float
    duration_s: float
    open: bool
    model_calls: int
    error_calls: int
    retries: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_usd: float
    unpriced_calls: int
    cache_hit_ratio: float | None
    cache_savings_usd: float
    cache_miss_cost_usd: float
    cache_misses: dict[str, int] = Field(description="Cache misses of the session's calls, by reason")
    model_time_s: float
    tool_time_s: float
    tools: dict[str, ToolStats]
    calls: list[Call] | None = None


class SessionList(_Closed):
    sessions: list[Session]


router = APIRouter(tags=["sessions"])


@router.get(
    "/sidecar/v1/sessions",
    name="list_sessions",
    response_model=SessionList,
    response_model_exclude_unset=True,
)
async def list_view(
    reader: Reader,
    limit: Annotated[int, Query(description=f"At most this many sessions (capped at {MAX_LIMIT}).")] = 50,
    window_s: Annotated[float, Query(description="Sessions with a call in the last this many seconds.")] = (
        DEFAULT_WINDOW_S
    ),
    order: Annotated[str, Query(description="`cost` (most expensive first) or `recent` (default).")] = (
        "recent"
    ),
) -> dict[str, Any]:
    """Sessions of the last ``window_s`` seconds, without their calls."""
    now = time.time()
    await asyncio.to_thread(reader.flush, FLUSH_TIMEOUT_S)
    events = await asyncio.to_thread(reader.store.events, since=now - window_s)
    sessions = list_sessions(
        events,
        now=now,
        idle_timeout_s=reader.idle_timeout_s,
        limit=max(min(limit, MAX_LIMIT), 0),
        order=order if order in ("cost", "recent") else "recent",
    )
    return {"sessions": sessions}


@router.get(
    "/sidecar/v1/sessions/{session_id:path}",
    name="get_session",
    response_model=Session,
    response_model_exclude_unset=True,
    responses={404: {"description": "Unknown session"}},
)
async def detail_view(reader: Reader, session_id: str) -> dict[str, Any]:
    """One session with every recorded call, oldest first."""
    await asyncio.to_thread(reader.flush, FLUSH_TIMEOUT_S)
    events = await asyncio.to_thread(reader.store.events, session_id=session_id)
    if not events:
        raise NotFound(f"Unknown session: {session_id[:200]}")
    return session_summary(events, now=time.time(), idle_timeout_s=reader.idle_timeout_s, with_calls=True)
