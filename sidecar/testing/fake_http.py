"""The fake upstream's HTTP plumbing: recording, auth and version checks, canned error scenarios,
Anthropic-shaped error bodies and the headers every response carries.

Check order for ``/v1/…`` requests, as the middleware applies it: unknown route → 404, credentials →
401, ``anthropic-version`` → 400, ``x-fake-scenario: error-<status>`` / ``hang``, ``x-fake-fail-times``.

Canned failures: ``x-fake-scenario: error-<status>`` answers that status (400, 401, 402, 403, 404, 409,
413, 429 with ``retry-after: 1``, 500, 504, 529) on any ``/v1`` route; ``hang`` answers nothing until the
client goes away; ``x-fake-fail-times: N`` with ``x-fake-fail-key: K`` fails the first N requests carrying
K with a 529 (the key defaults to a hash of path and body, so SDK retries share it). ``x-fake-retry-after-ms``
adds a ``retry-after-ms`` header to these canned errors, which keeps SDK retry tests fast.
``x-fake-unified-ratelimit: 5h=0.93,7d=0.41`` adds the subscription ``anthropic-ratelimit-unified-*``
headers (see :func:`unified_headers`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from sidecar.testing.fake_cache import InvalidRequest
from sidecar.testing.fake_content import digest
from sidecar.testing.fake_events import error_json
from sidecar.testing.fake_state import FakeState, RecordedRequest

STATE_KEY = web.AppKey("fake_state", FakeState)
REQUEST_ID = web.RequestKey("fake_request_id", str)
API_VERSIONS = frozenset({"2023-06-01", "2026-10-21"})
ORGANIZATION_ID = "0f5e3a4c-1d2b-4c6a-9e8f-fa4e00000001"
ERROR_TYPES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (x-fake-scenario)"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    409: ("conflict_error", "Conflict"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}
# (header suffix, limit) of the anthropic-ratelimit-* families.
_LIMITS = (("requests", 4000), ("tokens", 2_000_000), ("input-tokens", 2_000_000), ("output-tokens", 400_000))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeHTTPError(Exception):
    """Answer with Anthropic's error JSON: ``status``, ``error.type``, ``error.message``, extra headers."""

    def __init__(
        self, status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = dict(headers or {})


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps(data, ensure_ascii=False).encode()
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def error_response(request: web.Request, exc: FakeHTTPError) -> web.Response:
    body = error_json(exc.error_type, exc.message, request[REQUEST_ID])
    return json_response(body, exc.status, exc.headers)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 ``invalid_request_error`` like the API's."""
    try:
        value = json.loads(await request.read())
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest("There was an error parsing the body of your request: expected a JSON object")
    return value


def int_header(headers: Mapping[str, str], name: str, default: int) -> int:
    """Header ``name`` as an int (``default`` when absent); a 400 when it is not an integer."""
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: must be an integer") from None


def _check_auth(request: web.Request) -> None:
    bearer = request.headers.get("authorization", "")
    if request.headers.get("x-api-key") or (bearer.startswith("Bearer ") and bearer[7:].strip()):
        return
    raise FakeHTTPError(401, "authentication_error", "x-api-key header is required")


def _check_version(request: web.Request) -> None:
    version = request.headers.get("anthropic-version")
    if version is None:
        raise InvalidRequest("anthropic-version: header is required")
    if version not in API_VERSIONS:
        raise InvalidRequest(f"anthropic-version: invalid version {version!r}")


async def wait_for_disconnect(request: web.Request) -> None:
    """Return once the client has closed the connection (the ``hang`` scenario) or the server stops."""
    state = request.app[STATE_KEY]
    while request.transport is not None and not request.transport.is_closing() and not state.stopping:
        await asyncio.sleep(0.02)


async def abort_connection(request: web.Request) -> None:
    """Drop the connection abruptly (no final chunk) once what was written has left the buffer.

    A plain close, not an RST: the client then reliably receives every event sent before the drop
    and sees the body end early, instead of racing a reset that may discard unread data.
    """
    transport = request.transport
    if transport is None:
        return
    for _ in range(100):
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    transport.abort()


async def _apply_scenario(request: web.Request, state: FakeState) -> None:
    extra = {}
    if "x-fake-retry-after-ms" in request.headers:
        extra["retry-after-ms"] = str(int_header(request.headers, "x-fake-retry-after-ms", 0))
    scenario = request.headers.get("x-fake-scenario", "")
    if scenario == "hang":
        await wait_for_disconnect(request)
        raise FakeHTTPError(499, "api_error", "client went away")
    if scenario.startswith("error-") and scenario[6:].isdigit() and int(scenario[6:]) in ERROR_TYPES:
        status = int(scenario[6:])
        if status == 429:
            extra["retry-after"] = "1"
        raise FakeHTTPError(status, *ERROR_TYPES[status], extra)
    times = int_header(request.headers, "x-fake-fail-times", 0)
    if times > 0:
        key = request.headers.get("x-fake-fail-key") or digest(request.path, await request.read())
        if state.take_failure(key, times):
            raise FakeHTTPError(529, *ERROR_TYPES[529], extra)


@web.middleware
async def fake_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request (except ``/__fake/``), then run the checks in the documented order."""
    state = request.app[STATE_KEY]
    received_at = time.monotonic()
    body = await request.read()
    request[REQUEST_ID] = "req_01" + digest(request.method, request.path, body, length=22)
    if request.path.startswith("/__fake/"):
        return await handler(request)
    url = request.rel_url
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    state.record(
        RecordedRequest(request.method, url.raw_path, url.raw_query_string, headers, body, received_at)
    )
    try:
        if request.match_info.http_exception is not None:
            raise FakeHTTPError(404, *ERROR_TYPES[404])
        if state.config.require_auth:
            _check_auth(request)
        _check_version(request)
        await _apply_scenario(request, state)
        return await handler(request)
    except InvalidRequest as exc:
        return error_response(request, FakeHTTPError(400, "invalid_request_error", str(exc)))
    except FakeHTTPError as exc:
        return error_response(request, exc)


async def mark_stopping(app: web.Application) -> None:
    """``on_shutdown`` hook: lets hanging handlers end instead of holding up shutdown."""
    app[STATE_KEY].stopping = True


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: ``request-id``, organization and rate-limit headers on everything."""
    state = request.app[STATE_KEY]
    response.headers.setdefault("request-id", request.get(REQUEST_ID, "req_01unknown"))
    response.headers.setdefault("anthropic-organization-id", ORGANIZATION_ID)
    requests, input_tokens, output_tokens = state.used()
    used = {"requests": requests, "tokens": input_tokens + output_tokens}
    used.update({"input-tokens": input_tokens, "output-tokens": output_tokens})
    reset = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, limit in _LIMITS:
        remaining = max(0, limit - used[name])
        if name != "requests":  # the API rounds token counts to the nearest thousand
            remaining = round(remaining, -3)
        prefix = f"anthropic-ratelimit-{name}"
        response.headers.setdefault(f"{prefix}-limit", str(limit))
        response.headers.setdefault(f"{prefix}-remaining", str(remaining))
        response.headers.setdefault(f"{prefix}-reset", reset)
    unified = request.headers.get("x-fake-unified-ratelimit")
    if unified:
        for name, value in unified_headers(unified, time.time()).items():
            response.headers.setdefault(name, value)


_CLAIMS = {"5h": "five_hour", "7d": "seven_day"}


def unified_headers(spec: str, now: float) -> dict[str, str]:
    """Subscription rate-limit headers for ``x-fake-unified-ratelimit: 5h=0.93,7d=0.41`` (window =
    utilization): the status is ``allowed_warning`` from 0.9 on and ``rejected`` at 1; the window with the
    highest utilization is the representative claim. Resets are unix seconds, as Claude Code sees them."""
    windows: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        try:
            windows[name.strip()] = float(value)
        except ValueError:
            continue
    if not windows:
        return {}
    top = max(windows, key=lambda w: windows[w])
    status = "rejected" if windows[top] >= 1 else "allowed_warning" if windows[top] >= 0.9 else "allowed"
    prefix = "anthropic-ratelimit-unified"
    out = {f"{prefix}-status": status, f"{prefix}-representative-claim": _CLAIMS.get(top, top)}
    out[f"{prefix}-reset"] = str(int(now) + 3600)
    out[f"{prefix}-overage-status"] = "rejected"
    for name, used in windows.items():
        out[f"{prefix}-{name}-utilization"] = f"{used:g}"
        out[f"{prefix}-{name}-reset"] = str(int(now) + (18_000 if name == "5h" else 604_800))
    return out
