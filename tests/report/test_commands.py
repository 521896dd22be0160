from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import pytest

from sidecar.core.report import BASELINE_FORMAT
from sidecar.report.commands import check_main, report_main
from sidecar.store.clickhouse import ClickHouseStore
from sidecar.store.sqlite import SQLiteStore
from tests.core.test_report import NOW, SONNET, ev, traffic
from tests.report.conftest import Store

# Latency percentiles are bucket edges (sidecar.store.latency_buckets: UPPER[k] = 2 ** (k/16 - 10) to 5
# digits, the smallest edge at or above the exact nearest-rank value). Of traffic()'s last hour:
# sonnet durations 0.8 1.2 1.5 2.0 3.1 s: p50 1.5 -> k = ceil(16 * (log2 1.5 + 10)) = 170 -> 2**0.625
# = 1.5422 s; p95 3.1 -> k = 187 -> 2**1.6875 = 3.221 s. TTFTs 0.2 0.3 0.4 0.5 s: p50 0.3 -> k = 133 ->
# 2**-1.6875 = 0.31046 s; p95 0.5 = 2**-1 exactly. grep latencies 2 4 6 s: p50 4 = 2**2 exactly, p95 6
# -> k = 202 -> 2**2.625 = 6.1688 s.
SONNET_P95_S = 3.221


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
    store.write_events(traffic())
    store.close()
    return f"sqlite:///{tmp_path}/events.db"


@pytest.fixture
def traffic_store(any_store: Store) -> Store:
    """traffic() in SQLite, and in ClickHouse."""
    any_store.write(traffic())
    return any_store


def report(*argv: str) -> int:
    return report_main(list(argv), now=NOW, env={})


def check(*argv: str) -> int:
    return check_main(list(argv), now=NOW, env={})


def report_on(store: Store, *argv: str, now: float = NOW) -> int:
    return report_main(["--store", store.url, *argv], now=now, env={}, connect=store.connect)


def check_on(store: Store, *argv: str, now: float = NOW) -> int:
    return check_main(["--store", store.url, *argv], now=now, env={}, connect=store.connect)


def test_report_tables(traffic_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_on(traffic_store, "--window", "1h") == 0
    out = capsys.readouterr().out
    assert "8 model calls (1 not successful), 3 sessions, 3 tool calls, cost $1.53 (1 unpriced)" in out
    lines = out.splitlines()
    # Top sessions by cost, whole sessions: s-b ($0.92, open), s-c ($0.05 before the window + $0.30 in
    # it), s-a ($0.31).
    sessions = [line.split() for line in lines if line.strip().startswith("s-")]
    assert [(r[0], r[6], r[-1]) for r in sessions] == [
        ("s-b", "$0.92", "open"), ("s-c", "$0.35", "closed"), ("s-a", "$0.31", "closed")
    ]  # fmt: skip
    # Latency per model: sonnet p50 1.54 s, p95 3.22 s, TTFT 310 ms / 500 ms (bucket edges, see above).
    sonnet = next(line for line in lines if line.strip().startswith(SONNET) and "ms" in line)
    assert sonnet.split() == [SONNET, "6", "5", "1.54", "s", "3.22", "s", "310", "ms", "500", "ms", "$1.50"]
    # Cache per model: sonnet hit ratio 1000 / 2150 = 46.5 %.
    assert any(line.split()[:1] == [SONNET] and "46.5%" in line for line in lines)
    grep = next(line for line in lines if line.strip().startswith("grep"))
    assert grep.split() == ["grep", "2", "3", "1", "4.00", "s", "6.17", "s", "12.00", "s"]
    # Columns are aligned: every row of the tool table has the same width as its header.
    header = next(line for line in lines if line.strip().startswith("TOOL"))
    assert len(grep) == len(header)


def test_report_json_and_limit(traffic_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_on(traffic_store, "--window", "1h", "--limit", "1", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["session_id"] for s in doc["top_sessions"]] == ["s-b"]
    assert doc["models"][SONNET]["duration_p95_s"] == SONNET_P95_S
    t = doc["totals"]
    assert (t["model_calls"], t["error_calls"], t["sessions"], t["tool_calls"]) == (8, 1, 3, 3)
    assert t["tool_time_s"] == pytest.approx(13.0)
    assert t["model_time_s"] == pytest.approx(1.2 + 0.8 + 0.4 + 2.0 + 30.0 + 1.5 + 3.1 + 0.6)
    assert doc["tools"]["grep"] == {
        "count": 2, "measured": 3, "errors": 1, "p50_s": 4.0, "p95_s": 6.1688, "total_s": 12.0
    }  # fmt: skip
    # A 2h window also holds s-c's first call and s-d's (its cost of $5 makes it the top session).
    assert report_on(traffic_store, "--window", "2h", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["top_sessions"][0]["session_id"] == "s-d"
    assert [s["session_id"] for s in doc["top_sessions"]] == ["s-d", "s-b", "s-c", "s-a"]
    assert report_on(traffic_store, "--window", "2h", "--json", "--limit", "0") == 0
    assert json.loads(capsys.readouterr().out)["top_sessions"] == []


def test_report_and_check_read_no_events(
    traffic_store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both commands answer from the query layer (rollups, histograms, indexed reads), never through
    ``EventStore.events`` (which read the whole window's events into Python)."""

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise AssertionError("report and check must not read every event")

    monkeypatch.setattr(SQLiteStore, "events", refuse)
    monkeypatch.setattr(ClickHouseStore, "events", refuse)
    assert report_on(traffic_store, "--window", "2h", "--json") == 0
    assert json.loads(capsys.readouterr().out)["totals"]["model_calls"] == 10
    assert check_on(traffic_store, "--p95-latency-ms", "2000", "--p95-session-cost-usd", "0.34") == 1
    out = capsys.readouterr().out
    assert "p95 latency of claude-sonnet-4-5 is 3221 ms" in out and "p95 session cost is $0.35" in out


def test_store_from_environment(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--window", "1h", "--json"], now=NOW, env={"SIDECAR_STORE": store_url}) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["model_calls"] == 8


def test_empty_report(any_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_on(any_store) == 0
    out = capsys.readouterr().out
    assert "0 model calls" in out
    assert "(none)" in out


def test_check_healthy_and_failing(traffic_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    # Sonnet's p95 is 3221 ms (the bucket edge above 3100 ms, see the top of this file).
    assert check_on(traffic_store, "--p95-latency-ms", "3300", "--p95-session-cost-usd", "0.5") == 0
    assert "check OK (last 1h)" in capsys.readouterr().out
    assert check_on(traffic_store, "--p95-latency-ms", "2000") == 1
    out = capsys.readouterr().out
    assert "check FAILED (last 1h)" in out
    assert (
        "p95 latency of claude-sonnet-4-5 is 3221 ms over the last 1h, above the ceiling of 2000 ms (5 calls)"
        in out
    )
    # s-c began before the window: it is costed whole ($0.35 > $0.34).
    assert check_on(traffic_store, "--p95-session-cost-usd", "0.34") == 1
    assert "p95 session cost is $0.35 over the 2 sessions closed" in capsys.readouterr().out


def test_check_json(traffic_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_on(traffic_store, "--p95-latency-ms", "2000", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert len(doc["findings"]) == 1
    assert doc["measurements"]["duration_samples"] == {SONNET: 5, "claude-haiku-4-5": 2}
    # haiku 0.4 0.6 s: p95 0.6 -> k = 149 -> 2**-0.6875 = 0.62093 s.
    assert doc["measurements"]["duration_p95_ms"] == {
        SONNET: pytest.approx(3221.0), "claude-haiku-4-5": pytest.approx(620.93)
    }  # fmt: skip
    assert (doc["measurements"]["closed_sessions"], doc["measurements"]["open_sessions"]) == (2, 1)


def test_idle_timeout_flag_and_env(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # With no idle wait s-b ($0.92) is closed and becomes the p95.
    assert check("--store", store_url, "--p95-session-cost-usd", "0.5", "--idle-timeout", "0") == 1
    env = {"SIDECAR_STORE": store_url, "SIDECAR_SESSION_IDLE_TIMEOUT": "0"}
    assert check_main(["--p95-session-cost-usd", "0.5"], now=NOW, env=env) == 1


def test_no_data_passes_unless_required(traffic_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_on(traffic_store, "--p95-latency-ms", "1", now=NOW + 86400) == 0
    assert "no successful model calls recorded over the last 1h: nothing to check" in capsys.readouterr().out
    assert check_on(traffic_store, "--p95-latency-ms", "1", "--require-data", now=NOW + 86400) == 1


def test_baseline_save_and_regression(
    traffic_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "baseline.json"
    assert check_on(traffic_store, "--save-baseline", str(base)) == 0
    saved = json.loads(base.read_text())
    assert saved["format"] == BASELINE_FORMAT
    assert saved["duration_p95_ms"][SONNET] == pytest.approx(3221.0)
    assert check_on(traffic_store, "--baseline", str(base)) == 0
    # Three slow sonnet calls: 8 successful calls, nearest-rank p95 = 8th = 10 s, whose bucket edge is
    # k = ceil(16 * (log2 10 + 10)) = 214 -> 2**3.375 = 10.375 s: far above 3221 ms + 10 %
    # (10375 / 3221 - 1 = +222 %).
    traffic_store.write([ev(f"slow{i}", 7150 + i, "s-b", SONNET, duration_s=10.0) for i in range(3)])
    capsys.readouterr()
    assert check_on(traffic_store, "--baseline", str(base), "--save-baseline", str(base)) == 1
    captured = capsys.readouterr()
    assert (
        "regressed to 10375 ms over the last 1h from a baseline of 3221 ms (+222%, tolerance 10%; 8 calls)"
        in (captured.out)
    )
    # A failed run does not overwrite the baseline it failed against.
    assert "baseline not saved" in captured.err
    assert json.loads(base.read_text()) == saved
    assert check_on(traffic_store, "--baseline", str(base), "--tolerance", "2.5") == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "1x"], "not a duration"),
        (["--window", "0"], "--window must be longer than 0"),
        (["--p95-latency-ms", "fast"], "not a number"),
        (["--p95-latency-ms", "-5"], "must be a number >= 0"),
        (["--tolerance", "0.2"], "--tolerance needs --baseline"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--baseline", "/nonexistent/base.json"], "--baseline: cannot read"),
    ],
)
def test_check_usage_errors(
    store_url: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check("--store", store_url, *argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("claude-sidecar check: ")
    assert err.count("\n") == 1


def test_bad_baseline_files(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_json = tmp_path / "a.json"
    not_json.write_text("{oops")
    wrong = tmp_path / "b.json"
    wrong.write_text(json.dumps({"p95": 1}))
    assert check("--store", store_url, "--baseline", str(not_json)) == 2
    assert "is not JSON" in capsys.readouterr().err
    assert check("--store", store_url, "--baseline", str(wrong)) == 2
    assert "not a baseline file" in capsys.readouterr().err


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check("--store", f"clickhouse://default:s3cret-pw@127.0.0.1:{_closed_port()}/sidecar") == 2
    err = capsys.readouterr().err
    assert "cannot open ClickHouse store" in err
    assert "s3cret-pw" not in err  # the password never appears
    assert report("--store", "postgres://127.0.0.1/db") == 2
    assert "unknown store scheme 'postgres'" in capsys.readouterr().err
    missing = tmp_path / "nowhere" / "events.db"
    assert report("--store", f"sqlite:///{missing}") == 2
    assert "no event store at" in capsys.readouterr().err
    assert not missing.parent.exists()  # reading never creates a store
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    assert report("--store", f"sqlite:///{garbage}") == 2
    assert "cannot open event store" in capsys.readouterr().err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert report("--help") == 0
    assert "--window" in capsys.readouterr().out
    assert check("--help") == 0
    assert "--save-baseline" in capsys.readouterr().out


def test_report_shows_response_cache_hits_and_savings(
    any_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    hits = [
        ev(
            f"h{i}",
            7000 + i,
            "s-b",
            SONNET,
            outcome="cache_hit",
            cost_usd=0.0,
            response_cache_savings_usd=0.25,
        )
        for i in range(3)
    ]
    any_store.write([*traffic(), *hits])
    assert report_on(any_store, "--window", "1h") == 0
    out = capsys.readouterr().out
    # Hits are not model calls: the totals are those of the traffic alone.
    assert "8 model calls (1 not successful), 3 sessions" in out
    assert "response cache: 3 calls answered without a model call, saved $0.75" in out
    assert report_on(any_store, "--window", "1h", "--json") == 0
    assert json.loads(capsys.readouterr().out)["response_cache"] == {"hits": 3, "savings_usd": 0.75}


def test_store_as_a_plain_file_path(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    absolute = store_url.removeprefix("sqlite:///")
    assert report("--store", absolute, "--window", "1h", "--json") == 0
    by_url = capsys.readouterr().out
    assert report("--store", store_url, "--window", "1h", "--json") == 0
    assert capsys.readouterr().out == by_url
    monkeypatch.chdir(tmp_path)
    assert report("--store", "events.db", "--window", "1h", "--json") == 0  # relative to where it runs
    assert json.loads(capsys.readouterr().out)["totals"]["model_calls"] == 8
    assert report("--store", "missing.db") == 2
    assert "no event store at missing.db" in capsys.readouterr().err
