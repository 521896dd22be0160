"""Cache-busting detection: prompts with changing timestamps/ids are flagged, stable ones are not."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.cache_busting import (
    _TOKEN,
    KINDS,
    BustingVerdict,
    CacheBustingDetector,
    changed_kinds,
    describe_change,
    describe_kinds,
    shape_of,
    shape_of_body,
    system_shape,
)
from sidecar.sansio.request import inspect_body

SECRET = "Zanzibar-octopus"  # a word that must never reach a log line
BASE = f"You are the support bot of {SECRET} Ltd. Answer politely. " * 20


def feed(detector: CacheBustingDetector, app: str, prompts: list[str]) -> list[tuple[int, BustingVerdict]]:
    """Observe each prompt in turn; return ``(call index, verdict)`` for the calls that returned one."""
    out: list[tuple[int, BustingVerdict]] = []
    for i, prompt in enumerate(prompts):
        h, shape = system_shape(prompt)
        verdict = detector.observe(app, h, shape)
        if verdict is not None:
            out.append((i, verdict))
    return out


@pytest.mark.parametrize(
    "system",
    [
        "plain prompt",
        [
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}},
        ],
    ],
)
def test_hash_is_the_request_inspections_system_hash(system: object) -> None:
    body = orjson.dumps({"model": "m", "system": system, "messages": []})
    assert system_shape(system)[0] == inspect_body(body).system_hash is not None
    unmarked = (
        [{k: v for k, v in b.items() if k != "cache_control"} for b in system]
        if isinstance(system, list)
        else system
    )
    assert system_shape(unmarked) == system_shape(system)  # markers never change hash or shape


def test_no_text_no_shape() -> None:
    assert system_shape(None) == (None, None)
    assert system_shape("") == (None, None)
    assert system_shape([{"type": "text", "text": ""}]) == (None, None)


@pytest.mark.parametrize(
    ("a", "b", "kinds"),
    [
        ("Now: 2026-11-20T10:00:00Z.", "Now: 2026-11-20T10:00:07Z.", "timestamp"),
        ("Today is Friday, November 20, 2026.", "Today is Saturday, November 21, 2026.", "timestamp"),
        ("epoch 1763600000 here", "epoch 1763600042 here", "timestamp"),
        ("at 10:15 sharp", "at 10:16 sharp", "timestamp"),
        (f"req {uuid.UUID(int=1)} go", f"req {uuid.UUID(int=2)} go", "uuid"),
        ("trace 4bf92f3577b34da6 ok", "trace 00f067aa0ba902b7 ok", "hex"),
        ("call number 17 of the day", "call number 18 of the day", "number"),
        ("t=2026-11-20 id 9f8e7d6c5b4a3f21", "t=2026-11-21 id 1a2b3c4d5e6f7a8b", "timestamp+hex"),
        ("Be nice.", "Be kind.", "wording"),
        ("Be nice. 2026-11-20", "Be kind. 2026-11-21", "wording"),
    ],
)
def test_changed_kinds(a: str, b: str, kinds: str) -> None:
    sa, sb = system_shape(a)[1], system_shape(b)[1]
    assert sa is not None and sb is not None
    assert changed_kinds(sa, sb) == kinds


def test_describe_kinds_words() -> None:
    assert describe_kinds("timestamp") == "timestamp-like digit run"
    assert describe_kinds("timestamp+uuid") == "timestamp-like digit run and uuid"
    assert describe_kinds("wording") == "wording of the system prompt"


def test_describe_change_names_kind_position_and_length_but_no_text() -> None:
    prev = f"Now: 2026-11-20T10:00:00Z. {SECRET} rules."
    text = f"Now: 2026-11-20T10:00:05Z. {SECRET} rules."
    # "Now: " is 5 characters; the timestamp "2026-11-20T10:00:05Z" is 20.
    assert describe_change(prev, text) == "timestamp-like digit run at char 5 (length 20)"
    assert describe_change(prev, prev) == "no change"
    reworded = f"Now: 2026-11-20T10:00:00Z. {SECRET} Rules."
    # The first difference is "r" → "R" after "Now: <20 chars>. " (5 + 20 + 2) plus the secret and a space.
    assert describe_change(prev, reworded) == f"wording changed at char {5 + 20 + 2 + len(SECRET) + 1}"
    assert describe_change("abc", "abcd") == "wording changed at char 3"
    ids = " ".join(str(uuid.UUID(int=i)) for i in range(8))
    ids2 = " ".join(str(uuid.UUID(int=i + 100)) for i in range(8))
    out = describe_change(ids, ids2)
    assert out.startswith("uuid at char 0 (length 36); uuid at char 37 (length 36)")
    assert out.endswith("; and 3 more")
    for result in (describe_change(prev, text), describe_change(prev, reworded), out):
        assert SECRET not in result and "2026" not in result and "0000" not in result


def test_changing_timestamp_raises_the_signal_once_naming_app_and_kind() -> None:
    detector = CacheBustingDetector(window=50, threshold=0.5, min_calls=10)
    prompts = [f"{BASE}\nCurrent time: 2026-11-20T10:{i // 60:02}:{i % 60:02}Z" for i in range(40)]
    verdicts = feed(detector, "chatbot", prompts)
    # Call 0 has no predecessor; calls 1..10 are ten changes in ten window slots → ratio 1.0 > 0.5 at i=10.
    assert [i for i, _ in verdicts] == [10]
    verdict = verdicts[0][1]
    assert verdict.busting and verdict.app == "chatbot" and verdict.ratio == 1.0 and verdict.calls == 10
    assert verdict.change == "timestamp-like digit run"
    message = verdict.message()
    assert "'chatbot'" in message and "timestamp-like digit run" in message and "100%" in message
    assert SECRET not in message and "10:00" not in message
    assert detector.busting("chatbot") and detector.ratio("chatbot") == 1.0


def test_stable_prompt_is_not_flagged() -> None:
    detector = CacheBustingDetector()
    assert feed(detector, "steady", [BASE] * 60) == []
    assert not detector.busting("steady") and detector.ratio("steady") == 0.0


def test_occasional_rewording_is_not_flagged() -> None:
    detector = CacheBustingDetector(window=50, threshold=0.5, min_calls=10)
    prompts = [f"{BASE} Version {i // 10} of the rules, edition {'abcdefg'[i // 10]}." for i in range(60)]
    assert feed(detector, "editor", prompts) == []
    # 50-call window over calls 10..59: the edition changed at calls 10, 20, 30, 40, 50 → 5 of 50.
    assert detector.ratio("editor") == pytest.approx(5 / 50)


def test_an_agent_alternating_between_stable_prompts_is_not_flagged() -> None:
    detector = CacheBustingDetector(min_calls=5)
    prompts = [f"{BASE} role {'ABC'[i % 3]}" for i in range(60)]
    assert feed(detector, "agent", prompts) == []
    # The first sightings of B and C (calls 1 and 2) were new; the 50-call window now holds calls 10..59.
    assert detector.ratio("agent") == 0.0


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda i: f"{BASE} request {uuid.UUID(int=i)}", "uuid"),
        (lambda i: f"{BASE} trace {i:016x}" if i % 2 else f"{BASE} trace {i:015x}f", "hex id"),
        (lambda i: f"{BASE} call #{i}", "digit run (counter or id)"),
        (lambda i: f"{BASE} {'pick a fruit ' * (i % 7)} {i}", "wording of the system prompt"),
    ],
)
def test_other_kinds_are_named(make: Callable[[int], str], expected: str) -> None:
    detector = CacheBustingDetector(min_calls=10)
    verdicts = feed(detector, "app", [make(i + 1) for i in range(30)])
    assert len(verdicts) == 1
    assert verdicts[0][1].change == expected


def test_busting_stops_with_hysteresis() -> None:
    detector = CacheBustingDetector(window=20, threshold=0.5, min_calls=10)
    busting = [f"{BASE} now={1763600000 + i}" for i in range(20)]
    assert [v.busting for _, v in feed(detector, "a", busting)] == [True]
    # The window (20) holds 19 changes and a free slot. The first stable call fills the slot, each later
    # one pushes a change out: after k stable calls 20 - k changes remain. At k = 10 the share is 0.5
    # (not above the threshold) yet the flag stays (hysteresis); it clears at 5 / 20 = 0.25 = threshold / 2,
    # i.e. k = 15 (index 14).
    stable = [busting[-1]] * 20
    verdicts = feed(detector, "a", stable)
    assert [(i, v.busting) for i, v in verdicts] == [(14, False)]
    assert "stopped" in verdicts[0][1].message() and not detector.busting("a")


def test_needs_min_calls_and_ignores_calls_without_system() -> None:
    detector = CacheBustingDetector(min_calls=10)
    assert feed(detector, "x", [f"{BASE} {i}" for i in range(10)]) == []  # 9 changes < 10 calls
    assert detector.observe("x", None, None) is None
    assert detector.ratio("x") == 1.0 and not detector.busting("x")


def test_memory_is_bounded_per_app_count() -> None:
    detector = CacheBustingDetector(max_apps=3)
    for app in ("a", "b", "c"):
        detector.observe(app, "h", "s")
    detector.observe("a", "h", "s")  # a becomes the most recent
    detector.observe("d", "h", "s")  # evicts b, the least recently seen
    assert detector.apps() == ("c", "a", "d")
    assert detector.ratio("b") == 0.0 and not detector.busting("b")


def reference_shape(text: str) -> str:
    """The shape by a plain regex scan of the whole text (no line filter), hashing the same bytes."""
    skeleton = hashlib.blake2b(digest_size=8)
    values = {kind: hashlib.blake2b(digest_size=8) for kind in KINDS}
    pos = 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "number"
        skeleton.update(text[pos : m.start()].encode() + f"\x00{KINDS.index(kind)}\x00".encode())
        values[kind].update(m.group().encode() + b"\x1f")
        pos = m.end()
    skeleton.update(text[pos:].encode())
    return ".".join([skeleton.hexdigest(), *(values[k].hexdigest() for k in KINDS)])


FRAGMENTS = st.sampled_from(
    [
        "a",
        "f",
        "Z",
        "T",
        " ",
        "\n",
        "-",
        ":",
        "/",
        ".",
        ",",
        "0",
        "1",
        "7",
        "9",
        "é",
        "\u0663",
        "2026-11-20",
        "10:00:05",
        "Nov",
        "November",
        "Friday",
        "deadbeef",
        "1763600000",
        "st",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_line_filtered_shape_equals_a_full_scan(text: str) -> None:
    assert shape_of(text) == reference_shape(text)


def test_shape_of_body_reads_the_system_prompt() -> None:
    body = orjson.dumps({"model": "m", "system": [{"type": "text", "text": "at 10:00"}], "messages": []})
    assert shape_of_body(body) == shape_of("at 10:00") == system_shape("at 10:00")[1]
    assert shape_of_body(b"{oops") is None
    assert shape_of_body(b'{"model": "m"}') is None
    assert shape_of_body(b"[1]") is None


def test_a_shape_is_needed_only_for_prompts_new_to_the_app() -> None:
    detector = CacheBustingDetector()
    h, shape = system_shape(BASE)
    assert detector.needs_shape("a", h)  # the app's first prompt: kept to compare later ones with
    assert not detector.needs_shape("a", None)
    detector.observe("a", h, shape)
    assert not detector.needs_shape("a", h)
    h2, _ = system_shape(BASE + " 2026-11-21")
    assert detector.needs_shape("a", h2)
    # Without a shape a new prompt still counts, as a wording change.
    for i in range(12):
        detector.observe("b", f"h{i}", None)
    assert detector.busting("b")


@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=200))
def test_running_share_equals_a_recount_of_the_window(prompts: list[int]) -> None:
    detector = CacheBustingDetector(window=20, recent=4)
    for p in prompts:
        digest = f"h{p}"
        shape = f"shape {p}" if detector.needs_shape("app", digest) else None
        detector.observe("app", digest, shape)
        window = detector._apps["app"].window  # empty after the app's first call
        expected = sum(k is not None for k in window) / len(window) if window else 0.0
        assert detector.ratio("app") == expected
