"""A stored answer, its bytes in a backend, and the answer a hit sends (SPEC R-RC-3).

An entry keeps the body as the client received it, decoded of any ``content-encoding``: the SSE bytes of a
stream (replayed byte for byte to a stream request) or the JSON body. A request of the other kind gets
the other form, rendered by :mod:`sidecar.sansio.replay`, where the route allows it (``render``). A
Bedrock event stream (``EVENTSTREAM``) is only ever replayed as it was, to a stream request. Stored form:
one JSON header line, then the body. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sidecar.core.usage import Usage
from sidecar.sansio.messages import MessageSummary
from sidecar.sansio.replay import message_from_sse, render_sse

SSE, JSON, EVENTSTREAM = "sse", "json", "eventstream"
_KINDS = (SSE, JSON, EVENTSTREAM)
SSE_TYPE = b"text/event-stream; charset=utf-8"
JSON_TYPE = b"application/json"
CACHE_HEADER = b"x-sidecar-cache"
AGE_HEADER = b"x-sidecar-cache-age"


class EntryError(ValueError):
    """Stored bytes that are not an entry (another version's, or damaged): treated as a miss."""


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # SSE | JSON | EVENTSTREAM
    status: int
    content_type: bytes
    body: bytes
    app: str  # the app that stored it (purge by app)
    created_at: float  # unix seconds
    expires_at: float
    cost_usd: float | None  # what the call that stored it cost: a hit's savings
    model: str | None  # the price table's id of that call (the savings metric's label)
    stop_reason: str | None
    tool_use_ids: tuple[str, ...] = ()
    tool_uses: tuple[str, ...] = ()

    def encode(self) -> bytes:
        head = {
            "v": 1,
            "kind": self.kind,
            "status": self.status,
            "content_type": self.content_type.decode("latin-1"),
            "app": self.app,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "cost_usd": self.cost_usd,
            "model": self.model,
            "stop_reason": self.stop_reason,
            "tool_use_ids": list(self.tool_use_ids),
            "tool_uses": list(self.tool_uses),
        }
        return orjson.dumps(head) + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        head_bytes, sep, body = data.partition(b"\n")
        try:
            head = orjson.loads(head_bytes)
            if not sep or head.get("v") != 1 or head["kind"] not in _KINDS:
                raise EntryError("not a version 1 entry")
            return cls(
                kind=head["kind"],
                status=int(head["status"]),
                content_type=str(head["content_type"]).encode("latin-1"),
                body=body,
                app=str(head["app"]),
                created_at=float(head["created_at"]),
                expires_at=float(head["expires_at"]),
                cost_usd=None if head["cost_usd"] is None else float(head["cost_usd"]),
                model=head["model"],
                stop_reason=head["stop_reason"],
                tool_use_ids=tuple(head["tool_use_ids"]),
                tool_uses=tuple(head["tool_uses"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EntryError(f"unreadable entry: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a hit sends: the status, headers and body, and the summary its event records (no usage: a
    hit makes no model call; its ``tool_use`` ids start the tool-latency clock)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    summary: MessageSummary
    entry: Entry


def answer_for(entry: Entry, stream: bool, now: float, render: bool = True) -> Answer | None:
    """The answer to a request of the given kind, or ``None`` when the entry cannot take that form
    (``render`` False: only the stored form is ever sent)."""
    if stream == (entry.kind != JSON):
        body, content_type = entry.body, entry.content_type
    elif not render or entry.kind == EVENTSTREAM:
        return None
    elif stream:
        try:
            message = orjson.loads(entry.body)
        except ValueError:
            return None
        if not isinstance(message, dict):
            return None
        body, content_type = render_sse(message), SSE_TYPE
    else:
        rendered = message_from_sse(entry.body)
        if rendered is None:
            return None
        body, content_type = orjson.dumps(rendered), JSON_TYPE
    headers = [(b"content-type", content_type)]
    if not stream:
        headers.append((b"content-length", str(len(body)).encode()))
    age = max(0, int(now - entry.created_at))
    headers += [(CACHE_HEADER, b"hit"), (AGE_HEADER, str(age).encode())]
    summary = MessageSummary(
        usage=Usage(),
        stop_reason=entry.stop_reason,
        tool_use_ids=list(entry.tool_use_ids),
        tool_uses=list(entry.tool_uses),
        complete=True,
    )
    return Answer(entry.status, headers, body, summary, entry)
