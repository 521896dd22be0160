"""A Messages request's prefix fingerprint (SPEC R-CD-1), computed from its parsed body and its bytes.

Cost, on the hot path of every messages call: a message's hash is the crc32 of its JSON as ``orjson``
writes it (compact, keys in order, markers removed), and the whole history is summarised as one crc32 of
``[m0,m1,…``. A call that resends the previous call's history checks that summary against the raw bytes
the client sent (a C-speed crc32 of a slice; SDKs write compact JSON like ``orjson``), so only the new
messages are serialised. Anything else — the first call of a session, an edited history, a client that
writes spaced JSON — takes the slow path: every message serialised once (about a third of a parse).
Tools are checked the same way; a system block is hashed from its text, and its detail computed once per
distinct text (:class:`~sidecar.core.prompt_fingerprint.DetailCache`). Pure and total: an odd body
yields a fingerprint with what could be read.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Sequence
from typing import Any

import orjson

from sidecar.core.prompt_fingerprint import (
    MESSAGES,
    SYSTEM,
    TOOLS,
    Breakpoint,
    DetailCache,
    PromptFingerprint,
    Region,
    SystemBlock,
)

_KEY = b'"cache_control"'
_WS = b" \t\r\n"
_MAX_NESTING = 4
_NAME_LIMIT = 64  # tool names are kept (a detail names them); a longer one is cut


def _skip(data: bytes | memoryview, i: int, step: int = 1) -> int:
    while 0 <= i < len(data) and data[i] in _WS:
        i += step
    return i


def strip_markers(data: bytes, start: int = 0) -> bytes:
    """``data[start:]`` without its ``"cache_control": {...}`` members (and the comma that joined each).

    A marker object never nests braces; a quote inside a JSON string is escaped, so ``"cache_control"``
    followed by ``:`` is always a key. Anything unexpected is left in place.
    """
    out: list[bytes] = []
    pos = start
    i = data.find(_KEY, pos)
    while i >= 0:
        j = _skip(data, i + len(_KEY))
        if j >= len(data) or data[j] != 0x3A:  # ':' — a string value, not a key
            i = data.find(_KEY, i + 1)
            continue
        j = _skip(data, j + 1)
        if data.startswith(b"null", j):
            end = j + 4
        elif j < len(data) and data[j] == 0x7B:  # '{'
            end = data.find(b"}", j) + 1
        else:
            end = 0
        if end <= 0:
            i = data.find(_KEY, i + 1)
            continue
        cut = i
        back = _skip(data, i - 1, -1)
        if back >= pos and data[back] == 0x2C:  # ',' before: drop it with the member
            cut = back
        else:
            after = _skip(data, end)
            if after < len(data) and data[after] == 0x2C:
                end = after + 1
        out.append(data[pos:cut])
        pos = end
        i = data.find(_KEY, pos)
    out.append(data[pos:])
    return b"".join(out)


def canonical(value: object) -> bytes:
    """``orjson`` JSON of ``value`` without markers; raises ``TypeError`` for unserialisable values."""
    data = orjson.dumps(value)
    return strip_markers(data) if _KEY in data else data


def _region(items: Sequence[object], closed: bool) -> Region:
    parts = [canonical(item) for item in items]
    hashes = array("I", map(zlib.crc32, parts))
    joined = b"[" + b",".join(parts) + (b"]" if closed else b"")
    return Region(hashes, zlib.crc32(joined), len(joined))


def _array_start(body: bytes, key: bytes) -> int | None:
    """Offset of the ``[`` opening the value of the first ``"key":`` in ``body`` (None if none).

    Not necessarily the top-level key; the caller trusts it only when the bytes that follow match a
    summary of the previous call's list, which a nested key cannot do by accident.
    """
    i = body.find(key)
    if i < 0:
        return None
    j = _skip(body, i + len(key))
    if j >= len(body) or body[j] != 0x3A:
        return None
    j = _skip(body, j + 1)
    return j if j < len(body) and body[j] == 0x5B else None


def _extend(prev: Region, tail: bytes | memoryview, new: Sequence[object], stripped: bool) -> Region | None:
    """``prev`` grown by ``new`` items, when ``tail`` holds exactly their ``orjson`` bytes after it
    (without markers when ``stripped``, else as sent)."""
    hashes, crc, pos = array("I", prev.hashes), prev.crc, prev.length
    length = prev.length  # of the summary, which leaves markers out; ``pos`` walks ``tail``
    for item in new:
        raw = orjson.dumps(item)
        data = strip_markers(raw) if _KEY in raw else raw
        sent = data if stripped else raw
        sep = b"," if hashes else b""
        end = pos + len(sep) + len(sent)
        if tail[pos : pos + len(sep)] != sep or tail[pos + len(sep) : end] != sent:
            return None
        crc = zlib.crc32(data, zlib.crc32(sep, crc))
        hashes.append(zlib.crc32(data))
        pos, length = end, length + len(sep) + len(data)
    if tail[pos : pos + 1] != b"]":
        return None
    return Region(hashes, crc, length)


def _resent(body: bytes, prev: Region, key: bytes) -> tuple[bytes | memoryview, bool] | None:
    """The bytes from the list's ``[`` on, when its first ``prev.length`` bytes are the previous list:
    as sent (a history whose older markers are gone, as most clients send it), else without markers."""
    start = _array_start(body, key)
    if start is None:
        return None
    raw = memoryview(body)[start:]
    if len(raw) > prev.length and zlib.crc32(raw[: prev.length]) == prev.crc:
        return raw, False
    if body.find(_KEY, start, start + prev.length + 4096) < 0:
        return None  # no marker there: the history itself changed
    stripped = strip_markers(body, start)
    if len(stripped) > prev.length and zlib.crc32(stripped[: prev.length]) == prev.crc:
        return stripped, True
    return None


def messages_region(
    messages: Sequence[object], body: bytes, prev: Region | None
) -> tuple[Region | None, int | None]:
    """The messages' region, and from which message on markers may sit (None: anywhere).

    The fast path applies when ``body`` resends ``prev``'s history unchanged: then only new messages are
    serialised, and when the old ones came without markers, only the new ones can hold any.
    """
    try:
        if prev is not None and prev.count <= len(messages):
            found = _resent(body, prev, b'"messages"')
            if found is not None:
                tail, stripped = found
                grown = _extend(prev, tail, messages[prev.count :], stripped)
                if grown is not None:
                    return grown, None if stripped else prev.count
        return _region(messages, closed=False), None
    except (TypeError, orjson.JSONEncodeError):
        return None, None


def tools_region(tools: Sequence[object], prev: Region | None) -> Region | None:
    """The tools' region (``]`` included); ``prev`` itself when the tools are unchanged. Tools are
    serialised whole (one ``orjson`` call; they are small next to a history) and split only on change."""
    try:
        whole = canonical(tools)
        if prev is not None and prev.count == len(tools) and zlib.crc32(whole) == prev.crc:
            return prev
        return _region(tools, closed=True)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _ttl(marker: object) -> str | None:
    if not isinstance(marker, dict):
        return None
    return "1h" if marker.get("ttl") == "1h" else "5m"


def _system_blocks(
    system: object, prev: Sequence[SystemBlock], details: DetailCache
) -> tuple[SystemBlock, ...]:
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
    if not isinstance(blocks, list):
        return ()
    out: list[SystemBlock] = []
    for i, block in enumerate(blocks):
        text = block.get("text") if isinstance(block, dict) else None
        plain = isinstance(text, str) and all(k in ("type", "text", "cache_control") for k in block)
        try:
            key = hash(text) if plain else zlib.crc32(canonical(block))
        except (TypeError, orjson.JSONEncodeError):
            key = -1
        if i < len(prev) and prev[i].key == key:
            out.append(prev[i])  # unchanged: its detail is already known
        else:
            detail = details.get(key, text) if isinstance(text, str) and text else None
            out.append(SystemBlock(key, detail))
    return tuple(out)


def _listed(items: object) -> list[Any]:
    return items if isinstance(items, list) else []


def _nested_marker(block: dict[str, Any], depth: int) -> str | None:
    """The TTL of a marker on ``block`` or on content nested in it (a ``tool_result``'s blocks)."""
    ttl = _ttl(block.get("cache_control"))
    if ttl is not None or depth >= _MAX_NESTING:
        return ttl
    for inner in _listed(block.get("content")):
        if isinstance(inner, dict) and (found := _nested_marker(inner, depth + 1)) is not None:
            return found
    return None


def _message_markers(messages: list[Any], first: int, wanted: int | None) -> list[Breakpoint]:
    """Markers in ``messages[first:]``, walking back from the newest (where clients put them) and
    stopping once ``wanted`` are found, so a long history is not walked for markers near its end."""
    found: list[Breakpoint] = []
    for i in range(len(messages) - 1, first - 1, -1):
        if wanted is not None and len(found) >= wanted:
            break
        message = messages[i]
        content = message.get("content") if isinstance(message, dict) else None
        blocks = _listed(content)
        for j in range(len(blocks) - 1, -1, -1):
            block = blocks[j]
            if isinstance(block, dict) and (ttl := _nested_marker(block, 0)) is not None:
                found.append(Breakpoint(MESSAGES, i, j, ttl))
    return found


def _breakpoints(
    doc: dict[str, Any], body: bytes, added: int, scan_from: int | None
) -> tuple[Breakpoint, ...]:
    """Every marker of the forwarded request: the client's, the ``added`` ones the planner put on tools
    or system (it changed ``doc`` in place), and the top-level automatic one. ``scan_from``: the first
    message that may hold one (None: count them in ``body`` and walk back until all are found)."""
    out: list[Breakpoint] = []
    for i, tool in enumerate(_listed(doc.get("tools"))):
        if isinstance(tool, dict) and (ttl := _ttl(tool.get("cache_control"))) is not None:
            out.append(Breakpoint(TOOLS, i, 0, ttl))
    for j, block in enumerate(_listed(doc.get("system"))):
        if isinstance(block, dict) and (ttl := _ttl(block.get("cache_control"))) is not None:
            out.append(Breakpoint(SYSTEM, j, 0, ttl))
    messages = _listed(doc.get("messages"))
    top = _ttl(doc.get("cache_control"))
    if scan_from is not None:
        out.extend(_message_markers(messages, scan_from, None))
    elif _KEY in body:
        wanted = body.count(_KEY) - (len(out) - added) - (top is not None)
        if wanted > 0:
            out.extend(_message_markers(messages, 0, wanted))
    if top is not None and messages:
        last = messages[-1]
        content = last.get("content") if isinstance(last, dict) else None
        out.append(Breakpoint(MESSAGES, len(messages) - 1, max(0, len(_listed(content)) - 1), top))
    return tuple(sorted(set(out)))


def fingerprint(
    doc: dict[str, Any],
    body: bytes,
    *,
    model: str | None,
    prev: PromptFingerprint | None,
    details: DetailCache,
    added: int = 0,
) -> PromptFingerprint:
    """The fingerprint of one request. ``doc`` is the body as forwarded (markers the planner ``added``
    included), ``body`` the client's bytes; ``prev`` the session's previous fingerprint, reused where the
    prefix repeats. Never raises on an odd body: what cannot be read is left out."""
    tools = _listed(doc.get("tools"))
    names = tuple(str(t.get("name"))[:_NAME_LIMIT] if isinstance(t, dict) else "?" for t in tools)
    messages, scan_from = messages_region(
        _listed(doc.get("messages")), body, prev.messages if prev is not None else None
    )
    return PromptFingerprint(
        model=model,
        tool_names=names,
        tools=tools_region(tools, prev.tools if prev is not None else None),
        system=_system_blocks(doc.get("system"), prev.system if prev is not None else (), details),
        messages=messages,
        breakpoints=_breakpoints(doc, body, added, scan_from),
    )
