"""Every error the admin API answers, in Anthropic's error shape (built by :mod:`sidecar.errors`).

Routes raise :class:`~sidecar.errors.SidecarError`; FastAPI's own errors are mapped here too: a request
that fails validation (FastAPI's 422 with ``detail``) becomes our 400 ``invalid_request_error`` naming the
bad parameter, an unknown path our 404, a wrong method a 405.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response

from sidecar.errors import InvalidRequest, NotFound, SidecarError, error_response_parts

_SOURCES = ("query", "path", "body", "header", "cookie")


class ErrorDetail(BaseModel):
    type: str  # invalid_request_error, authentication_error, not_found_error, rate_limit_error, api_error
    message: str


class ErrorBody(BaseModel):
    """Anthropic's error shape, as every error of this API is answered (the documentation's model)."""

    type: Literal["error"]
    error: ErrorDetail
    request_id: str


def error_response(exc: SidecarError) -> Response:
    status, headers, body = error_response_parts(exc)
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


def status_error(status: int, error_type: str, message: str) -> SidecarError:
    """A :class:`SidecarError` for a status the tree has no class for (405; 409 and 429 of check-ins)."""
    exc = SidecarError(message)
    exc.status, exc.error_type = status, error_type
    return exc


def invalid_parameter(exc: RequestValidationError) -> InvalidRequest:
    """The first validation error as ``"NAME: what is wrong"`` (``body`` when the body itself is bad)."""
    errors = exc.errors()
    if not errors:
        return InvalidRequest("The request is invalid.")
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    parts = loc[1:] if loc and loc[0] in _SOURCES else loc
    name = ".".join(str(p) for p in parts if isinstance(p, str)) or (str(loc[0]) if loc else "body")
    return InvalidRequest(f"{name}: {first.get('msg', 'invalid')}")


async def _sidecar_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SidecarError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(invalid_parameter(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path[:200]
    if exc.status_code == 404:
        error: SidecarError = NotFound(f"Not found: {path}")
    elif exc.status_code == 405:
        error = status_error(405, "invalid_request_error", f"Method not allowed: {request.method} {path}")
    else:
        kind = "invalid_request_error" if 400 <= exc.status_code < 500 else "api_error"
        error = status_error(exc.status_code, kind, str(exc.detail))
    response = error_response(error)
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette's outermost middleware answers with this, then re-raises so the server logs it.
    return error_response(SidecarError("Internal error in the sidecar's admin API."))


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(SidecarError, _sidecar_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(Exception, _unexpected)
