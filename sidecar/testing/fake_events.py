"""Usage numbers, ``Message`` JSON and the SSE event sequence of the fake upstream (pure).

The stream follows the real order: ``message_start`` (usage with a placeholder ``output_tokens: 1``),
``content_block_start``, a ``ping`` after the first block start, the block's deltas, ``content_block_stop``
for each block, ``message_delta`` (cumulative usage: ``output_tokens`` plus the input/cache numbers
repeated), ``message_stop``. Events are compact JSON except ``ping``, written ``{"type": "ping"}`` as the
API does; the event name always equals ``data.type``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.testing.fake_cache import CacheOutcome, InvalidRequest
from sidecar.testing.fake_content import Answer, Block

_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_SPLIT_5M, _SPLIT_1H = "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """``final`` is the finished message's usage; ``start``/``delta`` are what the stream reports."""

    final: dict[str, Any]
    start: dict[str, Any]
    delta: dict[str, Any]


def parse_usage_override(raw: str | None) -> dict[str, Any] | None:
    """Decode the ``x-fake-usage`` header; ``InvalidRequest`` unless it is a JSON object."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"x-fake-usage: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("x-fake-usage: must be a JSON object")
    return value


def _apply_override(final: dict[str, Any], override: Mapping[str, Any]) -> None:
    final.update({k: v for k, v in override.items() if k != "cache_creation"})
    if "cache_creation" in override:
        split = override["cache_creation"]
        if split is None:
            del final["cache_creation"]
            return
        if not isinstance(split, dict):
            raise InvalidRequest("x-fake-usage: cache_creation must be an object or null")
        final["cache_creation"] = {_SPLIT_5M: split.get(_SPLIT_5M, 0), _SPLIT_1H: split.get(_SPLIT_1H, 0)}
        if "cache_creation_input_tokens" not in override:
            final["cache_creation_input_tokens"] = sum(final["cache_creation"].values())
    elif "cache_creation_input_tokens" in override:
        final["cache_creation"] = {_SPLIT_5M: override["cache_creation_input_tokens"], _SPLIT_1H: 0}


def plan_usage(
    outcome: CacheOutcome,
    answer: Answer,
    override: Mapping[str, Any] | None = None,
    *,
    cache_in_delta: bool = False,
    service_tier: str = "standard",
) -> UsagePlan:
    """Usage from the cache outcome and the answer, overridden field by field by ``x-fake-usage``.

    An override's ``cache_creation`` split sets ``cache_creation_input_tokens`` to its sum unless that is
    given too; ``"cache_creation": null`` drops the split. ``cache_in_delta`` zeroes the input and cache
    numbers in ``message_start`` so that only ``message_delta`` carries them.
    """
    final: dict[str, Any] = {
        "input_tokens": outcome.uncached,
        "cache_creation_input_tokens": outcome.write_5m + outcome.write_1h,
        "cache_read_input_tokens": outcome.read,
        "cache_creation": {_SPLIT_5M: outcome.write_5m, _SPLIT_1H: outcome.write_1h},
        "output_tokens": answer.output_tokens,
        "service_tier": service_tier,
        "inference_geo": "global",
    }
    if answer.thinking_tokens:
        final["output_tokens_details"] = {"thinking_tokens": answer.thinking_tokens}
    if override:
        _apply_override(final, override)
    start = {k: v for k, v in final.items() if k != "output_tokens_details"}
    start["output_tokens"] = 1
    if cache_in_delta:
        start.update(dict.fromkeys(_INPUT_FIELDS, 0))
        if start.get("cache_creation") is not None:
            start["cache_creation"] = {_SPLIT_5M: 0, _SPLIT_1H: 0}
    delta = {k: final[k] for k in (*_INPUT_FIELDS, "output_tokens") if k in final}
    for key in ("output_tokens_details", "server_tool_use"):
        if key in final:
            delta[key] = final[key]
    return UsagePlan(final, start, delta)


def message_json(msg_id: str, model: str, answer: Answer, usage: Mapping[str, Any]) -> dict[str, Any]:
    """A complete non-streamed ``Message``."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [b.final_json() for b in answer.blocks],
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "stop_details": None,
        "container": None,
        "usage": dict(usage),
    }


def _block_events(index: int, block: Block) -> list[dict[str, Any]]:
    if block.type == "thinking":
        start: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in block.pieces]
        deltas.append({"type": "signature_delta", "signature": block.signature})
    elif block.type == "tool_use":
        start = {"type": "tool_use", "id": block.tool_id, "name": block.tool_name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in block.pieces]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in block.pieces]
    events: list[dict[str, Any]] = [{"type": "content_block_start", "index": index, "content_block": start}]
    if index == 0:
        events.append({"type": "ping"})
    events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
    events.append({"type": "content_block_stop", "index": index})
    return events


def stream_events(msg_id: str, model: str, answer: Answer, plan: UsagePlan) -> list[dict[str, Any]]:
    """The full SSE event sequence (as dicts) for a streamed answer."""
    first = message_json(msg_id, model, answer, plan.start)
    first.update(content=[], stop_reason=None)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": first}]
    if not answer.blocks:
        events.append({"type": "ping"})
    for index, block in enumerate(answer.blocks):
        events.extend(_block_events(index, block))
    stop = {"stop_reason": answer.stop_reason, "stop_sequence": None, "stop_details": None}
    events.append({"type": "message_delta", "delta": stop, "usage": plan.delta})
    events.append({"type": "message_stop"})
    return events


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One SSE event: ``event: <type>`` + ``data: <json>`` + a blank line."""
    if event.get("type") == "ping":
        return PING
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def error_json(error_type: str, message: str, request_id: str | None) -> dict[str, Any]:
    """Anthropic's error shape; ``request_id`` is left out inside SSE ``error`` events (``None``)."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body
