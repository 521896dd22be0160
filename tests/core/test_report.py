from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.report import (
    BASELINE_FORMAT,
    MODEL_KEYS,
    TOTAL_KEYS,
    Baseline,
    ReportParts,
    build_report,
    evaluate,
    measure,
    model_table,
    parse_baseline,
)
from sidecar.core.sessions import list_sessions
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


def sessions_of(events: list[CallEvent]) -> list[tuple[float, float]]:
    """``(last_seen, cost_usd)`` of each whole session, as the store's per-session rollup gives them."""
    summaries = list_sessions(events, now=NOW, idle_timeout_s=900, limit=None, order="recent")
    return [(s["last_seen_at_ts"], s["cost_usd"]) for s in summaries]


# The window's p95 durations of successful calls per model, as the store's summary gives them (the
# values of traffic(): sonnet 0.8 1.2 2.0 1.5 3.1 s, haiku 0.4 0.6 s).
MODELS = {SONNET: {"duration_p95_s": 3.1, "ok_calls": 5}, HAIKU: {"duration_p95_s": 0.6, "ok_calls": 2}}


def run(**kw: Any) -> Any:
    args: dict[str, Any] = {"p95_latency_ms": None, "p95_session_cost_usd": None, "baseline": None}
    args.update(kw)
    models = args.pop("models", MODELS)
    sessions = sessions_of(args.pop("events", traffic()))
    idle = args.get("idle_timeout_s", 900.0)
    m = measure(models, sessions, now=NOW, window_s=HOUR, idle_timeout_s=idle)
    return evaluate(m, **args)


def summary_row(key: str, model_calls: int, **kw: Any) -> dict[str, Any]:
    """A row of a summary grouped by model, with more fields than the report keeps."""
    row: dict[str, Any] = {k: 0 for k in MODEL_KEYS} | {"key": key, "model_calls": model_calls}
    return row | {"requests": model_calls + 1, "cache_write_1h": 0} | kw


def test_model_table_keeps_models_with_model_calls_and_the_report_fields() -> None:
    rows = [
        summary_row(SONNET, 6, ok_calls=5, duration_p95_s=3.221),
        summary_row("claude-x", 0),  # only count_tokens or refused calls: not a row of the table
        summary_row(HAIKU, 2, ok_calls=2, duration_p95_s=0.62093),
    ]
    table = model_table(rows)
    assert list(table) == [HAIKU, SONNET]  # by name
    assert set(table[SONNET]) == set(MODEL_KEYS)
    assert (table[SONNET]["ok_calls"], table[SONNET]["duration_p95_s"]) == (5, 3.221)


def test_build_report_shapes_the_store_answers() -> None:
    totals: dict[str, Any] = {k: 1 for k in TOTAL_KEYS} | {"sessions": 3, "requests": 9}
    parts = ReportParts(
        summary={"totals": totals, "rows": [summary_row(SONNET, 6)]},
        top_sessions=[{"session_id": "s-b", "cost_usd": 0.92}],
        tools={"grep": {"count": 2}},
        response_cache=(3, 0.75),
        cache_misses={"misses": 0},
    )
    doc = build_report(parts, now=NOW, window_s=HOUR)
    assert doc["totals"] == {k: 1 for k in TOTAL_KEYS} | {"sessions": 3}  # requests is not a report field
    assert doc["response_cache"] == {"hits": 3, "savings_usd": 0.75}
    assert list(doc["models"]) == [SONNET]
    assert doc["top_sessions"] == [{"session_id": "s-b", "cost_usd": 0.92}]
    assert doc["window"] == {"since": "2026-01-01T01:00:00.000Z", "until": "2026-01-01T02:00:00.000Z",
                             "window_s": HOUR}  # fmt: skip
    json.dumps(doc)  # the --json output must serialise


def test_measure_closed_sessions_only() -> None:
    m = measure(MODELS, sessions_of(traffic()), now=NOW, window_s=HOUR, idle_timeout_s=900)
    assert m["format"] == BASELINE_FORMAT
    assert m["duration_p95_ms"] == {SONNET: pytest.approx(3100.0), HAIKU: pytest.approx(600.0)}
    assert m["duration_samples"] == {SONNET: 5, HAIKU: 2}
    # Closed and last seen in the window: s-a (0.31) and s-c (0.05 + 0.30, a whole session). s-b is open,
    # s-d ended before the window. Nearest-rank p95 of [0.31, 0.35] is the 2nd.
    assert (m["closed_sessions"], m["open_sessions"]) == (2, 1)
    assert m["session_cost_p95_usd"] == pytest.approx(0.35)
    # With no idle wait, s-b (0.92) closes too: p95 of [0.31, 0.35, 0.92] = 3rd.
    m0 = measure(MODELS, sessions_of(traffic()), now=NOW, window_s=HOUR, idle_timeout_s=0)
    assert (m0["closed_sessions"], m0["session_cost_p95_usd"]) == (3, pytest.approx(0.92))
    # A session last seen after ``now`` is not in the window; a model without successful calls is not
    # measured.
    later = measure({"m": {"duration_p95_s": None, "ok_calls": 0}}, [(NOW + 1, 9.0)], now=NOW,
                    window_s=HOUR, idle_timeout_s=0)  # fmt: skip
    assert (later["closed_sessions"], later["open_sessions"], later["duration_p95_ms"]) == (0, 0, {})


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
    result = run(events=quiet, models={}, p95_latency_ms=1000)
    assert result.ok is True
    assert result.findings == ["no successful model calls recorded over the last 1h: nothing to check"]
    assert run(events=quiet, models={}, p95_latency_ms=1000, require_data=True).ok is False
    assert run(events=[], models={}, require_data=True).ok is False


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
