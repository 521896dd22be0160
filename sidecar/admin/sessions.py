"""Sessions API (SPEC R-AC-5, §13, R-RS-2/4/5): ``GET /sidecar/v1/sessions`` and
``GET /sidecar/v1/sessions/{id}``.

Answers from the read side (``store.queries.ReadStore``): the per-session rollup and indexed queries,
never the history loaded into Python.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from sidecar.admin.reads import (
    DEFAULT_WINDOW_S,
    FLUSH_TIMEOUT_S,
    Reader,
    Scope,
    Time,
    invalid,
    parse_time,
)
from sidecar.errors import NotFound
from sidecar.store.queries import (
    DEFAULT_CALLS_LIMIT,
    MAX_LIMIT,
    ORDERS,
    InvalidQuery,
    SessionFilters,
    SessionQuery,
)


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
    response_cache_savings_usd: float  # outcome cache_hit: what the replayed answer had cost
    ttft_s: float | None
    duration_s: float
    tool_uses: list[str]
    provider: str  # anthropic | bedrock | vertex
    tool_results: list[ToolResult]
    # Present when the client sent Claude Code's subagent headers (R-RS-4).
    agent_id: str | None = None
    parent_agent_id: str | None = None
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
    """One session (SPEC §13); totals are the whole session's. ``calls`` and ``next_calls_after`` only
    in ``GET /sidecar/v1/sessions/{id}``."""

    session_id: str
    session_source: str
    app: str
    started_at: str
    started_at_ts: float
    last_seen_at: str
    last_seen_at_ts: float
    duration_s: float
    open: bool
    events: int
    model_calls: int
    error_calls: int
    retries: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cache_write_5m: int
    cache_write_1h: int
    tokens: int
    cost_usd: float
    unpriced_calls: int
    cache_hit_ratio: float | None
    cache_savings_usd: float
    cache_miss_cost_usd: float
    cache_misses: int
    # GET /sidecar/v1/sessions/{id} only: the session's cache misses by reason (SPEC R-CD-3).
    cache_misses_by_reason: dict[str, int] | None = None
    model_time_s: float
    tool_time_s: float
    measured_tool_results: int
    models: list[str]
    agent_ids: list[str] = Field(description="Claude Code agent ids seen in the session (R-RS-4)")
    providers: list[str] = Field(
        description="Where the session's calls went: anthropic | bedrock | vertex (SPEC R-CP-5)"
    )
    tools: dict[str, ToolStats]
    calls: list[Call] | None = None
    next_calls_after: str | None = None


class SessionList(_Closed):
    sessions: list[Session]
    next_cursor: str | None


router = APIRouter(tags=["sessions"])


@router.get(
    "/sidecar/v1/sessions",
    name="list_sessions",
    response_model=SessionList,
    response_model_exclude_unset=True,
)
async def list_view(
    reader: Reader,
    limit: Annotated[int, Query(description=f"Sessions per page, 1 to {MAX_LIMIT}.")] = 50,
    order: Annotated[str, Query(description=f"One of {', '.join(ORDERS)} (largest first).")] = "recent",
    app: Annotated[str | None, Query(description="Only this app's sessions.")] = None,
    model: Annotated[str | None, Query(description="Only sessions with a call to this model.")] = None,
    since: Time = None,
    until: Time = None,
    window_s: Annotated[
        float | None, Query(description="Older form of `since`: the last this many seconds.")
    ] = None,
    min_cost_usd: Annotated[float | None, Query(description="Only sessions costing at least this.")] = None,
    state: Annotated[str | None, Query(description="`open` or `closed`.")] = None,
    q: Annotated[str | None, Query(description="Session-id prefix.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    scope: Scope = "local",
) -> dict[str, Any]:
    """Sessions with activity between ``since`` (default: 7 days ago) and ``until``, without their
    calls, one page at a time."""
    now = time.time()
    start = parse_time("since", since, now - (DEFAULT_WINDOW_S if window_s is None else window_s))
    end = parse_time("until", until, now) if until is not None else None
    store = reader.pick(scope)
    try:
        query = SessionQuery(
            now=now,
            idle_timeout_s=reader.idle_timeout_s,
            filters=SessionFilters(start, end, app, model, min_cost_usd, state, q),
            order=order,
            limit=limit,
            cursor=cursor,
        )
        if scope == "local":
            await asyncio.to_thread(reader.flush, FLUSH_TIMEOUT_S)
        page = await asyncio.to_thread(store.list_sessions, query)
    except InvalidQuery as exc:
        raise invalid(exc) from None
    return {"sessions": page.sessions, "next_cursor": page.next_cursor}


@router.get(
    "/sidecar/v1/sessions/{session_id:path}",
    name="get_session",
    response_model=Session,
    response_model_exclude_unset=True,
    responses={404: {"description": "Unknown session"}},
)
async def detail_view(
    reader: Reader,
    session_id: str,
    calls_limit: Annotated[int, Query(description="Calls per answer, oldest first.")] = DEFAULT_CALLS_LIMIT,
    calls_after: Annotated[
        str | None, Query(description="`next_calls_after` of the previous answer.")
    ] = None,
    scope: Scope = "local",
) -> dict[str, Any]:
    """One session with a page of its calls, oldest first; ``next_calls_after`` pages on."""
    store = reader.pick(scope)
    if scope == "local":
        await asyncio.to_thread(reader.flush, FLUSH_TIMEOUT_S)
    try:
        doc = await asyncio.to_thread(
            store.session_detail,
            session_id,
            now=time.time(),
            idle_timeout_s=reader.idle_timeout_s,
            calls_limit=calls_limit,
            calls_after=calls_after,
        )
    except InvalidQuery as exc:
        raise invalid(exc) from None
    if doc is None:
        raise NotFound(f"Unknown session: {session_id[:200]}")
    return doc
