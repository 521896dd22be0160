"""The ``report`` section on cache misses: by reason, dollars lost, the sessions that lost most."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.core.cache_report import MissGroup, cache_miss_section
from sidecar.core.events import CallEvent
from sidecar.report.commands import report_main
from sidecar.report.source import opened_reads
from tests.core.test_report import NOW, SONNET, T0, ev
from tests.report.conftest import Store


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


def expect_section(doc: dict[str, Any]) -> None:
    """The section of misses() with limit 2."""
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


def test_section_sums_by_reason_and_ranks_sessions(any_store: Store) -> None:
    any_store.write(misses())
    with opened_reads(any_store.url, any_store.connect) as reads:
        groups = reads.cache_miss_groups(T0, T0 + 7200)
        assert reads.cache_miss_groups(T0 + 3725, T0 + 7200) == [
            MissGroup("s-c", "system_changed", 1, 1000, 0.001, T0 + 3730, "support-bot")
        ]
    assert len(groups) == 3  # per session and reason
    expect_section(cache_miss_section(groups, limit=2))
    assert cache_miss_section([], limit=5) == {
        "misses": 0,
        "cost_usd": 0.0,
        "by_reason": {},
        "worst_sessions": [],
    }


def test_top_reason_and_app_of_a_session_with_several_reasons() -> None:
    groups = [
        MissGroup("s-x", "tools_changed", 2, 10, 0.5, T0 + 20, "late-app"),
        MissGroup("s-x", "system_changed", 2, 10, 0.25, T0 + 10, "first-app"),
        MissGroup("", "ttl_expired", 5, 50, 1.0, T0, "no-session"),  # counted, but no session to rank
    ]
    doc = cache_miss_section(groups, limit=5)
    # A tie in misses goes to the reason seen first; the session's app is its first miss's.
    assert doc["worst_sessions"] == [
        {"session_id": "s-x", "app": "first-app", "misses": 4, "cost_usd": 0.75,
         "top_reason": "system_changed"}
    ]  # fmt: skip
    assert list(doc["by_reason"]) == ["ttl_expired", "tools_changed", "system_changed"]
    assert doc["misses"] == 9


def test_report_prints_and_exports_the_section(any_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    any_store.write(misses())
    argv = ["--store", any_store.url, "--window", "1h"]
    assert report_main(argv, now=T0 + 7200, env={}, connect=any_store.connect) == 0
    lines = capsys.readouterr().out.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("Cache misses by reason"))
    assert lines[title] == "Cache misses by reason (4 calls, $0.0279 lost)"
    assert lines[title + 2].split() == ["ttl_expired", "1", "1000", "$0.02"]
    assert lines[title + 3].split() == ["system_changed", "3", "3000", "$0.0079"]
    worst = next(i for i, line in enumerate(lines) if line.startswith("Sessions losing most"))
    assert lines[worst + 2].split() == ["s-b", "coder", "1", "$0.02", "ttl_expired"]
    assert report_main([*argv, "--json"], now=NOW, env={}, connect=any_store.connect) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cache_misses"]["by_reason"]["ttl_expired"]["misses"] == 1
    assert report_main([*argv, "--json", "--limit", "2"], now=NOW, env={}, connect=any_store.connect) == 0
    expect_section(json.loads(capsys.readouterr().out)["cache_misses"])
