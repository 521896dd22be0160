-- Tool latency per tool (Grafana ClickHouse data source; query type Table): time from the answer that
-- asked for a tool to the request that brought its result, for results that arrived in the time range.
-- p50/p95 are nearest-rank percentiles, the definition `claude-sidecar report` uses.
SELECT
    name AS tool,
    count() AS measured,
    countIf(is_error) AS errors,
    arrayElement(arraySort(groupArray(latency_s)), toUInt64(greatest(1, ceil(0.50 * count())))) AS p50_s,
    arrayElement(arraySort(groupArray(latency_s)), toUInt64(greatest(1, ceil(0.95 * count())))) AS p95_s,
    sum(latency_s) AS total_s
FROM tool_calls FINAL
WHERE $__timeFilter(started_at)
GROUP BY tool
ORDER BY total_s DESC, tool
