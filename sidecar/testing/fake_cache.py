"""Prompt segmentation, token estimates and the prompt-cache simulation of the fake upstream.

Pure code (no I/O, the clock is passed in). A request's prompt is cut into blocks in the API's prefix
order — ``tools`` → ``system`` → ``messages`` — and each block costs ``ceil(len(canonical JSON) / 4)``
tokens, where the canonical JSON leaves ``cache_control`` out so that adding a marker never changes a count.

Cache rules imitated from the prompt-caching docs: a marker (or the top-level ``cache_control``, which
lands on the last cacheable block) writes an entry for the prefix ending at its block, but only when
that prefix reaches the model's minimum cacheable length; a later request reads the longest live entry
found at a breakpoint or up to 19 blocks before it (the 20-block lookback).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# Minimum cacheable prompt length per model family (protocol notes §3.2); any other model: 1024.
MIN_CACHEABLE_TOKENS: Mapping[str, int] = MappingProxyType(
    {
        "claude-opus-5": 512,
        "claude-fable-5": 512,
        "claude-mythos-5": 512,
        "claude-opus-4-7": 2048,
        "claude-3-5-haiku": 2048,
        "claude-3-haiku": 2048,
        "claude-opus-4-6": 4096,
        "claude-opus-4-5": 4096,
        "claude-haiku-4-5": 4096,
    }
)
DEFAULT_MIN_CACHEABLE_TOKENS = 1024
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS: Mapping[str, float] = MappingProxyType({"5m": 300.0, "1h": 3600.0})
_DATED_SUFFIX = re.compile(r"-\d{8}$")
_UNCACHEABLE_TYPES = frozenset({"thinking", "redacted_thinking"})


class InvalidRequest(Exception):
    """The request breaks an API rule; the caller answers 400 ``invalid_request_error`` with ``str(exc)``."""


@dataclass(frozen=True, slots=True)
class PromptBlock:
    """One block of the prompt in prefix order; ``ttl`` is set when a cache breakpoint ends on it."""

    key_material: str
    tokens: int
    ttl: str | None = None


@dataclass(frozen=True, slots=True)
class CacheOutcome:
    """How the prompt's tokens split; the four fields always add up to the prompt estimate."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0
    uncached: int = 0


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def min_cacheable_tokens(model: str) -> int:
    """The model family's minimum cacheable prefix; dated ids (``-20250929``) map to their family."""
    return MIN_CACHEABLE_TOKENS.get(_DATED_SUFFIX.sub("", model), DEFAULT_MIN_CACHEABLE_TOKENS)


def estimate_tokens(blocks: Sequence[PromptBlock]) -> int:
    """The prompt's input-token estimate (at least 1), also used by ``count_tokens``."""
    return max(1, sum(block.tokens for block in blocks))


def _check_marker(marker: object, where: str) -> str:
    if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
        raise InvalidRequest(f"{where}.cache_control: Input should be an object with type 'ephemeral'")
    ttl = marker.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise InvalidRequest(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def _is_cacheable(block: Mapping[str, Any]) -> bool:
    if block.get("type") in _UNCACHEABLE_TYPES:
        return False
    return not (block.get("type") == "text" and block.get("text") == "")


def _raw_blocks(body: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``(where, section, block)`` in prefix order; string shorthands become one text block."""
    out: list[tuple[str, str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        out.append((f"tools.{i}", "tools", tool))
    system = body.get("system")
    if isinstance(system, str):
        out.append(("system", "system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        out.extend((f"system.{i}", "system", block) for i, block in enumerate(system))
    for m, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{m}: Input should be a valid dictionary")
        section = f"messages:{message.get('role')}"
        content = message.get("content")
        if isinstance(content, str):
            out.append((f"messages.{m}.content", section, {"type": "text", "text": content}))
        elif isinstance(content, list):
            out.extend((f"messages.{m}.content.{i}", section, b) for i, b in enumerate(content))
    return out


def prompt_blocks(body: Mapping[str, Any]) -> list[PromptBlock]:
    """Cut the request into blocks and validate its ``cache_control`` markers like the API.

    Raises ``InvalidRequest`` for: more than 4 markers (the top-level one counts), a ``ttl`` other than
    ``5m``/``1h``, a ``1h`` marker after a ``5m`` one, a marker on a thinking or empty text block.
    """
    blocks: list[PromptBlock] = []
    last_cacheable = -1
    for where, section, raw in _raw_blocks(body):
        ttl = None
        if isinstance(raw, dict):
            if raw.get("cache_control") is not None:
                ttl = _check_marker(raw["cache_control"], where)
                if not _is_cacheable(raw):
                    kind = "empty text blocks" if raw.get("type") == "text" else f"{raw.get('type')} blocks"
                    raise InvalidRequest(f"{where}.cache_control: cache_control cannot be set for {kind}")
            if _is_cacheable(raw):
                last_cacheable = len(blocks)
            raw = {k: v for k, v in raw.items() if k != "cache_control"}
        text = canonical_json(raw)
        blocks.append(PromptBlock(canonical_json([section, raw]), (len(text) + 3) // 4, ttl))
    found = sum(1 for b in blocks if b.ttl is not None)
    top = body.get("cache_control")
    if top is not None:
        top_ttl = _check_marker(top, "body")
        found += 1
        if last_cacheable >= 0 and blocks[last_cacheable].ttl is None:
            old = blocks[last_cacheable]
            blocks[last_cacheable] = PromptBlock(old.key_material, old.tokens, top_ttl)
    if found > MAX_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )
    ttls = [b.ttl for b in blocks if b.ttl is not None]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        raise InvalidRequest(
            "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block; "
            "cache entries with a longer TTL must appear before shorter TTLs"
        )
    return blocks


class PromptCache:
    """Cache entries keyed by a hash of model + prefix; not thread-safe (the caller holds a lock)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (ttl seconds, expires at)

    def clear(self) -> None:
        self._entries.clear()

    def _live(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[1] > now

    def apply(self, model: str, blocks: Sequence[PromptBlock], now: float) -> CacheOutcome:
        """Read and write entries for one request at time ``now``; return the token split."""
        cumulative: list[int] = []
        keys: list[str] = []
        running, digest = 0, hashlib.sha256(model.encode()).hexdigest()
        for block in blocks:
            running += block.tokens
            digest = hashlib.sha256((digest + block.key_material).encode()).hexdigest()
            cumulative.append(running)
            keys.append(digest)
        total = estimate_tokens(blocks)
        minimum = min_cacheable_tokens(model)
        effective = [i for i, b in enumerate(blocks) if b.ttl is not None and cumulative[i] >= minimum]
        if not effective:
            return CacheOutcome(uncached=total)
        hit = -1
        for bp in effective:
            for j in range(bp, max(-1, bp - LOOKBACK_BLOCKS), -1):
                if self._live(keys[j], now):
                    hit = max(hit, j)
                    break
        if hit >= 0:  # a read refreshes the entry's lifetime
            ttl_s = self._entries[keys[hit]][0]
            self._entries[keys[hit]] = (ttl_s, now + ttl_s)
        written = {"5m": 0, "1h": 0}
        previous = cumulative[hit] if hit >= 0 else 0
        for bp in effective:
            if bp <= hit:
                continue
            ttl = blocks[bp].ttl or "5m"
            written[ttl] += cumulative[bp] - previous
            previous = cumulative[bp]
            self._entries[keys[bp]] = (TTL_SECONDS[ttl], now + TTL_SECONDS[ttl])
        read = cumulative[hit] if hit >= 0 else 0
        cached_end = max(cumulative[effective[-1]], read)
        return CacheOutcome(read, written["5m"], written["1h"], total - cached_end)
