"""Start-up restore from the read side's totals gives the counters the event-by-event restore gives."""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from sidecar.budget.local import SESSION_TTL_S, LocalCounters
from sidecar.core.budget_estimate import charge_usd
from sidecar.core.events import REFUSED
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_reads import SQLiteReads
from tests.budget.test_local import NOW, clock, event


async def test_totals_restore_matches_the_event_restore(tmp_path: Path) -> None:
    prices = PriceTable.load()
    yesterday = NOW - 86400
    events = [
        event(0.05, "s-1", started_at=yesterday, tool_uses=("a",)),
        event(0.04, "s-1", tool_uses=("a", "b")),
        event(0.50, "s-1", outcome=REFUSED),  # refused: not a model call
        event(0.50, "s-1", operation="count_tokens"),
        event(0.02, "s-2", app="other"),
        event(None, "s-3", usage=Usage(input_tokens=1000, output_tokens=100)),  # unpriced
        event(0.01, "", app="app"),  # no session: counts for the app only
    ]
    events = [dataclasses.replace(e, event_id=f"e-{i}") for i, e in enumerate(events)]
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
    store.write_events(events)
    reads = SQLiteReads(store.path)
    sessions = reads.session_counters(NOW - SESSION_TTL_S)
    day_start = NOW - NOW % 86400
    unpriced = reads.unpriced_calls(min(s.first_seen for s in sessions))
    day = {r["key"]: r["cost_usd"] for r in reads.summary(day_start, NOW + 1, "app")["rows"]}
    reads.close()
    store.close()
    charge = partial(charge_usd, prices=prices)
    rebuilt = LocalCounters.restore_totals(sessions, unpriced, day, NOW, charge=charge, clock=clock)
    expected = LocalCounters.restore(events, NOW, charge=charge, clock=clock)
    for sid, app in (("s-1", "app"), ("s-2", "other"), ("s-3", "app")):
        assert await rebuilt.usage(sid, app, "2026-11-20") == await expected.usage(sid, app, "2026-11-20")
    assert (await rebuilt.usage("s-1", "app", "2026-11-20")).session.model_calls == 2
