"""The demo's subagent story: a Claude Code session whose main agent hands a task to a subagent. Each call
carries Claude Code's agent headers, so the session's page draws one waterfall lane per agent."""

from __future__ import annotations

import asyncio
import json

import aiohttp

SESSION = "demo-subagents"
APP = "coding-agent"
MAIN_AGENT = "agent-main-3f9a"
SUBAGENT = "agent-explore-72c1"
AGENT_HEADER = "x-claude-code-agent-id"
PARENT_HEADER = "x-claude-code-parent-agent-id"


async def _call(http: aiohttp.ClientSession, url: str, headers: dict[str, str], text: str) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "system": "You are a coding agent working in the user's repository.",
        "messages": [{"role": "user", "content": text}],
    }
    async with http.post(url + "/v1/messages", headers=headers, data=json.dumps(body)) as resp:
        await resp.read()


async def subagent_session(http: aiohttp.ClientSession, url: str, key: str) -> None:
    """The main agent plans, its subagent explores the code in two calls, the main agent answers."""
    base = {
        "x-api-key": key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-session-id": SESSION,
        "x-app-name": APP,
    }
    main = {**base, AGENT_HEADER: MAIN_AGENT}
    sub = {**base, AGENT_HEADER: SUBAGENT, PARENT_HEADER: MAIN_AGENT}
    await _call(http, url, main, "Why does the checkout test fail?")
    for step in ("Find where checkout totals are computed.", "Read the failing assertion."):
        await _call(http, url, sub, step)
        await asyncio.sleep(0.05)  # the subagent's tool runs
    await _call(http, url, main, "Summarise the cause and propose a fix.")
