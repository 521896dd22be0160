from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.core.report import BASELINE_FORMAT
from sidecar.report.commands import check_main, report_main
from sidecar.store.sqlite import SQLiteStore
from tests.core.test_report import NOW, SONNET, ev, traffic


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
    store.write_events(traffic())
    store.close()
    return f"sqlite:///{tmp_path}/events.db"


def report(*argv: str) -> int:
    return report_main(list(argv), now=NOW, env={})


def check(*argv: str) -> int:
    return check_main(list(argv), now=NOW, env={})


def test_report_tables(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("--store", store_url, "--window", "1h") == 0
    out = capsys.readouterr().out
    assert "8 model calls (1 not successful), 3 sessions, 3 tool calls, cost $1.53 (1 unpriced)" in out
    lines = out.splitlines()
    # Top sessions by cost: s-b ($0.92, open) before s-a ($0.31) before s-c ($0.30).
    sessions = [line.split() for line in lines if line.strip().startswith("s-")]
    assert [(r[0], r[6], r[-1]) for r in sessions] == [
        ("s-b", "$0.92", "open"), ("s-a", "$0.31", "closed"), ("s-c", "$0.30", "closed")
    ]  # fmt: skip
    # Latency per model: sonnet p50 1.5 s, p95 3.1 s, TTFT 300 ms / 500 ms.
    sonnet = next(line for line in lines if line.strip().startswith(SONNET) and "ms" in line)
    assert sonnet.split() == [SONNET, "6", "5", "1.50", "s", "3.10", "s", "300", "ms", "500", "ms", "$1.50"]
    # Cache per model: sonnet hit ratio 1000 / 2150 = 46.5 %.
    assert any(line.split()[:1] == [SONNET] and "46.5%" in line for line in lines)
    grep = next(line for line in lines if line.strip().startswith("grep"))
    assert grep.split() == ["grep", "2", "3", "1", "4.00", "s", "6.00", "s", "12.00", "s"]
    # Columns are aligned: every row of the tool table has the same width as its header.
    header = next(line for line in lines if line.strip().startswith("TOOL"))
    assert len(grep) == len(header)


def test_report_json_and_limit(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert report("--store", store_url, "--window", "1h", "--limit", "1", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["session_id"] for s in doc["top_sessions"]] == ["s-b"]
    assert doc["models"][SONNET]["duration_p95_s"] == 3.1
    # A 2h window also holds s-c's first call and s-d's (its cost of $5 makes it the top session).
    assert report("--store", store_url, "--window", "2h", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["top_sessions"][0]["session_id"] == "s-d"


def test_store_from_environment(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--window", "1h", "--json"], now=NOW, env={"SIDECAR_STORE": store_url}) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["model_calls"] == 8


def test_empty_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLiteStore(tmp_path / "empty.db")
    store.open()
    store.close()
    assert report("--store", f"sqlite:///{tmp_path}/empty.db") == 0
    out = capsys.readouterr().out
    assert "0 model calls" in out
    assert "(none)" in out


def test_check_healthy_and_failing(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert check("--store", store_url, "--p95-latency-ms", "3200", "--p95-session-cost-usd", "0.5") == 0
    assert "check OK (last 1h)" in capsys.readouterr().out
    assert check("--store", store_url, "--p95-latency-ms", "2000") == 1
    out = capsys.readouterr().out
    assert "check FAILED (last 1h)" in out
    assert (
        "p95 latency of claude-sonnet-4-5 is 3100 ms over the last 1h, above the ceiling of 2000 ms (5 calls)"
        in out
    )
    # s-c began before the window: check reads back far enough to cost it whole ($0.35 > $0.34).
    assert check("--store", store_url, "--p95-session-cost-usd", "0.34") == 1
    assert "p95 session cost is $0.35 over the 2 sessions closed" in capsys.readouterr().out


def test_check_json(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert check("--store", store_url, "--p95-latency-ms", "2000", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert len(doc["findings"]) == 1
    assert doc["measurements"]["duration_samples"] == {SONNET: 5, "claude-haiku-4-5": 2}


def test_idle_timeout_flag_and_env(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # With no idle wait s-b ($0.92) is closed and becomes the p95.
    assert check("--store", store_url, "--p95-session-cost-usd", "0.5", "--idle-timeout", "0") == 1
    env = {"SIDECAR_STORE": store_url, "SIDECAR_SESSION_IDLE_TIMEOUT": "0"}
    assert check_main(["--p95-session-cost-usd", "0.5"], now=NOW, env=env) == 1


def test_no_data_passes_unless_required(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    later = ["--store", store_url, "--p95-latency-ms", "1"]
    assert check_main(later, now=NOW + 86400, env={}) == 0
    assert "no successful model calls recorded over the last 1h: nothing to check" in capsys.readouterr().out
    assert check_main([*later, "--require-data"], now=NOW + 86400, env={}) == 1


def test_baseline_save_and_regression(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "baseline.json"
    assert check("--store", store_url, "--save-baseline", str(base)) == 0
    saved = json.loads(base.read_text())
    assert saved["format"] == BASELINE_FORMAT
    assert saved["duration_p95_ms"][SONNET] == pytest.approx(3100.0)
    assert check("--store", store_url, "--baseline", str(base)) == 0
    # Three slow sonnet calls: 8 successful calls, nearest-rank p95 = 8th = 10 s, far above 3100 ms + 10 %.
    store = SQLiteStore.from_url(store_url)
    store.open()
    store.write_events([ev(f"slow{i}", 7150 + i, "s-b", SONNET, duration_s=10.0) for i in range(3)])
    store.close()
    capsys.readouterr()
    assert check("--store", store_url, "--baseline", str(base), "--save-baseline", str(base)) == 1
    captured = capsys.readouterr()
    assert (
        "regressed to 10000 ms over the last 1h from a baseline of 3100 ms (+223%, tolerance 10%; 8 calls)"
        in (captured.out)
    )
    # A failed run does not overwrite the baseline it failed against.
    assert "baseline not saved" in captured.err
    assert json.loads(base.read_text()) == saved
    assert check("--store", store_url, "--baseline", str(base), "--tolerance", "2.5") == 0


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
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
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
    store.write_events([*traffic(), *hits])
    store.close()
    url = f"sqlite:///{tmp_path}/events.db"
    assert report("--store", url, "--window", "1h") == 0
    out = capsys.readouterr().out
    # Hits are not model calls: the totals are those of the traffic alone.
    assert "8 model calls (1 not successful), 3 sessions" in out
    assert "response cache: 3 calls answered without a model call, saved $0.75" in out
    assert report("--store", url, "--window", "1h", "--json") == 0
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
