"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` of the fake upstream.

Per-request controls (headers): ``x-fake-usage`` (JSON usage overrides), ``x-fake-cache-fields-in-delta: 1``,
``x-fake-tool-calls: N``, ``x-fake-deltas: N``, ``x-fake-first-token-delay-ms``, ``x-fake-chunk-delay-ms``,
and the stream scenarios of ``x-fake-scenario``: ``error-in-stream`` (an ``overloaded_error`` event after
``message_start``; a 529 when not streaming), ``reset-mid-stream`` (a TCP reset halfway; before any byte
when not streaming), ``malformed-sse`` (a garbage line after the first ping), ``slow`` (default delays
0.3 s / 0.05 s unless the delay headers say otherwise). Cache diagnostics (``x-fake-diagnostics*``) are
described in ``fake_diagnostics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sidecar.testing.fake_cache import (
    InvalidRequest,
    PromptBlock,
    canonical_json,
    estimate_tokens,
    prompt_blocks,
)
from sidecar.testing.fake_content import build_answer, digest
from sidecar.testing.fake_diagnostics import opted_in, request_print
from sidecar.testing.fake_events import (
    encode_event,
    error_json,
    message_json,
    parse_usage_override,
    plan_usage,
    stream_events,
)
from sidecar.testing.fake_http import (
    ERROR_TYPES,
    STATE_KEY,
    FakeHTTPError,
    abort_connection,
    int_header,
    json_response,
    read_json,
)
from sidecar.testing.fake_state import FakeState

GARBAGE_LINE = b"this line is not valid SSE {{{\n\n"
_SAMPLING = ("temperature", "top_p", "top_k")
_SLOW_FIRST_S, _SLOW_CHUNK_S = 0.3, 0.05


@dataclass(frozen=True, slots=True)
class _Timing:
    first: float
    chunk: float


def validate_message_params(body: Mapping[str, Any], version: str | None, *, batch: bool = False) -> None:
    """The API's own 400s for a Messages body; ``version`` is the ``anthropic-version`` header."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: Field required")
    if not body["messages"]:
        raise InvalidRequest("messages: at least one message is required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise InvalidRequest("max_tokens: Field required")
    if batch and max_tokens == 0:
        raise InvalidRequest("max_tokens: 0 (cache pre-warming) is not supported inside a batch")
    if version == "2026-10-21":
        for name in _SAMPLING:
            if name in body:
                raise InvalidRequest(f"{name}: Extra inputs are not permitted in API version 2026-10-21")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise InvalidRequest(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= max_tokens:
            raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")


def answer_message(
    state: FakeState, body: Mapping[str, Any], headers: Mapping[str, str], *, service_tier: str = "standard"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(final Message JSON, stream events)`` for a validated body; also feeds cache and usage counters."""
    blocks = prompt_blocks(body)
    override = parse_usage_override(headers.get("x-fake-usage"))
    seed = digest("message", canonical_json(body))
    msg_id = "msg_01" + seed[:22]
    deltas = int_header(headers, "x-fake-deltas", state.config.deltas)
    answer = build_answer(body, seed, deltas=deltas, tool_calls=int_header(headers, "x-fake-tool-calls", 1))
    outcome = state.apply_cache(str(body["model"]), blocks)
    cache_in_delta = headers.get("x-fake-cache-fields-in-delta", "") not in ("", "0")
    plan = plan_usage(outcome, answer, override, cache_in_delta=cache_in_delta, service_tier=service_tier)
    final = plan.final
    state.add_tokens(
        int(final.get("input_tokens") or 0) + int(final.get("cache_creation_input_tokens") or 0),
        int(final.get("output_tokens") or 0),
    )
    model = str(body["model"])
    message = message_json(msg_id, model, answer, final)
    events = stream_events(msg_id, model, answer, plan)
    if opted_in(body, headers):
        _add_diagnostics(state, body, blocks, msg_id, headers, message, events)
    return message, events


def _add_diagnostics(
    state: FakeState,
    body: Mapping[str, Any],
    blocks: list[PromptBlock],
    msg_id: str,
    headers: Mapping[str, str],
    message: dict[str, Any],
    events: list[dict[str, Any]],
) -> None:
    """Put the API's ``diagnostics`` where the request's ``x-fake-diagnostics*`` headers say."""
    previous = body["diagnostics"].get("previous_message_id")
    value = state.diagnose(msg_id, previous, request_print(body, blocks))
    if headers.get("x-fake-diagnostics") == "pending":
        value = {"cache_miss_reason": None}
    message["diagnostics"] = value
    where = headers.get("x-fake-diagnostics-in", "start")
    delta = next(e for e in events if e["type"] == "message_delta")
    if where == "delta":
        delta["diagnostics"] = value
    elif where == "delta-inner":
        delta["delta"]["diagnostics"] = value
    else:
        events[0]["message"]["diagnostics"] = value


def _timing(request: web.Request, state: FakeState) -> _Timing:
    slow = request.headers.get("x-fake-scenario") == "slow"
    first = _SLOW_FIRST_S if slow else state.config.first_token_delay_s
    chunk = _SLOW_CHUNK_S if slow else state.config.chunk_delay_s
    first_ms = int_header(request.headers, "x-fake-first-token-delay-ms", -1)
    chunk_ms = int_header(request.headers, "x-fake-chunk-delay-ms", -1)
    return _Timing(first_ms / 1000 if first_ms >= 0 else first, chunk_ms / 1000 if chunk_ms >= 0 else chunk)


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _stream(
    request: web.Request, events: Sequence[Mapping[str, Any]], timing: _Timing, scenario: str
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    )
    await response.prepare(request)
    try:
        await _sleep(timing.first)
        for i, event in enumerate(events):
            if i:
                await _sleep(timing.chunk)
            if scenario == "error-in-stream" and i == 1:
                await response.write(encode_event(error_json("overloaded_error", "Overloaded", None)))
                break
            if scenario == "reset-mid-stream" and i == len(events) // 2:
                await abort_connection(request)
                return response
            if scenario == "malformed-sse" and i == 3:
                await response.write(GARBAGE_LINE)
            await response.write(encode_event(event))
        await response.write_eof()
    except ConnectionError:  # the client went away mid-stream; nothing left to do
        pass
    return response


async def handle_messages(request: web.Request) -> web.StreamResponse:
    """JSON ``Message`` or, with ``"stream": true``, the SSE event sequence."""
    state = request.app[STATE_KEY]
    body = await read_json(request)
    validate_message_params(body, request.headers.get("anthropic-version"))
    message, events = answer_message(state, body, request.headers)
    scenario = request.headers.get("x-fake-scenario", "")
    timing = _timing(request, state)
    if body.get("stream") is True:
        return await _stream(request, events, timing, scenario)
    if scenario == "reset-mid-stream":
        await abort_connection(request)
        return web.Response()
    if scenario == "error-in-stream":
        raise FakeHTTPError(529, *ERROR_TYPES[529])
    await _sleep(timing.first + timing.chunk * (len(events) - 1))
    return json_response(message)


async def handle_count_tokens(request: web.Request) -> web.Response:
    """``{"input_tokens": N}`` with the same estimate as ``/v1/messages`` (no cache effects)."""
    body = await read_json(request)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: Field required")
    return json_response({"input_tokens": estimate_tokens(prompt_blocks(body))})
