"""The first change between two prompt-prefix fingerprints (SPEC R-CD-1), in the API's prefix order.

Compared within what the previous call cached (up to its last breakpoint): the model, then the tools, the
system blocks, the messages, then whether a breakpoint of this call can still reach the previous entry
(the API looks back 20 blocks from each breakpoint). Details name positions and tool names, never text;
indexes count from 0, as in the request's JSON (``message 12`` is ``messages[12]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sidecar.core.prompt_fingerprint import (
    MESSAGES,
    SYSTEM,
    TOOLS,
    Breakpoint,
    PromptFingerprint,
    SystemBlock,
)
from sidecar.core.prompt_text import describe_block_change

LOOKBACK_BLOCKS = 20
_LISTED = 3


@dataclass(frozen=True, slots=True)
class Change:
    reason: str
    detail: str


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(f'"{n}"' for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _tools_change(prev: PromptFingerprint, cur: PromptFingerprint, upto: int | None) -> str | None:
    a, b = prev.tool_names, cur.tool_names
    if upto is not None:
        a, b = a[: upto + 1], b[: upto + 1]
    pa, pb = prev.tools, cur.tools
    if pa is pb and a == b:
        return None  # the same tools: the fingerprint reused the previous summary
    if pa is None or pb is None:
        return None if a == b and pa is pb else "tools changed"
    ha, hb = tuple(pa.hashes[: len(a)]), tuple(pb.hashes[: len(b)])
    if a == b and ha == hb:
        return None
    added = [n for n in b if n not in a]
    removed = [n for n in a if n not in b]
    if added or removed:
        parts = []
        if added:
            parts.append(f"tool{'s' if len(added) > 1 else ''} {_names(added)} added")
        if removed:
            parts.append(f"tool{'s' if len(removed) > 1 else ''} {_names(removed)} removed")
        return "; ".join(parts)
    if sorted(zip(a, ha, strict=True)) == sorted(zip(b, hb, strict=True)):
        return "tools reordered"
    edited = [n for i, n in enumerate(b) if i < len(a) and a[i] == n and ha[i] != hb[i]]
    return f"tool {_names(edited)} edited" if edited else "tools reordered and edited"


def _system_change(
    prev: Sequence[SystemBlock], cur: Sequence[SystemBlock], upto: int | None, texts: Sequence[str | None]
) -> str | None:
    a, b = prev, cur
    if upto is not None:
        a, b = a[: upto + 1], b[: upto + 1]
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x.key == y.key:
            continue
        text = texts[i] if i < len(texts) else None
        if x.detail is not None and text:
            return f"system block {i} {describe_block_change(x.detail, text, y.detail)}"
        return f"system block {i} changed"
    if len(a) != len(b):
        return f"system blocks {len(prev)} → {len(cur)}"
    return None


def _messages_change(prev: PromptFingerprint, cur: PromptFingerprint, upto: int) -> str | None:
    pa, pb = prev.messages, cur.messages
    if pa is None or pb is None:
        return None
    n = min(upto + 1, pa.count)
    if pb.count >= n and pa.hashes[:n] == pb.hashes[:n]:
        return None  # compared at C speed: the usual case, a history resent as it was
    for i in range(n):
        if i >= pb.count:
            gone = f"message {i}" if i == pa.count - 1 else f"messages {i} to {pa.count - 1}"
            return f"{gone} removed (history {pa.count} → {pb.count} messages)"
        if pa.hashes[i] != pb.hashes[i]:
            rewritten = (
                f" (history rewritten: {pa.count} → {pb.count} messages)" if pb.count < pa.count else ""
            )
            return f"message {i} edited{rewritten}"
    return None


def _where(bp: Breakpoint) -> str:
    if bp.section == TOOLS:
        return f"tool {bp.index}"
    if bp.section == SYSTEM:
        return f"system block {bp.index}"
    return f"message {bp.index}" + (f" block {bp.block}" if bp.block else "")


def _gap(a: Breakpoint, b: Breakpoint, fp: PromptFingerprint, blocks_in: Callable[[int], int]) -> int:
    """Blocks from breakpoint ``a`` forward to ``b`` (``b`` not before ``a``); counting stops past the
    lookback, so a long history is never walked."""
    n_tools, n_system = len(fp.tool_names), len(fp.system)

    def ordinal(bp: Breakpoint) -> int:  # tools and system only
        return bp.index if bp.section == TOOLS else n_tools + bp.index

    if b.section != MESSAGES:
        return ordinal(b) - ordinal(a)
    if a.section == MESSAGES:
        if a.index == b.index:
            return b.block - a.block
        gap, first = blocks_in(a.index) - a.block, a.index + 1
    else:
        gap, first = n_tools + n_system - ordinal(a), 0
    for i in range(first, b.index):
        if gap > LOOKBACK_BLOCKS:
            return gap
        gap += blocks_in(i)
    return gap + b.block


def _breakpoint_change(
    prev: PromptFingerprint, cur: PromptFingerprint, blocks_in: Callable[[int], int]
) -> str | None:
    last = prev.last_breakpoint
    assert last is not None
    at = (last.section, last.index, last.block)
    later = [bp for bp in cur.breakpoints if (bp.section, bp.index, bp.block) >= at]
    if not later:
        return f"breakpoint at {_where(last)} removed"
    nearest = later[0]
    if (nearest.section, nearest.index, nearest.block) == at:
        return None
    gap = _gap(last, nearest, cur, blocks_in)
    if gap < LOOKBACK_BLOCKS:
        return None
    far = f"more than {LOOKBACK_BLOCKS}" if gap > LOOKBACK_BLOCKS else str(gap)
    return (
        f"breakpoint moved from {_where(last)} to {_where(nearest)}, {far} blocks on "
        f"(past the API's {LOOKBACK_BLOCKS}-block lookback)"
    )


def first_change(
    prev: PromptFingerprint,
    cur: PromptFingerprint,
    *,
    system_texts: Sequence[str | None],
    blocks_in: Callable[[int], int],
) -> Change | None:
    """The first difference that stops ``cur`` from reading what ``prev`` cached, or None.

    ``system_texts``: this call's system block texts (to say where a block changed); ``blocks_in(i)``:
    the number of content blocks of this call's message ``i`` (to measure the lookback).
    """
    last = prev.last_breakpoint
    if last is None:
        return None
    if prev.model != cur.model:
        return Change("model_changed", f"model {prev.model} → {cur.model}")
    tools_upto = last.index if last.section == TOOLS else None
    if (detail := _tools_change(prev, cur, tools_upto)) is not None:
        return Change("tools_changed", detail)
    if last.section >= SYSTEM:
        upto = last.index if last.section == SYSTEM else None
        if (detail := _system_change(prev.system, cur.system, upto, system_texts)) is not None:
            return Change("system_changed", detail)
    if last.section == MESSAGES and (detail := _messages_change(prev, cur, last.index)) is not None:
        return Change("messages_changed", detail)
    if (detail := _breakpoint_change(prev, cur, blocks_in)) is not None:
        return Change("breakpoint_moved", detail)
    return None
