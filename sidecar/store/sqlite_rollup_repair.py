"""Migration 8: the rollup rows that migration 2's first released text got wrong for response-cache hits.

Migration 2 was released with triggers that counted every ``chat`` call but a refusal as a model call;
its text was then changed in place to leave ``cache_hit`` out too (a hit makes no model call, R-RC-7).
A file migrated by the first text kept those triggers until migration 5 re-created the session and
hourly ones, so every hit recorded in between was added to ``sessions_rollup`` and ``hourly_rollup`` as
a model call (and an error call: its outcome is not ``ok``), with its tools, duration and model. This
migration takes those contributions out again. (The latency histograms' triggers kept the first text,
which is equivalent: they also require ``outcome = 'ok'``, which a hit never has.)

Which hits: those of a file whose migration 2 was the first text — recognised by its latency delete
trigger, whose text migration 5 did not replace and later releases keep — recorded before migration 5
was applied. Hits recorded afterwards were counted right. A file migrated by the current text matches
nothing and is left as it is. The statements name only columns that migration 2 created and later
releases keep, so they run the same whatever migrations come before them.

Frozen once released, like every migration: ``tests/store/test_sqlite_migrations.py`` pins its text.
"""

from __future__ import annotations

from sidecar.store.sqlite_hist import HOUR, MODEL_CALL, MODEL_KEY
from sidecar.store.sqlite_rollup import HOURLY_SUMS, MODEL_USED, REAL_COLUMNS, SESSION_SUMS

# Migration 2's first released text of a model call.
FIRST_MODEL_CALL = "({e}operation = 'chat' AND {e}outcome != 'refused')"
_MARKER_TRIGGER = "events_un_latency_hist_duration_s"
# The hits the first text's triggers counted (``e.`` events).
_COUNTED_HITS = (
    "e.operation = 'chat' AND e.outcome = 'cache_hit' "
    "AND e.started_at < (SELECT applied_at FROM schema_migrations WHERE version = 5) "
    f"AND EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = '{_MARKER_TRIGGER}' "
    "AND sql NOT LIKE '%cache_hit%')"
)


def _counted(sums: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The columns whose sums depend on what a model call is, each with what the first text added."""
    return tuple((c, expr.replace(MODEL_CALL, FIRST_MODEL_CALL)) for c, expr in sums if MODEL_CALL in expr)


def _take_out(table: str, sums: tuple[tuple[str, str], ...], keys: tuple[tuple[str, str], ...]) -> str:
    """``UPDATE`` subtracting, per key, what the counted hits added to ``table``."""
    cols = _counted(sums)
    aggs = ", ".join(
        f"{'total' if c in REAL_COLUMNS else 'sum'}({expr.format(e='e.')}) AS {c}" for c, expr in cols
    )
    sets = ", ".join(f"{c} = r.{c} - h.{c}" for c, _ in cols)
    key_exprs = ", ".join(f"{expr} AS {name}" for name, expr in keys)
    join = " AND ".join(f"r.{name} = h.{name}" for name, _ in keys)
    group = ", ".join(name for name, _ in keys)
    return f"""UPDATE {table} AS r SET {sets}
FROM (SELECT {key_exprs}, {aggs} FROM events AS e WHERE {_COUNTED_HITS} GROUP BY {group}) AS h
WHERE {join}"""


def _models() -> str:
    """The models set of each session with counted hits, from its model calls alone."""
    model = MODEL_USED.format(e="e.")
    return f"""UPDATE sessions_rollup AS r SET models = (
    SELECT json_group_array(DISTINCT {model}) FROM events AS e
    WHERE e.session_id = r.session_id AND {MODEL_CALL.format(e="e.")} AND {model} IS NOT NULL)
WHERE r.session_id IN (SELECT e.session_id FROM events AS e WHERE {_COUNTED_HITS})"""


HIT_REPAIR_MIGRATION: tuple[str, ...] = (
    _models(),  # first: the sums below do not change which sessions have counted hits
    _take_out("sessions_rollup", SESSION_SUMS, (("session_id", "e.session_id"),)),
    _take_out(
        "hourly_rollup",
        HOURLY_SUMS,
        (("hour", HOUR.format(e="e.")), ("app", "e.app"), ("model", MODEL_KEY.format(e="e."))),
    ),
)

__all__ = ["FIRST_MODEL_CALL", "HIT_REPAIR_MIGRATION"]
