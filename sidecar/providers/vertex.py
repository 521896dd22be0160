"""Google Vertex AI (SPEC R-CP-2): how a call on ``/vertex/…`` is addressed, authenticated and read.

Routes, after the ``/vertex`` prefix (the client's base URL is ``…/vertex/v1``, as for the real API)::

    POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict         chat, JSON
    POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:streamRawPredict   chat, SSE
    POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/count-tokens:rawPredict

The path goes upstream as the client sent it, to the location's host: ``global`` →
``aiplatform.googleapis.com``, ``us`` / ``eu`` → ``aiplatform.{us,eu}.rep.googleapis.com``, a region
``r`` → ``r-aiplatform.googleapis.com`` (``SIDECAR_VERTEX_URL`` replaces all of them). The location is
checked against the shape of a Google location name, so a client picks a region, never a host. Streams
are Anthropic SSE; the client's credentials are replaced by an OAuth token from ADC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from sidecar.core.cloud import GLOBAL, VERTEX, CloudRoute
from sidecar.errors import InvalidRequest, NotFound, SidecarError, error_response_parts
from sidecar.providers.google_auth import GoogleTokens
from sidecar.sansio import headers as hdr
from sidecar.sansio.messages import MessageSummary, StreamParser
from sidecar.sansio.request import CHAT, COUNT_TOKENS

Headers = Sequence[tuple[bytes, bytes]]
PREFIX = "/vertex"
_PATH = re.compile(
    r"^/vertex(?P<path>/v1/projects/(?P<project>[A-Za-z0-9._:%-]{1,128})/locations/(?P<location>[^/]+)"
    r"/publishers/anthropic/models/(?P<model>[^/]+):(?P<verb>rawPredict|streamRawPredict))$"
)
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_MULTI_REGIONS = {"us", "eu"}
_MAX_MODEL = 256
_CLIENT_AUTH = (b"authorization", b"x-api-key", b"x-goog-api-key")


def location_origin(location: str) -> str:
    """The host serving ``location`` (validated by the caller)."""
    if location == GLOBAL:
        return "https://aiplatform.googleapis.com"
    if location in _MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def parse_route(method: str, raw_path: str, query: str, override: str | None) -> CloudRoute:
    """The route of a ``/vertex/…`` request; ``NotFound`` for anything but the three Anthropic verbs."""
    found = _PATH.match(raw_path) if method == "POST" else None
    if found is None:
        raise NotFound(f"Not found: {method} {raw_path[:200]}")
    location = found["location"]
    if not _LOCATION.match(location):
        raise InvalidRequest(f"Invalid location: {location[:100]!r}")
    try:
        model = unquote(found["model"], errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("The model name is not valid UTF-8.") from None
    if not model or len(model) > _MAX_MODEL:
        raise InvalidRequest("Invalid model name.")
    stream = found["verb"] == "streamRawPredict"
    if model == "count-tokens":
        if stream:
            raise NotFound(f"Not found: {method} {raw_path[:200]}")
        op, model_id = COUNT_TOKENS, None  # the body names the model
    else:
        op, model_id = CHAT, model
    origin = override or location_origin(location)
    target = found["path"] + (f"?{query}" if query else "")
    return CloudRoute(VERTEX, op, model_id, stream, location, origin, target)


@dataclass(frozen=True)
class VertexConfig:
    override: str | None = None  # SIDECAR_VERTEX_URL: scheme and host for every location


class VertexProvider:
    """Everything the proxy needs to know about Vertex AI, behind ``proxy.cloud.CloudProvider``."""

    name = VERTEX
    prefix = PREFIX

    def __init__(self, config: VertexConfig, tokens: GoogleTokens) -> None:
        self.config = config
        self._tokens = tokens

    def route(self, method: str, raw_path: str, query: str) -> CloudRoute:
        return parse_route(method, raw_path, query, self.config.override)

    @staticmethod
    def messages_body(route: CloudRoute, body: bytes) -> bytes | None:
        return body

    @staticmethod
    def client_credential(headers: Headers) -> bytes | None:
        auth = hdr.get(headers, b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer ":
            return auth[7:].strip() or None
        return hdr.get(headers, b"x-api-key") or hdr.get(headers, b"x-goog-api-key")

    async def authorize(self, route: CloudRoute, headers: Headers, body: bytes) -> list[tuple[bytes, bytes]]:
        out = [(n, v) for n, v in headers if n not in _CLIENT_AUTH]
        token = await self._tokens.token()
        out.append((b"authorization", b"Bearer " + token.encode()))
        return out

    @staticmethod
    def stream_parser(content_type: bytes) -> StreamParser | None:
        return StreamParser() if content_type.startswith(b"text/event-stream") else None

    @staticmethod
    def request_id(headers: Headers, summary: MessageSummary | None) -> str | None:
        return summary.message_id if summary is not None else None

    @staticmethod
    def error_type(headers: Headers) -> str | None:
        return None  # the status (and an Anthropic error body, when there is one) say it

    @staticmethod
    def error_parts(exc: SidecarError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return error_response_parts(exc)

    @staticmethod
    def local_answer(route: CloudRoute, query: str) -> bytes:
        raise NotFound("Not found")  # every Vertex route goes upstream

    @staticmethod
    def cache_route(route: CloudRoute) -> tuple[bytes, bool]:
        """``:rawPredict`` and ``:streamRawPredict`` of one model share entries: both answer in Anthropic's
        forms (JSON, SSE), which the cache renders into each other."""
        path, sep, query = route.target.partition("?")
        path = unquote(path.removesuffix(":streamRawPredict").removesuffix(":rawPredict"))
        return f"/vertex{path}:rawPredict{sep}{query}".encode(), True


__all__ = ["VertexConfig", "VertexProvider", "location_origin", "parse_route"]
