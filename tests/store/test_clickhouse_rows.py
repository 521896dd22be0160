"""The CallEvent <-> ClickHouse row mapping covers every field and round-trips."""

from __future__ import annotations

import dataclasses

from sidecar.core.events import CallEvent
from sidecar.core.usage import Usage
from sidecar.store.clickhouse_rows import EVENT_COLUMNS, event_to_row, row_to_event
from tests.store.test_sqlite import full_event, minimal_event


def test_every_callevent_field_has_a_column_and_rows_round_trip() -> None:
    stored = {f.name for f in dataclasses.fields(CallEvent) if f.compare}  # not the rate-limit headers
    expected = stored - {"usage", "tool_results", "started_at"}
    expected |= {f.name for f in dataclasses.fields(Usage)} | {"started_at_unix"}
    expected |= {"tool_result_ids", "tool_result_names", "tool_result_latency_s", "tool_result_is_error"}
    assert set(EVENT_COLUMNS) == expected and len(EVENT_COLUMNS) == len(expected)
    for event in (full_event(), minimal_event()):
        assert row_to_event(event_to_row(event)) == event
