"""The client's own prompt-cache markers in a Messages body (SPEC R-PC-1), found in prefix order.

The planner (:mod:`sidecar.core.cache_plan`) counts them toward the API's limit of 4, keeps TTLs from
increasing along the prefix, and leaves alone a body whose markers the API would reject
(:class:`ClientInvalid`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

RANK = {"5m": 1, "1h": 2}  # TTLs must not increase along the prefix
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})
_MAX_NESTING = 4


class ClientInvalid(Exception):
    """The client's own markers would be rejected by the API."""


def marker_rank(value: object) -> int:
    """0 for no marker, 1 (``5m``) or 2 (``1h``); raises ``ClientInvalid`` for a malformed one."""
    if value is None:
        return 0
    if not isinstance(value, dict) or value.get("type") != "ephemeral" or not set(value) <= {"type", "ttl"}:
        raise ClientInvalid
    ttl = value.get("ttl")
    rank = 1 if ttl is None else RANK.get(ttl) if isinstance(ttl, str) else None
    if rank is None:
        raise ClientInvalid
    return rank


def cacheable(block: dict[str, Any]) -> bool:
    if block.get("type") in _UNCACHEABLE:
        return False
    return not (block.get("type") == "text" and block.get("text") == "")


def _nested(block: dict[str, Any]) -> Iterator[Any]:
    content = block.get("content")
    if isinstance(content, list):
        yield from content
    source = block.get("source")
    if isinstance(source, dict) and isinstance(source.get("content"), list):
        yield from source["content"]


def _content_markers(
    blocks: list[Any], counter: Iterator[int], depth: int, out: list[tuple[int, int]]
) -> None:
    # Runs over every block of a long conversation on each call: inline and allocation-free for the
    # common block (no marker, no nested content).
    for block in blocks:
        ordinal = next(counter)
        if not isinstance(block, dict):
            continue
        marker = block.get("cache_control")
        if marker is not None:
            rank = marker_rank(marker)
            if rank:
                if not cacheable(block):
                    raise ClientInvalid
                out.append((ordinal, rank))
        if depth < _MAX_NESTING:
            content = block.get("content")
            source = block.get("source")
            if isinstance(source, dict) and isinstance(source.get("content"), list):
                nested = list(_nested(block))
            elif isinstance(content, list):
                nested = content
            else:
                continue
            if nested:
                _content_markers(nested, counter, depth + 1, out)


def client_markers(doc: dict[str, Any]) -> list[tuple[int, int]]:
    """``(ordinal, rank)`` of every client block marker in prefix order (ordinals as in ``_candidates``).

    Raises ``ClientInvalid`` when a marker is malformed or sits on a block that cannot carry one.
    """
    out: list[tuple[int, int]] = []
    counter = itertools.count()
    tools = doc.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        ordinal = next(counter)
        rank = marker_rank(tool.get("cache_control")) if isinstance(tool, dict) else 0
        if rank:
            out.append((ordinal, rank))
    system = doc.get("system")
    if isinstance(system, list):
        _content_markers(system, counter, _MAX_NESTING, out)
    elif isinstance(system, str):
        next(counter)
    messages = doc.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            _content_markers(content, counter, 0, out)
    return out
