from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.report import (
    BASELINE_FORMAT,
    Baseline,
    build_report,
    evaluate,
    measure,
    model_table,
    parse_baseline,
)
from sidecar.core.usage import Usage
from tests.core.test_sessions import T0, make_event

NOW = T0 + 7200
HOUR = 3600.0
SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"


def ev(event_id: str, offset: float, session: str, model: str, **kw: Any) -> CallEvent:
    return make_event(event_id, T0 + offset, session_id=session, model=model, model_canonical=model, **kw)


def traffic() -> list[CallEvent]:
    """The window is [T0+3600, T0+7200]. Sessions: s-d ended before it, s-c straddles its start,
    s-a is closed inside it, s-b is still open at NOW (idle timeout 900 s)."""
    return [
        ev("p1", 100, "s-d", SONNET, duration_s=99.0, cost_usd=5.0),
        ev("c0", 3000, "s-c", SONNET, duration_s=1.0, cost_usd=0.05),
        ev("a1", 3605, "s-a", SONNET, duration_s=1.2, ttft_s=0.3, cost_usd=0.10,
           usage=Usage(100, 200, 0, 1000), tool_uses=("grep",), tool_use_ids=("t1",)),
        ev("a2", 3650, "s-a", SONNET, duration_s=0.8, ttft_s=0.2, cost_usd=0.20,
           usage=Usage(50, 100, 1000, 0), tool_results=(ToolResult("t1", "grep", 2.0, False),)),
        ev("a3", 3698, "s-a", HAIKU, duration_s=0.4, cost_usd=0.01),
        ev("c1", 3990, "s-c", SONNET, duration_s=2.0, cost_usd=0.30),
        ev("c2", 3995, "s-c", SONNET, status=529, error_type="overloaded_error", duration_s=30.0),
        ev("b1", 7000, "s-b", SONNET, duration_s=1.5, ttft_s=0.4, cost_usd=0.40,
           tool_uses=("grep", "read"), tool_results=(ToolResult("t2", "grep", 4.0, True),)),
        ev("b2", 7100, "s-b", SONNET, duration_s=3.1, ttft_s=0.5, cost_usd=0.50,
           tool_results=(ToolResult("t3", "grep", 6.0, False), ToolResult("t4", "read", 1.0, False))),
        ev("b3", 7140, "s-b", HAIKU, duration_s=0.6, cost_usd=0.02),
    ]  # fmt: skip


def run(**kw: Any) -> Any:
    args: dict[str, Any] = {
        "now": NOW,
        "window_s": HOUR,
        "p95_latency_ms": None,
        "p95_session_cost_usd": None,
        "baseline": None,
    }
    args.update(kw)
    events = args.pop("events", traffic())
    return evaluate(events, **args)


def test_model_table_percentiles_over_successful_calls() -> None:
    window = [e for e in traffic() if e.started_at >= T0 + 3600]
    table = model_table(window)
    sonnet = table[SONNET]
    # Successful sonnet durations: 1.2 0.8 2.0 1.5 3.1 -> sorted 0.8 1.2 1.5 2.0 3.1 (the 529 is excluded).
    assert (sonnet["model_calls"], sonnet["ok_calls"], sonnet["error_calls"]) == (6, 5, 1)
    assert sonnet["duration_p50_s"] == 1.5  # ceil(2.5) = 3rd
    assert sonnet["duration_p95_s"] == 3.1  # ceil(4.75) = 5th
    # TTFTs 0.3 0.2 0.4 0.5 (c1 has none) -> p50 ceil(2) = 2nd = 0.3, p95 ceil(3.8) = 4th = 0.5.
    assert (sonnet["ttft_p50_s"], sonnet["ttft_p95_s"]) == (0.3, 0.5)
    assert sonnet["cache_hit_ratio"] == pytest.approx(1000 / (150 + 1000 + 1000))
    assert sonnet["unpriced_calls"] == 1
    assert sonnet["cost_usd"] == pytest.approx(0.10 + 0.20 + 0.30 + 0.40 + 0.50)
    haiku = table[HAIKU]
    assert (haiku["duration_p50_s"], haiku["duration_p95_s"]) == (0.4, 0.6)
    assert haiku["ttft_p50_s"] is None
    assert haiku["cache_hit_ratio"] is None


def test_build_report_window_totals_sessions_tools() -> None:
    doc = build_report(traffic(), now=NOW, window_s=HOUR, idle_timeout_s=900, limit=2)
    t = doc["totals"]
    assert (t["model_calls"], t["error_calls"], t["sessions"], t["tool_calls"]) == (8, 1, 3, 3)
    assert t["cost_usd"] == pytest.approx(1.53)
    assert t["unpriced_calls"] == 1
    assert t["tool_time_s"] == pytest.approx(13.0)
    assert t["model_time_s"] == pytest.approx(1.2 + 0.8 + 0.4 + 2.0 + 30.0 + 1.5 + 3.1 + 0.6)
    # In-window parts: s-b 0.92, s-a 0.31, s-c 0.30 (its 0.05 call is before the window).
    assert [s["session_id"] for s in doc["top_sessions"]] == ["s-b", "s-a"]
    assert doc["top_sessions"][0]["cost_usd"] == pytest.approx(0.92)
    assert doc["top_sessions"][0]["open"] is True
    assert doc["tools"]["grep"] == {
        "count": 2, "measured": 3, "errors": 1, "p50_s": 4.0, "p95_s": 6.0, "total_s": 12.0
    }  # fmt: skip
    assert doc["tools"]["read"]["p95_s"] == 1.0
    assert doc["window"] == {"since": "2026-01-01T01:00:00.000Z", "until": "2026-01-01T02:00:00.000Z",
                             "window_s": HOUR}  # fmt: skip
    json.dumps(doc)  # the --json output must serialise


def test_measure_closed_sessions_only() -> None:
    m = measure(traffic(), now=NOW, window_s=HOUR, idle_timeout_s=900)
    assert m["format"] == BASELINE_FORMAT
    assert m["duration_p95_ms"] == {SONNET: pytest.approx(3100.0), HAIKU: pytest.approx(600.0)}
    assert m["duration_samples"] == {SONNET: 5, HAIKU: 2}
    # Closed and last seen in the window: s-a (0.31) and s-c (0.05 + 0.30, costed whole). s-b is open,
    # s-d ended before the window. Nearest-rank p95 of [0.31, 0.35] is the 2nd.
    assert (m["closed_sessions"], m["open_sessions"]) == (2, 1)
    assert m["session_cost_p95_usd"] == pytest.approx(0.35)
    # With no idle wait, s-b (0.92) closes too: p95 of [0.31, 0.35, 0.92] = 3rd.
    m0 = measure(traffic(), now=NOW, window_s=HOUR, idle_timeout_s=0)
    assert (m0["closed_sessions"], m0["session_cost_p95_usd"]) == (3, pytest.approx(0.92))


def test_latency_ceiling() -> None:
    bad = run(p95_latency_ms=2000)
    assert bad.ok is False
    assert bad.findings == [
        "p95 latency of claude-sonnet-4-5 is 3100 ms over the last 1h, above the ceiling of 2000 ms (5 calls)"
    ]
    assert run(p95_latency_ms=3100).ok is True  # at the ceiling is not above it
    both = run(p95_latency_ms=500)
    assert [f.split(" is ")[0] for f in both.findings] == [
        "p95 latency of claude-haiku-4-5", "p95 latency of claude-sonnet-4-5"
    ]  # fmt: skip


def test_session_cost_ceiling() -> None:
    bad = run(p95_session_cost_usd=0.30)
    assert bad.ok is False
    assert bad.findings == [
        "p95 session cost is $0.35 over the 2 sessions closed in the last 1h, above the ceiling of $0.30"
    ]
    assert run(p95_session_cost_usd=0.35).ok is True
    assert run(p95_session_cost_usd=0.50, idle_timeout_s=0).ok is False  # s-b's 0.92 now counts


def test_no_closed_session_is_a_note_not_a_failure() -> None:
    events = [e for e in traffic() if e.session_id == "s-b"]
    result = run(events=events, p95_session_cost_usd=0.01)
    assert result.ok is True
    assert result.notes == [
        "no closed session ended in the last 1h (1 still open; a session closes after 15m idle): "
        "session cost not checked"
    ]


def test_no_data_is_ok_unless_required() -> None:
    quiet = [e for e in traffic() if e.started_at < T0 + 3600]
    result = run(events=quiet, p95_latency_ms=1000)
    assert result.ok is True
    assert result.findings == ["no successful model calls recorded over the last 1h: nothing to check"]
    assert run(events=quiet, p95_latency_ms=1000, require_data=True).ok is False
    assert run(events=[], require_data=True).ok is False


def test_baseline_regression_with_tolerance() -> None:
    # 3100 ms against 3000 ms is +3.3 %: within 10 %.
    assert run(baseline=Baseline({SONNET: 3000.0}, None)).ok is True
    bad = run(baseline=Baseline({SONNET: 2500.0, HAIKU: 600.0}, None))
    assert bad.ok is False
    assert bad.findings == [
        "p95 latency of claude-sonnet-4-5 regressed to 3100 ms over the last 1h from a baseline of 2500 ms "
        "(+24%, tolerance 10%; 5 calls)"
    ]
    assert run(baseline=Baseline({SONNET: 2500.0}, None), tolerance=0.25).ok is True
    # Session cost 0.35 against 0.30: +17 %.
    cost = run(baseline=Baseline({}, 0.30))
    assert cost.findings == [
        "p95 session cost regressed to $0.35 over the last 1h from a baseline of $0.30 "
        "(+17%, tolerance 10%; 2 closed sessions)"
    ]
    assert run(baseline=Baseline({}, 0.30), tolerance=0.2).ok is True


def test_baseline_model_not_seen_is_a_note() -> None:
    result = run(baseline=Baseline({"claude-opus-4-1": 100.0}, None))
    assert result.ok is True
    assert result.notes == [
        "baseline model claude-opus-4-1 had no successful calls over the last 1h; not compared"
    ]


def test_saved_measurements_parse_back_as_baseline() -> None:
    doc = json.loads(json.dumps(run().measurements))
    base = parse_baseline(doc)
    assert base.duration_p95_ms == {SONNET: pytest.approx(3100.0), HAIKU: pytest.approx(600.0)}
    assert base.session_cost_p95_usd == pytest.approx(0.35)
    # Comparing the same traffic against its own baseline passes.
    assert run(baseline=base, p95_latency_ms=5000).ok is True


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "not a baseline file"),
        ({"duration_p95_ms": {}}, "not a baseline file"),
        ({"format": BASELINE_FORMAT, "duration_p95_ms": []}, "duration_p95_ms must be an object"),
        ({"format": BASELINE_FORMAT, "duration_p95_ms": {"m": "fast"}}, "must be a finite number"),
        ({"format": BASELINE_FORMAT, "session_cost_p95_usd": -1}, "must not be negative"),
        ({"format": BASELINE_FORMAT, "session_cost_p95_usd": True}, "must be a finite number"),
    ],
)
def test_parse_baseline_rejects_bad_documents(doc: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_baseline(doc)
