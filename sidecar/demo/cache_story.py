"""The demo's cache-miss story: one session whose system prompt carries the time, so every call misses,
and the diagnosis read back — the sidecar's reason and detail beside the API's own reason."""

from __future__ import annotations

import json

import aiohttp

from sidecar.core.events import CallEvent

SESSION = "demo-clock"
APP = "clock-bot"
_PROMPT = "You are the shop's order assistant. Answer from the order history only. " * 80


async def clock_session(http: aiohttp.ClientSession, url: str, key: str, calls: int = 3) -> None:
    """``calls`` turns of one session, each with the current time in its system prompt (the usual bug)."""
    headers = {
        "x-api-key": key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-session-id": SESSION,
        "x-app-name": APP,
    }
    for i in range(calls):
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "system": f"{_PROMPT}\nCurrent time: 2026-11-20T10:0{i}:{7 * i:02}Z",
            "messages": [{"role": "user", "content": "Where is order 1042?"}],
        }
        async with http.post(url + "/v1/messages", headers=headers, data=json.dumps(body)) as resp:
            await resp.read()


def describe(events: list[CallEvent]) -> str:
    """What each call of the story was told: outcome, reason, where, dollars lost, the API's reason."""
    lines = [f"why the cache missed (session {SESSION}, app {APP}: the time is in its system prompt):"]
    for n, e in enumerate(sorted(events, key=lambda e: e.started_at), 1):
        line = f"  call {n}: {e.cache_outcome or 'not diagnosed'}"
        if e.cache_miss_reason:
            line += f", {e.cache_miss_reason}: {e.cache_miss_detail}; ${e.cache_miss_cost_usd or 0:.6f} lost"
        if e.api_cache_miss_reason:
            line += f"; the API says: {e.api_cache_miss_reason}"
        lines.append(line)
    return "\n".join(lines)
