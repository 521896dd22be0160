from __future__ import annotations

import pytest

from sidecar.core.events import ToolResult
from sidecar.core.tools import ToolLatencyMatcher


def test_first_result_counts_and_resends_are_ignored() -> None:
    m = ToolLatencyMatcher()
    m.remember("s1", ["toolu_a", "toolu_b"], ["search", "read_file"], at=100.0)
    # The first request answers only toolu_a.
    assert m.match("s1", [("toolu_a", False)], at=102.5) == [ToolResult("toolu_a", "search", 2.5, False)]
    # The next request resends toolu_a's result (history) and answers toolu_b for the first time.
    assert m.match("s1", [("toolu_a", False), ("toolu_b", True)], at=107.0) == [
        ToolResult("toolu_b", "read_file", 7.0, True)
    ]
    # A third request resends both: nothing is measured again.
    assert m.match("s1", [("toolu_a", False), ("toolu_b", True)], at=120.0) == []
    assert len(m) == 0


def test_unknown_ids_and_other_sessions_match_nothing() -> None:
    m = ToolLatencyMatcher()
    m.remember("s1", ["toolu_a"], ["search"], at=10.0)
    assert m.match("s1", [("toolu_zzz", False)], at=11.0) == []
    assert m.match("s2", [("toolu_a", False)], at=11.0) == []  # same id, another session
    assert m.match("s1", [("toolu_a", False)], at=13.0) == [ToolResult("toolu_a", "search", 3.0, False)]


def test_same_id_in_two_sessions_is_kept_apart() -> None:
    m = ToolLatencyMatcher()
    m.remember("s1", ["toolu_x"], ["a"], at=0.0)
    m.remember("s2", ["toolu_x"], ["b"], at=5.0)
    assert m.match("s2", [("toolu_x", False)], at=6.0) == [ToolResult("toolu_x", "b", 1.0, False)]
    assert m.match("s1", [("toolu_x", True)], at=6.0) == [ToolResult("toolu_x", "a", 6.0, True)]


def test_duplicate_id_inside_one_request_counts_once() -> None:
    m = ToolLatencyMatcher()
    m.remember("s", ["t1"], ["calc"], at=1.0)
    assert m.match("s", [("t1", False), ("t1", False)], at=2.0) == [ToolResult("t1", "calc", 1.0, False)]


def test_missing_names_empty_ids_and_clock_steps() -> None:
    m = ToolLatencyMatcher()
    m.remember("s", ["t1", "", "t2"], ["calc"], at=50.0)
    assert len(m) == 2  # the empty id is skipped
    got = m.match("s", [("t1", False), ("t2", False)], at=49.0)  # clock stepped backwards
    assert got == [ToolResult("t1", "calc", 0.0, False), ToolResult("t2", "unknown", 0.0, False)]


def test_memory_is_bounded_oldest_dropped() -> None:
    m = ToolLatencyMatcher(max_pending=3)
    m.remember("s", ["t1", "t2"], ["a", "a"], at=1.0)
    m.remember("s", ["t3", "t4", "t5"], ["b", "b", "b"], at=2.0)
    assert len(m) == 3
    assert m.dropped == 2
    assert m.match("s", [("t1", False), ("t2", False)], at=3.0) == []
    assert [r.tool_use_id for r in m.match("s", [("t3", False), ("t5", False)], at=3.0)] == ["t3", "t5"]


def test_expire_drops_only_old_entries() -> None:
    m = ToolLatencyMatcher()
    m.remember("s", ["t0"], ["a"], at=0.0)
    m.remember("s", ["t10"], ["a"], at=10.0)
    m.remember("s", ["t20"], ["a"], at=20.0)
    # cutoff = 25 - 10 = 15: t0 and t10 go, t20 stays.
    assert m.expire(now=25.0, max_age_s=10.0) == 2
    assert m.expire(now=25.0, max_age_s=10.0) == 0
    assert m.match("s", [("t10", False), ("t20", False)], at=26.0) == [ToolResult("t20", "a", 6.0, False)]


def test_invalid_cap() -> None:
    with pytest.raises(ValueError):
        ToolLatencyMatcher(max_pending=0)
