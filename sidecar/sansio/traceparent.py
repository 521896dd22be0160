"""W3C ``traceparent`` parsing and formatting (https://www.w3.org/TR/trace-context/). Pure."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


@dataclass(frozen=True, slots=True)
class TraceRef:
    trace_id: str  # 32 hex
    span_id: str  # 16 hex: the sidecar's own span for the call
    parent_span_id: str | None  # the client's span, when it sent a traceparent
    flags: str = "01"

    def header(self) -> bytes:
        """The ``traceparent`` to send upstream: the sidecar's span is the parent of the upstream call."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}".encode()


def parse(value: bytes | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` of a valid traceparent, else None (all-zero ids are invalid)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == b"ff":
        return None
    trace_id, span_id, flags = (g.decode() for g in match.group(2, 3, 4))
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, flags


def new_ref(incoming: bytes | None) -> TraceRef:
    """The sidecar's span for a call: a child of the client's span, or the root of a new trace."""
    parsed = parse(incoming)
    span_id = os.urandom(8).hex()
    if parsed is None:
        return TraceRef(os.urandom(16).hex(), span_id, None)
    trace_id, parent, flags = parsed
    return TraceRef(trace_id, span_id, parent, flags)
