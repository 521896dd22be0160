"""``summary`` on ClickHouse: aggregates of ``events FINAL`` over the window, same definitions as SQLite
(:mod:`sidecar.store.sqlite_rollup`) and the same latency buckets (:mod:`sidecar.store.latency_buckets`)."""

from __future__ import annotations

from typing import Any

from sidecar.store.clickhouse import ClickHouseClient
from sidecar.store.clickhouse_rollup import MODEL_CALL
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.latency_buckets import DURATION, LAST, TTFT, bounds_array_sql
from sidecar.store.queries import check_window
from sidecar.store.session_view import SUMMARY_FIELDS, summary_doc, tool_summary_doc

_M = f"({MODEL_CALL})"
_OK = "(status BETWEEN 200 AND 299 AND outcome = 'ok')"
_W1H = "least(ifNull(cache_creation_1h, 0), cache_creation_input_tokens)"
# No aliases: they would shadow the columns of the same names inside other expressions.
_SUMS = {
    "requests": "count()",
    "model_calls": f"countIf({_M})",
    "ok_calls": f"countIf({_M} AND {_OK})",
    "error_calls": f"countIf({_M} AND NOT {_OK})",
    "unpriced_calls": f"countIf({_M} AND cost_usd IS NULL)",
    "tool_calls": f"sum(if({_M}, length(tool_uses), 0))",
    "input_tokens": f"sum(if({_M}, input_tokens, 0))",
    "output_tokens": f"sum(if({_M}, output_tokens, 0))",
    "cache_read_input_tokens": f"sum(if({_M}, cache_read_input_tokens, 0))",
    "cache_creation_input_tokens": f"sum(if({_M}, cache_creation_input_tokens, 0))",
    "cache_write_5m": f"sum(if({_M}, cache_creation_input_tokens - {_W1H}, 0))",
    "cache_write_1h": f"sum(if({_M}, {_W1H}, 0))",
    "tool_results": "sum(length(tool_result_ids))",
    "cache_misses": f"countIf({_M} AND cache_miss_reason IS NOT NULL)",
    "cost_usd": f"sum(if({_M}, ifNull(cost_usd, 0), 0))",
    "cache_savings_usd": f"sum(if({_M}, cache_savings_usd, 0))",
    "cache_miss_cost_usd": f"sum(if({_M}, ifNull(cache_miss_cost_usd, 0), 0))",
    "model_time_s": f"sum(if({_M}, duration_s, 0))",
    "tool_time_s": "sum(arraySum(tool_result_latency_s))",
}
_HOUR = "intDiv(toInt64(started_at_unix), 3600) * 3600"  # as SQLite: truncate, then floor to the hour
_KEYS = {
    "app": "toString(app)",
    "model": "toString(coalesce(model_canonical, model, 'unknown'))",
    "hour": _HOUR,
    "day": f"intDiv({_HOUR}, 86400) * 86400",
}


def _bucket(x: str) -> str:
    index = f"arrayFirstIndex(u -> u >= {x}, {bounds_array_sql()})"
    return f"if({index} = 0, {LAST}, {index} - 1)"


def summary(
    client: ClickHouseClient, o: SchemaOptions, window: tuple[float, float], group_by: str
) -> dict[str, Any]:
    since, until = window
    check_window(since, until, group_by)
    events = f"{o.table('events')} FINAL"
    where = "started_at_unix >= {since:Float64} AND started_at_unix < {until:Float64}"
    params = {"since": since, "until": until}
    key = _KEYS[group_by]
    sums = client.query(
        f"SELECT {key} AS k, {', '.join(_SUMS[name] for name in SUMMARY_FIELDS)} FROM {events} "
        f"WHERE {where} GROUP BY k",
        params,
    )
    success = f"{where} AND {_M} AND {_OK}"
    hist = client.query(
        f"SELECT k, metric, bucket, count() FROM ("
        f"SELECT {key} AS k, {DURATION} AS metric, {_bucket('duration_s')} AS bucket FROM {events} "
        f"WHERE {success} UNION ALL "
        f"SELECT {key} AS k, {TTFT} AS metric, {_bucket('assumeNotNull(ttft_s)')} AS bucket FROM {events} "
        f"WHERE {success} AND ttft_s IS NOT NULL) GROUP BY k, metric, bucket",
        params,
    )
    sessions = client.query(
        f"SELECT count() FROM (SELECT session_id, min(started_at_unix) AS f, max(last_seen_unix) AS l "
        f"FROM {o.table('sessions_rollup')} GROUP BY session_id) "
        "WHERE l >= {since:Float64} AND f < {until:Float64}",
        params,
    )
    misses = client.query(
        f"SELECT toString(assumeNotNull(cache_miss_reason)) AS r, count(), "
        f"sum(ifNull(cache_miss_cost_usd, 0)) FROM {events} WHERE {where} AND cache_miss_reason IS NOT NULL "
        f"AND {_M} GROUP BY r",
        params,
    )
    count = int(sessions[0][0]) if sessions else 0
    return summary_doc(window, group_by, sums, hist, count, misses)


def tool_summary(
    client: ClickHouseClient, o: SchemaOptions, window: tuple[float, float]
) -> dict[str, dict[str, Any]]:
    since, until = window
    check_window(since, until, "app")
    events = f"{o.table('events')} FINAL"
    where = "started_at_unix >= {since:Float64} AND started_at_unix < {until:Float64}"
    params = {"since": since, "until": until}
    uses = client.query(
        f"SELECT toString(tool), count() FROM {events} ARRAY JOIN tool_uses AS tool "
        f"WHERE {where} AND {_M} GROUP BY tool",
        params,
    )
    results = client.query(
        f"SELECT toString(tool), {_bucket('lat')} AS bucket, count(), sum(lat), countIf(err) FROM {events} "
        "ARRAY JOIN tool_result_names AS tool, tool_result_latency_s AS lat, tool_result_is_error AS err "
        f"WHERE {where} GROUP BY tool, bucket",
        params,
    )
    return tool_summary_doc(uses, results)
