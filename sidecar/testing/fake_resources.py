"""Models, Message Batches and Files endpoints of the fake upstream (state kept in memory).

Batches end at once (``processing_status: "ended"``) and their ``results_url`` is absolute, on the
address this fake is listening on — as the real API points at its own host, which a proxy must rewrite.
Results are JSONL (``application/x-jsonl``, as the OpenAPI spec says) with ``service_tier: "batch"``.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from sidecar.testing.fake_cache import InvalidRequest, canonical_json
from sidecar.testing.fake_content import digest
from sidecar.testing.fake_http import STATE_KEY, FakeHTTPError, json_response, read_json
from sidecar.testing.fake_messages import answer_message, validate_message_params
from sidecar.testing.fake_state import StoredBatch, StoredFile

# (id, display name, release date, context window), newest first like the real list.
MODELS: tuple[tuple[str, str, str, int], ...] = (
    ("claude-opus-5", "Claude Opus 5", "2026-07-24", 1_000_000),
    ("claude-sonnet-5", "Claude Sonnet 5", "2026-06-02", 1_000_000),
    ("claude-opus-4-8", "Claude Opus 4.8", "2026-05-12", 1_000_000),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17", 1_000_000),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05", 1_000_000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01", 200_000),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29", 200_000),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _not_found(kind: str, ident: str) -> FakeHTTPError:
    return FakeHTTPError(404, "not_found_error", f"{kind} {ident!r} not found")


def paginate(items: Sequence[Mapping[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """The API's list envelope (``data``, ``has_more``, ``first_id``, ``last_id``) for one page."""
    try:
        limit = min(max(int(query.get("limit", "20")), 1), 1000)
    except ValueError:
        raise InvalidRequest("limit: Input should be a valid integer") from None
    ids = [str(item["id"]) for item in items]
    rest = list(items)
    if query.get("after_id") in ids:
        rest = rest[ids.index(query["after_id"]) + 1 :]
    elif query.get("before_id") in ids:
        rest = rest[: ids.index(query["before_id"])]
        page = rest[-limit:]
        return _envelope(page, len(rest) > limit)
    return _envelope(rest[:limit], len(rest) > limit)


def _envelope(page: Sequence[Mapping[str, Any]], has_more: bool) -> dict[str, Any]:
    first = page[0]["id"] if page else None
    last = page[-1]["id"] if page else None
    return {"data": list(page), "has_more": has_more, "first_id": first, "last_id": last}


def _model_json(model: tuple[str, str, str, int]) -> dict[str, Any]:
    ident, name, released, window = model
    return {
        "type": "model",
        "id": ident,
        "display_name": name,
        "created_at": f"{released}T00:00:00Z",
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "max_input_tokens": window,
        "max_tokens": 64_000,
    }


async def list_models(request: web.Request) -> web.Response:
    return json_response(paginate([_model_json(m) for m in MODELS], request.query))


async def get_model(request: web.Request) -> web.Response:
    ident = request.match_info["model_id"]
    for model in MODELS:
        if model[0] == ident:
            return json_response(_model_json(model))
    raise _not_found("model", ident)


def _own_origin(request: web.Request) -> str:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host, port = (sockname[0], sockname[1]) if sockname else ("127.0.0.1", 0)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _run_batch_item(request: web.Request, item: Any) -> dict[str, Any]:
    """One JSONL result line; a bad item becomes an ``errored`` result, as in the real API."""
    custom_id = item.get("custom_id") if isinstance(item, dict) else None
    params = item.get("params") if isinstance(item, dict) else None
    if not isinstance(custom_id, str) or not isinstance(params, dict):
        raise InvalidRequest("requests: each request needs a string custom_id and a params object")
    try:
        validate_message_params(params, request.headers.get("anthropic-version"), batch=True)
        message, _ = answer_message(request.app[STATE_KEY], params, request.headers, service_tier="batch")
    except InvalidRequest as exc:
        error = {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}}
        return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}


async def create_batch(request: web.Request) -> web.Response:
    body = await read_json(request)
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("requests: at least one request is required")
    results = [_run_batch_item(request, item) for item in items]
    ids = [r["custom_id"] for r in results]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("requests: custom_id values must be unique within a batch")
    batch_id = "msgbatch_01" + digest("batch", await request.read(), length=22)
    created = _now()
    succeeded = sum(1 for r in results if r["result"]["type"] == "succeeded")
    batch = {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {
            "processing": 0,
            "succeeded": succeeded,
            "errored": len(results) - succeeded,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": _rfc3339(created),
        "ended_at": _rfc3339(created),
        "expires_at": _rfc3339(created + timedelta(hours=24)),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": f"{_own_origin(request)}/v1/messages/batches/{batch_id}/results",
    }
    request.app[STATE_KEY].batches[batch_id] = StoredBatch(batch, results)
    return json_response(batch)


def _batch(request: web.Request) -> StoredBatch:
    ident = request.match_info["batch_id"]
    stored = request.app[STATE_KEY].batches.get(ident)
    if stored is None:
        raise _not_found("message batch", ident)
    return stored


async def get_batch(request: web.Request) -> web.Response:
    """Retrieve; ``cancel`` also lands here, since an ended batch stays as it is."""
    return json_response(_batch(request).batch)


async def list_batches(request: web.Request) -> web.Response:
    newest_first = [b.batch for b in reversed(request.app[STATE_KEY].batches.values())]
    return json_response(paginate(newest_first, request.query))


async def delete_batch(request: web.Request) -> web.Response:
    stored = _batch(request)
    del request.app[STATE_KEY].batches[stored.batch["id"]]
    return json_response({"id": stored.batch["id"], "type": "message_batch_deleted"})


async def batch_results(request: web.Request) -> web.Response:
    lines = "".join(canonical_json(r) + "\n" for r in _batch(request).results)
    return web.Response(body=lines.encode(), content_type="application/x-jsonl")


def parse_multipart(body: bytes, content_type: str) -> list[tuple[email.message.Message, bytes]]:
    """``(part headers, exact part bytes)`` of a ``multipart/form-data`` body."""
    header = email.parser.Parser(policy=email.policy.HTTP).parsestr(f"content-type: {content_type}\n\n")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise InvalidRequest("file: expected a multipart/form-data body with a boundary")
    parts: list[tuple[email.message.Message, bytes]] = []
    for chunk in (b"\r\n" + body).split(b"\r\n--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if sep:
            headers = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(
                head.lstrip() + b"\n\n"
            )
            parts.append((headers, content))
    return parts


async def upload_file(request: web.Request) -> web.Response:
    parts = parse_multipart(await request.read(), request.headers.get("content-type", ""))
    for headers, content in parts:
        if headers.get_param("name", header="content-disposition") == "file":
            filename = headers.get_filename() or "unnamed"
            mime = headers.get("content-type", "application/octet-stream").split(";")[0].strip()
            file_id = "file_01" + digest("file", filename, content, str(time.time_ns()), length=22)
            stored = StoredFile(file_id, filename, mime, content, _rfc3339(_now()))
            request.app[STATE_KEY].files[file_id] = stored
            return json_response(stored.metadata())
    raise InvalidRequest("file: Field required")


def _file(request: web.Request) -> StoredFile:
    ident = request.match_info["file_id"]
    stored = request.app[STATE_KEY].files.get(ident)
    if stored is None:
        raise _not_found("file", ident)
    return stored


async def list_files(request: web.Request) -> web.Response:
    newest_first = [f.metadata() for f in reversed(request.app[STATE_KEY].files.values())]
    return json_response(paginate(newest_first, request.query))


async def get_file(request: web.Request) -> web.Response:
    return json_response(_file(request).metadata())


async def download_file(request: web.Request) -> web.Response:
    return web.Response(body=_file(request).content, content_type="application/octet-stream")


async def delete_file(request: web.Request) -> web.Response:
    stored = _file(request)
    del request.app[STATE_KEY].files[stored.id]
    return json_response({"id": stored.id, "type": "file_deleted"})


def add_resource_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id}", get_model)
    app.router.add_post("/v1/messages/batches", create_batch)
    app.router.add_get("/v1/messages/batches", list_batches)
    app.router.add_get("/v1/messages/batches/{batch_id}", get_batch)
    app.router.add_delete("/v1/messages/batches/{batch_id}", delete_batch)
    app.router.add_post("/v1/messages/batches/{batch_id}/cancel", get_batch)
    app.router.add_get("/v1/messages/batches/{batch_id}/results", batch_results)
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_delete("/v1/files/{file_id}", delete_file)
    app.router.add_get("/v1/files/{file_id}/content", download_file)
