"""The demo's Bedrock agent: the support conversation through ``/bedrock/…``, as a Bedrock client sends it.

The sidecar forwards it to the built-in fake Bedrock with a (fake) Bedrock API key, so the demo needs no
AWS credentials; sessions, tools, budgets, prices and metrics show it with ``provider`` = ``bedrock``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from sidecar.sansio.eventstream import EventStreamDecoder

BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
DEMO_BEDROCK_KEY = "bedrock-demo-not-a-real-key"


def content_from_event_stream(raw: bytes) -> list[dict[str, Any]]:
    """The content blocks of a recorded Bedrock event stream (tool_use inputs left empty)."""
    blocks: dict[int, dict[str, Any]] = {}
    for frame in EventStreamDecoder().feed(raw):
        if frame.text(":event-type") != "chunk":
            continue
        event = json.loads(base64.b64decode(json.loads(frame.payload)["bytes"]))
        if event.get("type") == "content_block_start":
            block = dict(event["content_block"])
            if block.get("type") == "tool_use":
                block["input"] = {}
            blocks[event["index"]] = block
    return [blocks[i] for i in sorted(blocks)]


async def bedrock_session(
    http: aiohttp.ClientSession,
    url: str,
    n: int,
    rng: random.Random,
    tools: Sequence[dict[str, Any]],
    deadline: float,
) -> None:
    """One multi-turn agent on Bedrock: InvokeModel, then InvokeModelWithResponseStream with the tool
    results, until the model stops asking for tools or ``deadline`` (monotonic) passes."""
    headers = {"content-type": "application/json", "x-session-id": f"demo-bedrock-{n:03d}",
               "x-app-name": "bedrock-agent"}  # fmt: skip
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"Customer {n} asks where the parcel is."}]
    system = "You are a careful logistics agent. Answer from the tracking system only. " * 300  # cacheable
    for turn in range(rng.randint(2, 3)):
        if time.monotonic() >= deadline:
            break
        op = "invoke-with-response-stream" if turn % 2 else "invoke"
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "system": system,
                "messages": messages, "tools": list(tools)}  # fmt: skip
        async with http.post(f"{url}/bedrock/model/{BEDROCK_MODEL}/{op}", headers=headers, json=body) as resp:
            raw = await resp.read()
        content = content_from_event_stream(raw) if turn % 2 else json.loads(raw).get("content", [])
        tool_uses = [b for b in content if b.get("type") == "tool_use"]
        messages.append({"role": "assistant", "content": content})
        if not tool_uses:
            break
        await asyncio.sleep(rng.uniform(0.05, 0.3))  # the "tool" runs
        results = [
            {"type": "tool_result", "tool_use_id": b["id"], "content": "in transit"} for b in tool_uses
        ]
        messages.append({"role": "user", "content": results})


__all__ = ["BEDROCK_MODEL", "DEMO_BEDROCK_KEY", "bedrock_session", "content_from_event_stream"]
