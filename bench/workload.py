"""The benchmark's fixed workload: a realistic ~2.4 KB Messages request, its headers, and percentiles.

Shared by the load generators (``loadgen.py``, the wrk Lua script) and ``client_choice.py`` so every
measurement sends the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

BODY_TARGET_BYTES = 2400
TTFB_HEADER = "x-bench-ttfb-ms"  # per-request upstream delay; forwarded untouched by both proxies

_SYSTEM = (
    "You are a support agent for an online bookshop. Answer briefly and politely. When the customer asks "
    "about an order, call the lookup_order tool with the order id; never invent order details. If the "
    "customer is upset, apologise once and offer the next concrete step."
)
_TOOL = {
    "name": "lookup_order",
    "description": "Look up an order by its id and return its status, items and delivery estimate.",
    "input_schema": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "description": "The order id, e.g. BK-12345."},
            "include_items": {"type": "boolean", "description": "Whether to list the items."},
        },
        "required": ["order_id"],
    },
}
_TURNS = [
    ("user", "Hi, I ordered three books last week and only two arrived. Order BK-48213."),
    ("assistant", "I'm sorry about that. Let me check order BK-48213 for you."),
    ("user", "Thanks. The missing one is the hardcover atlas; the two paperbacks came on Tuesday."),
]


def request_body(stream: bool, target: int = BODY_TARGET_BYTES) -> bytes:
    """A Messages request JSON of exactly ``target`` bytes (padding goes into the last user turn)."""
    messages = [{"role": role, "content": text} for role, text in _TURNS]
    doc: dict[str, object] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": _SYSTEM,
        "tools": [_TOOL],
        "metadata": {"user_id": "bench-user-0001"},
        "messages": messages,
    }
    if stream:
        doc["stream"] = True
    base = len(json.dumps(doc, separators=(",", ":")).encode())
    pad = max(0, target - base - 1)
    messages[-1]["content"] = messages[-1]["content"] + " " + "x" * pad
    return json.dumps(doc, separators=(",", ":")).encode()


def request_headers(ttfb_ms: int) -> dict[str, str]:
    """Headers an SDK sends (trimmed), plus the bench's upstream-delay header."""
    return {
        "content-type": "application/json",
        "accept": "application/json",
        "x-api-key": "sk-ant-bench-0000000000000000000000000000",
        "anthropic-version": "2023-06-01",
        "user-agent": "Anthropic/Python 0.64.0",
        "x-stainless-retry-count": "0",
        "x-session-id": "bench-session",
        TTFB_HEADER: str(ttfb_ms),
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending sequence; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])
