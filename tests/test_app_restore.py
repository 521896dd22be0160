"""What ``serve`` reads from the embedded store at start: aggregates of the sessions it must remember and
today's spend, never every event (SPEC R-RS-1). A month of older history stays unread."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NoReturn

import anthropic
import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.store.sqlite import SQLiteStore
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.core.test_sessions import make_event
from tests.metrics_util import sample

DAY = 86400.0
HAIKU = "claude-haiku-4-5"
MSG = [{"role": "user", "content": "Please summarise this ticket. " * 40}]


class RecordingReads:
    """The read side, with each query and how many rows it answered written down."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, tuple[Any, ...], int]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            out = method(*args, **kwargs)
            rows = len(out["rows"]) if isinstance(out, dict) else len(out) if isinstance(out, list) else 0
            self.calls.append((name, args, rows))
            return out

        return recorded


def history(now: float) -> list[Any]:
    """Old sessions (10 to 20 days ago), one session idle for 2 days (3 model calls), one open."""
    old = [
        make_event(f"old-{i}", now - 20 * DAY + i * 3000, session_id=f"old-{i % 40}", model=HAIKU,
                   model_canonical=HAIKU, cost_usd=1.0)
        for i in range(300)
    ]  # fmt: skip
    week = [
        make_event(f"w-{i}", now - 2 * DAY + i, session_id="s-week", model=HAIKU, model_canonical=HAIKU,
                   cost_usd=0.01, app="default")
        for i in range(3)
    ]  # fmt: skip
    recent = make_event("o-1", now - 60, session_id="s-open", model=HAIKU, model_canonical=HAIKU,
                        cost_usd=0.02, app="default")  # fmt: skip
    return [*old, *week, recent]


def test_start_up_reads_only_the_sessions_it_remembers(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    store = SQLiteStore(tmp_path / "p.db", retention_days=0)
    store.open()
    store.write_events(history(now))
    store.close()

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise AssertionError("start-up must not read every event")

    monkeypatch.setattr(SQLiteStore, "events", refuse)
    settings = Settings(
        upstream_url=fake.url,
        store=f"sqlite:///{tmp_path}/p.db",
        port=0,
        retention_days=0,
        policies={"budgets": {"defaults": {"session_max_model_calls": 3}}},
    )
    running = RunningSidecar(settings)
    reads = RecordingReads(running.sidecar.reads)
    running.sidecar.reads = reads  # type: ignore[assignment]
    with running:
        at_start = list(reads.calls)
        metrics = httpx.get(running.url + "/metrics").text
        # The session tracker follows the open session again (and only it); the idle one is not open.
        assert sample(metrics, "sidecar_active_sessions") == 1.0
        client = anthropic.Anthropic(base_url=running.url, api_key=API_KEY, max_retries=0)

        def call(session: str) -> Any:
            headers = {"x-session-id": session, "x-app-name": "default"}
            return client.messages.create(model=HAIKU, max_tokens=5, messages=MSG, extra_headers=headers)

        # The budget remembers the session idle for two days: its 3 calls reached the ceiling of 3.
        with pytest.raises(anthropic.RateLimitError):
            call("s-week")
        assert call("s-open").content
    names = [name for name, _, _ in at_start]
    assert sorted(set(names)) == ["session_counters", "summary", "unpriced_calls"]
    # Sessions last seen in the budgets' 7 days, then in the idle window: s-week and s-open, then s-open;
    # none of the 40 old sessions. Today's spend is one row per app, and no call was unpriced.
    counters = [(args, rows) for name, args, rows in at_start if name == "session_counters"]
    assert sorted(rows for _, rows in counters) == [1, 2]
    assert all(args[0] >= now - 7 * DAY - 60 for args, _ in counters)
    assert [rows for name, _, rows in at_start if name == "unpriced_calls"] == [0]
    summaries = [args for name, args, _ in at_start if name == "summary"]
    assert summaries and all(args[0] >= now - DAY - 60 and args[2] == "app" for args in summaries)
