"""The live tracker closes idle sessions once, with the totals the stored-event summary would give."""

from __future__ import annotations

import pytest

from sidecar.core.session_lifecycle import ClosedSession, SessionLifecycle, StoredSession
from tests.core.test_sessions import T0, make_event, session_events


def test_lifecycle_closes_idle_sessions_with_totals() -> None:
    life = SessionLifecycle(idle_timeout_s=900)
    life.observe(make_event("x1", T0 + 5, session_id="other", cost_usd=1.0, duration_s=4.0), now=T0 + 9)
    life.observe(make_event("anon", T0 + 6, session_id=""), now=T0 + 9)  # belongs to no session
    for e in session_events():
        assert life.observe(e, now=max(T0 + 9, e.ended_at)) == []
    assert life.open_count == 2
    # "other" was last active at T0+9; sess-1 at T0+31.5.
    assert life.expire(T0 + 909) == []
    closed = life.expire(T0 + 909.5)
    assert closed == [ClosedSession("other", "support-bot", 1.0, 0, 1, 0, 4.0, 4.0, 0.0)]
    assert life.open_count == 1
    (sess,) = life.expire(T0 + 31.5 + 900.01)
    assert sess.session_id == "sess-1"
    assert sess.app == "support-bot"
    assert sess.cost_usd == pytest.approx(0.0165)
    # tokens: (100+50+1000+200) + (10+20+1200+0) + 0
    assert sess.tokens == 2580
    assert (sess.model_calls, sess.tool_calls) == (3, 3)
    assert sess.duration_s == pytest.approx(31.5)
    assert sess.model_time_s == pytest.approx(6.5)
    assert sess.tool_time_s == pytest.approx(28.5)
    assert life.open_count == 0


def test_lifecycle_activity_restarts_the_idle_clock() -> None:
    life = SessionLifecycle(idle_timeout_s=10)
    life.observe(make_event("a", T0, session_id="a"), now=T0 + 1)
    life.observe(make_event("b", T0, session_id="b"), now=T0 + 2)
    life.observe(make_event("a2", T0 + 8, session_id="a"), now=T0 + 9)
    assert [c.session_id for c in life.expire(T0 + 12.5)] == ["b"]
    assert [c.session_id for c in life.expire(T0 + 19.5)] == ["a"]


def test_lifecycle_is_bounded() -> None:
    life = SessionLifecycle(idle_timeout_s=900, max_open=2)
    assert life.observe(make_event("a", T0, session_id="a", cost_usd=0.5), now=T0) == []
    assert life.observe(make_event("b", T0 + 1, session_id="b"), now=T0 + 1) == []
    evicted = life.observe(make_event("c", T0 + 2, session_id="c"), now=T0 + 2)
    assert [(c.session_id, c.cost_usd) for c in evicted] == [("a", 0.5)]
    assert life.open_count == 2


def stored(sid: str, last_end: float, cost: float = 1.0) -> StoredSession:
    return StoredSession(sid, "app", last_end - 100, last_end, cost, 500, 2, 1, 3.0, 4.0)


def test_restored_sessions_close_whole_in_order_of_last_activity() -> None:
    life = SessionLifecycle(idle_timeout_s=10, max_open=3)
    life.observe(make_event("live", T0 + 50, session_id="live", cost_usd=0.5), now=T0 + 51)
    # "live" is followed already: its stored row does not replace what this process counted.
    added = life.restore([stored("late", T0 + 40), stored("early", T0 + 20), stored("live", T0 + 45, 9.0)])
    assert (added, life.open_count) == (2, 3)
    # Expiry walks them by last activity: early (T0+20), then late (T0+40), then live (T0+51).
    assert [c.session_id for c in life.expire(T0 + 30.5)] == ["early"]
    (late,) = life.expire(T0 + 50.5)
    assert late == ClosedSession("late", "app", 1.0, 500, 2, 1, 100.0, 3.0, 4.0)  # the stored totals
    # A call of a restored session adds to its stored totals, and restarts its idle clock.
    life.restore([stored("back", T0 + 55)])
    life.observe(make_event("b2", T0 + 60, session_id="back", cost_usd=0.25, duration_s=1.0), now=T0 + 61)
    closed = [(c.session_id, c.cost_usd, c.model_calls) for c in life.expire(T0 + 80)]
    assert closed == [("live", 0.5, 1), ("back", 1.25, 3)]


def test_restore_keeps_the_cap_with_the_most_recent_sessions() -> None:
    life = SessionLifecycle(idle_timeout_s=10, max_open=2)
    assert life.restore([stored(f"s{i}", T0 + i) for i in range(5)] + [stored("", T0 + 9)]) == 2
    assert [c.session_id for c in life.expire(T0 + 100)] == ["s3", "s4"]
