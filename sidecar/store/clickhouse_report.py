"""What ``report`` reads on ClickHouse besides ``summary``, sessions and tools: the same answers as
:mod:`sidecar.store.sqlite_report`, from ``events FINAL``."""

from __future__ import annotations

from sidecar.core.cache_report import MissGroup
from sidecar.store.clickhouse import ClickHouseClient
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.queries import check_window

_WINDOW = "started_at_unix >= {since:Float64} AND started_at_unix < {until:Float64}"


def cache_miss_groups(
    client: ClickHouseClient, o: SchemaOptions, window: tuple[float, float]
) -> list[MissGroup]:
    since, until = window
    check_window(since, until, "app")
    rows = client.query(
        "SELECT session_id, toString(assumeNotNull(cache_miss_reason)) AS r, count(), "
        "sum(ifNull(cache_missed_tokens, 0)), sum(ifNull(cache_miss_cost_usd, 0)), min(started_at_unix), "
        f"toString(argMin(app, (started_at_unix, event_id))) FROM {o.table('events')} FINAL "
        f"WHERE {_WINDOW} AND cache_miss_reason IS NOT NULL GROUP BY session_id, r",
        {"since": since, "until": until},
    )
    return [
        MissGroup(str(sid), str(reason), int(n), int(tokens), float(cost), float(first), str(app))
        for sid, reason, n, tokens, cost, first, app in rows
    ]


def response_cache_hits(
    client: ClickHouseClient, o: SchemaOptions, window: tuple[float, float]
) -> tuple[int, float]:
    since, until = window
    check_window(since, until, "app")
    rows = client.query(
        f"SELECT count(), sum(response_cache_savings_usd) FROM {o.table('events')} FINAL "
        f"WHERE {_WINDOW} AND outcome = 'cache_hit'",
        {"since": since, "until": until},
    )
    n, saved = rows[0] if rows else (0, 0.0)
    return int(n), float(saved or 0.0)
