"""Inspection of a client request: what accounting needs to know, read from the original bytes.

Pure and tolerant: any body (not JSON, wrong types, huge) yields a ``RequestInfo`` and never raises.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

CHAT = "chat"
COUNT_TOKENS = "count_tokens"
BATCHES = "batches"
MODELS = "models"
FILES = "files"
COMPLETE = "complete"
OTHER = "other"
# Model ids are short; a longer value is client junk that would otherwise be copied into every log
# line, row and span of the call.
_MAX_MODEL = 256


def classify_path(path: str) -> str:
    """Operation name for a ``/v1/...`` path (a closed set, usable as a metric label)."""
    if path == "/v1/messages":
        return CHAT
    if path.startswith("/v1/messages/count_tokens"):
        return COUNT_TOKENS
    if path.startswith("/v1/messages/batches"):
        return BATCHES
    if path.startswith("/v1/models"):
        return MODELS
    if path.startswith("/v1/files"):
        return FILES
    if path == "/v1/complete":
        return COMPLETE
    return OTHER


@dataclass(frozen=True, slots=True)
class RequestInfo:
    parsed: bool = False  # the body was a JSON object
    model: str | None = None
    stream: bool = False
    system_hash: str | None = None
    metadata_user_id: str | None = None
    # (tool_use_id, is_error) of tool_result blocks in the trailing user turn(s): the only place a
    # new result can appear; older ones are history being resent.
    tool_results: tuple[tuple[str, bool], ...] = ()
    fingerprint: str | None = None  # hash of system prompt + first user message
    max_tokens: int | None = None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _fingerprint(system: bytes, first_user: bytes) -> str:
    # Hashed in parts: joining them first would copy a large first message once more.
    h = hashlib.blake2b(system, digest_size=8)
    h.update(b"\x1f")
    h.update(first_user)
    return h.hexdigest()


def _system_text(system: object) -> bytes | None:
    """The system prompt's text, independent of cache markers (so adding one keeps the hash)."""
    if isinstance(system, str):
        return system.encode("utf-8", "surrogatepass")
    if isinstance(system, list):
        parts = [b.get("text") for b in system if isinstance(b, dict)]
        return "\x1e".join(p for p in parts if isinstance(p, str)).encode("utf-8", "surrogatepass")
    return None


def _trailing_tool_results(messages: list[object]) -> tuple[tuple[str, bool], ...]:
    found: list[tuple[str, bool]] = []
    for msg in reversed(messages):
        if not isinstance(msg, dict):
            continue
        if msg.get("role") == "assistant":
            break
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tool_use_id = block.get("tool_use_id")
                if isinstance(tool_use_id, str):
                    found.append((tool_use_id, block.get("is_error") is True))
    found.reverse()
    return tuple(found)


def _first_user(messages: list[object]) -> object:
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "user":
            return msg.get("content")
    return None


def parse_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, too deep, or not an object). Never raises."""
    try:
        doc = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def inspect_body(body: bytes) -> RequestInfo:
    """Read a Messages-shaped request body. Non-JSON or non-object bodies give an unparsed info."""
    return inspect_doc(parse_object(body))


def inspect_doc(doc: dict[str, Any] | None) -> RequestInfo:
    """:func:`inspect_body` for a body already parsed by :func:`parse_object` (parse once, read twice)."""
    if doc is None:
        return RequestInfo()
    model = doc.get("model")
    messages = doc.get("messages")
    messages = messages if isinstance(messages, list) else []
    system_bytes = _system_text(doc.get("system"))
    metadata = doc.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    max_tokens = doc.get("max_tokens")
    fingerprint = None
    first_user = _first_user(messages)
    if first_user is not None or system_bytes:
        try:
            fingerprint = _fingerprint(system_bytes or b"", orjson.dumps(first_user))
        except (TypeError, orjson.JSONEncodeError):
            fingerprint = None
    return RequestInfo(
        parsed=True,
        model=model[:_MAX_MODEL] if isinstance(model, str) else None,
        stream=doc.get("stream") is True,
        system_hash=_digest(system_bytes) if system_bytes else None,
        metadata_user_id=user_id if isinstance(user_id, str) else None,
        tool_results=_trailing_tool_results(messages),
        fingerprint=fingerprint,
        max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
    )
