"""The same traffic in SQLite and in ClickHouse (chDB) gives identical report, sessions and check output."""

from __future__ import annotations

import importlib.util
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.report import Baseline, CheckResult, build_report, evaluate
from sidecar.core.sessions import group_sessions, list_sessions, session_summary
from sidecar.core.usage import Usage
from sidecar.report.reading import check_measurements, report_parts
from sidecar.server.inprocess import RunningSidecar
from sidecar.store.base import EventStore
from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import ClickHouseStore
from sidecar.store.clickhouse_reads import ClickHouseReads
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.queries import ReadStore
from sidecar.store.shipper import Shipper, ShipperOptions
from sidecar.store.spool import Spool
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_reads import SQLiteReads
from tests.conftest import API_KEY, require_service
from tests.core.test_report import NOW, traffic

T0 = 1_767_225_600.0
HOUR = 3600.0
TOOLS = ("grep", "read", "search ü", "write")


def random_traffic(seed: int, n: int) -> list[CallEvent]:
    """Varied events: every optional field both set and unset, ties on started_at, unpriced and refused
    calls, calls without a session, tools with and without measured results."""
    rng = random.Random(seed)
    out: list[CallEvent] = []
    for i in range(n):
        started = out[-1].started_at if out and rng.random() < 0.05 else T0 + rng.uniform(0, 3 * HOUR)
        op = rng.choices(["chat", "count_tokens", "models", "batches"], [85, 7, 4, 4])[0]
        outcome = rng.choices(["ok", "upstream_error", "client_disconnected", "refused", "sidecar_error"],
                              [80, 8, 4, 6, 2])[0]  # fmt: skip
        status = {"ok": rng.choice([200, 200, 200, 400]), "upstream_error": 529, "refused": 429}.get(
            outcome, 0
        )
        model = rng.choice(["claude-sonnet-4-5", "claude-haiku-4-5", "claude-x-unknown", None])
        priced = model not in (None, "claude-x-unknown")
        uses = tuple(rng.choice(TOOLS) for _ in range(rng.choice([0, 0, 1, 2, 3])))
        results = tuple(
            ToolResult(f"toolu_{i}_{k}", rng.choice(TOOLS), rng.expovariate(1.0), rng.random() < 0.2)
            for k in range(rng.choice([0, 0, 0, 1, 2]))
        )
        write = rng.randrange(0, 5000)
        split = rng.random() < 0.5
        out.append(
            CallEvent(
                event_id=f"{rng.getrandbits(128):032x}",
                started_at=started,
                app=rng.choice(["support", "batch", "ünï-app"]),
                session_id=rng.choice(["", *(f"s-{k:02d}" for k in range(15))]),
                session_source=rng.choice(["header", "metadata", "generated"]),
                method="POST" if op != "models" else "GET",
                path=f"/v1/{op}",
                operation=op,
                stream=rng.random() < 0.5,
                model=model,
                model_canonical=model if priced else None,
                request_id=f"req_{i}" if rng.random() < 0.9 else None,
                status=status,
                outcome=outcome,
                error_type="overloaded_error" if outcome == "upstream_error" else None,
                stop_reason=rng.choice(["end_turn", "tool_use", None]),
                usage=Usage(
                    input_tokens=rng.randrange(0, 10_000),
                    output_tokens=rng.randrange(0, 4000),
                    cache_read_input_tokens=rng.randrange(0, 50_000),
                    cache_creation_input_tokens=write,
                    cache_creation_5m=write // 3 if split else None,
                    cache_creation_1h=write - write // 3 if split else None,
                    web_search_requests=rng.randrange(0, 3),
                    web_fetch_requests=rng.randrange(0, 2),
                    service_tier=rng.choice(["standard", "priority", None]),
                    inference_geo=rng.choice(["global", "us", None]),
                    speed=rng.choice(["fast", None]),
                ),
                cost_usd=rng.uniform(0, 2) if priced and outcome != "refused" else None,
                cache_savings_usd=rng.uniform(-0.01, 0.5),
                ttfb_s=rng.uniform(0.05, 1) if rng.random() < 0.9 else None,
                ttft_s=rng.uniform(0.1, 2) if rng.random() < 0.8 else None,
                duration_s=rng.expovariate(0.5),
                overhead_s=rng.uniform(0, 0.002),
                tool_use_ids=tuple(f"toolu_{i}_{k}" for k in range(len(uses))),
                tool_uses=uses,
                tool_results=results,
                cache_breakpoint_injected=rng.random() < 0.3,
                system_hash=f"sha256:{rng.getrandbits(64):016x}" if rng.random() < 0.5 else None,
                retry_count=rng.choice([0, 0, 0, 1, 2]),
                key_fingerprint=rng.choice(["fp:a", "fp:b", None]),
                request_bytes=rng.randrange(100, 500_000),
                response_bytes=rng.randrange(0, 200_000),
                trace_id=f"{rng.getrandbits(128):032x}" if rng.random() < 0.5 else None,
                span_id=f"{rng.getrandbits(64):016x}" if rng.random() < 0.5 else None,
                parent_span_id=f"{rng.getrandbits(64):016x}" if rng.random() < 0.2 else None,
            )
        )
    return out


@pytest.fixture
def chdb_client(tmp_path: Path) -> Iterator[ChdbClient]:
    require_service(
        importlib.util.find_spec("chdb") is not None, "chdb (in-process ClickHouse: pip install chdb)"
    )
    client = ChdbClient(tmp_path / "chdb")
    yield client
    client.close()


def both_stores(
    tmp_path: Path, chdb_client: ChdbClient, events: list[CallEvent]
) -> tuple[EventStore, EventStore]:
    """SQLite written directly; ClickHouse written the production way, through the spool and shipper."""
    sqlite = SQLiteStore(tmp_path / "parity.db")
    sqlite.open()
    sqlite.write_events(events)
    schema = SchemaOptions(database="parity", ttl_days=0)  # the traffic is older than any TTL
    options = ShipperOptions(batch_size=64, interval_s=0.01)
    shipper = Shipper(Spool(tmp_path / "spool.db"), ClickHouseStore(chdb_client.borrow, schema), options)
    shipper.start()
    for i in range(0, len(events), 50):  # the recorder's batches
        shipper.write(events[i : i + 50])
    assert shipper.flush(10.0)
    shipper.stop()
    clickhouse = ClickHouseStore(chdb_client.borrow, schema, migrate=False)
    clickhouse.open()
    return sqlite, clickhouse


def both_reads(tmp_path: Path, chdb_client: ChdbClient) -> tuple[ReadStore, ReadStore]:
    """The query layer ``report`` and ``check`` read, on each store of :func:`both_stores`."""
    return SQLiteReads(tmp_path / "parity.db"), ClickHouseReads(
        chdb_client.borrow(), SchemaOptions(database="parity", ttl_days=0)
    )


def approx_tree(doc: Any) -> Any:
    """``doc`` with every float compared approximately: the stores add floats in different orders."""
    if isinstance(doc, dict):
        return {k: approx_tree(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [approx_tree(v) for v in doc]
    if isinstance(doc, float):
        return pytest.approx(doc, rel=1e-9, abs=1e-12)
    return doc


def report_and_check(reads: ReadStore, now: float, idle: float) -> tuple[dict[str, Any], CheckResult]:
    """``report --window 2h`` and a ``check`` of the same window that fails in several ways."""
    doc = build_report(
        report_parts(reads, now=now, window_s=2 * HOUR, idle_timeout_s=idle, limit=10),
        now=now,
        window_s=2 * HOUR,
    )
    baseline = Baseline({"claude-sonnet-4-5": 500.0, "claude-haiku-4-5": 99_000.0}, 0.5)
    m = check_measurements(reads, now=now, window_s=2 * HOUR, idle_timeout_s=idle)
    result = evaluate(
        m, p95_latency_ms=2000.0, p95_session_cost_usd=1.0, baseline=baseline, idle_timeout_s=idle
    )
    return doc, result


def assert_same_answers(
    a: EventStore, b: EventStore, reads: tuple[ReadStore, ReadStore], now: float, idle: float = 900.0
) -> tuple[dict[str, Any], CheckResult]:
    evs_a, evs_b = a.events(), b.events()
    assert evs_a == evs_b
    for kw in (
        {"since": now - HOUR},
        {"until": now - HOUR},
        {"since": T0 + 1000, "until": T0 + 2000},
        {"session_id": evs_a[-1].session_id},
        {"limit": 7},
        {"since": now - 2 * HOUR, "limit": 3},
    ):
        assert a.events(**kw) == b.events(**kw), kw
    rep_a, check_a = report_and_check(reads[0], now, idle)
    rep_b, check_b = report_and_check(reads[1], now, idle)
    assert rep_a == approx_tree(rep_b)
    for sid, sess in group_sessions(evs_a).items():
        one_b = b.events(session_id=sid)
        assert session_summary(sess, now=now, idle_timeout_s=idle, with_calls=True) == session_summary(
            one_b, now=now, idle_timeout_s=idle, with_calls=True
        )
    assert list_sessions(evs_a, now=now, idle_timeout_s=idle, limit=None, order="recent") == list_sessions(
        evs_b, now=now, idle_timeout_s=idle, limit=None, order="recent"
    )
    assert (check_a.ok, check_a.findings, check_a.notes) == (check_b.ok, check_b.findings, check_b.notes)
    assert check_a.measurements == approx_tree(check_b.measurements)
    return rep_a, check_a


def test_random_traffic_gives_identical_reports(tmp_path: Path, chdb_client: ChdbClient) -> None:
    events = random_traffic(seed=20260101, n=600)
    sqlite, clickhouse = both_stores(tmp_path, chdb_client, events)
    reads = both_reads(tmp_path, chdb_client)
    doc, check = assert_same_answers(sqlite, clickhouse, reads, now=T0 + 3 * HOUR)
    # The comparison had something to compare: many sessions and tools, unpriced calls, failed checks.
    assert not check.ok and len(check.findings) >= 3 and check.measurements["closed_sessions"] >= 1
    assert doc["totals"]["sessions"] >= 10 and doc["totals"]["tool_calls"] > 50
    assert doc["totals"]["unpriced_calls"] > 0 and len(doc["tools"]) == len(TOOLS)
    assert clickhouse.events() == sorted(events, key=lambda e: (e.started_at, e.event_id))


def test_hand_checked_traffic_reports_the_same_numbers(tmp_path: Path, chdb_client: ChdbClient) -> None:
    sqlite, clickhouse = both_stores(tmp_path, chdb_client, traffic())
    reads = both_reads(tmp_path, chdb_client)
    assert_same_answers(sqlite, clickhouse, reads, now=NOW)
    doc = build_report(
        report_parts(reads[1], now=NOW, window_s=HOUR, idle_timeout_s=900, limit=10), now=NOW, window_s=HOUR
    )
    t = doc["totals"]
    # In the last hour: a1 a2 a3 c1 c2 b1 b2 b3 are model calls; c2 (529) failed and is unpriced.
    assert (t["model_calls"], t["error_calls"], t["sessions"], t["tool_calls"], t["unpriced_calls"]) == (
        8,
        1,
        3,
        3,
        1,
    )
    assert t["cost_usd"] == pytest.approx(math.fsum([0.10, 0.20, 0.01, 0.30, 0.40, 0.50, 0.02]))
    # Whole sessions: s-b $0.92, s-c $0.35 (a call before the window), s-a $0.31.
    assert [s["session_id"] for s in doc["top_sessions"]] == ["s-b", "s-c", "s-a"]
    m = check_measurements(reads[1], now=NOW, window_s=HOUR, idle_timeout_s=900)
    # Nearest rank over 5 ok calls: 0.8..3.1 s; 3.1 s is in the bucket whose upper edge is 2**1.6875 s.
    assert m["duration_p95_ms"]["claude-sonnet-4-5"] == 3221.0


def agent_loop(client: anthropic.Anthropic, session: str, turns: int) -> None:
    """A tool-using conversation: every turn but the last asks for a tool (the fake obliges), streamed
    and not, and answers it; one tool result reports an error."""
    tool: Any = {
        "name": "lookup",
        "description": "Find",
        "input_schema": {"type": "object", "properties": {}},
    }
    messages: list[Any] = [{"role": "user", "content": "Find order 42"}]
    for turn in range(turns):
        last = turn == turns - 1
        kwargs: Any = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 50,
            "messages": messages,
            "tools": [tool],
            "tool_choice": {"type": "none" if last else "any"},
            "extra_headers": {"x-session-id": session, "x-app-name": "support"},
        }
        if turn % 2:
            with client.messages.stream(**kwargs) as stream:
                msg = stream.get_final_message()
        else:
            msg = client.messages.create(**kwargs)
        uses = [b for b in msg.content if b.type == "tool_use"]
        if last or not uses:
            return
        messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
        results = [
            {"type": "tool_result", "tool_use_id": u.id, "content": "ok", "is_error": turn == 1} for u in uses
        ]
        messages.append({"role": "user", "content": results})


def test_recorded_traffic_from_a_real_sidecar(
    tmp_path: Path, chdb_client: ChdbClient, sidecar: RunningSidecar
) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    agent_loop(client, "parity-1", turns=4)
    client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    recorded = sidecar.wait_events(5)
    assert len(recorded) == 5 and sum(len(e.tool_results) for e in recorded) == 3
    sqlite, clickhouse = both_stores(tmp_path, chdb_client, recorded)
    now = max(e.ended_at for e in recorded) + 1.0
    doc, _ = assert_same_answers(sqlite, clickhouse, both_reads(tmp_path, chdb_client), now=now)
    assert doc["totals"]["model_calls"] == 4 and doc["totals"]["tool_calls"] == 3
