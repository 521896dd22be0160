"""The live tracker closes idle sessions once, with the totals the stored-event summary would give."""

from __future__ import annotations

import pytest

from sidecar.core.session_lifecycle import ClosedSession, SessionLifecycle
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
