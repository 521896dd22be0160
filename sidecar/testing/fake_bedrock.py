"""The project's own fake Amazon Bedrock runtime (InvokeModel API) for tests and ``demo``.

Routes: ``POST /model/{modelId}/invoke`` (a Messages ``Message`` as JSON), ``/invoke-with-response-stream``
(the same events as first-party SSE, each framed as a Bedrock ``chunk`` in ``application/vnd.amazon.
eventstream``, no pings, ``amazon-bedrock-invocationMetrics`` on ``message_stop``) and ``/count-tokens``.
Every request must be SigV4-signed by :class:`FakeAwsCredentials` (checked with botocore) or carry
``Authorization: Bearer <api_key>``; answers carry ``x-amzn-requestid``; errors are Bedrock's shape
(``x-amzn-errortype`` + ``{"message": …}``). The body is checked as Bedrock checks it: an
``anthropic_version``, and no ``model`` or ``stream`` (they live in the path).

Test controls, as for the first-party fake: ``x-fake-usage``, ``x-fake-tool-calls``, ``x-fake-deltas``,
timing headers, and ``x-fake-scenario``: ``error-<400|403|429|500|503>``, ``exception-in-stream`` (a
``modelStreamErrorException`` frame after ``message_start``), ``reset-mid-stream``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sidecar.testing.fake_cache import InvalidRequest, estimate_tokens, prompt_blocks
from sidecar.testing.fake_eventstream import chunk_frame, exception_frame
from sidecar.testing.fake_http import STATE_KEY, abort_connection, int_header
from sidecar.testing.fake_messages import answer_message, validate_message_params
from sidecar.testing.fake_sigv4 import FakeAwsCredentials, verify_sigv4
from sidecar.testing.fake_state import FakeConfig, FakeState, RecordedRequest
from sidecar.testing.fake_upstream import FakeUpstream

CREDENTIALS_KEY = web.AppKey("fake_aws_credentials", FakeAwsCredentials)
API_KEY = web.AppKey("fake_bedrock_api_key", str)
VERSIONS = frozenset({"bedrock-2023-05-31", "2026-10-21"})
EVENT_STREAM = "application/vnd.amazon.eventstream"
_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_OPS = ("invoke", "invoke-with-response-stream", "count-tokens")


class BedrockError(Exception):
    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.error_type = error_type or _ERRORS.get(status, "InternalServerException")


def error_response(exc: BedrockError) -> web.Response:
    return web.Response(
        status=exc.status,
        body=json.dumps({"message": exc.message}).encode(),
        content_type="application/json",
        headers={
            "x-amzn-errortype": f"{exc.error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        },
    )


def served_model(model_id: str) -> str:
    """The model a Bedrock id names, as Bedrock reports it in the answer (``claude-…-YYYYMMDD``)."""
    name = model_id.rsplit("/", 1)[-1]
    if "anthropic." in name:
        name = name.split("anthropic.", 1)[1]
    name = name.split(":", 1)[0]
    if name.endswith("-v1") or name.endswith("-v2"):
        name = name[:-3]
    return name if name.startswith("claude") else "claude-sonnet-4-5-20250929"


def _check_auth(request: web.Request, body: bytes) -> None:
    auth = request.headers.get("authorization", "")
    api_key = request.app.get(API_KEY)
    if api_key is not None and auth == f"Bearer {api_key}":
        return
    url = f"{request.scheme}://{request.host}{request.rel_url.raw_path}"
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    headers = [(k.decode("latin-1"), v.decode("utf-8")) for k, v in request.raw_headers]
    problem = verify_sigv4(request.app[CREDENTIALS_KEY], request.method, url, headers, body)
    if problem is not None:
        kind = "MissingAuthenticationTokenException" if "Missing" in problem else "InvalidSignatureException"
        raise BedrockError(403, problem, kind)


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BedrockError(400, "Malformed input request, please reformat your input and try again.")
    return body


def _messages_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Bedrock's checks, then the body as a first-party Messages body (for the shared answer logic)."""
    for extraneous in ("model", "stream"):
        if extraneous in body:
            raise BedrockError(
                400, f"Malformed input request: extraneous key [{extraneous}] is not permitted"
            )
    if body.get("anthropic_version") not in VERSIONS:
        raise BedrockError(400, "Malformed input request: anthropic_version is missing or invalid")
    full = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
    full["model"] = model
    try:
        validate_message_params(full, None)
    except InvalidRequest as exc:
        raise BedrockError(400, f"Malformed input request: {exc}") from None
    return full


def _scenario(request: web.Request) -> str:
    scenario = request.headers.get("x-fake-scenario", "")
    if scenario.startswith("error-") and scenario[6:].isdigit() and int(scenario[6:]) in _ERRORS:
        status = int(scenario[6:])
        raise BedrockError(status, f"Fake Bedrock error {status} (x-fake-scenario)")
    return scenario


def _metrics(usage: Mapping[str, Any]) -> dict[str, int]:
    out = {
        "inputTokenCount": int(usage.get("input_tokens") or 0),
        "outputTokenCount": int(usage.get("output_tokens") or 0),
        "invocationLatency": 42,
        "firstByteLatency": 21,
    }
    if usage.get("cache_read_input_tokens"):
        out["cacheReadInputTokenCount"] = int(usage["cache_read_input_tokens"])
    if usage.get("cache_creation_input_tokens"):
        out["cacheWriteInputTokenCount"] = int(usage["cache_creation_input_tokens"])
    return out


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _stream(
    request: web.Request, message: dict[str, Any], events: list[dict[str, Any]], request_id: str
) -> web.StreamResponse:
    state: FakeState = request.app[STATE_KEY]
    scenario = request.headers.get("x-fake-scenario", "")
    headers = {
        "content-type": EVENT_STREAM,
        "x-amzn-bedrock-content-type": "application/json",
        "x-amzn-requestid": request_id,
    }
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    chunk_s = int_header(request.headers, "x-fake-chunk-delay-ms", -1)
    delay = chunk_s / 1000 if chunk_s >= 0 else state.config.chunk_delay_s
    events = [e for e in events if e.get("type") != "ping"]  # Bedrock's event stream has no pings
    try:
        await _sleep(state.config.first_token_delay_s)
        for i, event in enumerate(events):
            if i:
                await _sleep(delay)
            if scenario == "exception-in-stream" and i == 1:
                await response.write(exception_frame("modelStreamErrorException", "The model stream failed"))
                break
            if scenario == "reset-mid-stream" and i == len(events) // 2:
                await abort_connection(request)
                return response
            if event.get("type") == "message_stop":
                event = {**event, "amazon-bedrock-invocationMetrics": _metrics(message["usage"])}
            await response.write(chunk_frame(event, padding=i))
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _count_tokens(body: dict[str, Any], model: str) -> web.Response:
    try:
        inner = json.loads(base64.b64decode(body["input"]["invokeModel"]["body"], validate=True))
    except (KeyError, TypeError, ValueError) as exc:
        raise BedrockError(400, f"Malformed count-tokens input: {type(exc).__name__}") from None
    blocks = prompt_blocks(_messages_body(inner, model))
    return web.json_response({"inputTokens": estimate_tokens(blocks)})


async def handle(request: web.Request) -> web.StreamResponse:
    state: FakeState = request.app[STATE_KEY]
    raw = await request.read()
    parts = request.rel_url.raw_path.split("/")
    url = request.rel_url
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    state.record(RecordedRequest(request.method, url.raw_path, url.raw_query_string, headers, raw, 0.0))
    request_id = str(uuid.uuid4())
    try:
        if request.method != "POST" or len(parts) != 4 or parts[1] != "model" or parts[3] not in _OPS:
            raise BedrockError(404, "The requested operation is not recognized by the service.",
                               "UnknownOperationException")  # fmt: skip
        _check_auth(request, raw)
        scenario = _scenario(request)
        model = served_model(unquote(parts[2]))
        body = _body(raw)
        if parts[3] == "count-tokens":
            answer = await _count_tokens(body, model)
            answer.headers["x-amzn-requestid"] = request_id
            return answer
        message, events = answer_message(state, _messages_body(body, model), request.headers)
        message["id"] = message["id"].replace("msg_01", "msg_bdrk_01", 1)
        for event in events:
            if event.get("type") == "message_start":
                event["message"]["id"] = message["id"]
        if parts[3] == "invoke-with-response-stream":
            return await _stream(request, message, events, request_id)
        if scenario == "reset-mid-stream":
            await abort_connection(request)
            return web.Response()
        usage = message["usage"]
        answer = web.json_response(message)
        answer.headers.update({
            "x-amzn-bedrock-input-token-count": str(usage.get("input_tokens", 0)),
            "x-amzn-bedrock-output-token-count": str(usage.get("output_tokens", 0)),
            "x-amzn-bedrock-invocation-latency": "42",
        })  # fmt: skip
        answer.headers["x-amzn-requestid"] = request_id
        return answer
    except InvalidRequest as exc:
        failed = error_response(BedrockError(400, f"Malformed input request: {exc}"))
        failed.headers["x-amzn-requestid"] = request_id
        return failed
    except BedrockError as exc:
        failed = error_response(exc)
        failed.headers["x-amzn-requestid"] = request_id
        return failed


def build_bedrock_app(
    config: FakeConfig | None = None,
    credentials: FakeAwsCredentials | None = None,
    api_key: str | None = None,
) -> web.Application:
    """A fresh fake Bedrock runtime with its own state (``app[STATE_KEY]``)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = FakeState(config or FakeConfig())
    app[CREDENTIALS_KEY] = credentials or FakeAwsCredentials()
    if api_key is not None:
        app[API_KEY] = api_key
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class FakeBedrock(FakeUpstream):
    """The fake Bedrock on 127.0.0.1 in a background thread; ``credentials`` is what it accepts."""

    def __init__(
        self,
        config: FakeConfig | None = None,
        credentials: FakeAwsCredentials | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.credentials = credentials or FakeAwsCredentials()
        config = config or FakeConfig()
        super().__init__(config, host, port, app=build_bedrock_app(config, self.credentials, api_key))


__all__ = ["FakeAwsCredentials", "FakeBedrock", "build_bedrock_app", "served_model"]
