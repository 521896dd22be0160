"""One call's part in the response cache: the answer to replay (a hit), or the copy of the answer to
keep (a call that goes upstream and may store what it gets)."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.respcache.config import Decision
from sidecar.respcache.entry import CACHE_HEADER, Answer
from sidecar.respcache.flight import Flight


class CacheCall:
    """Made by :meth:`sidecar.respcache.service.ResponseCache.begin`; the proxy reads ``answer`` and
    ``response_header``, feeds the decoded answer to :meth:`feed` as it relays it, and calls
    :meth:`close` once the call is over, whatever happened (idempotent)."""

    __slots__ = (
        "_pieces",
        "_size",
        "answer",
        "app",
        "decision",
        "flight",
        "key",
        "max_bytes",
        "release",
        "response_header",
    )

    def __init__(self, key: bytes, decision: Decision, app: str, max_bytes: int) -> None:
        self.key = key
        self.decision = decision
        self.app = app
        self.max_bytes = max_bytes
        self.answer: Answer | None = None
        self.flight: Flight | None = None  # set when this call leads the key's single flight
        self.response_header: tuple[bytes, bytes] | None = (CACHE_HEADER, b"miss")
        self._pieces: list[bytes] | None = [] if decision.store else None
        self._size = 0
        # What ``close`` must undo if the service did not finish the call (its flight, when leading).
        self.release: Callable[[], None] | None = None

    def feed(self, piece: bytes) -> None:
        """A piece of the answer as relayed, decoded of any content-encoding. Past ``max_bytes`` the copy
        is dropped (the answer is not stored); the relay is never affected."""
        pieces = self._pieces
        if pieces is None or not piece:
            return
        self._size += len(piece)
        if self._size > self.max_bytes:
            self._pieces = None
            return
        pieces.append(piece)

    def body(self) -> bytes | None:
        """The whole copy, or ``None`` when there is none (not storing, or too large)."""
        if self._pieces is None:
            return None
        return self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)

    def close(self) -> None:
        """Release what the call holds (its flight, if it still leads one). Idempotent."""
        release, self.release = self.release, None
        self._pieces = None
        if release is not None:
            release()
