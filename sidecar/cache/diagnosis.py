"""Why the cache missed, per session (SPEC R-CD-1, R-CD-2, R-CD-4): state, and asking the API for its view.

For each messages call, :meth:`CacheDiagnoser.probe` (before forwarding, while the parsed body is at hand)
fingerprints the request against the session's previous call and notes the first difference;
:meth:`CacheDiagnoser.finish` (once the call is priced) turns that and the usage into the event's verdict
and keeps this call as the session's previous one. Per session the state is one fingerprint — O(blocks)
hashes, never text — in an LRU of at most ``max_sessions``. Runs on the event loop only.

``SIDECAR_CACHE_DIAGNOSTICS``: ``passive`` (default) records the API's own diagnosis when a response
carries one; ``api`` also opts every call in — ``diagnostics: {"previous_message_id": …}`` added at the
end of the body (the session's previous response id, ``null`` on its first call) and the
``cache-diagnosis-2026-04-07`` beta — unless the client set ``diagnostics`` itself; ``off`` turns both
diagnoses off. Like the prompt-cache planner, a body is re-sent as the client's bytes unless changed, and
the change here only appends one member to the top-level object.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.core.cache_diagnosis import Diagnosis, PreviousCall, as_fields, diagnose
from sidecar.core.events import CallEvent
from sidecar.core.prefix_changes import Change, first_change
from sidecar.core.pricing import PriceTable
from sidecar.core.prompt_fingerprint import DetailCache, PromptFingerprint
from sidecar.sansio.prompt_prefix import fingerprint

MODES = ("passive", "api", "off")
BETA = b"cache-diagnosis-2026-04-07"
BETA_HEADER = b"anthropic-beta"
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(slots=True)
class CacheProbe:
    """One call's side of the diagnosis, made before it is forwarded."""

    session_id: str
    fingerprint: PromptFingerprint
    prev: PreviousCall | None
    change: Change | None
    sent_at: float  # the diagnoser's clock


def _blocks_in(messages: list[Any]) -> Callable[[int], int]:
    def count(i: int) -> int:
        message = messages[i] if 0 <= i < len(messages) else None
        content = message.get("content") if isinstance(message, dict) else None
        return len(content) if isinstance(content, list) else 1

    return count


def _system_texts(system: object) -> list[str | None]:
    if isinstance(system, str):
        return [system]
    if not isinstance(system, list):
        return []
    return [b.get("text") if isinstance(b, dict) and isinstance(b.get("text"), str) else None for b in system]


class CacheDiagnoser:
    """Per-session fingerprints and verdicts. ``clock`` gives unix seconds (idle time is measured on it)."""

    def __init__(
        self,
        mode: str = "passive",
        max_sessions: int = 100_000,
        *,
        clock: Callable[[], float] = time.time,
        details: DetailCache | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"cache diagnostics mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self._max = max_sessions
        self._clock = clock
        self.details = details or DetailCache()
        self._sessions: OrderedDict[str, PreviousCall] = OrderedDict()

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def probe(
        self, session_id: str, doc: dict[str, Any], body: bytes, model: str | None, added: int
    ) -> CacheProbe | None:
        """Fingerprint a messages request (``doc`` as it will be forwarded, ``body`` as the client sent
        it; ``added`` markers the planner put in ``doc``) and compare it with the session's last call."""
        if self.mode == "off" or not session_id:
            return None
        prev = self._sessions.get(session_id)
        if prev is not None:
            self._sessions.move_to_end(session_id)
        fp = fingerprint(
            doc, body, model=model, prev=prev.fingerprint if prev else None, details=self.details, added=added
        )
        change = None
        if prev is not None:
            messages = doc.get("messages")
            change = first_change(
                prev.fingerprint,
                fp,
                system_texts=_system_texts(doc.get("system")),
                blocks_in=_blocks_in(messages if isinstance(messages, list) else []),
            )
        return CacheProbe(session_id, fp, prev, change, self._clock())

    def opt_in(
        self, probe: CacheProbe | None, doc: dict[str, Any], body: bytes, headers: Headers
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """In ``api`` mode: the body with ``diagnostics`` appended and the beta header to send, unless the
        client asked for a diagnosis itself. Otherwise ``(body, [])`` — the same bytes object."""
        if self.mode != "api" or "diagnostics" in doc:
            return body, []
        end = body.rstrip().rfind(b"}")
        if end <= 0 or not body.lstrip().startswith(b"{"):
            return body, []
        previous = probe.prev.response_id if probe is not None and probe.prev is not None else None
        member = b'"diagnostics":{"previous_message_id":' + orjson.dumps(previous) + b"}"
        inner = body[body.find(b"{") + 1 : end].strip()
        new = body[:end].rstrip() + (b"," if inner else b"") + member + body[end:]
        beta = next((v for n, v in headers if n == BETA_HEADER), None)
        if beta is None:
            return new, [(BETA_HEADER, BETA)]
        if BETA in (t.strip() for t in beta.split(b",")):
            return new, []
        return new, [(BETA_HEADER, beta + b"," + BETA)]

    def finish(
        self, probe: CacheProbe, event: CallEvent, prices: PriceTable, response_id: str | None
    ) -> Diagnosis | None:
        """Fill ``event``'s verdict (a successful call only) and keep the call as the session's last;
        ``response_id`` is its answer's message id (what the next call names in ``api`` mode)."""
        if not (200 <= event.status < 300 and event.outcome == "ok"):
            return None
        usage = event.usage
        verdict = diagnose(
            probe.prev,
            probe.change,
            usage,
            started_at=probe.sent_at,
            prices=prices,
            model=event.model_canonical or event.model,
            priced_at=event.started_at,
        )
        for name, value in as_fields(verdict).items():
            setattr(event, name, value)
        cached = usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        self._remember(probe, PreviousCall(probe.fingerprint, cached, self._clock(), response_id))
        return verdict

    def _remember(self, probe: CacheProbe, call: PreviousCall) -> None:
        self._sessions[probe.session_id] = call
        self._sessions.move_to_end(probe.session_id)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
