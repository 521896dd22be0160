"""Budget admin API (SPEC R-CC-5): block / unblock sessions and apps, and per-app ceilings at runtime."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.admin.ops import error_response
from sidecar.budget.service import BudgetService
from sidecar.core.budget_config import limits_json
from sidecar.errors import ConfigError, InvalidRequest, ServiceUnavailable, SidecarError

if TYPE_CHECKING:
    from sidecar.app import Sidecar


def _bad_request(message: str) -> Response:
    return error_response(InvalidRequest(message))


def budget_routes(sidecar: Sidecar, budgets: BudgetService) -> list[Route]:
    async def block(request: Request) -> Response:
        name = request.path_params["name"]
        scope, op = request.url.path.split("/")[3], request.url.path.rsplit("/", 1)[1]
        try:
            if scope == "sessions":
                blocked = await (
                    budgets.block_session(name) if op == "block" else budgets.unblock_session(name)
                )
            else:
                blocked = await (budgets.block_app(name) if op == "block" else budgets.unblock_app(name))
        except ServiceUnavailable as exc:
            return error_response(exc)
        return JSONResponse({"scope": scope[:-1], "name": name, "blocked": blocked})

    async def app_budget(request: Request) -> Response:
        app = request.path_params["name"]
        if request.method == "PUT":
            try:
                doc = orjson.loads(await request.body())
                limits = budgets.set_app_override(app, doc)
            except orjson.JSONDecodeError:
                return _bad_request("The body must be a JSON object of ceilings.")
            except ConfigError as exc:
                return _bad_request(str(exc))
        elif request.method == "DELETE":
            limits = budgets.clear_app_override(app)
        else:
            limits = budgets.limits_for(app)
        try:
            snapshot, _, app_blocked = await budgets.usage("", app, time.time())
        except SidecarError as exc:
            return error_response(exc)
        return JSONResponse(
            {
                "app": app,
                "limits": limits_json(limits),
                "blocked": app_blocked,
                "used_usd_today": snapshot.app_day.used_nanos / 1e9,
            }
        )

    return [
        *(
            Route(f"/sidecar/v1/{scope}/{{name}}/{op}", block, methods=["POST"], name=f"{scope}-{op}")
            for scope in ("sessions", "apps")
            for op in ("block", "unblock")
        ),
        Route("/sidecar/v1/apps/{name}/budget", app_budget, methods=["GET", "PUT", "DELETE"]),
    ]
