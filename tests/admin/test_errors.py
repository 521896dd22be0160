"""Admin API errors keep Anthropic's shape: bad parameters are a 400 naming them, never FastAPI's 422."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sidecar.app import build_sidecar
from sidecar.server.inprocess import RunningSidecar
from sidecar.server.router import proxy_app
from sidecar.settings import Settings


def error_of(resp: httpx.Response, status: int) -> tuple[str, str]:
    """``(error.type, error.message)`` after checking the whole shape and the request id header."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert set(doc) == {"type", "error", "request_id"} and doc["type"] == "error"
    assert set(doc["error"]) == {"type", "message"}
    assert doc["request_id"] == resp.headers["request-id"]
    assert "detail" not in resp.text
    return doc["error"]["type"], doc["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/sidecar/v1/sessions?limit=many", "limit"),
        ("GET", "/sidecar/v1/sessions?limit=1.5", "limit"),
        ("GET", "/sidecar/v1/sessions?window_s=soon", "window_s"),
        ("POST", "/sidecar/v1/checkins/nightly?period=soon", "period"),
        ("POST", "/sidecar/v1/checkins/nightly?grace=-1", "grace"),
        ("POST", "/sidecar/v1/maintenance?for=forever", "for"),
        ("POST", "/sidecar/v1/alerts/nightly/snooze?for=45d", "for"),
    ],
)
def test_a_bad_query_parameter_is_a_400_that_names_it(
    sidecar: RunningSidecar, method: str, path: str, name: str
) -> None:
    kind, message = error_of(httpx.request(method, sidecar.url + path), 400)
    assert kind == "invalid_request_error"
    assert message.startswith(f"{name}:"), message


def test_budget_bodies(sidecar: RunningSidecar) -> None:
    url = sidecar.url + "/sidecar/v1/apps/voice/budget"
    for body, name in [
        (b'{"session_max_usd": "lots"}', "session_max_usd"),
        (b'{"session_max_usd": true}', "session_max_usd"),
        (b'{"session_max_tokens": 2.5}', "session_max_tokens"),
        (b'{"session_max_usd": -1}', "session_max_usd"),
        (b'{"mode": "loud"}', "mode"),
        (b'{"sesion_max_usd": 1}', "sesion_max_usd"),
        (b"[1, 2]", "body"),
        (b"{not json", "body"),
        (b"", "body"),
    ]:
        kind, message = error_of(httpx.put(url, content=body), 400)
        assert kind == "invalid_request_error" and message.startswith(f"{name}:"), (body, message)
    # JSON is read whatever the content type (``curl -d`` sends a form type); null removes a ceiling.
    form = {"content-type": "application/x-www-form-urlencoded"}
    put = httpx.put(url, content=b'{"session_max_usd": "2.5", "session_max_tokens": null}', headers=form)
    assert put.status_code == 200, put.text
    assert put.json()["limits"]["session_max_usd"] == 2.5
    assert put.json()["limits"]["session_max_tokens"] is None
    assert set(put.json()) == {"app", "limits", "blocked", "used_usd_today"}


def test_unknown_paths_and_methods(sidecar: RunningSidecar) -> None:
    for path in ("/sidecar/v1", "/sidecar/v1/nope", "/sidecar/v1/docs/assets/nope.js", "/sidecar/v1/apps/x"):
        kind, message = error_of(httpx.get(sidecar.url + path), 404)
        assert kind == "not_found_error" and message == f"Not found: {path}"
    resp = httpx.delete(sidecar.url + "/sidecar/v1/sessions")
    kind, _ = error_of(resp, 405)
    assert kind == "invalid_request_error" and resp.headers["allow"] == "GET"
    kind, message = error_of(httpx.get(sidecar.url + "/sidecar/v1/sessions/no-such-session"), 404)
    assert kind == "not_found_error" and "no-such-session" in message


async def test_readyz_is_503_with_the_same_shape_before_start_up(tmp_path: Path) -> None:
    sidecar = build_sidecar(Settings(store=f"sqlite:///{tmp_path}/e.db", port=0))
    transport = httpx.ASGITransport(app=proxy_app(sidecar))
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body == {"ready": False, "recorder_pending": 0, "pricing_date": body["pricing_date"]}
    assert body["pricing_date"] == sidecar.prices.table.version
