"""The response cache in a real sidecar on loopback, against the fake upstream (which counts the calls that
reach it): tenants, single flight, what a hit records, budgets, the tool clock, purge, a broken store."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.metrics_util import sample

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Summarise the refund policy."}],
}
TOOLS = [{"name": "lookup", "description": "Look it up", "input_schema": {"type": "object"}}]
V1 = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def post(
    sidecar: RunningSidecar, body: dict[str, Any] = BODY, key: str = API_KEY, **headers: str
) -> httpx.Response:
    sent = {**V1, "x-api-key": key, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.post(sidecar.url + "/v1/messages", json=body, headers=sent, timeout=30)


def upstream_calls(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.path == "/v1/messages")


def metric(sidecar: RunningSidecar, name: str, **labels: str) -> float | None:
    return sample(httpx.get(sidecar.url + "/metrics").text, name, **labels)


def test_tenants_never_see_each_others_answers(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    assert post(sidecar).headers["x-sidecar-cache"] == "miss"
    assert post(sidecar, key="sk-ant-other-tenant").headers["x-sidecar-cache"] == "miss"
    assert upstream_calls(fake) == 2
    # One credential is one tenant, whichever header carries it.
    bearer = httpx.post(
        sidecar.url + "/v1/messages",
        json=BODY,
        headers={**V1, "authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert bearer.headers["x-sidecar-cache"] == "hit" and upstream_calls(fake) == 2
    # The app is not part of the key.
    assert post(sidecar, x_app_name="another-app").headers["x-sidecar-cache"] == "hit"


def test_shared_entries_are_seen_by_every_key(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on", response_cache_shared=True)
    first = post(sidecar)
    second = post(sidecar, key="sk-ant-other-tenant")
    assert second.headers["x-sidecar-cache"] == "hit" and second.json() == first.json()
    assert upstream_calls(fake) == 1


async def test_a_burst_of_identical_requests_makes_one_upstream_call(
    slow_fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(slow_fake.url, response_cache="on")
    client = anthropic.AsyncAnthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)

    async def one(i: int) -> dict[str, Any]:
        if i % 2:
            return (await client.messages.create(**BODY)).model_dump()
        async with client.messages.stream(**BODY) as stream:
            message = (await stream.get_final_message()).model_dump()
        for block in message["content"]:
            block.pop("parsed_output", None)
        return message

    answers = await asyncio.gather(*(one(i) for i in range(8)))
    await client.close()
    assert all(a == answers[0] for a in answers)  # each client got its own complete answer
    assert upstream_calls(slow_fake) == 1  # counted where the calls arrive
    assert metric(sidecar, "sidecar_response_cache_requests_total", result="hit") == 7
    assert metric(sidecar, "sidecar_response_cache_requests_total", result="miss") == 1


def test_a_hit_is_a_request_but_not_a_model_call(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar], tmp_path: Path
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    post(sidecar, x_session_id="s-1")
    hit = post(sidecar, x_session_id="s-1")
    assert hit.headers["x-sidecar-cache"] == "hit"
    miss_event, hit_event = sidecar.wait_events(2, session_id="s-1")
    assert miss_event.outcome == "ok" and miss_event.cost_usd and miss_event.cost_usd > 0
    assert hit_event.outcome == "cache_hit" and hit_event.cost_usd == 0
    assert hit_event.response_cache_savings_usd == miss_event.cost_usd
    assert hit_event.usage.output_tokens == 0 and hit_event.status == 200
    session = httpx.get(sidecar.url + "/sidecar/v1/sessions/s-1").json()
    assert session["model_calls"] == 1 and session["cost_usd"] == miss_event.cost_usd
    assert [(c["outcome"], c["response_cache_savings_usd"]) for c in session["calls"]] == [
        ("ok", 0.0),
        ("cache_hit", miss_event.cost_usd),
    ]
    model = {"model": "claude-sonnet-4-5", "app": "default"}
    assert metric(sidecar, "sidecar_requests_total", **model, status_class="2xx", stream="false") == 2
    assert metric(sidecar, "sidecar_tokens_total", **model, type="output") == miss_event.usage.output_tokens
    assert metric(sidecar, "sidecar_cost_usd_total", **model) == miss_event.cost_usd
    savings = metric(sidecar, "sidecar_response_cache_savings_usd_total", **model)
    assert savings == miss_event.cost_usd
    count = metric(
        sidecar, "gen_ai_client_operation_duration_seconds_count", gen_ai_request_model="claude-sonnet-4-5"
    )
    assert count == 1
    path = tmp_path / "response-cache.db"  # beside events.db, private
    with sqlite3.connect(path) as conn:  # the gauge counts the stored bytes: each entry's header and body
        (held,) = conn.execute("SELECT SUM(LENGTH(data)) FROM entries").fetchone()
    assert held > len(hit.content) and metric(sidecar, "sidecar_response_cache_bytes") == held
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_session_over_its_ceiling_gets_hits_but_a_blocked_one_does_not(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on", policy_env={"SIDECAR_SESSION_MAX_MODEL_CALLS": "1"})
    assert post(sidecar, x_session_id="s-1").status_code == 200
    other = {**BODY, "messages": [{"role": "user", "content": "Something new"}]}
    refused = post(sidecar, other, x_session_id="s-1")
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "budget_exceeded_error"
    hit = post(sidecar, x_session_id="s-1")
    assert hit.status_code == 200 and hit.headers["x-sidecar-cache"] == "hit"
    assert httpx.post(sidecar.url + "/sidecar/v1/sessions/s-2/block").json()["blocked"] is True
    blocked = post(sidecar, x_session_id="s-2")
    assert blocked.status_code == 429 and "blocked" in blocked.json()["error"]["message"]
    assert upstream_calls(fake) == 1


def test_a_hit_carrying_tool_use_starts_the_tool_clock(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    ask = {**BODY, "tools": TOOLS}
    post(sidecar, ask, x_session_id="first")
    hit = post(sidecar, ask, x_session_id="second")
    assert hit.headers["x-sidecar-cache"] == "hit"
    tool_use = next(b for b in hit.json()["content"] if b["type"] == "tool_use")
    result = {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "found"}
    follow = {
        **ask,
        "messages": [*BODY["messages"], {"role": "assistant", "content": hit.json()["content"]},
                     {"role": "user", "content": [result]}],
    }  # fmt: skip
    assert post(sidecar, follow, x_session_id="second").headers["x-sidecar-cache"] == "miss"
    events = sidecar.wait_events(2, session_id="second")
    assert events[0].outcome == "cache_hit" and events[0].tool_use_ids == (tool_use["id"],)
    (measured,) = events[1].tool_results
    assert measured.tool_use_id == tool_use["id"] and measured.name == "lookup" and measured.latency_s >= 0


def test_errors_and_partial_streams_are_never_stored(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    for _ in range(2):
        assert post(sidecar, x_fake_scenario="error-500").status_code == 500
    stream = {**BODY, "stream": True}
    for _ in range(2):
        answer = post(sidecar, stream, x_fake_scenario="error-in-stream")
        assert answer.status_code == 200 and b"overloaded_error" in answer.content
    assert upstream_calls(fake) == 4
    assert metric(sidecar, "sidecar_response_cache_requests_total", result="hit") == 0


def test_opt_in_and_per_request_controls(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="opt-in")
    plain = post(sidecar)
    assert "x-sidecar-cache" not in plain.headers  # not opted in: the cache takes no part
    assert post(sidecar, x_sidecar_cache="on").headers["x-sidecar-cache"] == "miss"
    assert post(sidecar, x_sidecar_cache="on").headers["x-sidecar-cache"] == "hit"
    assert post(sidecar, x_sidecar_cache="refresh").headers["x-sidecar-cache"] == "miss"
    assert upstream_calls(fake) == 3
    assert not any(r.header("x-sidecar-cache") for r in fake.requests)  # controls are never forwarded
    off = make_sidecar(fake.url)
    assert "x-sidecar-cache" not in post(off, x_sidecar_cache="on").headers  # off: headers ignored


def test_purge_all_or_one_apps_entries(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    other = {**BODY, "messages": [{"role": "user", "content": "Another question"}]}
    post(sidecar, x_app_name="evals")
    post(sidecar, other, x_app_name="bot")
    purged = httpx.post(sidecar.url + "/sidecar/v1/response-cache/purge", params={"app": "evals"})
    assert purged.status_code == 200 and purged.json() == {"purged": 1}
    assert post(sidecar, x_app_name="evals").headers["x-sidecar-cache"] == "miss"
    assert post(sidecar, other, x_app_name="bot").headers["x-sidecar-cache"] == "hit"
    sidecar.wait_events(4)
    assert httpx.post(sidecar.url + "/sidecar/v1/response-cache/purge").json() == {"purged": 2}
    assert post(sidecar, other).headers["x-sidecar-cache"] == "miss"


def test_a_broken_store_is_bypassed_counted_and_the_call_succeeds(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar], tmp_path: Path
) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    post(sidecar)
    with sqlite3.connect(tmp_path / "response-cache.db") as conn:
        conn.execute("DROP TABLE entries")
    answers = [post(sidecar) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-sidecar-cache"] for a in answers] == ["miss", "miss"]
    assert answers[0].json()["content"] == answers[1].json()["content"]
    errors = metric(sidecar, "sidecar_response_cache_requests_total", app="default", result="store_error")
    assert errors is not None and errors >= 2
    assert httpx.post(sidecar.url + "/sidecar/v1/response-cache/purge").status_code == 503


def test_a_reload_applies_new_modes(fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]) -> None:
    sidecar = make_sidecar(fake.url, response_cache="on")
    assert post(sidecar).headers["x-sidecar-cache"] == "miss"
    fresh = dataclasses.replace(sidecar.settings, response_cache="opt-in")
    sidecar.sidecar.settings_loader = lambda: fresh
    loop = sidecar._loop
    assert loop is not None
    done = threading.Event()

    def reload() -> None:  # on the server's loop, as the SIGHUP handler runs it
        sidecar.sidecar.reload()
        done.set()

    loop.call_soon_threadsafe(reload)
    assert done.wait(10)
    assert "x-sidecar-cache" not in post(sidecar).headers
    assert post(sidecar, x_sidecar_cache="on").headers["x-sidecar-cache"] == "hit"
