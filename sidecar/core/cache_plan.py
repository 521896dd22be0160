"""Where the sidecar adds prompt-cache breakpoints (SPEC R-PC-0, R-PC-1): a pure planner, no I/O.

Two positions are considered, in the API's prefix order ``tools`` → ``system`` → ``messages``: the last
tool definition (deferred tools are skipped: they are not part of the prefix) and the end of the system
prompt (a string ``system`` becomes a one-block list, since a string cannot carry a marker). Rules:

* the client's markers are never changed, and they count toward the API's limit of 4 — block markers
  anywhere (tools, system, message content, nested ``tool_result``/document content) count, which may
  over-count but never makes a request the API rejects;
* a position the client marked is left alone; when slots are short the system position wins, because
  its prefix includes the tools;
* TTLs must not increase along the prefix (a ``1h`` marker after a ``5m`` one is a 400): an added marker
  takes the configured TTL, raised to ``1h`` when a later client marker is ``1h`` (the prefix before it is
  written at the 1h rate anyway) or lowered to ``5m`` when an earlier one is ``5m``;
* markers never go on thinking, redacted-thinking or empty text blocks;
* a client that uses the top-level ``cache_control`` (automatic caching) already caches the last
  cacheable block; how it mixes with block markers is not documented, so such a body is left alone;
* a body whose own markers the API would reject (malformed, misplaced, >4, bad TTL order) is left
  alone, so the client gets the same answer it would without the sidecar.

Mode ``auto`` adds a marker only when the estimated prefix reaches the model's minimum cacheable length;
``force`` skips that estimate; ``off`` returns at once. The estimate is ``ceil(bytes / 4)`` per block of
the canonical JSON (sorted keys, no spaces, markers left out), summed over non-deferred tools and system
blocks up to the position. It is about right for English prose and under-estimates code, JSON and
non-Latin text; the API also adds hidden tool-use instructions — so it errs towards not marking.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.core.cache_markers import RANK, ClientInvalid, client_markers

MODES = ("auto", "off", "force")
TTLS = ("5m", "1h")
MAX_BREAKPOINTS = 4
DEFAULT_MIN_TOKENS = 1024  # the most common minimum; used when the model's is unknown
_TTL_OF_RANK = {1: "5m", 2: "1h"}
# Reasons reported when nothing was added, most informative first.
_REASON_ORDER = ("no_slots", "ttl_conflict", "below_minimum", "already_marked")


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the planner did. ``positions``/``ttls`` list the added markers in prefix order.

    ``reason``: ``added`` | ``off`` | ``invalid_mode`` | ``not_json`` | ``nothing_to_mark`` |
    ``already_marked`` | ``below_minimum`` | ``no_slots`` | ``ttl_conflict`` | ``client_top_level`` |
    ``client_invalid`` | ``too_deep``. ``prefix_tokens`` is the estimate for the longest added prefix
    (0 if none).
    """

    changed: bool
    markers_added: int
    positions: tuple[str, ...]
    reason: str
    ttls: tuple[str, ...] = ()
    prefix_tokens: int = 0


@dataclass(frozen=True, slots=True)
class _Candidate:
    section: str  # "tools" | "system"
    index: int  # list index; -1 for a string system prompt
    ordinal: int  # position in prefix order, comparable with client markers
    label: str
    tokens: int  # prefix estimate up to and including this block (0 when not computed)


_UNCHANGED: dict[str, CachePlan] = {}


def _unchanged(reason: str) -> CachePlan:
    plan = _UNCHANGED.get(reason)  # plans are immutable: one per reason (a closed set) is enough
    if plan is None:
        plan = _UNCHANGED[reason] = CachePlan(False, 0, (), reason)
    return plan


def block_tokens(block: object) -> int:
    """The estimate for one block: ``ceil(bytes / 4)`` of its canonical JSON without ``cache_control``."""
    if isinstance(block, dict) and "cache_control" in block:
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return (len(orjson.dumps(block, option=orjson.OPT_SORT_KEYS)) + 3) // 4


def _deferred(tool: object) -> bool:
    return isinstance(tool, dict) and tool.get("defer_loading") is True


def _tools_candidate(tools: list[Any], reasons: list[str]) -> _Candidate | None:
    for i in range(len(tools) - 1, -1, -1):
        tool = tools[i]
        if _deferred(tool):
            continue
        if not isinstance(tool, dict):
            return None
        if tool.get("cache_control") is not None:
            reasons.append("already_marked")
            return None
        label = "tools[-1]" if i == len(tools) - 1 else f"tools[{i}]"
        return _Candidate("tools", i, i, label, 0)
    return None


def _system_candidate(system: object, base: int, reasons: list[str]) -> _Candidate | None:
    if isinstance(system, str):
        return _Candidate("system", -1, base, "system[-1]", 0) if system else None
    if not isinstance(system, list):
        return None
    for j in range(len(system) - 1, -1, -1):
        block = system[j]
        if not isinstance(block, dict) or block.get("type") != "text":
            return None
        if block.get("cache_control") is not None:
            reasons.append("already_marked")
            return None
        if isinstance(block.get("text"), str) and block["text"]:
            label = "system[-1]" if j == len(system) - 1 else f"system[{j}]"
            return _Candidate("system", j, base + j, label, 0)
    return None


def _candidates(doc: dict[str, Any], estimate: bool, reasons: list[str]) -> list[_Candidate]:
    """The unmarked positions in prefix order, with prefix estimates when ``estimate``."""
    raw_tools = doc.get("tools")
    tools: list[Any] = raw_tools if isinstance(raw_tools, list) else []
    system = doc.get("system")
    out = []
    found = _tools_candidate(tools, reasons)
    if found is not None:
        out.append(found)
    found = _system_candidate(system, len(tools), reasons)
    if found is not None:
        out.append(found)
    if not estimate or not out:
        return out
    tool_tokens = [0 if _deferred(t) else block_tokens(t) for t in tools]
    for i, c in enumerate(out):
        if c.section == "tools":
            tokens = sum(tool_tokens[: c.index + 1])
        else:
            blocks = system if isinstance(system, list) else [{"type": "text", "text": system}]
            upto = len(blocks) if c.index < 0 else c.index + 1
            tokens = sum(tool_tokens) + sum(block_tokens(b) for b in blocks[:upto])
        out[i] = _Candidate(c.section, c.index, c.ordinal, c.label, tokens)
    return out


def _assign_ttls(
    chosen: list[_Candidate], markers: list[tuple[int, int]], ttl: str, reasons: list[str]
) -> list[tuple[_Candidate, str]]:
    """Give each chosen position a TTL keeping ranks non-increasing along the prefix, or drop it."""
    out: list[tuple[_Candidate, str]] = []
    ceiling = 2
    for c in chosen:  # prefix order
        before = [rank for ordinal, rank in markers if ordinal < c.ordinal]
        after = [rank for ordinal, rank in markers if ordinal > c.ordinal]
        hi = min([ceiling, *before])
        lo = max(after, default=1)
        if lo > hi:
            reasons.append("ttl_conflict")
            continue
        rank = min(max(RANK[ttl], lo), hi)
        ceiling = rank
        out.append((c, _TTL_OF_RANK[rank]))
    return out


def _may_have_markers(body: bytes) -> bool:
    """False only when ``body`` certainly holds no ``cache_control`` key: the name never appears, and no
    ``\\u`` escape could spell it differently. Skips walking every message of a long conversation."""
    return b'"cache_control"' in body or b"\\u" in body


def _plan(
    doc: dict[str, Any], mode: str, ttl: str, min_tokens: int | None, body: bytes
) -> tuple[list[tuple[_Candidate, str]], CachePlan]:
    if doc.get("cache_control") is not None:
        return [], _unchanged("client_top_level")
    reasons: list[str] = []
    candidates = _candidates(doc, mode == "auto", reasons)
    if mode == "auto":
        minimum = DEFAULT_MIN_TOKENS if min_tokens is None else min_tokens
        if any(c.tokens < minimum for c in candidates):
            reasons.append("below_minimum")
        candidates = [c for c in candidates if c.tokens >= minimum]
    if not candidates:
        # Nothing to add: the client's markers (a walk over every message of a long conversation) do
        # not matter, and the body goes out as sent.
        return [], _unchanged(next((r for r in _REASON_ORDER if r in reasons), "nothing_to_mark"))
    try:
        markers = client_markers(doc) if _may_have_markers(body) else []
    except ClientInvalid:
        return [], _unchanged("client_invalid")
    ranks = [rank for _, rank in markers]
    if len(ranks) > MAX_BREAKPOINTS or any(a < b for a, b in itertools.pairwise(ranks)):
        return [], _unchanged("client_invalid")
    free = MAX_BREAKPOINTS - len(markers)
    if len(candidates) > free:
        reasons.append("no_slots")
        candidates = candidates[len(candidates) - free :] if free > 0 else []
    placed = _assign_ttls(candidates, markers, ttl, reasons)
    if not placed:
        reason = next((r for r in _REASON_ORDER if r in reasons), "nothing_to_mark")
        return [], _unchanged(reason)
    plan = CachePlan(
        changed=True,
        markers_added=len(placed),
        positions=tuple(c.label for c, _ in placed),
        reason="added",
        ttls=tuple(t for _, t in placed),
        prefix_tokens=max(c.tokens for c, _ in placed),
    )
    return placed, plan


def _marker(ttl: str) -> dict[str, str]:
    # The API's default TTL is 5m: leave it implicit, as most clients do.
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _apply(doc: dict[str, Any], placed: list[tuple[_Candidate, str]]) -> None:
    for c, ttl in placed:
        if c.section == "tools":
            doc["tools"][c.index]["cache_control"] = _marker(ttl)
        elif c.index < 0:
            doc["system"] = [{"type": "text", "text": doc["system"], "cache_control": _marker(ttl)}]
        else:
            doc["system"][c.index]["cache_control"] = _marker(ttl)


def plan_and_apply(
    body: bytes,
    *,
    model: str | None,
    mode: str,
    ttl: str,
    min_tokens: int | None,
    doc: dict[str, Any] | None = None,
) -> tuple[bytes, CachePlan]:
    """Plan breakpoints for a Messages request body and return ``(body to forward, plan)``.

    When nothing changes the *same* ``body`` object is returned (forward the client's bytes); otherwise
    a new body (``orjson.dumps`` of the modified document, key order kept). ``min_tokens`` is the model's
    minimum cacheable length (``None``: unknown, 1024 is assumed); ``model`` is not used yet (the caller
    resolves the minimum). ``doc`` is ``body`` already parsed (a JSON object), when the caller has it:
    it is used, and changed in place when markers are added, instead of parsing ``body`` again. Never
    raises: a bad mode, a non-JSON body or an unexpected shape leaves the body as it is.
    """
    if mode == "off":
        return body, _unchanged("off")
    if mode not in MODES or ttl not in TTLS:
        return body, _unchanged("invalid_mode")
    if b'"system"' not in body and b'"tools"' not in body:
        return body, _unchanged("nothing_to_mark")  # cheap exit: no position to mark
    if doc is None:
        try:
            doc = orjson.loads(body)
        except (orjson.JSONDecodeError, RecursionError):
            return body, _unchanged("not_json")
    if not isinstance(doc, dict):
        return body, _unchanged("not_json")
    try:
        placed, plan = _plan(doc, mode, ttl, min_tokens, body)
    except (orjson.JSONEncodeError, RecursionError):
        # A block nested past the serializer's depth limit (orjson: 255) cannot be estimated; the API
        # decides what such a body means, so it goes out as sent.
        return body, _unchanged("too_deep")
    if not placed:
        return body, plan
    _apply(doc, placed)
    try:
        return orjson.dumps(doc), plan
    except (TypeError, orjson.JSONEncodeError):
        return body, _unchanged("not_json")
