"""Breakpoint planner: each planned body is checked with the fake upstream's validator (the API's rules)."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sidecar.core.cache_plan import CachePlan, block_tokens, plan_and_apply
from sidecar.core.pricing import PriceTable
from sidecar.testing.fake_cache import InvalidRequest, PromptCache, min_cacheable_tokens, prompt_blocks

E5 = {"type": "ephemeral"}
E1H = {"type": "ephemeral", "ttl": "1h"}


def text_of_tokens(n: int, ch: str = "x") -> str:
    """ASCII text whose text block costs exactly ``n`` tokens in the fake's estimate.

    The block's canonical JSON is ``{"text":"<S>","type":"text"}``: ``len(S) + 25`` characters, and the
    fake charges ``ceil(chars / 4)``; so ``len(S) = 4n - 25`` gives ``ceil((4n) / 4) = n``.
    """
    return ch * (4 * n - 25)


LONG = text_of_tokens(2000)


def tool(name: str, size: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "d" * size,
        "input_schema": {"type": "object", "properties": {}},
        **extra,
    }


def body_of(**doc: Any) -> bytes:
    base: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 100}
    base.setdefault("messages", [{"role": "user", "content": "hello"}])
    base.update(doc)
    return orjson.dumps(base)


def accepted(doc: Any) -> bool:
    try:
        prompt_blocks(doc)
    except InvalidRequest:
        return False
    return True


def run(
    body: bytes, mode: str = "auto", ttl: str = "5m", min_tokens: int | None = 1024
) -> tuple[Any, CachePlan]:
    """Plan, then check the invariants every plan must keep; returns the forwarded document."""
    new, plan = plan_and_apply(body, model="claude-sonnet-4-5", mode=mode, ttl=ttl, min_tokens=min_tokens)
    if not plan.changed:
        assert new is body  # the client's own bytes, not a copy
        assert plan.markers_added == 0 and plan.positions == ()
    else:
        assert new != body
        assert plan.markers_added == len(plan.positions) == len(plan.ttls)
    doc = orjson.loads(new)
    if accepted(orjson.loads(body)):
        prompt_blocks(doc)  # raises InvalidRequest exactly where the API would answer 400
    else:
        assert not plan.changed
    return doc, plan


def markers(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """(path, marker) of every block marker, in prefix order."""
    out: list[tuple[str, Any]] = []
    for i, t in enumerate(doc.get("tools") or []):
        if t.get("cache_control") is not None:
            out.append((f"tools.{i}", t["cache_control"]))
    system = doc.get("system")
    if isinstance(system, list):
        out += [(f"system.{j}", b["cache_control"]) for j, b in enumerate(system) if b.get("cache_control")]
    for m, msg in enumerate(doc.get("messages") or []):
        if isinstance(msg.get("content"), list):
            for k, b in enumerate(msg["content"]):
                if b.get("cache_control") is not None:
                    out.append((f"messages.{m}.{k}", b["cache_control"]))
    return out


# -- table: (name, request fields, mode, ttl, expected reason, positions, ttls) -----------------------------

CLAUDE_CODE_MESSAGES = [
    {"role": "user", "content": [{"type": "text", "text": "first"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
    {"role": "user", "content": [{"type": "text", "text": "now", "cache_control": E5}]},
]
TWO_MARKED_SYSTEM = [
    {"type": "text", "text": "You are Claude Code.", "cache_control": E5},
    {"type": "text", "text": LONG, "cache_control": E5},
]
CASES: list[tuple[str, dict[str, Any], str, str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("string system", {"system": LONG}, "auto", "5m", "added", ("system[-1]",), ("5m",)),
    (
        "block list",
        {"system": [{"type": "text", "text": "intro"}, {"type": "text", "text": LONG}]},
        "auto",
        "5m",
        "added",
        ("system[-1]",),
        ("5m",),
    ),
    (
        "tools and system",
        {"system": LONG, "tools": [tool("a"), tool("b", 6000)]},
        "auto",
        "1h",
        "added",
        ("tools[-1]", "system[-1]"),
        ("1h", "1h"),
    ),
    (
        "small tools, long system: only the system is worth a marker",
        {"system": LONG, "tools": [tool("a")]},
        "auto",
        "5m",
        "added",
        ("system[-1]",),
        ("5m",),
    ),
    (
        "one client marker in messages",
        {"system": LONG, "tools": [tool("a", 6000)], "messages": CLAUDE_CODE_MESSAGES},
        "auto",
        "5m",
        "added",
        ("tools[-1]", "system[-1]"),
        ("5m", "5m"),
    ),
    (
        "Claude Code: three markers, tools unmarked -> the fourth goes on the tools",
        {"system": TWO_MARKED_SYSTEM, "tools": [tool("a", 6000)], "messages": CLAUDE_CODE_MESSAGES},
        "auto",
        "5m",
        "added",
        ("tools[-1]",),
        ("5m",),
    ),
    (
        "three client markers, two free positions, one slot: the system wins",
        {
            "system": LONG,
            "tools": [tool("a", 6000)],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": E5}]},
                {"role": "assistant", "content": [{"type": "text", "text": "b", "cache_control": E5}]},
                {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": E5}]},
            ],
        },
        "auto",
        "5m",
        "added",
        ("system[-1]",),
        ("5m",),
    ),
    (
        "four client markers: no slot",
        {
            "system": LONG,
            "tools": [tool("a", 6000, cache_control=E5)],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": t, "cache_control": E5}]}
                for t in ("a", "b", "c")
            ],
        },
        "force",
        "5m",
        "no_slots",
        (),
        (),
    ),
    (
        "client 1h marker later: ours become 1h, never 5m before it",
        {
            "system": LONG,
            "tools": [tool("a", 6000)],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": E1H}]}],
        },
        "auto",
        "5m",
        "added",
        ("tools[-1]", "system[-1]"),
        ("1h", "1h"),
    ),
    (
        "client 5m marker early in the system: ours after it stays 5m, the tools one may be 1h",
        {
            "system": [{"type": "text", "text": LONG, "cache_control": E5}, {"type": "text", "text": LONG}],
            "tools": [tool("a", 6000)],
        },
        "auto",
        "1h",
        "added",
        ("tools[-1]", "system[-1]"),
        ("1h", "5m"),
    ),
    (
        "system end already marked by the client",
        {"system": [{"type": "text", "text": LONG, "cache_control": E1H}]},
        "force",
        "5m",
        "already_marked",
        (),
        (),
    ),
    (
        "trailing empty text block is skipped",
        {"system": [{"type": "text", "text": LONG}, {"type": "text", "text": ""}]},
        "auto",
        "5m",
        "added",
        ("system[0]",),
        ("5m",),
    ),
    (
        "only an empty system block",
        {"system": [{"type": "text", "text": ""}]},
        "force",
        "5m",
        "nothing_to_mark",
        (),
        (),
    ),
    ("empty string system", {"system": ""}, "force", "5m", "nothing_to_mark", (), ()),
    ("no system, no tools", {}, "force", "5m", "nothing_to_mark", (), ()),
    (
        "deferred tools are not in the prefix: the last loaded tool is marked",
        {"tools": [tool("a", 6000), tool("b", defer_loading=True)]},
        "auto",
        "5m",
        "added",
        ("tools[0]",),
        ("5m",),
    ),
    (
        "thinking blocks in history do not stop the system marker",
        {
            "system": LONG,
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "xyz"},
                        {"type": "text", "text": "a"},
                    ],
                },
                {"role": "user", "content": "more"},
            ],
        },
        "auto",
        "5m",
        "added",
        ("system[-1]",),
        ("5m",),
    ),
    ("short prompt in auto", {"system": "Be brief."}, "auto", "5m", "below_minimum", (), ()),
    ("short prompt in force", {"system": "Be brief."}, "force", "5m", "added", ("system[-1]",), ("5m",)),
    (
        "top-level cache_control",
        {"system": LONG, "cache_control": E5},
        "force",
        "5m",
        "client_top_level",
        (),
        (),
    ),
    (
        "client marker on a thinking block (the API rejects it): left alone",
        {
            "system": LONG,
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "t", "cache_control": E5}],
                },
            ],
        },
        "force",
        "5m",
        "client_invalid",
        (),
        (),
    ),
    (
        "client TTL order already invalid (5m then 1h): left alone",
        {
            "system": [{"type": "text", "text": LONG, "cache_control": E5}, {"type": "text", "text": "x"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": E1H}]}],
        },
        "force",
        "5m",
        "client_invalid",
        (),
        (),
    ),
    (
        "1h client markers before and after ours: ours is 1h too",
        {
            "tools": [tool("a", 6000, cache_control=E1H), tool("b", 10, cache_control=E1H)],
            "system": LONG,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": E1H}]}],
        },
        "force",
        "5m",
        "added",
        ("system[-1]",),
        ("1h",),
    ),
]


@pytest.mark.parametrize(
    ("name", "fields", "mode", "ttl", "reason", "positions", "ttls"), CASES, ids=[c[0] for c in CASES]
)
def test_planner_table(
    name: str,
    fields: dict[str, Any],
    mode: str,
    ttl: str,
    reason: str,
    positions: tuple[str, ...],
    ttls: tuple[str, ...],
) -> None:
    original = body_of(**fields)
    before = orjson.loads(original)
    doc, plan = run(original, mode=mode, ttl=ttl)
    assert (plan.reason, plan.positions, plan.ttls) == (reason, positions, ttls)
    after = markers(doc)
    # The client's markers are all still there, unchanged, and the total respects the limit.
    assert set(map(str, markers(before))) <= set(map(str, after))
    assert len(after) == len(markers(before)) + plan.markers_added <= 4


def test_added_marker_shapes_and_the_rest_of_the_body_is_untouched() -> None:
    fields = {"system": LONG, "tools": [tool("a", 6000)], "metadata": {"user_id": "u"}, "stream": True}
    original = body_of(**fields)
    doc, plan = run(original, ttl="5m")
    assert plan.positions == ("tools[-1]", "system[-1]")
    assert doc["system"] == [{"type": "text", "text": LONG, "cache_control": E5}]
    assert doc["tools"][-1]["cache_control"] == E5  # 5m is the API default: no explicit ttl
    assert list(doc) == list(orjson.loads(original))  # key order kept
    stripped = copy.deepcopy(doc)
    del stripped["tools"][-1]["cache_control"]
    stripped["system"] = stripped["system"][0]["text"]
    assert stripped == orjson.loads(original)
    doc_1h, _ = run(original, ttl="1h")
    assert doc_1h["tools"][-1]["cache_control"] == E1H


def test_off_returns_the_same_object() -> None:
    original = body_of(system=LONG)
    new, plan = plan_and_apply(original, model="claude-sonnet-4-5", mode="off", ttl="5m", min_tokens=1024)
    assert new is original and plan.reason == "off"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json {", "nothing_to_mark"),  # no key to mark: not even parsed
        (b'{"system": "long", oops', "not_json"),
        (b'["system", "tools"]', "not_json"),
        (b'{"system": "x", "model": 1e999999}', "not_json"),
        (b'{"model": "m", "messages": []}', "nothing_to_mark"),
    ],
)
def test_bad_bodies_pass_through(body: bytes, reason: str) -> None:
    new, plan = plan_and_apply(body, model=None, mode="force", ttl="5m", min_tokens=None)
    assert new is body and plan.reason == reason


def test_invalid_mode_or_ttl_leaves_the_body() -> None:
    original = body_of(system=LONG)
    for mode, ttl in (("sometimes", "5m"), ("auto", "10m")):
        new, plan = plan_and_apply(original, model=None, mode=mode, ttl=ttl, min_tokens=None)
        assert new is original and plan.reason == "invalid_mode"


def test_unknown_model_minimum_defaults_to_1024() -> None:
    assert run(body_of(system=text_of_tokens(1023)), min_tokens=None)[1].reason == "below_minimum"
    assert run(body_of(system=text_of_tokens(1024)), min_tokens=None)[1].reason == "added"


def test_estimate_matches_the_fake_for_ascii_blocks() -> None:
    block = {"type": "text", "text": text_of_tokens(777)}
    assert block_tokens(block) == 777 == prompt_blocks({"system": [block], "messages": []})[0].tokens
    assert block_tokens({**block, "cache_control": E1H}) == 777  # markers are not counted
    t = tool("lookup", 300)
    assert block_tokens(t) == prompt_blocks({"tools": [t], "messages": []})[0].tokens


@pytest.mark.parametrize(
    "model", ["claude-opus-5", "claude-sonnet-4-5", "claude-opus-4-7", "claude-haiku-4-5"]
)
def test_just_under_and_over_each_models_minimum(model: str) -> None:
    minimum = PriceTable.load().min_cacheable_tokens(model)
    assert minimum is not None and minimum == min_cacheable_tokens(model)  # table and fake agree
    tools = [tool("t", 400)]
    tool_tokens = block_tokens(tools[0])
    for n, expected in ((minimum - 1, "below_minimum"), (minimum, "added")):
        system_tokens = n - tool_tokens  # the system marker's prefix is tools + system
        original = body_of(model=model, tools=tools, system=text_of_tokens(system_tokens))
        new, plan = plan_and_apply(original, model=model, mode="auto", ttl="5m", min_tokens=minimum)
        assert plan.reason == expected, n
        if plan.changed:
            assert plan.positions == ("system[-1]",) and plan.prefix_tokens == minimum
            # The fake writes the whole prefix on the first call and reads it on the second.
            cache, blocks = PromptCache(), prompt_blocks(orjson.loads(new))
            assert cache.apply(model, blocks, 0.0).write_5m == minimum
            assert cache.apply(model, blocks, 1.0).read == minimum


# -- property: whatever markers the client sent, if the API accepted the input it accepts ours ------------

TTL = st.sampled_from([None, E5, E1H])


def _with(block: dict[str, Any], marker: Any) -> dict[str, Any]:
    return {**block, "cache_control": marker} if marker is not None else block


texts = st.sampled_from(["", "short", text_of_tokens(300), text_of_tokens(1500)])
text_block = st.builds(lambda t, m: _with({"type": "text", "text": t}, m), texts, TTL)
thinking_block = st.builds(lambda m: _with({"type": "thinking", "thinking": "t", "signature": "s"}, m), TTL)
tool_result = st.builds(
    lambda inner, m: _with({"type": "tool_result", "tool_use_id": "tu_1", "content": inner}, m),
    st.lists(text_block, max_size=2),
    TTL,
)
message = st.one_of(
    st.builds(lambda t: {"role": "user", "content": t}, texts),
    st.builds(
        lambda bs: {"role": "user", "content": bs}, st.lists(st.one_of(text_block, tool_result), max_size=3)
    ),
    st.builds(
        lambda bs: {"role": "assistant", "content": bs},
        st.lists(st.one_of(text_block, thinking_block), max_size=3),
    ),
)
system = st.one_of(st.none(), texts, st.lists(text_block, max_size=3))
tools = st.lists(
    st.builds(
        lambda n, size, m, d: _with(tool(n, size, **({"defer_loading": True} if d else {})), m),
        st.sampled_from(["a", "b"]),
        st.sampled_from([0, 2000, 8000]),
        TTL,
        st.booleans(),
    ),
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(
    tools=tools,
    system=system,
    messages=st.lists(message, min_size=1, max_size=4),
    top=st.sampled_from([None, None, None, E5, E1H]),
    mode=st.sampled_from(["auto", "force"]),
    ttl=st.sampled_from(["5m", "1h"]),
    min_tokens=st.sampled_from([None, 512, 1024, 4096]),
)
def test_output_is_accepted_whenever_the_input_was(
    tools: list[Any], system: Any, messages: list[Any], top: Any, mode: str, ttl: str, min_tokens: int | None
) -> None:
    doc: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": messages}
    if tools:
        doc["tools"] = tools
    if system is not None:
        doc["system"] = system
    if top is not None:
        doc["cache_control"] = top
    try:
        prompt_blocks(doc)
    except InvalidRequest:
        assume(False)
    original = orjson.dumps(doc)
    new, plan = plan_and_apply(original, model="claude-sonnet-4-5", mode=mode, ttl=ttl, min_tokens=min_tokens)
    out = orjson.loads(new)
    prompt_blocks(out)  # never a body the API would reject
    before, after = markers(doc), markers(out)
    assert set(map(str, before)) <= set(map(str, after))
    assert len(after) - len(before) == plan.markers_added
    if not plan.changed:
        assert new is original


def test_a_parsed_document_is_used_instead_of_parsing_the_body_again() -> None:
    import orjson

    doc = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": "Policy text. " * 2000,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body = orjson.dumps(doc)
    from_bytes, plan_a = plan_and_apply(body, model=None, mode="auto", ttl="5m", min_tokens=1024)
    from_doc, plan_b = plan_and_apply(body, model=None, mode="auto", ttl="5m", min_tokens=1024, doc=doc)
    assert plan_a.changed and plan_b.changed and from_doc == from_bytes
    # The body is not read when a document is given (here it says "system" but is not JSON).
    junk = b'{"system": not json'
    _, plan_c = plan_and_apply(
        junk, model=None, mode="auto", ttl="5m", min_tokens=1024, doc=orjson.loads(body)
    )
    assert plan_c.changed


def test_client_markers_are_found_however_the_body_spells_the_key() -> None:
    """Bodies without the literal key skip the walk over every message; an escaped key must not."""
    blocks = [{"type": "text", "text": f"turn {i}", "cache_control": E5} for i in range(4)]
    doc = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "system": LONG,
        "messages": [{"role": "user", "content": blocks}],
    }
    plain = orjson.dumps(doc)
    escaped = plain.replace(b'"cache_control"', b'"cache\\u005fcontrol"')
    assert b'"cache_control"' not in escaped and orjson.loads(escaped) == doc
    for body in (plain, escaped):
        new, plan = plan_and_apply(body, model=None, mode="auto", ttl="5m", min_tokens=1024)
        assert (plan.changed, plan.reason) == (False, "no_slots")  # four client markers: no slot left
        assert new is body
    # Without any marker the same prompt gets one.
    bare = orjson.dumps({**doc, "messages": [{"role": "user", "content": "hi"}]})
    assert plan_and_apply(bare, model=None, mode="auto", ttl="5m", min_tokens=1024)[1].changed


def test_with_nothing_to_add_the_conversation_is_not_walked_and_goes_out_as_sent() -> None:
    """Client markers only matter when a marker could be added; a long conversation is not walked."""
    bad_marker = {"type": "text", "text": "hi", "cache_control": {"type": "persistent"}}  # API would 400
    marked_system = [{"type": "text", "text": LONG, "cache_control": E5}]
    body = body_of(system=marked_system, messages=[{"role": "user", "content": [bad_marker]}])
    new, plan = plan_and_apply(body, model=None, mode="auto", ttl="5m", min_tokens=1024)
    assert new is body and (plan.changed, plan.reason) == (False, "already_marked")
    # With a position to mark, the same bad marker is found and the body is still left alone.
    body = body_of(system=LONG, messages=[{"role": "user", "content": [bad_marker]}])
    new, plan = plan_and_apply(body, model=None, mode="auto", ttl="5m", min_tokens=1024)
    assert new is body and (plan.changed, plan.reason) == (False, "client_invalid")


def _nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize("where", ["tools", "system"])
def test_a_block_nested_past_the_serializer_limit_is_left_as_sent(where: str) -> None:
    # orjson serialises at most 255 levels: the size estimate of such a block cannot be made.
    deep = _nested_schema(300)
    doc: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": []}
    if where == "tools":
        doc["tools"] = [{"name": "t", "input_schema": deep}]
    else:
        doc["system"] = [{"type": "text", "text": LONG, "extra": deep}]
    body = json.dumps(doc).encode()  # orjson could not even write it
    new, plan = plan_and_apply(body, model="claude-sonnet-4-5", mode="auto", ttl="5m", min_tokens=1024)
    assert new is body and plan == CachePlan(False, 0, (), "too_deep")
    # A shallower one is planned as usual.
    shallow = _nested_schema(20)
    tool = {"name": "t", "input_schema": shallow, "description": LONG}
    doc[where] = [tool] if where == "tools" else [{"type": "text", "text": LONG, "extra": shallow}]
    _, plan = plan_and_apply(json.dumps(doc).encode(), model=None, mode="auto", ttl="5m", min_tokens=1024)
    assert plan.reason == "added"
