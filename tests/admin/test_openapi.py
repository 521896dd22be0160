"""The admin API's OpenAPI document: served, complete, and equal to the reviewed ``docs/openapi.json``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from fastapi.routing import APIRoute

from sidecar.admin import docs
from sidecar.admin.api import ROUTERS, admin_api
from sidecar.admin.openapi import document, render
from sidecar.server.inprocess import RunningSidecar

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
STALE = (
    "docs/openapi.json differs from the API the sidecar serves. If the change is intended, regenerate it "
    "with `python -m sidecar.admin.openapi > docs/openapi.json` and review the diff."
)
# Every endpoint the admin API had before FastAPI (and the two that describe it), by method and path.
ENDPOINTS = {
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/sidecar/v1/sessions"),
    ("GET", "/sidecar/v1/sessions/{session_id}"),
    ("GET", "/sidecar/v1/summary"),
    ("POST", "/sidecar/v1/sessions/{session_id}/block"),
    ("POST", "/sidecar/v1/sessions/{session_id}/unblock"),
    ("POST", "/sidecar/v1/apps/{app}/block"),
    ("POST", "/sidecar/v1/apps/{app}/unblock"),
    ("GET", "/sidecar/v1/apps/{app}/budget"),
    ("PUT", "/sidecar/v1/apps/{app}/budget"),
    ("DELETE", "/sidecar/v1/apps/{app}/budget"),
    ("GET", "/sidecar/v1/fleet"),
    ("DELETE", "/sidecar/v1/fleet/{fleet}/members/{member}"),
    ("POST", "/sidecar/v1/checkins/{name}"),
    ("POST", "/sidecar/v1/checkins/{name}/start"),
    ("POST", "/sidecar/v1/checkins/{name}/fail"),
    ("GET", "/sidecar/v1/alerts"),
    ("POST", "/sidecar/v1/alerts/{check}/snooze"),
    ("DELETE", "/sidecar/v1/alerts/{check}/snooze"),
    ("POST", "/sidecar/v1/maintenance"),
    ("DELETE", "/sidecar/v1/maintenance"),
    ("DELETE", "/sidecar/v1/checks/{name}"),
    ("GET", "/sidecar/v1/openapi.json"),
    ("GET", "/sidecar/v1/docs"),
    ("POST", "/sidecar/v1/response-cache/purge"),
}


def test_served_document_equals_the_checked_in_one(sidecar: RunningSidecar) -> None:
    served = httpx.get(sidecar.url + "/sidecar/v1/openapi.json")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == json.loads(CHECKED_IN.read_text()), STALE


def test_checked_in_file_is_exactly_what_the_generator_prints() -> None:
    assert CHECKED_IN.read_text() == render(document()), STALE


def test_document_covers_every_route() -> None:
    api = admin_api()
    doc = api.openapi()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    routed = {
        (method, route.path_format)
        for router in (*ROUTERS, docs.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert routed == documented
    assert documented == ENDPOINTS
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_document_states_the_token_rules_and_our_error_shape() -> None:
    doc = document()
    assert set(doc["components"]["securitySchemes"]) == {"adminToken", "ingestToken"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            if path in ("/metrics", "/healthz", "/readyz"):
                assert "security" not in op, where
            elif path.startswith("/sidecar/v1/checkins/"):
                assert op["security"] == [{"ingestToken": []}, {}], where
            else:
                assert op["security"] == [{"adminToken": []}], where
            assert "422" not in op["responses"], where
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{where} {status}"
    sessions = doc["paths"]["/sidecar/v1/sessions"]["get"]
    assert {p["name"] for p in sessions["parameters"]} == {
        "limit", "order", "app", "model", "since", "until", "window_s", "min_cost_usd", "state", "q",
        "cursor", "scope",
    }  # fmt: skip
    assert "400" in sessions["responses"]
    summary = doc["paths"]["/sidecar/v1/summary"]["get"]
    assert {p["name"] for p in summary["parameters"]} == {"since", "until", "group_by", "scope"}
    assert "400" in summary["responses"]
    put = doc["paths"]["/sidecar/v1/apps/{app}/budget"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Ceilings")
