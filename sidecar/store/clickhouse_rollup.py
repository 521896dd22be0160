"""ClickHouse migrations 3, 6 and 8: ``sessions_rollup`` holds what the SQLite session rollup holds
(R-RS-1).

Adds the exact first/last-seen floats, the first event's app and session source, retries, the 5m/1h
cache-write split, total tokens, measured tool results, cache-miss cost and count (0 until events carry
them), and the models and agent ids seen; the materialized view is changed in place (``MODIFY QUERY``),
so no insert falls between an old and a new view. Rows written before this migration read the new
columns from their defaults: first/last seen from the ``DateTime64`` columns (to the microsecond), tokens
from the four buckets, every cache write as 5-minute, and no retries, models, agent ids or tool results.
Migration 6 (:func:`miss_view`) makes the view sum the cache-miss cost and count the events now carry;
migration 8 (:func:`agents_view`) has it collect the agent ids and the providers (anthropic, bedrock,
vertex) of every event of the session.
"""

from __future__ import annotations

from typing import Protocol

# sidecar.core.sessions.is_model_call
MODEL_CALL = "operation = 'chat' AND outcome NOT IN ('refused', 'cache_hit')"
FIRST_TYPE = "AggregateFunction(argMin, String, Tuple(Float64, String))"


class _Options(Protocol):
    """The part of ``clickhouse_schema.SchemaOptions`` a renderer uses."""

    def table(self, name: str) -> str: ...

    @property
    def on_cluster(self) -> str: ...


def _view_query(events: str, misses: bool = False, agents: bool = False) -> str:
    """The view's query; ``misses``: sum the cache-miss fields events carry from migration 6 on;
    ``agents``: collect the agent ids and providers (migration 8). Released texts stay as they were."""
    m = "e_model"
    agent_ids, providers, agent_columns = "CAST([], 'Array(String)')", "", ""
    if agents:
        agent_ids = "groupUniqArrayIf(assumeNotNull(e_agent), e_agent IS NOT NULL)"
        providers = ",\n    groupUniqArray(e_provider) AS providers"
        agent_columns = "\n        agent_id AS e_agent, provider AS e_provider,"
    miss_cost, miss_count, miss_columns = "toFloat64(0)", "toUInt64(0)", ""
    if misses:
        miss_cost = f"sum(if({m}, ifNull(e_miss_cost, 0), 0))"
        miss_count = f"toUInt64(countIf({m} AND e_miss_reason IS NOT NULL))"
        miss_columns = "\n        cache_miss_cost_usd AS e_miss_cost, cache_miss_reason AS e_miss_reason,"
    # Every source column is renamed in the inner query: ClickHouse aliases are global, and the outer
    # aliases reuse the source column names.
    write_1h = "least(ifNull(e_write_1h, 0), e_write)"
    return f"""SELECT
    e_app AS app,
    e_session AS session_id,
    min(e_started) AS started_at,
    max(toDateTime64(e_start + e_duration, 6, 'UTC')) AS last_seen_at,
    toUInt64(count()) AS events,
    toUInt64(countIf({m})) AS model_calls,
    toUInt64(countIf({m} AND (e_status >= 400 OR e_outcome != 'ok'))) AS error_calls,
    toUInt64(sum(if({m}, length(e_tool_uses), 0))) AS tool_calls,
    sum(if({m}, e_input, 0)) AS input_tokens,
    sum(if({m}, e_output, 0)) AS output_tokens,
    sum(if({m}, e_read, 0)) AS cache_read_input_tokens,
    sum(if({m}, e_write, 0)) AS cache_creation_input_tokens,
    sum(if({m}, ifNull(e_cost, 0), 0)) AS cost_usd,
    toUInt64(countIf({m} AND e_cost IS NULL)) AS unpriced_calls,
    sum(if({m}, e_savings, 0)) AS cache_savings_usd,
    sum(if({m}, e_duration, 0)) AS model_time_s,
    sum(arraySum(e_latencies)) AS tool_time_s,
    min(e_start) AS started_at_unix,
    max(e_start + e_duration) AS last_seen_unix,
    argMinState(e_app, tuple(e_start, e_id)) AS first_app,
    argMinState(e_source, tuple(e_start, e_id)) AS session_source,
    toUInt64(countIf({m} AND e_retry > 0)) AS retries,
    sum(if({m}, e_write - {write_1h}, 0)) AS cache_write_5m,
    sum(if({m}, {write_1h}, 0)) AS cache_write_1h,
    sum(if({m}, e_input + e_output + e_read + e_write, 0)) AS tokens,
    toUInt64(sum(length(e_latencies))) AS tool_results,
    {miss_cost} AS cache_miss_cost_usd,
    {miss_count} AS cache_misses,
    groupUniqArrayIf(assumeNotNull(e_model_used), {m} AND e_model_used IS NOT NULL) AS models,
    {agent_ids} AS agent_ids{providers}
FROM (
    SELECT
        app AS e_app, session_id AS e_session, started_at AS e_started, started_at_unix AS e_start,
        event_id AS e_id, session_source AS e_source, duration_s AS e_duration, status AS e_status,
        outcome AS e_outcome, tool_uses AS e_tool_uses, input_tokens AS e_input, output_tokens AS e_output,
        cache_read_input_tokens AS e_read, cache_creation_input_tokens AS e_write,
        cache_creation_1h AS e_write_1h, cost_usd AS e_cost, cache_savings_usd AS e_savings,
        tool_result_latency_s AS e_latencies, retry_count AS e_retry,{miss_columns}{agent_columns}
        ifNull(model_canonical, model) AS e_model_used, {MODEL_CALL} AS {m}
    FROM {events}
    WHERE session_id != ''
)
GROUP BY e_app, e_session"""


def v3(o: _Options) -> tuple[str, ...]:
    rollup, events = o.table("sessions_rollup"), o.table("events")
    micros = "toUnixTimestamp64Micro({}) / 1000000.0"
    add = [
        f"started_at_unix SimpleAggregateFunction(min, Float64) DEFAULT {micros.format('started_at')}",
        f"last_seen_unix SimpleAggregateFunction(max, Float64) DEFAULT {micros.format('last_seen_at')}",
        f"first_app {FIRST_TYPE}",  # argMin by (start, event id): the first event's
        f"session_source {FIRST_TYPE}",
        "retries SimpleAggregateFunction(sum, UInt64) DEFAULT 0",
        "cache_write_5m SimpleAggregateFunction(sum, Int64) DEFAULT cache_creation_input_tokens",
        "cache_write_1h SimpleAggregateFunction(sum, Int64) DEFAULT 0",
        "tokens SimpleAggregateFunction(sum, Int64) DEFAULT "
        "input_tokens + output_tokens + cache_read_input_tokens + cache_creation_input_tokens",
        "tool_results SimpleAggregateFunction(sum, UInt64) DEFAULT 0",
        "cache_miss_cost_usd SimpleAggregateFunction(sum, Float64) DEFAULT 0",
        "cache_misses SimpleAggregateFunction(sum, UInt64) DEFAULT 0",
        "models SimpleAggregateFunction(groupUniqArrayArray, Array(String)) DEFAULT []",
        "agent_ids SimpleAggregateFunction(groupUniqArrayArray, Array(String)) DEFAULT []",
    ]
    alter = f"ALTER TABLE {rollup}{o.on_cluster}\n    " + ",\n    ".join(
        f"ADD COLUMN IF NOT EXISTS {column}" for column in add
    )
    query = _view_query(events)
    return (alter, f"ALTER TABLE {o.table('sessions_rollup_mv')}{o.on_cluster} MODIFY QUERY\n{query}")


def miss_view(o: _Options) -> str:
    """Migration 6's change of the view: the cache-miss cost and count summed from the events."""
    query = _view_query(o.table("events"), misses=True)
    return f"ALTER TABLE {o.table('sessions_rollup_mv')}{o.on_cluster} MODIFY QUERY\n{query}"


def agents_view(o: _Options) -> tuple[str, ...]:
    """Migration 8: the providers column, and the view collecting agent ids and providers per session.
    Sessions rolled up before it list neither (the columns' defaults) until they see a new call."""
    rollup = o.table("sessions_rollup")
    query = _view_query(o.table("events"), misses=True, agents=True)
    return (
        f"ALTER TABLE {rollup}{o.on_cluster}\n    ADD COLUMN IF NOT EXISTS providers "
        "SimpleAggregateFunction(groupUniqArrayArray, Array(String)) DEFAULT [] AFTER agent_ids",
        f"ALTER TABLE {o.table('sessions_rollup_mv')}{o.on_cluster} MODIFY QUERY\n{query}",
    )
