"""The demo's eval loop: one suite of prompts run round after round, as CI and development loops do.

Sent with ``x-sidecar-cache: on`` to a sidecar whose response cache is ``opt-in``: the first round pays
for its calls, the later rounds are answered from the cache (no upstream call, no cost; the savings are
in the events, ``report`` and ``sidecar_response_cache_savings_usd_total``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp

CASES = (
    "Classify the ticket: 'my parcel never arrived'.",
    "Classify the ticket: 'refund me twice please'.",
    "Classify the ticket: 'how do I change my address?'",
    "Classify the ticket: 'the app crashes on login'.",
)
APP = "eval-suite"


@dataclass(frozen=True)
class EvalRun:
    rounds: int
    calls: int
    hits: int  # answered from the response cache

    def line(self) -> str:
        paid = self.calls - self.hits
        return (
            f"eval loop: {self.rounds} rounds of {len(CASES)} prompts, {self.calls} calls: "
            f"{paid} went to the model, {self.hits} were answered from the response cache"
        )


async def _ask(http: aiohttp.ClientSession, url: str, key: str, round_no: int, prompt: str) -> bool:
    headers = {
        "x-api-key": key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-app-name": APP,
        "x-session-id": f"eval-round-{round_no}",
        "x-sidecar-cache": "on",
    }
    body = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]}
    async with http.post(url + "/v1/messages", headers=headers, data=json.dumps(body)) as resp:
        await resp.read()
        return resp.headers.get("x-sidecar-cache") == "hit"


async def run_eval_loop(url: str, key: str, rounds: int = 3) -> EvalRun:
    """Run the suite ``rounds`` times (the prompts of a round in parallel, rounds one after another)."""
    hits = 0
    async with aiohttp.ClientSession() as http:
        for round_no in range(1, rounds + 1):
            answers = await asyncio.gather(*(_ask(http, url, key, round_no, p) for p in CASES))
            hits += sum(answers)
    return EvalRun(rounds, rounds * len(CASES), hits)
