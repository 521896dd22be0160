-- Dollar cost per app per UTC day (Grafana ClickHouse data source; query type Time Series, one series
-- per app). Model calls only (chat, not refused by the sidecar), as in `claude-sidecar report`; calls of
-- unknown models have no price and add nothing. FINAL collapses any event stored twice.
SELECT
    toStartOfDay(started_at) AS time,
    app,
    sum(ifNull(cost_usd, 0)) AS cost
FROM events FINAL
WHERE $__timeFilter(started_at)
    AND operation = 'chat'
    AND outcome != 'refused'
GROUP BY time, app
ORDER BY time, app
