"""Sessions API (SPEC R-AC-5, §13): ``GET /sidecar/v1/sessions`` and ``GET /sidecar/v1/sessions/{id}``.

Answers from the local store (fresh for this replica), aggregated by the pure functions of
``core.sessions`` — the same ones ``report`` uses.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.admin.ops import error_response
from sidecar.core.sessions import list_sessions, session_summary
from sidecar.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from sidecar.app import Sidecar

DEFAULT_WINDOW_S = 7 * 86400.0
MAX_LIMIT = 1000


def session_routes(sidecar: Sidecar) -> list[Route]:
    idle = sidecar.settings.session_idle_timeout

    async def list_view(request: Request) -> Response:
        try:
            limit = min(int(request.query_params.get("limit", "50")), MAX_LIMIT)
            window = float(request.query_params.get("window_s", DEFAULT_WINDOW_S))
        except ValueError:
            return error_response(InvalidRequest("limit and window_s must be numbers"))
        order = request.query_params.get("order", "recent")
        if order not in ("cost", "recent"):
            order = "recent"
        now = time.time()
        await asyncio.to_thread(sidecar.recorder.flush, 2.0)
        events = await asyncio.to_thread(sidecar.store.events, since=now - window)
        sessions = list_sessions(events, now=now, idle_timeout_s=idle, limit=max(limit, 0), order=order)
        return JSONResponse({"sessions": sessions})

    async def detail_view(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        await asyncio.to_thread(sidecar.recorder.flush, 2.0)
        events = await asyncio.to_thread(sidecar.store.events, session_id=session_id)
        if not events:
            return error_response(NotFound(f"Unknown session: {session_id[:200]}"))
        return JSONResponse(session_summary(events, now=time.time(), idle_timeout_s=idle, with_calls=True))

    return [
        Route("/sidecar/v1/sessions", list_view, methods=["GET"]),
        Route("/sidecar/v1/sessions/{session_id:path}", detail_view, methods=["GET"]),
    ]
