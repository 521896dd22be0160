"""The rollups' insert side, one batch at a time (SPEC R-RS-1, §12 write path).

Migration 2 kept the rollups with ``AFTER INSERT`` triggers: eleven trigger programs ran for every event
(~80 µs of the recorder's ~105 µs per event, bench/store_scale.py), on the core the event loop shares.
From migration 7 the writer runs these statements instead, once per batch, in the batch's transaction:
each aggregates the rows the batch really inserted (``rowid > :after``, the largest rowid before the
batch: ``INSERT OR IGNORE`` gives an ignored duplicate no rowid, so it counts nowhere; ``NOT INDEXED``
because an index that suits the ``GROUP BY`` would walk the whole history instead) and upserts one
row per session, per (hour, app, model) and per histogram bucket. The per-event expressions are the
triggers' (:mod:`sidecar.store.sqlite_rollup`, :mod:`sidecar.store.sqlite_hist`), so the definitions
cannot drift. Deletes (retention purge) keep their triggers: purges are rare and chunked.
"""

from __future__ import annotations

import sqlite3

from sidecar.infra.sched import yield_cpu
from sidecar.store import sqlite_hist as hist
from sidecar.store.sqlite_hist import HOUR, MODEL_KEY
from sidecar.store.sqlite_rollup import (
    HOURLY_SUMS,
    MISS_SUMS,
    SESSION_SETS,
    SESSION_SUMS,
    cast_sums,
    set_aggregates,
    span_merge,
    total_sums,
)

_NEW = "e.rowid > :after AND e.rowid <= :upto"
# Rows per statement: each runs uninterrupted on the core the event loop shares (~10 µs a row at most).
SLICE_ROWS = 32
# The insert triggers this replaces (migration 7 drops them; the delete triggers stay).
INSERT_TRIGGERS: tuple[str, ...] = (
    "events_sessions_rollup",
    "events_hourly_rollup",
    *(f"events_{table}_{column}" for table, _, _ in hist.LEVELS for _, column, _ in hist.METRICS),
)


def _merge_set(column: str) -> str:
    """``column`` (a JSON array used as a set) united with the batch's array ``excluded.column``."""
    union = (
        f"(SELECT json_group_array(value) FROM (SELECT value FROM json_each({column}) "
        f"UNION SELECT value FROM json_each(excluded.{column})))"
    )
    return (
        f"{column} = CASE WHEN excluded.{column} = '[]' OR excluded.{column} = {column} THEN {column} "
        f"WHEN {column} = '[]' THEN excluded.{column} ELSE {union} END"
    )


def _sessions_sql() -> str:
    sums = (*SESSION_SUMS, *MISS_SUMS)
    names = ", ".join(c for c, _ in sums)
    sets = tuple(column for column, _, _ in SESSION_SETS)
    # The batch's first event of each session, among the batch's rows only.
    first_of_batch = (
        "(SELECT f.event_id FROM events AS f NOT INDEXED "
        "WHERE f.rowid > :after AND f.rowid <= :upto AND f.session_id = g.session_id "
        "ORDER BY f.started_at, f.event_id LIMIT 1)"
    )
    added = ",\n    ".join(f"{c} = {c} + excluded.{c}" for c, _ in sums)
    return f"""INSERT INTO sessions_rollup (session_id, app, session_source, first_event_id, first_seen,
    last_seen, duration_s, {names}, {", ".join(sets)})
SELECT g.session_id, f.app, f.session_source, f.event_id, g.first_seen, g.last_seen,
    g.last_seen - g.first_seen, {cast_sums(sums, "g")}, {", ".join("g." + c for c in sets)}
FROM (
    SELECT e.session_id, min(e.started_at) AS first_seen, max(e.started_at + e.duration_s) AS last_seen,
        {total_sums(sums)},
        {set_aggregates(sets)}
    FROM events AS e NOT INDEXED WHERE {_NEW} AND e.session_id != '' GROUP BY e.session_id
) AS g JOIN events AS f ON f.event_id = {first_of_batch}
WHERE true
ON CONFLICT (session_id) DO UPDATE SET
    {span_merge("    ")},
    {added},
    {", ".join(_merge_set(c) for c in sets)}"""


def _hourly_sql() -> str:
    sums = (*HOURLY_SUMS, *MISS_SUMS)
    names = ", ".join(c for c, _ in sums)
    added = ", ".join(f"{c} = {c} + excluded.{c}" for c, _ in sums)
    return f"""INSERT INTO hourly_rollup (hour, app, model, {names})
SELECT g.h, g.app, g.m, {cast_sums(sums, "g")}
FROM (
    SELECT {HOUR.format(e="e.")} AS h, e.app AS app, {MODEL_KEY.format(e="e.")} AS m, {total_sums(sums)}
    FROM events AS e NOT INDEXED WHERE {_NEW} GROUP BY h, e.app, m
) AS g
WHERE true
ON CONFLICT (hour, app, model) DO UPDATE SET {added}"""


def _hist_sql(table: str, period: str, expr: str, metric: int, column: str) -> str:
    counts = hist.count_into(table, period, expr, metric, column, "events AS e NOT INDEXED", f"{_NEW} AND ")
    return f"{counts}\nON CONFLICT ({period}, app, model, metric, bucket) DO UPDATE SET n = n + excluded.n"


STATEMENTS: tuple[str, ...] = (
    _sessions_sql(),
    _hourly_sql(),
    *(
        _hist_sql(table, period, expr, metric, column)
        for table, period, expr in hist.LEVELS
        for metric, column, _ in hist.METRICS
    ),
)


# Migration 7: the insert triggers go, and the sessions rolled up before get the providers they used
# (migration 6 added the column empty; no earlier event has an agent id).
MIGRATION: tuple[str, ...] = (
    *(f"DROP TRIGGER {name}" for name in INSERT_TRIGGERS),
    f"""UPDATE sessions_rollup SET providers = (SELECT {set_aggregates(("providers",))}
    FROM events AS e WHERE e.session_id = sessions_rollup.session_id)""",
)


def last_rowid(conn: sqlite3.Connection) -> int:
    """The largest rowid in ``events`` (0 when empty): the batch about to be inserted lies above it."""
    (rowid,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()
    return int(rowid)


def roll_up(conn: sqlite3.Connection, after: int) -> None:
    """Add the events inserted above rowid ``after`` to every rollup; inside the batch's transaction.

    A batch is taken in slices of :data:`SLICE_ROWS`, yielding the core between statements, so a request
    that arrives meanwhile waits for one short statement, not the batch's whole rollup (sums, sets and the
    earliest event merge the same in any number of steps)."""
    upto = last_rowid(conn)
    for lo in range(after, upto, SLICE_ROWS):
        params = {"after": lo, "upto": min(lo + SLICE_ROWS, upto)}
        for sql in STATEMENTS:
            yield_cpu()
            conn.execute(sql, params)
