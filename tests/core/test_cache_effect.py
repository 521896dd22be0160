"""Wasted cache writes: written, never read within the TTL, reported once the TTL runs out."""

from __future__ import annotations

from sidecar.core.cache_effect import WastedWrite, WasteTracker, totals
from sidecar.core.usage import Usage

M, APP, SYS = "claude-sonnet-4-5", "bot", "h1"


def usage(read: int = 0, w5: int = 0, w1h: int = 0) -> Usage:
    return Usage(
        input_tokens=10,
        cache_read_input_tokens=read,
        cache_creation_input_tokens=w5 + w1h,
        cache_creation_5m=w5,
        cache_creation_1h=w1h,
    )


def call(
    t: WasteTracker, at: float, u: Usage, session: str = "s1", system: str = SYS, app: str = APP
) -> None:
    t.observe(session_id=session, app=app, model=M, system_hash=system, at=at, usage=u)


def test_a_write_read_within_its_ttl_is_not_wasted() -> None:
    t = WasteTracker()
    call(t, 0.0, usage(w5=1000))
    call(t, 299.0, usage(read=1000))
    assert t.expire(10_000.0) == [] and t.pending == 0


def test_an_unread_write_is_wasted_when_its_ttl_ends_not_before() -> None:
    t = WasteTracker()
    call(t, 100.0, usage(w5=1500))
    assert t.expire(399.9) == []  # 100 + 300 s not reached yet
    assert t.expire(400.0) == [WastedWrite("s1", APP, M, "5m", 1500, 100.0)]
    assert t.expire(10_000.0) == []  # reported once


def test_a_read_after_the_ttl_does_not_rescue_the_write() -> None:
    t = WasteTracker()
    call(t, 0.0, usage(w5=1000))
    call(t, 300.0, usage(read=1000))  # the entry expired at 300 s
    assert [w.tokens for w in t.expire(301.0)] == [1000]


def test_one_hour_writes_live_an_hour() -> None:
    t = WasteTracker()
    call(t, 0.0, usage(w1h=2000))
    assert t.expire(3599.0) == []
    assert [(w.ttl, w.tokens) for w in t.expire(3600.0)] == [("1h", 2000)]
    t2 = WasteTracker()
    call(t2, 0.0, usage(w1h=2000))
    call(t2, 1800.0, usage(read=2000))
    assert t2.expire(4000.0) == []


def test_mixed_ttls_split_the_span_1h_first() -> None:
    # One call writes 1h over tokens [0, 800) and 5m over [800, 1000). A later read of 800 tokens
    # reaches into the 1h span only (800 > 0) but not into the 5m one (800 is not > 800).
    t = WasteTracker()
    call(t, 0.0, usage(w5=200, w1h=800))
    call(t, 60.0, usage(read=800))
    wasted = t.expire(4000.0)
    assert [(w.ttl, w.tokens) for w in wasted] == [("5m", 200)]


def test_a_conversation_reading_its_growing_prefix_wastes_nothing() -> None:
    t = WasteTracker()
    call(t, 0.0, usage(w5=1000))  # system prompt written
    call(t, 10.0, usage(read=1000, w5=200))  # reads it, writes turn 1 over [1000, 1200)
    call(t, 20.0, usage(read=1200, w5=150))  # reads both, writes turn 2 over [1200, 1350)
    call(t, 30.0, usage(read=1350))
    assert t.expire(1000.0) == []


def test_entries_are_shared_by_sessions_of_the_app_with_the_same_system_prompt() -> None:
    t = WasteTracker()
    call(t, 0.0, usage(w5=1000), session="a")
    call(t, 5.0, usage(read=1000, w5=300), session="b")  # reads a's write; writes its own turn
    call(t, 6.0, usage(read=1000), session="c", system="other")  # another prompt: no relation
    wasted = t.expire(1000.0)
    # a's write was read by b; b's turn [1000, 1300) was never read (c had another system prompt).
    assert wasted == [WastedWrite("b", APP, M, "5m", 300, 5.0)]


def test_a_read_of_only_the_shared_prefix_does_not_count_for_anothers_turn() -> None:
    t = WasteTracker()
    call(t, 0.0, usage(read=1000, w5=200), session="a")  # a's turn over [1000, 1200)
    call(t, 1.0, usage(read=1000), session="b")  # b reads the system prefix only: 1000 is not > 1000
    assert [w.session_id for w in t.expire(1000.0)] == ["a"]


def test_totals_per_model_and_app() -> None:
    wasted = [
        WastedWrite("s1", "bot", M, "5m", 100, 0.0),
        WastedWrite("s2", "bot", M, "1h", 50, 0.0),
        WastedWrite("s3", "etl", M, "5m", 7, 0.0),
    ]
    assert totals(wasted) == {(M, "bot"): 150, (M, "etl"): 7}


def test_pending_writes_are_bounded() -> None:
    t = WasteTracker(max_pending=2)
    for i in range(3):
        call(t, float(i), usage(w5=10 + i), session=f"s{i}")
    assert t.pending == 2 and t.dropped == 1
    assert sorted(w.session_id for w in t.expire(1000.0)) == ["s1", "s2"]  # the oldest was forgotten
    assert t.pending == 0
