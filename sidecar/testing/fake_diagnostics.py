"""The fake upstream's cache diagnostics (beta ``cache-diagnosis-2026-04-07``), answered as the API does.

A request opts in with a top-level ``diagnostics: {"previous_message_id": …}`` and the beta header. The
fake then keeps a fingerprint of it (model, a hash and token estimate per prompt block, a hash of the other
prompt-affecting parameters) under the response's id, and compares it with the request the id names:

* no previous id (the first turn), or no divergence → ``"diagnostics": null``;
* an id it does not know → ``previous_message_not_found``;
* the model, then the tools, then the system prompt differ → ``model_changed`` / ``tools_changed`` /
  ``system_changed``; the same three but other parameters (``thinking``, ``tool_choice``) →
  ``unavailable``; an earlier message differs → ``messages_changed``. The ``*_changed`` kinds carry
  ``cache_missed_input_tokens``: the previous prompt's tokens from the divergence on.

Per request (headers): ``x-fake-diagnostics: pending`` answers ``{"cache_miss_reason": null}`` (the API's
"still comparing"); ``x-fake-diagnostics-in: delta`` / ``delta-inner`` moves the object from the message
(``message_start`` and the JSON body) to the stream's ``message_delta``, top level or inside ``delta``.
Pure apart from :class:`DiagnosticsMemory`, which the fake's state guards with its lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.testing.fake_cache import PromptBlock, canonical_json

BETA = "cache-diagnosis-2026-04-07"
_OTHER_PARAMS = ("thinking", "tool_choice")
_MAX_REMEMBERED = 10_000
_ORDER = ("tools", "system", "messages")


@dataclass(frozen=True, slots=True)
class RequestPrint:
    model: str
    blocks: tuple[tuple[str, str, int], ...]  # (section, hash, tokens) in prefix order
    params: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def opted_in(body: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    betas = {b.strip() for b in headers.get("anthropic-beta", "").split(",")}
    return isinstance(body.get("diagnostics"), dict) and BETA in betas


def request_print(body: Mapping[str, Any], blocks: Sequence[PromptBlock]) -> RequestPrint:
    sections = tuple(b.key_material.split('"', 2)[1].split(":")[0] for b in blocks)
    return RequestPrint(
        model=str(body.get("model")),
        blocks=tuple((s, _digest(b.key_material), b.tokens) for s, b in zip(sections, blocks, strict=True)),
        params=_digest(canonical_json({k: body.get(k) for k in _OTHER_PARAMS})),
    )


def _first_difference(prev: RequestPrint, cur: RequestPrint) -> int | None:
    for i, block in enumerate(prev.blocks):
        if i >= len(cur.blocks) or cur.blocks[i][:2] != block[:2]:
            return i
    return None


def compare(prev: RequestPrint, cur: RequestPrint) -> dict[str, Any] | None:
    """The ``cache_miss_reason`` of ``cur`` against ``prev``, or None when ``cur`` extends ``prev``."""
    at = _first_difference(prev, cur)
    section = None
    if at is not None:  # the earlier section, in prefix order, of the two blocks found there
        sides = [blocks[at][0] for blocks in (prev.blocks, cur.blocks) if at < len(blocks)]
        section = min(sides, key=_ORDER.index)
    missed = sum(tokens for _, _, tokens in prev.blocks[at:]) if at is not None else 0
    if prev.model != cur.model:
        return {"type": "model_changed", "cache_missed_input_tokens": sum(t for _, _, t in prev.blocks)}
    if section in ("tools", "system"):
        return {"type": f"{section}_changed", "cache_missed_input_tokens": missed}
    if prev.params != cur.params:
        return {"type": "unavailable"}
    if section == "messages":
        return {"type": "messages_changed", "cache_missed_input_tokens": missed}
    return None


class DiagnosticsMemory:
    """Fingerprints of opted-in requests by response id (the oldest forgotten first)."""

    def __init__(self) -> None:
        self._prints: OrderedDict[str, RequestPrint] = OrderedDict()

    def clear(self) -> None:
        self._prints.clear()

    def answer(self, msg_id: str, previous_id: object, cur: RequestPrint) -> dict[str, Any] | None:
        """The ``diagnostics`` value for this response; remembers ``cur`` under ``msg_id``."""
        prev = self._prints.get(previous_id) if isinstance(previous_id, str) else None
        self._prints[msg_id] = cur
        if len(self._prints) > _MAX_REMEMBERED:
            self._prints.popitem(last=False)
        if previous_id is None:
            return None
        if prev is None:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        reason = compare(prev, cur)
        return None if reason is None else {"cache_miss_reason": reason}
