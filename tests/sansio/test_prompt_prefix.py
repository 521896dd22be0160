"""Prefix fingerprints: marker-blind hashes, the raw fast path equal to a full recount, breakpoints found."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.prompt_fingerprint import MESSAGES, SYSTEM, TOOLS, Breakpoint, DetailCache
from sidecar.sansio.prompt_prefix import fingerprint, messages_region, strip_markers

MARK = {"type": "ephemeral"}
QUOTED = b'["cache_control",{"x":"\\"cache_control\\": {}"}]'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":1,"cache_control":{"type":"ephemeral"}}', b'{"a":1}'),
        (b'{"cache_control":{"type":"ephemeral","ttl":"1h"},"a":1}', b'{"a":1}'),
        (b'{"cache_control":{"type":"ephemeral"}}', b"{}"),
        (b'{"a":1 , "cache_control" : { "type" : "ephemeral" } }', b'{"a":1  }'),
        (b'{"a":1,"cache_control":null}', b'{"a":1}'),
        (QUOTED, QUOTED),  # a value, and a key inside a string, are not markers
        (b'[{"t":1,"cache_control":{"type":"ephemeral"}},{"cache_control":{"type":"ephemeral"},"t":2}]',
         b'[{"t":1},{"t":2}]'),
    ],
)  # fmt: skip
def test_strip_markers(raw: bytes, expected: bytes) -> None:
    assert strip_markers(raw) == expected
    json.loads(strip_markers(raw))  # still JSON


def doc_of(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 5, "system": "You help.", "messages": messages, **extra}


def turn(i: int, marked: bool) -> list[dict[str, Any]]:
    user: dict[str, Any] = {"type": "text", "text": f"question {i} é"}
    if marked:
        user["cache_control"] = MARK
    return [
        {"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]},
        {"role": "user", "content": [user]},
    ]


def history(turns: int, marked: str) -> list[dict[str, Any]]:
    """``marked``: ``newest`` (the marker moves each turn), ``first`` (stays on message 0), ``none``."""
    first: dict[str, Any] = {"type": "text", "text": "hello"}
    if marked == "first":
        first["cache_control"] = MARK
    out: list[dict[str, Any]] = [{"role": "user", "content": [first]}]
    for i in range(turns):
        out += turn(i, marked == "newest" and i == turns - 1)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=4),
    st.sampled_from(["newest", "first", "none"]),
    st.booleans(),
)
def test_the_fast_path_equals_a_full_recount(before: int, grown: int, marked: str, spaced: bool) -> None:
    details = DetailCache()
    dumps: Any = (lambda d: json.dumps(d).encode()) if spaced else orjson.dumps  # spaced JSON: slow path
    d1, d2 = doc_of(history(before, marked)), doc_of(history(before + grown, marked))
    p1 = fingerprint(d1, dumps(d1), model="m", prev=None, details=details)
    fast = fingerprint(d2, dumps(d2), model="m", prev=p1, details=details)
    full = fingerprint(d2, orjson.dumps(d2), model="m", prev=None, details=details)
    assert fast.messages is not None and full.messages is not None
    assert list(fast.messages.hashes) == list(full.messages.hashes)
    assert (fast.messages.crc, fast.messages.length) == (full.messages.crc, full.messages.length)
    assert fast.breakpoints == full.breakpoints
    # Markers never count: the same history marked elsewhere hashes the same.
    other = fingerprint(doc_of(history(before + grown, "none")), b"{}", model="m", prev=None, details=details)
    assert other.messages is not None and list(other.messages.hashes) == list(full.messages.hashes)


def test_an_edit_in_the_history_falls_back_and_shows() -> None:
    details = DetailCache()
    d1 = doc_of(history(3, "newest"))
    p1 = fingerprint(d1, orjson.dumps(d1), model="m", prev=None, details=details)
    edited = history(4, "newest")
    edited[2]["content"][0]["text"] = "question 0 (edited)"
    d2 = doc_of(edited)
    p2 = fingerprint(d2, orjson.dumps(d2), model="m", prev=p1, details=details)
    assert p1.messages is not None and p2.messages is not None
    changed = [
        i for i, (a, b) in enumerate(zip(p1.messages.hashes, p2.messages.hashes, strict=False)) if a != b
    ]
    assert changed == [2]


def test_breakpoints_in_every_section_and_the_planners() -> None:
    tools = [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}, "cache_control": MARK}]
    system = [
        {"type": "text", "text": "x"},
        {"type": "text", "text": "y", "cache_control": {**MARK, "ttl": "1h"}},
    ]
    messages = history(2, "newest")
    messages[1]["content"].append(
        {
            "type": "tool_result",
            "tool_use_id": "t",
            "content": [{"type": "text", "text": "r", "cache_control": MARK}],
        }
    )
    doc = doc_of(messages, tools=tools, system=system)
    body = orjson.dumps(doc)
    found = fingerprint(doc, body, model="m", prev=None, details=DetailCache()).breakpoints
    assert found == (
        Breakpoint(TOOLS, 1, 0, "5m"),
        Breakpoint(SYSTEM, 1, 0, "1h"),
        Breakpoint(MESSAGES, 1, 1, "5m"),  # nested in a tool_result
        Breakpoint(MESSAGES, 4, 0, "5m"),
    )
    # A marker the planner added to the last tool is in ``doc`` but not in the client's bytes.
    planned = doc_of(history(1, "none"), tools=tools)
    client = orjson.dumps(doc_of(history(1, "none"), tools=[tools[0], {"name": "b", "input_schema": {}}]))
    assert fingerprint(planned, client, model="m", prev=None, details=DetailCache(), added=1).breakpoints == (
        Breakpoint(TOOLS, 1, 0, "5m"),
    )
    automatic = doc_of(history(1, "none"), cache_control=MARK)
    assert fingerprint(
        automatic, orjson.dumps(automatic), model="m", prev=None, details=DetailCache()
    ).breakpoints[-1] == Breakpoint(MESSAGES, 2, 0, "5m")


def test_system_blocks_keep_their_detail_and_details_are_shared() -> None:
    details = DetailCache(max_entries=2)
    doc = doc_of([{"role": "user", "content": "hi"}], system="Now 10:00. Be brief.")
    one = fingerprint(doc, orjson.dumps(doc), model="m", prev=None, details=details)
    two = fingerprint(doc, orjson.dumps(doc), model="m", prev=None, details=details)
    assert one.system[0].detail is two.system[0].detail  # computed once for the same text
    again = fingerprint(doc, orjson.dumps(doc), model="m", prev=one, details=DetailCache())
    assert again.system[0] is one.system[0]  # unchanged blocks are carried over
    for text in ("a", "b", "c"):
        details.get(hash(text), text)
    assert len(details._items) == 2


def test_odd_bodies_give_what_can_be_read() -> None:
    doc: dict[str, Any] = {"model": "m", "messages": "not a list", "tools": {"x": 1}, "system": 7}
    fp = fingerprint(doc, b"{}", model=None, prev=None, details=DetailCache())
    assert fp.tool_names == () and fp.system == () and fp.breakpoints == ()
    assert fp.messages is not None and fp.messages.count == 0
    big = {"model": "m", "messages": [{"role": "user", "content": 2**70}]}
    assert fingerprint(big, b"{}", model="m", prev=None, details=DetailCache()).messages is None


def test_only_new_messages_are_read_when_the_history_is_resent_as_sent() -> None:
    d1, d2 = doc_of(history(3, "newest")), doc_of(history(5, "newest"))
    first, _ = messages_region(d1["messages"], orjson.dumps(d1), None)
    assert first is not None
    grown, scan_from = messages_region(d2["messages"], orjson.dumps(d2), first)
    assert grown is not None and scan_from == first.count  # markers can only be in the new messages
    spaced, scan_from = messages_region(d2["messages"], json.dumps(d2).encode(), first)
    assert spaced == grown and scan_from is None  # the slow path, same answer
    kept1, kept2 = doc_of(history(3, "first")), doc_of(history(5, "first"))
    base, _ = messages_region(kept1["messages"], orjson.dumps(kept1), None)
    kept, scan_from = messages_region(kept2["messages"], orjson.dumps(kept2), base)
    assert kept is not None and scan_from is None  # an old marker: read without markers, walked for them
