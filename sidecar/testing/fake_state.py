"""Configuration and in-memory state of the fake upstream.

The state lives on the aiohttp application (never in a module global). Handlers run on the server's
event loop while tests read and reset it from their own thread, hence the lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.testing.fake_cache import CacheOutcome, PromptBlock, PromptCache
from sidecar.testing.fake_diagnostics import DiagnosticsMemory, RequestPrint


@dataclass(frozen=True)
class FakeConfig:
    """How the fake behaves by default; request headers can override the timings per call.

    ``first_token_delay_s`` is waited after the response headers are sent and before ``message_start``
    (so every notion of "first token" — first body byte or first content delta — sees it);
    ``chunk_delay_s`` is waited before each later SSE event. A non-streamed answer waits as long as its
    stream would have taken. ``deltas`` is the number of ``text_delta`` events of a text block.
    ``clock`` (seconds) ages cache entries: a test can move it past a TTL instead of waiting.
    """

    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    deltas: int = 3
    require_auth: bool = True
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received: headers keep their order, case and duplicates."""

    method: str
    path: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes
    received_at: float

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StoredFile:
    id: str
    filename: str
    mime_type: str
    content: bytes
    created_at: str

    def metadata(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "file",
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": len(self.content),
            "created_at": self.created_at,
            "downloadable": True,
        }


@dataclass
class StoredBatch:
    batch: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Usage:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class FakeState:
    """Everything the fake remembers; ``reset()`` forgets all of it."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._cache = PromptCache()
        self._diagnostics = DiagnosticsMemory()
        self._failures: dict[str, int] = {}
        self._usage = _Usage()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, StoredBatch] = {}
        self.stopping = False

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._usage.requests += 1

    def requests(self) -> list[RecordedRequest]:
        """A snapshot, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._cache.clear()
            self._diagnostics.clear()
            self._failures.clear()
            self._usage = _Usage()
            self.files.clear()
            self.batches.clear()

    def apply_cache(self, model: str, blocks: list[PromptBlock]) -> CacheOutcome:
        with self._lock:
            return self._cache.apply(model, blocks, self.config.clock())

    def evict_cache(self) -> None:
        """Drop every cache entry, as the API may before a TTL runs out."""
        with self._lock:
            self._cache.clear()

    def diagnose(self, msg_id: str, previous_id: object, cur: RequestPrint) -> dict[str, Any] | None:
        with self._lock:
            return self._diagnostics.answer(msg_id, previous_id, cur)

    def take_failure(self, key: str, times: int) -> bool:
        """True while fewer than ``times`` requests with ``key`` have been failed."""
        with self._lock:
            seen = self._failures.get(key, 0)
            self._failures[key] = seen + 1
            return seen < times

    def add_tokens(self, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            self._usage.input_tokens += input_tokens
            self._usage.output_tokens += output_tokens

    def used(self) -> tuple[int, int, int]:
        """``(requests, input tokens, output tokens)`` served so far, for the rate-limit headers."""
        with self._lock:
            return self._usage.requests, self._usage.input_tokens, self._usage.output_tokens
