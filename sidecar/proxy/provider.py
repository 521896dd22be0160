"""What the proxy needs of a cloud provider (``sidecar.providers`` implements it), and a call's part.

The proxy knows providers only through :class:`CloudProvider`: how a request is addressed, whose
credentials go upstream, which parser reads an answer, what a request id and an error are called, and
the shape of the sidecar's own errors. :class:`CloudCall` is that part of one call's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sidecar.core.cloud import GLOBAL, CloudRoute
from sidecar.core.events import CallEvent
from sidecar.errors import SidecarError
from sidecar.sansio.messages import MessageSummary

Headers = Sequence[tuple[bytes, bytes]]
ErrorParts = tuple[int, list[tuple[bytes, bytes]], bytes]


class StreamReader(Protocol):
    """A sans-I/O reader of a streamed answer (``StreamParser`` for SSE, ``BedrockStreamParser``)."""

    def feed(self, chunk: bytes) -> bool: ...

    def close(self) -> MessageSummary: ...


class CloudProvider(Protocol):
    name: str  # anthropic | bedrock | vertex: the events' ``provider``
    prefix: str  # the path prefix the router dispatches on: /bedrock, /vertex

    def route(self, method: str, raw_path: str, query: str) -> CloudRoute:
        """Read a request's address; raises ``NotFound`` / ``InvalidRequest``."""
        ...

    def messages_body(self, route: CloudRoute, body: bytes) -> bytes | None:
        """The Messages body inside the request body, to inspect (``None``: none readable)."""
        ...

    def client_credential(self, headers: Headers) -> bytes | None:
        """What identifies the caller (fingerprinted, never recorded)."""
        ...

    async def authorize(self, route: CloudRoute, headers: Headers, body: bytes) -> list[tuple[bytes, bytes]]:
        """The headers to send upstream: the client's credentials out, the sidecar's in. Called with
        the final body; the caller sends exactly these headers and that body."""
        ...

    def stream_parser(self, content_type: bytes) -> StreamReader | None: ...

    def request_id(self, headers: Headers, summary: MessageSummary | None) -> str | None: ...

    def error_type(self, headers: Headers) -> str | None:
        """The upstream's own name for an error answer, when it has one."""
        ...

    def error_parts(self, exc: SidecarError) -> ErrorParts:
        """Status, headers and body of the sidecar's own error, in this provider's shape."""
        ...

    def local_answer(self, route: CloudRoute, query: str) -> bytes:
        """The JSON answer to a request the sidecar answers itself (Bedrock's inference profiles)."""
        ...

    def cache_route(self, route: CloudRoute) -> tuple[bytes, bool]:
        """The route part of a response-cache key (SPEC R-RC-2: one model, one operation, however the
        path spelled it) and whether a stored answer may be rendered in the other form (stream/JSON)."""
        ...


@dataclass(frozen=True, slots=True)
class CloudCall:
    """A call on a cloud route: its provider and its address."""

    provider: CloudProvider
    route: CloudRoute

    @property
    def regional(self) -> bool:
        region = self.route.cloud_region
        return region is not None and region != GLOBAL

    def annotate(self, event: CallEvent, headers: Headers, summary: MessageSummary | None) -> None:
        """The event's provider, location, request id and upstream error name."""
        event.provider = self.provider.name
        event.cloud_region = self.route.cloud_region
        event.request_id = self.provider.request_id(headers, summary)
        if event.status >= 400 and event.error_type is None:
            event.error_type = self.provider.error_type(headers)


__all__ = ["CloudCall", "CloudProvider", "ErrorParts", "StreamReader"]
