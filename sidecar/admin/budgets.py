"""Budget admin API (SPEC R-CC-5): block / unblock sessions and apps, and per-app ceilings at runtime."""

from __future__ import annotations

import time
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from sidecar.budget import Snapshot
from sidecar.core.budget_config import Limits, limits_json
from sidecar.errors import ConfigError, InvalidRequest


class BudgetAdmin(Protocol):
    """What the budget routes use (:class:`sidecar.budget.service.BudgetService` is one)."""

    async def block_session(self, session_id: str) -> bool: ...
    async def unblock_session(self, session_id: str) -> bool: ...
    async def block_app(self, app: str) -> bool: ...
    async def unblock_app(self, app: str) -> bool: ...
    def limits_for(self, app: str) -> Limits: ...
    def set_app_override(self, app: str, mapping: object) -> Limits: ...
    def clear_app_override(self, app: str) -> Limits: ...
    async def usage(self, session_id: str, app: str, now: float) -> tuple[Snapshot, bool, bool]: ...


def budget_admin() -> BudgetAdmin:
    raise LookupError("the admin app was built without a BudgetAdmin")  # bound by build_admin


Budgets = Annotated[BudgetAdmin, Depends(budget_admin)]


def _not_bool(value: object) -> object:
    # JSON true is not a ceiling (pydantic would read it as 1); the ceilings parser refuses it too.
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Money = Annotated[float | None, BeforeValidator(_not_bool)]
Count = Annotated[int | None, BeforeValidator(_not_bool)]


class Ceilings(BaseModel):
    """An app's ceilings with the config file's key names; ``null`` = no ceiling.

    A response names every key. A ``PUT`` replaces the app's runtime ceilings: a key left out falls
    back to the file and environment, a key set to ``null`` removes that ceiling.
    """

    model_config = ConfigDict(extra="forbid")
    session_max_usd: Money = None
    session_max_tokens: Count = None
    session_max_model_calls: Count = None
    session_max_tool_calls: Count = None
    app_max_usd_per_day: Money = None
    mode: str | None = None  # enforce | warn


class AppBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: str
    limits: Ceilings
    blocked: bool
    used_usd_today: float


class Blocked(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str  # session | app
    name: str
    blocked: bool


async def ceilings_body(request: Request) -> dict[str, Any]:
    """The PUT body as given keys only; JSON whatever the content type, as ``curl -d`` sends it."""
    try:
        return Ceilings.model_validate_json(await request.body()).model_dump(exclude_unset=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


router = APIRouter(
    tags=["budgets"], responses={503: {"description": "Budget counters unreachable (Redis), when shared"}}
)
_PUT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ceilings"}}},
    }
}


@router.post("/sidecar/v1/sessions/{session_id}/block", name="block_session", response_model=Blocked)
async def block_session(budgets: Budgets, session_id: str) -> dict[str, Any]:
    """Refuse the session's calls from now on (429, limit ``blocked``)."""
    return {"scope": "session", "name": session_id, "blocked": await budgets.block_session(session_id)}


@router.post("/sidecar/v1/sessions/{session_id}/unblock", name="unblock_session", response_model=Blocked)
async def unblock_session(budgets: Budgets, session_id: str) -> dict[str, Any]:
    return {"scope": "session", "name": session_id, "blocked": await budgets.unblock_session(session_id)}


@router.post("/sidecar/v1/apps/{app}/block", name="block_app", response_model=Blocked)
async def block_app(budgets: Budgets, app: str) -> dict[str, Any]:
    """Refuse the app's calls from now on (429, limit ``blocked``)."""
    return {"scope": "app", "name": app, "blocked": await budgets.block_app(app)}


@router.post("/sidecar/v1/apps/{app}/unblock", name="unblock_app", response_model=Blocked)
async def unblock_app(budgets: Budgets, app: str) -> dict[str, Any]:
    return {"scope": "app", "name": app, "blocked": await budgets.unblock_app(app)}


async def _app_budget(budgets: BudgetAdmin, app: str, limits: Limits) -> dict[str, Any]:
    snapshot, _, app_blocked = await budgets.usage("", app, time.time())
    return {
        "app": app,
        "limits": limits_json(limits),
        "blocked": app_blocked,
        "used_usd_today": snapshot.app_day.used_nanos / 1e9,
    }


@router.get("/sidecar/v1/apps/{app}/budget", name="get_app_budget", response_model=AppBudget)
async def get_app_budget(budgets: Budgets, app: str) -> dict[str, Any]:
    """The ceilings in force for the app, whether it is blocked, and its spend this UTC day."""
    return await _app_budget(budgets, app, budgets.limits_for(app))


@router.put(
    "/sidecar/v1/apps/{app}/budget", name="put_app_budget", response_model=AppBudget, openapi_extra=_PUT_BODY
)
async def put_app_budget(
    budgets: Budgets, app: str, patch: Annotated[dict[str, Any], Depends(ceilings_body)]
) -> dict[str, Any]:
    """Replace the app's runtime ceilings (held by this process until restart or DELETE)."""
    try:
        limits = budgets.set_app_override(app, patch)
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None
    return await _app_budget(budgets, app, limits)


@router.delete("/sidecar/v1/apps/{app}/budget", name="delete_app_budget", response_model=AppBudget)
async def delete_app_budget(budgets: Budgets, app: str) -> dict[str, Any]:
    """Drop the app's runtime ceilings: the file and environment apply again."""
    return await _app_budget(budgets, app, budgets.clear_app_override(app))
