"""The ``report`` section on cache misses: by reason, dollars lost, the sessions that lost most."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.cache_report import cache_miss_section
from sidecar.core.events import CallEvent
from sidecar.report.commands import report_main
from sidecar.store.sqlite import SQLiteStore
from tests.core.test_report import NOW, SONNET, T0, ev


def miss(event_id: str, offset: float, session: str, reason: str, cost: float, **kw: Any) -> CallEvent:
    return ev(
        event_id, offset, session, SONNET, cache_outcome="miss", cache_miss_reason=reason,
        cache_miss_detail="…", cache_missed_tokens=1000, cache_miss_cost_usd=cost, **kw,
    )  # fmt: skip


def misses() -> list[CallEvent]:
    return [
        miss("m1", 3700, "s-a", "system_changed", 0.00345),
        miss("m2", 3710, "s-a", "system_changed", 0.00345),
        miss("m3", 3720, "s-b", "ttl_expired", 0.0200, app="coder"),
        miss("m4", 3730, "s-c", "system_changed", 0.00100),
        ev("h1", 3740, "s-c", SONNET, cache_outcome="hit"),
    ]


def test_section_sums_by_reason_and_ranks_sessions() -> None:
    doc = cache_miss_section(misses(), limit=2)
    assert doc["misses"] == 4 and doc["cost_usd"] == pytest.approx(0.0279)
    assert list(doc["by_reason"]) == ["ttl_expired", "system_changed"]  # most dollars first
    assert doc["by_reason"]["system_changed"] == {
        "misses": 3, "missed_tokens": 3000, "cost_usd": pytest.approx(0.0079)
    }  # fmt: skip
    assert doc["worst_sessions"] == [
        {"session_id": "s-b", "app": "coder", "misses": 1, "cost_usd": 0.02, "top_reason": "ttl_expired"},
        {"session_id": "s-a", "app": "support-bot", "misses": 2, "cost_usd": pytest.approx(0.0069),
         "top_reason": "system_changed"},
    ]  # fmt: skip
    assert cache_miss_section([], limit=5) == {
        "misses": 0,
        "cost_usd": 0.0,
        "by_reason": {},
        "worst_sessions": [],
    }


def test_report_prints_and_exports_the_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
    store.write_events(misses())
    store.close()
    url = f"sqlite:///{tmp_path}/events.db"
    assert report_main(["--store", url, "--window", "1h"], now=T0 + 7200, env={}) == 0
    lines = capsys.readouterr().out.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("Cache misses by reason"))
    assert lines[title] == "Cache misses by reason (4 calls, $0.0279 lost)"
    assert lines[title + 2].split() == ["ttl_expired", "1", "1000", "$0.02"]
    assert lines[title + 3].split() == ["system_changed", "3", "3000", "$0.0079"]
    worst = next(i for i, line in enumerate(lines) if line.startswith("Sessions losing most"))
    assert lines[worst + 2].split() == ["s-b", "coder", "1", "$0.02", "ttl_expired"]
    assert report_main(["--store", url, "--window", "1h", "--json"], now=NOW, env={}) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cache_misses"]["by_reason"]["ttl_expired"]["misses"] == 1
