"""SQLite latency histograms (SPEC R-RS-3): counts of successful model calls per latency bucket.

Two levels, kept like the other rollups (:mod:`sidecar.store.sqlite_rollup`, ``sqlite_rollup_batch``):
``latency_hist`` per UTC hour, app and model, and ``latency_hist_daily`` per UTC day, app and model, so
that a week's percentiles read 7 sets of the buckets of each series instead of 168. Each counts
:data:`~sidecar.store.latency_buckets.DURATION` (total duration) and ``TTFT``; delete triggers take
purged calls out again.
"""

from __future__ import annotations

from sidecar.store.latency_buckets import DURATION, LAST, TTFT, bounds_values_sql

MODEL_CALL = "({e}operation = 'chat' AND {e}outcome NOT IN ('refused', 'cache_hit'))"
OK_CALL = "({e}status BETWEEN 200 AND 299 AND {e}outcome = 'ok')"
MODEL_KEY = "coalesce({e}model_canonical, {e}model, 'unknown')"
HOUR = "(CAST({e}started_at AS INTEGER) / 3600 * 3600)"  # exact floor for t >= 0, as in Python
DAY = "(CAST({e}started_at AS INTEGER) / 86400 * 86400)"
BUCKET = (
    "coalesce((SELECT b.bucket FROM latency_bounds AS b WHERE b.upper >= {x} ORDER BY b.upper LIMIT 1), "
    f"{LAST})"
)
# (table, time column, its expression over an event)
LEVELS = (("latency_hist", "hour", HOUR), ("latency_hist_daily", "day", DAY))
METRICS = ((DURATION, "duration_s", ""), (TTFT, "ttft_s", " AND {e}ttft_s IS NOT NULL"))


def _table(table: str, period: str) -> str:
    return f"""CREATE TABLE {table} (
    {period} INTEGER NOT NULL,
    app TEXT NOT NULL,
    model TEXT NOT NULL,
    metric INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY ({period}, app, model, metric, bucket)
) WITHOUT ROWID"""


def _triggers(table: str, period: str, expr: str) -> list[str]:
    out = []
    success = f"{MODEL_CALL} AND {OK_CALL}"
    for metric, column, extra in METRICS:
        when, when_old = (success + extra).format(e="NEW."), (success + extra).format(e="OLD.")
        key = f"{expr.format(e='NEW.')}, NEW.app, {MODEL_KEY.format(e='NEW.')}"
        old = f"{period} = {expr.format(e='OLD.')} AND app = OLD.app AND model = {MODEL_KEY.format(e='OLD.')}"
        out.append(
            f"""CREATE TRIGGER events_{table}_{column} AFTER INSERT ON events WHEN {when} BEGIN
    INSERT INTO {table} ({period}, app, model, metric, bucket, n)
    VALUES ({key}, {metric}, {BUCKET.format(x="NEW." + column)}, 1)
    ON CONFLICT ({period}, app, model, metric, bucket) DO UPDATE SET n = n + 1;
END"""
        )
        out.append(
            f"""CREATE TRIGGER events_un_{table}_{column} AFTER DELETE ON events WHEN {when_old} BEGIN
    UPDATE {table} SET n = n - 1 WHERE {old} AND metric = {metric}
        AND bucket = {BUCKET.format(x="OLD." + column)};
END"""
        )
    return out


def count_into(
    table: str, period: str, expr: str, metric: int, column: str, source: str = "events AS e", where: str = ""
) -> str:
    """``INSERT`` counting the successful calls of ``source`` (``e``) into ``table``'s buckets; ``where``
    is a prefix of extra conditions (``"… AND "``). The backfill's text, and the writer's per batch."""
    e = "e."
    success = f"{MODEL_CALL} AND {OK_CALL}".format(e=e)
    return f"""INSERT INTO {table} ({period}, app, model, metric, bucket, n)
SELECT {expr.format(e=e)} AS p, e.app, {MODEL_KEY.format(e=e)} AS m, {metric},
    {BUCKET.format(x="e." + column)} AS b, count(*)
FROM {source} WHERE {where}{success} AND e.{column} IS NOT NULL GROUP BY p, e.app, m, b"""


def _backfill(table: str, period: str, expr: str) -> list[str]:
    return [count_into(table, period, expr, metric, column) for metric, column, _ in METRICS]


TABLES: tuple[str, ...] = (
    *(_table(table, period) for table, period, _ in LEVELS),
    "CREATE TABLE latency_bounds (upper REAL PRIMARY KEY, bucket INTEGER NOT NULL) WITHOUT ROWID",
    f"INSERT INTO latency_bounds (bucket, upper) VALUES {bounds_values_sql()}",
)
BACKFILL: tuple[str, ...] = tuple(s for level in LEVELS for s in _backfill(*level))
TRIGGERS: tuple[str, ...] = tuple(s for level in LEVELS for s in _triggers(*level))
