"""The admin API describing itself: ``/sidecar/v1/openapi.json`` and Swagger UI at ``/sidecar/v1/docs``.

Swagger UI's files are vendored in ``static/`` and served from ``/sidecar/v1/docs/assets/``: the page
loads nothing from the internet (the sidecar may run air-gapped), and its validator badge, which would
call out to swagger.io, is off.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from sidecar.admin.checkins import CHECKINS_PREFIX
from sidecar.admin.errors import ErrorBody
from sidecar.admin.ops import OPEN_PATHS

DOCS_PATH = "/sidecar/v1/docs"
ASSETS_PATH = DOCS_PATH + "/assets"
OPENAPI_PATH = "/sidecar/v1/openapi.json"

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SIDECAR_ADMIN_TOKEN. Required by every /sidecar/v1/* route except check-ins "
        "when the sidecar has one, whatever the bind address; without one the API is open, and "
        "`serve` then refuses to listen beyond loopback.",
    },
    "ingestToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SIDECAR_INGEST_TOKEN, when set: check-ins need it (or `?token=`), not the admin "
        "token.",
    },
}

router = APIRouter(tags=["documentation"])


@router.get(OPENAPI_PATH, name="openapi", response_model=dict[str, Any])
async def openapi(request: Request) -> JSONResponse:
    """This document."""
    api: FastAPI = request.app
    return JSONResponse(api.openapi())


@router.get(DOCS_PATH, name="docs", response_class=HTMLResponse)
async def docs() -> HTMLResponse:
    """Interactive documentation (Swagger UI), served entirely by the sidecar."""
    return get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="claude-sidecar admin API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


def mount_docs(api: FastAPI) -> None:
    api.include_router(router)
    api.mount(ASSETS_PATH, StaticFiles(packages=[("sidecar.admin", "static")]), name="docs-assets")


def finish_document(doc: dict[str, Any]) -> dict[str, Any]:
    """What FastAPI cannot know: the token rules (enforced by the ASGI guard in front of the app) and
    our error answers (a bad parameter is a 400 in Anthropic's shape, never FastAPI's 422)."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas["ErrorBody"] = error
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            _finish_operation(path, operation)
    return doc


def _finish_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    queried = any(p.get("in") == "query" for p in operation.get("parameters", []))
    if responses.pop("422", None) is not None and (queried or "requestBody" in operation):
        responses["400"] = {"description": "A parameter or the body is invalid (the message names it)"}
    if path.startswith(CHECKINS_PREFIX):
        operation["security"] = [{"ingestToken": []}, {}]
        responses["401"] = {"description": "The ingest token is set and was not given"}
    elif path not in OPEN_PATHS:
        operation["security"] = [{"adminToken": []}]
        responses["401"] = {"description": "The admin token is set and was not given"}
    for status, response in responses.items():
        if not status.startswith("2"):
            schema = {"$ref": "#/components/schemas/ErrorBody"}
            response.setdefault("content", {"application/json": {"schema": schema}})
