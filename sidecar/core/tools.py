"""Tool latency matching (SPEC R-AC-4): from ``tool_use`` blocks to the request that answers them.

A tool's latency runs from the last byte of the response that asked for it to the arrival of the first
request carrying its ``tool_result``. Clients resend the whole history on every turn, so a result id is
matched once and then forgotten: later resends find nothing and are ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from sidecar.core.events import ToolResult

DEFAULT_MAX_PENDING = 200_000


class ToolLatencyMatcher:
    """Pending ``tool_use`` ids per session, waiting for their ``tool_result``.

    Not thread-safe: call it from one thread (the event loop). Every operation is a few dict lookups.
    Memory is bounded by ``max_pending`` entries; past it the oldest pending entries are dropped (their
    tools then go unmeasured, which is counted in :attr:`dropped`).
    """

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.max_pending = max_pending
        # (session_id, tool_use_id) -> (tool name, time of the response's last byte). Insertion order is
        # arrival order, which makes both the cap and expiry pop from the front.
        self._pending: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def remember(self, session_id: str, ids: Sequence[str], names: Sequence[str], at: float) -> None:
        """Record the ``tool_use`` blocks of a finished response; ``at`` is its last byte (unix seconds).

        ``ids`` and ``names`` are parallel; a missing name becomes ``"unknown"``. Empty ids are skipped.
        """
        pending = self._pending
        for i, tool_id in enumerate(ids):
            if not tool_id:
                continue
            key = (session_id, tool_id)
            name = names[i] if i < len(names) and names[i] else "unknown"
            if key in pending:
                pending.move_to_end(key)
            pending[key] = (name, at)
        while len(pending) > self.max_pending:
            pending.popitem(last=False)
            self.dropped += 1

    def match(self, session_id: str, results: Sequence[tuple[str, bool]], at: float) -> list[ToolResult]:
        """Match a request's ``(tool_use_id, is_error)`` results, arriving at ``at``; forget the matched ids.

        Unknown ids (never remembered, another session's, or already matched) yield nothing. A clock
        step backwards gives latency 0, never a negative one.
        """
        out: list[ToolResult] = []
        pending = self._pending
        for tool_id, is_error in results:
            entry = pending.pop((session_id, tool_id), None)
            if entry is not None:
                name, asked_at = entry
                out.append(ToolResult(tool_id, name, max(0.0, at - asked_at), bool(is_error)))
        return out

    def expire(self, now: float, max_age_s: float) -> int:
        """Drop entries remembered more than ``max_age_s`` before ``now``; return how many were dropped.

        Entries are scanned in arrival order and the scan stops at the first young one, so an entry
        remembered out of time order may outlive its age by one cycle; the cap bounds memory anyway.
        """
        cutoff = now - max_age_s
        pending = self._pending
        dropped = 0
        while pending:
            key = next(iter(pending))
            if pending[key][1] >= cutoff:
                break
            del pending[key]
            dropped += 1
        return dropped
