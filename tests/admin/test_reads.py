"""The sessions list, a session's calls and the summary, paged and filtered as SPEC R-RS-2..5 says, on
a real sidecar fed by the official SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY

# (session, app, model, calls)
TRAFFIC = [("alpha-1", "web", "claude-haiku-4-5", 3), ("alpha-2", "web", "claude-sonnet-4-5", 1),
           ("beta-1", "batch", "claude-haiku-4-5", 2)]  # fmt: skip


def _record(sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    for session, app, model, calls in TRAFFIC:
        for n in range(calls):
            client.messages.create(
                model=model,
                max_tokens=10,
                messages=[{"role": "user", "content": f"turn {n}"}],
                extra_headers={"x-session-id": session, "x-app-name": app},
            )
    sidecar.wait_events(sum(t[3] for t in TRAFFIC))


def _get(sidecar: RunningSidecar, path: str, **params: Any) -> Any:
    answer = httpx.get(sidecar.url + path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_list_pages_filters_and_orders(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    _record(sidecar)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, "order": "calls", **({"cursor": cursor} if cursor else {})}
        doc = _get(sidecar, "/sidecar/v1/sessions", **params)
        seen += [s["session_id"] for s in doc["sessions"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert seen == ["alpha-1", "beta-1", "alpha-2"]  # most model calls first
    by_prefix = _get(sidecar, "/sidecar/v1/sessions", q="alpha")["sessions"]
    assert sorted(s["session_id"] for s in by_prefix) == ["alpha-1", "alpha-2"]
    haiku_web = _get(sidecar, "/sidecar/v1/sessions", app="web", model="claude-haiku-4-5")["sessions"]
    assert [s["session_id"] for s in haiku_web] == ["alpha-1"]
    assert haiku_web[0]["models"] == ["claude-haiku-4-5"]
    future = _get(sidecar, "/sidecar/v1/sessions", since="2999-01-01T00:00:00Z")
    assert future == {"sessions": [], "next_cursor": None}
    assert _get(sidecar, "/sidecar/v1/sessions", state="closed")["sessions"] == []


def test_session_calls_page(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    _record(sidecar)
    first = _get(sidecar, "/sidecar/v1/sessions/alpha-1", calls_limit=2)
    assert first["model_calls"] == 3 and len(first["calls"]) == 2
    rest = _get(sidecar, "/sidecar/v1/sessions/alpha-1", calls_limit=2, calls_after=first["next_calls_after"])
    assert len(rest["calls"]) == 1 and rest["next_calls_after"] is None
    stamps = [c["started_at_ts"] for c in first["calls"] + rest["calls"]]
    assert stamps == sorted(stamps)


def test_summary_by_model(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    _record(sidecar)
    doc = _get(sidecar, "/sidecar/v1/summary", group_by="model", since=0)
    assert doc["group_by"] == "model" and doc["totals"]["model_calls"] == 6
    assert doc["totals"]["sessions"] == 3
    calls = {r["key"]: r["model_calls"] for r in doc["rows"]}
    assert calls == {"claude-haiku-4-5": 5, "claude-sonnet-4-5": 1}
    assert doc["totals"]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in doc["rows"]))


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/sidecar/v1/sessions", {"order": "loudest"}, "order"),
        ("/sidecar/v1/sessions", {"limit": 0}, "limit"),
        ("/sidecar/v1/sessions", {"limit": 1001}, "limit"),
        ("/sidecar/v1/sessions", {"since": "soon"}, "since"),
        ("/sidecar/v1/sessions", {"state": "ajar"}, "state"),
        ("/sidecar/v1/sessions", {"cursor": "not-a-cursor"}, "cursor"),
        ("/sidecar/v1/sessions", {"scope": "fleet"}, "scope"),
        ("/sidecar/v1/sessions/alpha-1", {"calls_limit": 0}, "calls_limit"),
        ("/sidecar/v1/sessions/alpha-1", {"calls_after": "zz"}, "calls_after"),
        ("/sidecar/v1/summary", {"group_by": "week"}, "group_by"),
        ("/sidecar/v1/summary", {"since": 100, "until": 50}, "until"),
        ("/sidecar/v1/summary", {"scope": "fleet"}, "scope"),
    ],
)
def test_bad_parameter_is_named(
    fake: FakeUpstream, sidecar: RunningSidecar, path: str, params: dict[str, Any], named: str
) -> None:
    if path.endswith("alpha-1"):
        _record(sidecar)
    answer = httpx.get(sidecar.url + path, params=params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(named + ":")
