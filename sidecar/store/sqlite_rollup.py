"""SQLite rollups (SPEC R-RS-1): one row per session, one per (hour, app, model), latency histograms.

They change in the same transaction as the events insert, and only for rows really inserted: an
event id already stored is ignored by ``INSERT OR IGNORE`` and counts nowhere, so a duplicate never counts
twice. Migrations 2 and 5 kept them with insert triggers; from migration 7 the writer adds each batch
with a few set statements (:mod:`sidecar.store.sqlite_rollup_batch`, from the same per-event expressions
as here), which costs the recorder a quarter of what the triggers did. Delete triggers remain.

* ``sessions_rollup`` — what the sessions API lists: first/last seen, counts, tokens by bucket, cost,
  savings, cache-miss cost, model and tool time, errors, models used, agent ids; its first event's app
  and session source. Indexed for every list order. Retention purge recomputes the sessions it touches
  (:func:`recompute_sessions_sql`); nothing else deletes events.
* ``hourly_rollup`` — per UTC hour, app and model (canonical id, else requested, else ``unknown``): the
  sums ``summary`` and ``report`` need. A delete trigger subtracts purged events.
* ``latency_hist`` and ``latency_hist_daily`` — latency histograms (:mod:`sidecar.store.sqlite_hist`).

Definitions match :mod:`sidecar.core.sessions` (model calls, error calls, tool time) and
:mod:`sidecar.core.report` (successful calls). ``cache_miss_cost_usd`` and ``cache_misses`` are filled
from migration 5 on (:data:`MISS_MIGRATION` re-created the insert triggers with their expressions);
``agent_ids`` and ``providers`` from migrations 6 and 7 (:data:`SESSION_SETS`).
"""

from __future__ import annotations

from sidecar.store import sqlite_hist as hist
from sidecar.store.sqlite_hist import HOUR, MODEL_CALL, MODEL_KEY, OK_CALL

# Per-event expressions; ``{e}`` is ``NEW.`` in triggers, ``e.`` in aggregate queries.
SESSION_ERROR = "({e}status >= 400 OR {e}outcome != 'ok')"
MODEL_USED = "coalesce({e}model_canonical, {e}model)"
WRITE_1H = "min(coalesce({e}cache_creation_1h, 0), {e}cache_creation_input_tokens)"
TOOL_TIME = (
    "(CASE WHEN {e}tool_results = '[]' THEN 0.0 "
    "ELSE (SELECT total(json_extract(r.value, '$[2]')) FROM json_each({e}tool_results) AS r) END)"
)


def _m(expr: str) -> str:
    """``expr`` for model calls, 0 otherwise."""
    return f"(CASE WHEN {MODEL_CALL} THEN {expr} ELSE 0 END)"


# Summed columns shared by both rollups: (column, per-event expression).
_TOKEN_SUMS: tuple[tuple[str, str], ...] = (
    ("model_calls", MODEL_CALL),
    ("tool_calls", _m("json_array_length({e}tool_uses)")),
    ("input_tokens", _m("{e}input_tokens")),
    ("output_tokens", _m("{e}output_tokens")),
    ("cache_read_input_tokens", _m("{e}cache_read_input_tokens")),
    ("cache_creation_input_tokens", _m("{e}cache_creation_input_tokens")),
    ("cache_write_5m", _m(f"{{e}}cache_creation_input_tokens - {WRITE_1H}")),
    ("cache_write_1h", _m(WRITE_1H)),
    ("cost_usd", _m("coalesce({e}cost_usd, 0.0)")),
    ("unpriced_calls", f"({MODEL_CALL} AND {{e}}cost_usd IS NULL)"),
    ("cache_savings_usd", _m("{e}cache_savings_usd")),
    ("model_time_s", _m("{e}duration_s")),
    ("tool_results", "json_array_length({e}tool_results)"),
    ("tool_time_s", TOOL_TIME),
)
SESSION_SUMS: tuple[tuple[str, str], ...] = (
    ("events", "1"),
    *_TOKEN_SUMS,
    ("error_calls", f"({MODEL_CALL} AND {SESSION_ERROR})"),
    ("retries", f"({MODEL_CALL} AND {{e}}retry_count > 0)"),
    ("tokens", _m("{e}input_tokens + {e}output_tokens + {e}cache_read_input_tokens + "
                  "{e}cache_creation_input_tokens")),
)  # fmt: skip
HOURLY_SUMS: tuple[tuple[str, str], ...] = (
    ("requests", "1"),
    *_TOKEN_SUMS,
    ("ok_calls", f"({MODEL_CALL} AND {OK_CALL})"),
    ("error_calls", f"({MODEL_CALL} AND NOT {OK_CALL})"),
)
REAL_COLUMNS = {"cost_usd", "cache_savings_usd", "model_time_s", "tool_time_s", "cache_miss_cost_usd"}
# Created at 0 by migration 2; migration 3 (MISS_MIGRATION) fills them from the cache-miss fields (R-CD).
_LATER = (("cache_miss_cost_usd", "0.0"), ("cache_misses", "0"))
MISS_COST = "coalesce({e}cache_miss_cost_usd, 0.0)"
MISSED = "({e}cache_miss_reason IS NOT NULL)"
MISS_SUMS = (("cache_miss_cost_usd", _m(MISS_COST)), ("cache_misses", _m(MISSED)))


def _columns(sums: tuple[tuple[str, str], ...]) -> str:
    return ",\n    ".join(
        f"{name} {'REAL' if name in REAL_COLUMNS else 'INTEGER'} NOT NULL DEFAULT 0"
        for name, _ in (*sums, *_LATER)
    )


_TABLES = (
    f"""CREATE TABLE sessions_rollup (
    session_id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    session_source TEXT NOT NULL,
    first_event_id TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    duration_s REAL NOT NULL,
    {_columns(SESSION_SUMS)},
    models TEXT NOT NULL DEFAULT '[]',
    agent_ids TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID""",
    f"""CREATE TABLE hourly_rollup (
    hour INTEGER NOT NULL,
    app TEXT NOT NULL,
    model TEXT NOT NULL,
    {_columns(HOURLY_SUMS)},
    PRIMARY KEY (hour, app, model)
) WITHOUT ROWID""",
)
# Every event changes every sort key of its session, and each index entry to move costs about 6 µs per
# event (bench/store_scale.py), so one index serves every list order: by last seen (``recent`` reads it
# in order; since/until and state are ranges or tests on it), covering every other sort key and filter
# column, so the top of a window's sessions for any order is sorted from the index alone, without
# visiting the rows (4 ms for 40,000 sessions instead of 50). The primary key serves ``q``.
SORT_INDEX = "sessions_rollup_sort"
_TOOL_COLUMNS = "operation, outcome, tool_uses, tool_results"
_HAS_TOOLS = "tool_uses != '[]' OR tool_results != '[]'"
_INDEXES = (
    f"CREATE INDEX {SORT_INDEX} ON sessions_rollup (last_seen DESC, session_id, first_seen, app, cost_usd, "
    "tokens, model_calls, duration_s, tool_time_s, models)",
    # Unpriced model calls, rare, fetched whole (budgets charge them at start-up); and the calls with tool
    # blocks, covering what per-tool statistics read of them (of a page of sessions, of a window), so
    # those reads never visit the wide event rows scattered over the file.
    "CREATE INDEX events_unpriced ON events (started_at) WHERE cost_usd IS NULL AND operation = 'chat'",
    f"CREATE INDEX events_session_tools ON events (session_id, started_at, {_TOOL_COLUMNS}) "
    f"WHERE {_HAS_TOOLS}",
    f"CREATE INDEX events_tools ON events (started_at, {_TOOL_COLUMNS}) WHERE {_HAS_TOOLS}",
)


def _values(sums: tuple[tuple[str, str], ...], e: str) -> str:
    return ", ".join(expr.format(e=e) for _, expr in sums)


def _names(sums: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(name for name, _ in sums)


def span_merge(indent: str) -> str:
    """``ON CONFLICT`` assignments keeping a session row's first event (its app, source and id) and its
    time span when more of its events arrive; one per line, lines after the first indented by ``indent``."""
    first = "(excluded.first_seen, excluded.first_event_id) < (first_seen, first_event_id)"
    return f",\n{indent}".join(
        (
            f"app = CASE WHEN {first} THEN excluded.app ELSE app END",
            f"session_source = CASE WHEN {first} THEN excluded.session_source ELSE session_source END",
            f"first_event_id = CASE WHEN {first} THEN excluded.first_event_id ELSE first_event_id END",
            "first_seen = min(first_seen, excluded.first_seen)",
            "last_seen = max(last_seen, excluded.last_seen)",
            "duration_s = max(last_seen, excluded.last_seen) - min(first_seen, excluded.first_seen)",
        )
    )


def session_insert_trigger(miss_cost: str = "0.0", misses: str = "0", agent_id: str = "NULL") -> str:
    """The trigger keeping ``sessions_rollup``; arguments are per-event SQL (``NEW.`` columns) for the
    fields events do not carry yet."""
    n = "NEW."
    sums = ",\n        ".join(f"{c} = {c} + excluded.{c}" for c, _ in (*SESSION_SUMS, *_LATER))

    def add_item(column: str) -> str:
        # The new item is the one-element array excluded.{column}. With the brackets of both turned into
        # commas, the item's text (,"name",) is in the set's text exactly when the name is: inside a JSON
        # string every quote is escaped, so ," and ", only occur between elements.
        def inner(text: str) -> str:
            return f"',' || substr({text}, 2, length({text}) - 2) || ','"

        item = f"json_extract(excluded.{column}, '$[0]')"
        return (
            f"{column} = CASE WHEN excluded.{column} = '[]' "
            f"OR instr({inner(column)}, {inner('excluded.' + column)}) > 0 "
            f"THEN {column} ELSE json_insert({column}, '$[#]', {item}) END"
        )

    model = MODEL_USED.format(e=n)
    return f"""CREATE TRIGGER events_sessions_rollup AFTER INSERT ON events WHEN NEW.session_id != ''
BEGIN
    INSERT INTO sessions_rollup (session_id, app, session_source, first_event_id, first_seen, last_seen,
        duration_s, {_names(SESSION_SUMS)}, cache_miss_cost_usd, cache_misses, models, agent_ids)
    VALUES (NEW.session_id, NEW.app, NEW.session_source, NEW.event_id, NEW.started_at,
        NEW.started_at + NEW.duration_s, NEW.duration_s, {_values(SESSION_SUMS, n)},
        {_m(miss_cost).format(e=n)}, {_m(misses).format(e=n)},
        CASE WHEN {MODEL_CALL.format(e=n)} AND {model} IS NOT NULL THEN json_array({model}) ELSE '[]' END,
        CASE WHEN {agent_id} IS NOT NULL THEN json_array({agent_id}) ELSE '[]' END)
    ON CONFLICT (session_id) DO UPDATE SET
        {span_merge("        ")},
        {sums},
        {add_item("models")},
        {add_item("agent_ids")};
END"""


def _hourly_triggers(misses: bool = False) -> tuple[str, ...]:
    """The hourly rollup's triggers; ``misses`` adds the cache-miss sums (migration 3 on)."""
    n, o = "NEW.", "OLD."
    sums = (*HOURLY_SUMS, *MISS_SUMS) if misses else HOURLY_SUMS
    key_new = f"{HOUR.format(e=n)}, NEW.app, {MODEL_KEY.format(e=n)}"
    where_old = f"hour = {HOUR.format(e=o)} AND app = OLD.app AND model = {MODEL_KEY.format(e=o)}"
    add = ", ".join(f"{c} = {c} + excluded.{c}" for c, _ in sums)
    sub = ", ".join(f"{c} = {c} - {expr.format(e=o)}" for c, expr in sums)
    out = [
        f"""CREATE TRIGGER events_hourly_rollup AFTER INSERT ON events BEGIN
    INSERT INTO hourly_rollup (hour, app, model, {_names(sums)})
    VALUES ({key_new}, {_values(sums, n)})
    ON CONFLICT (hour, app, model) DO UPDATE SET {add};
END""",
        f"""CREATE TRIGGER events_hourly_unroll AFTER DELETE ON events BEGIN
    UPDATE hourly_rollup SET {sub} WHERE {where_old};
END""",
    ]
    return tuple(out)


# The sets a session row keeps as JSON arrays: (column, per-event value, when the event adds it).
SESSION_SETS: tuple[tuple[str, str, str], ...] = (
    ("models", MODEL_USED, f"{MODEL_CALL} AND {MODEL_USED} IS NOT NULL"),
    ("agent_ids", "{e}agent_id", "{e}agent_id IS NOT NULL"),
    ("providers", "{e}provider", "{e}provider IS NOT NULL"),  # where the session's calls went (R-CP-5)
)


def set_aggregates(names: tuple[str, ...]) -> str:
    """``json_group_array`` of each named set over ``events AS e``, aliased by its column name."""
    return ",\n        ".join(
        f"json_group_array(DISTINCT {value.format(e='e.')}) FILTER (WHERE {when.format(e='e.')})\n"
        f"            AS {column}"
        for column, value, when in SESSION_SETS
        if column in names
    )


def total_sums(sums: tuple[tuple[str, str], ...]) -> str:
    """Each sum's ``total`` over ``events AS e``, aliased by its column name."""
    return ", ".join(f"total({expr.format(e='e.')}) AS {c}" for c, expr in sums)


def cast_sums(sums: tuple[tuple[str, str], ...], alias: str) -> str:
    """Each sum read back from ``alias`` with the rollup column's type (``total`` gives floats)."""
    return ", ".join(
        f"{alias}.{c}" if c in REAL_COLUMNS else f"CAST({alias}.{c} AS INTEGER)" for c, _ in sums
    )


def recompute_sessions_sql(where: str, misses: bool = True, sets: tuple[str, ...] = ("models",)) -> str:
    """``INSERT`` rebuilding the rollup rows of the sessions whose events match ``where`` (SQL on
    ``events AS e``); delete those rows first. Used by the migration (``where`` true) and by purge.
    ``misses``: also the cache-miss sums, from columns events have from migration 3 on; ``sets``: the
    :data:`SESSION_SETS` to rebuild (agent ids and providers from migration 6 on)."""
    sums = (*SESSION_SUMS, *MISS_SUMS) if misses else SESSION_SUMS
    first = (
        "(SELECT f.event_id FROM events AS f WHERE f.session_id = g.session_id "
        "ORDER BY f.started_at, f.event_id LIMIT 1)"
    )
    return f"""INSERT INTO sessions_rollup (session_id, app, session_source, first_event_id, first_seen,
    last_seen, duration_s, {_names(sums)}, {", ".join(sets)})
SELECT g.session_id, f.app, f.session_source, f.event_id, g.first_seen, g.last_seen,
    g.last_seen - g.first_seen, {cast_sums(sums, "g")}, {", ".join("g." + c for c in sets)}
FROM (
    SELECT e.session_id, min(e.started_at) AS first_seen, max(e.started_at + e.duration_s) AS last_seen,
        {total_sums(sums)},
        {set_aggregates(sets)}
    FROM events AS e WHERE e.session_id != '' AND ({where}) GROUP BY e.session_id
) AS g JOIN events AS f ON f.event_id = {first}"""


def _backfill() -> tuple[str, ...]:
    e = "e."
    hourly_aggs = ", ".join(f"total({expr.format(e=e)})" for _, expr in HOURLY_SUMS)
    return (
        recompute_sessions_sql("1", misses=False),
        f"""INSERT INTO hourly_rollup (hour, app, model, {_names(HOURLY_SUMS)})
SELECT {HOUR.format(e=e)} AS h, e.app, {MODEL_KEY.format(e=e)} AS m, {hourly_aggs}
FROM events AS e GROUP BY h, e.app, m""",
        *hist.BACKFILL,
    )


MIGRATION_2: tuple[str, ...] = (
    *_TABLES,
    *hist.TABLES,
    *_backfill(),  # before the triggers and indexes: an existing file is rolled up in one pass each
    *_INDEXES,
    session_insert_trigger(),
    *_hourly_triggers(),
    *hist.TRIGGERS,
)

# Migration 3's part here: the rollups' cache-miss cost and count from the events' new columns (the
# columns themselves are added by sqlite_schema), and an index for misses by reason over a window.
MISS_MIGRATION: tuple[str, ...] = (
    "DROP TRIGGER events_sessions_rollup",
    session_insert_trigger(MISS_COST, MISSED),
    "DROP TRIGGER events_hourly_rollup",
    "DROP TRIGGER events_hourly_unroll",
    *_hourly_triggers(misses=True),
    "CREATE INDEX events_cache_misses ON events (started_at, cache_miss_reason, cache_miss_cost_usd, app) "
    "WHERE cache_miss_reason IS NOT NULL",
)
