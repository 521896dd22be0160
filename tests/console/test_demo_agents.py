"""The demo's subagent session in a real browser: the session page draws a waterfall lane per agent,
labelled with the agent ids the sessions API returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import httpx
from playwright.sync_api import expect

from sidecar.demo import subagents
from sidecar.demo.run import DEMO_KEY
from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.console.conftest import screenshot


async def _drive(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        await subagents.subagent_session(http, url, DEMO_KEY)


def test_the_demo_subagent_session_has_a_lane_per_agent(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar], open_page: Any
) -> None:
    sidecar = make_sidecar(fake.url)
    # Playwright's sync API runs an event loop in this thread: the demo's client runs in its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drive(sidecar.url)).result()
    sidecar.wait_events(4, session_id=subagents.SESSION)
    doc = httpx.get(f"{sidecar.admin_url}/sidecar/v1/sessions/{subagents.SESSION}").json()
    calls = doc["calls"]
    agents = list(dict.fromkeys(c["agent_id"] for c in calls))  # in the order each first called
    assert agents == [subagents.MAIN_AGENT, subagents.SUBAGENT]
    parent = {c["agent_id"]: c["parent_agent_id"] for c in calls}
    assert parent == {subagents.MAIN_AGENT: None, subagents.SUBAGENT: subagents.MAIN_AGENT}
    page = open_page(sidecar.admin_url, f"/ui/sessions/{subagents.SESSION}")
    titles = [f"Agent {agents[0]}", f"Agent {agents[1]} · sub-agent of {parent[agents[1]]}"]
    expect(page.locator("svg.waterfall text.lane")).to_have_text(titles)
    # Each call sits in its agent's lane: lane and row labels in drawing order.
    expected: list[str] = []
    for title, agent in zip(titles, agents, strict=True):
        expected.append(title)
        expected += [f"#{n} {c['model']}" for n, c in enumerate(calls, 1) if c["agent_id"] == agent]
    drawn = page.locator("svg.waterfall text.lane, svg.waterfall text.row-label").all_text_contents()
    assert drawn == expected
    screenshot(page, "demo-subagents")
