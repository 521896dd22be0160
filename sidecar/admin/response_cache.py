"""Response cache admin (SPEC R-RC-5, R-RC-7): ``POST /sidecar/v1/response-cache/purge`` empties it."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from sidecar.errors import ServiceUnavailable
from sidecar.respcache.backend import StoreError


class ResponseCacheAdmin(Protocol):
    """What the route uses (:class:`sidecar.respcache.service.ResponseCache` is one)."""

    async def purge(self, app: str | None) -> int:
        """Entries removed; raises ``StoreError`` when the store does not answer."""
        ...


class NoResponseCache:
    """The cache is off: there is nothing to purge."""

    async def purge(self, app: str | None) -> int:
        return 0


def response_cache_admin() -> ResponseCacheAdmin:
    raise LookupError("the admin app was built without a ResponseCacheAdmin")  # bound by build_admin


class Purged(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purged: int  # entries removed


router = APIRouter(tags=["response cache"])


@router.post(
    "/sidecar/v1/response-cache/purge",
    name="purge_response_cache",
    response_model=Purged,
    responses={503: {"description": "The cache's store (its SQLite file, or Redis) did not answer"}},
)
async def purge(
    cache: Annotated[ResponseCacheAdmin, Depends(response_cache_admin)],
    app: Annotated[str | None, Query(description="Only the entries this app stored.", max_length=200)] = None,
) -> dict[str, Any]:
    """Empty the response cache (every replica's, in Redis mode), or only the entries one app stored."""
    try:
        return {"purged": await cache.purge(app)}
    except StoreError as exc:
        raise ServiceUnavailable(f"The response cache's store is unavailable: {type(exc).__name__}") from None
