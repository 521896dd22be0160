-- Top sessions by cost, fleet-wide (Grafana ClickHouse data source; query type Table).
-- Reads the per-session rollup kept by sessions_rollup_mv. A session is listed when its last call ended
-- inside the dashboard's time range; its numbers cover the whole session.
-- Set the data source's default database to the one named in SIDECAR_STORE.
SELECT
    session_id,
    app,
    min(started_at) AS first_call_at,
    max(last_seen_at) AS last_seen,
    sum(model_calls) AS calls,
    sum(tool_calls) AS tools,
    sum(input_tokens) + sum(cache_read_input_tokens) + sum(cache_creation_input_tokens) AS input_tok,
    sum(output_tokens) AS output_tok,
    sum(cost_usd) AS cost,
    sum(unpriced_calls) AS unpriced,
    sum(model_time_s) AS model_time_s,
    sum(tool_time_s) AS tool_time_s
FROM sessions_rollup
GROUP BY app, session_id
HAVING last_seen >= $__fromTime AND last_seen <= $__toTime
ORDER BY cost DESC, last_seen DESC, session_id
LIMIT 20
