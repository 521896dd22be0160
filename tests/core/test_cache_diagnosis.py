"""The cache verdict: outcomes from usage, the first change between two fingerprints, and miss costs."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidecar.core.cache_diagnosis import (
    Change,
    PreviousCall,
    diagnose,
    first_change,
    format_idle,
    miss_cost_usd,
    missed_tokens,
    outcome_of,
)
from sidecar.core.pricing import PriceTable
from sidecar.core.prompt_fingerprint import DetailCache, PromptFingerprint
from sidecar.core.usage import Usage
from sidecar.sansio.prompt_prefix import fingerprint

MARK = {"type": "ephemeral"}
T0 = 1_790_000_000.0  # 2026-09: inside every price period used here


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load(None)


@pytest.mark.parametrize(
    ("prev", "read", "written", "outcome"),
    [
        (0, 0, 0, "none"),
        (0, 0, 500, "write"),
        (0, 800, 0, "hit"),
        (1000, 1000, 200, "hit"),
        (1000, 990, 0, "hit"),  # within 1 %
        (1000, 989, 11, "miss"),
        (1000, 0, 1000, "miss"),
        (1000, 0, 0, "miss"),  # paid as plain input
    ],
)
def test_outcome(prev: int, read: int, written: int, outcome: str) -> None:
    usage = Usage(input_tokens=10, cache_read_input_tokens=read, cache_creation_input_tokens=written)
    assert outcome_of(prev, usage) == outcome


def test_missed_tokens_never_exceed_what_the_call_paid_for() -> None:
    assert missed_tokens(1000, Usage(input_tokens=5, cache_creation_input_tokens=1200)) == 1000
    assert missed_tokens(1000, Usage(cache_read_input_tokens=400, cache_creation_input_tokens=700)) == 600
    # A small side call (a title, a classifier) in the same session did not pay for the big prefix.
    assert missed_tokens(5000, Usage(input_tokens=300)) == 300


def test_miss_cost_by_hand(prices: PriceTable) -> None:
    # Sonnet 4.5: input $3, 5m write $3.75, 1h write $6, read $0.30 per million tokens.
    written = Usage(input_tokens=10, cache_creation_input_tokens=1500)
    assert miss_cost_usd(prices, "claude-sonnet-4-5", written, 1500, T0) == pytest.approx(0.005175, abs=1e-9)
    # 1 500 missed: 500 written at 1h (first in the prefix), 700 at 5m, 300 paid as input.
    mixed = Usage(input_tokens=2000, cache_creation_input_tokens=1200, cache_creation_1h=500)
    by_hand = (500 * 6.00 + 700 * 3.75 + 300 * 3.00 - 1500 * 0.30) / 1e6
    assert by_hand == pytest.approx(0.006075)
    assert miss_cost_usd(prices, "claude-sonnet-4-5", mixed, 1500, T0) == pytest.approx(by_hand, abs=1e-9)
    assert miss_cost_usd(prices, "no-such-model", written, 1500, T0) == 0.0
    assert miss_cost_usd(prices, "claude-sonnet-4-5", written, 0, T0) == 0.0


def fp(doc: dict[str, Any], prev: PromptFingerprint | None = None) -> PromptFingerprint:
    return fingerprint(doc, orjson.dumps(doc), model=str(doc["model"]), prev=prev, details=DetailCache())


def body(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "tools": [{"name": "search", "input_schema": {}}, {"name": "order", "input_schema": {}}],
        "system": [{"type": "text", "text": "Be brief. Now 10:00.", "cache_control": MARK}],
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": [{"type": "text", "text": "three", "cache_control": MARK}]},
        ],
    }
    doc.update(changes)
    return doc


def change(prev: dict[str, Any], cur: dict[str, Any]) -> Change | None:
    system = cur.get("system")
    texts = [b.get("text") for b in system] if isinstance(system, list) else [system]
    messages = cur["messages"]

    def blocks_in(i: int) -> int:
        content = messages[i]["content"]
        return len(content) if isinstance(content, list) else 1

    return first_change(fp(prev), fp(cur), system_texts=texts, blocks_in=blocks_in)


def test_the_first_change_in_prefix_order() -> None:
    base = body()
    assert change(base, base) is None
    assert change(base, body(model="claude-opus-4-1")) == Change(
        "model_changed", "model claude-sonnet-4-5 → claude-opus-4-1"
    )
    tools = base["tools"]
    assert change(base, body(tools=tools[::-1])) == Change("tools_changed", "tools reordered")
    assert change(base, body(tools=tools[:1])) == Change("tools_changed", 'tool "order" removed')
    edited = [tools[0], {**tools[1], "description": "new"}]
    assert change(base, body(tools=edited)) == Change("tools_changed", 'tool "order" edited')
    system = [{"type": "text", "text": "Be brief. Now 10:07.", "cache_control": MARK}]
    assert change(base, body(system=system)) == Change(
        "system_changed", "system block 0 changed at char 14 (digit run, timestamp-like)"
    )
    messages = [{"role": "user", "content": "ONE"}, *base["messages"][1:]]
    assert change(base, body(messages=messages)) == Change("messages_changed", "message 0 edited")
    # Both the system and the first message changed: the system comes first in the prefix.
    assert change(base, body(system=system, messages=messages)).reason == "system_changed"  # type: ignore[union-attr]


def test_only_what_the_previous_call_cached_counts() -> None:
    # The previous call's last breakpoint is on the system prompt: its messages were never cached.
    unmarked = [{"role": "user", "content": "one"}]
    prev = body(messages=unmarked)
    assert change(prev, body(messages=[{"role": "user", "content": "ONE"}])) is None


def test_a_shortened_history() -> None:
    assert change(body(), body(messages=body()["messages"][:2])) == Change(
        "messages_changed", "message 2 removed (history 3 → 2 messages)"
    )
    assert change(body(), body(messages=body()["messages"][:1])) == Change(
        "messages_changed", "messages 1 to 2 removed (history 3 → 1 messages)"
    )


def test_breakpoints_that_cannot_reach_the_previous_entry() -> None:
    base = body()
    plain = [*base["messages"][:2], {"role": "user", "content": [{"type": "text", "text": "three"}]}]
    assert change(base, body(messages=plain)) == Change("breakpoint_moved", "breakpoint at message 2 removed")
    far = [*base["messages"]] + [{"role": r, "content": "more"} for r in ["assistant", "user"] * 11]
    far[2] = {"role": "user", "content": [{"type": "text", "text": "three"}]}
    far[-1] = {"role": "user", "content": [{"type": "text", "text": "more", "cache_control": MARK}]}
    assert change(base, body(messages=far)) == Change(
        "breakpoint_moved",
        "breakpoint moved from message 2 to message 24, more than 20 blocks on "
        "(past the API's 20-block lookback)",
    )
    near = [*far[:10], {"role": "user", "content": [{"type": "text", "text": "more", "cache_control": MARK}]}]
    assert change(base, body(messages=near)) is None  # 8 blocks on: within the lookback


def previous(doc: dict[str, Any], cached: int = 2000, ended_at: float = T0) -> PreviousCall:
    return PreviousCall(fp(doc), cached, ended_at, "msg_01")


def test_diagnose_names_the_change_else_the_clock(prices: PriceTable) -> None:
    usage = Usage(input_tokens=10, cache_creation_input_tokens=2000)
    kw: dict[str, Any] = {"prices": prices, "model": "claude-sonnet-4-5", "priced_at": T0}
    prev = previous(body())
    d = diagnose(prev, Change("system_changed", "system block 0 changed"), usage, started_at=T0 + 5, **kw)
    assert (d.outcome, d.reason, d.missed_tokens) == ("miss", "system_changed", 2000)
    assert d.cost_usd == pytest.approx(2000 * (3.75 - 0.30) / 1e6)
    late = diagnose(prev, None, usage, started_at=T0 + 400, **kw)
    assert (late.reason, late.detail) == ("ttl_expired", "idle 6m40s > ttl 5m")
    early = diagnose(prev, None, usage, started_at=T0 + 42, **kw)
    assert (early.reason, early.detail) == ("evicted", "same prefix, idle 42s < ttl 5m")
    hour = body(system=[{"type": "text", "text": "x", "cache_control": {**MARK, "ttl": "1h"}}], messages=[])
    assert diagnose(previous(hour), None, usage, started_at=T0 + 400, **kw).reason == "evicted"
    hit = Usage(cache_read_input_tokens=2000)
    assert diagnose(prev, None, hit, started_at=T0 + 400, **kw).outcome == "hit"
    assert diagnose(None, None, usage, started_at=T0, **kw).outcome == "write"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.9, "42s"), (300, "5m"), (400, "6m40s"), (3900, "1h05m")]
)
def test_format_idle(seconds: float, text: str) -> None:
    assert format_idle(seconds) == text
