"""The sidecar's one exception tree, and the one place that turns an error into Anthropic's error JSON.

::

    SidecarError                      error_type (metric label)   HTTP
    ├── ConfigError                   (start-up only, never HTTP)
    ├── UpstreamError                 (raised only by the upstream clients)
    │   ├── UpstreamUnavailable       api_error                   502  x-should-retry: true
    │   │   └── UpstreamBroken        api_error                   502  x-should-retry: true
    │   └── UpstreamTimeout           timeout_error               504  x-should-retry: true
    ├── InvalidRequest                invalid_request_error       400
    ├── Conflict                      invalid_request_error       409
    ├── RequestTooLarge               request_too_large           413
    ├── HeadersTooLarge               invalid_request_error       431
    ├── NotFound                      not_found_error             404
    ├── Unauthorized                  authentication_error        401
    ├── TooManyRequests               rate_limit_error            429
    ├── BudgetExceeded                budget_exceeded_error       429  x-should-retry: false
    ├── ServiceUnavailable            api_error                   503  x-should-retry: true
    ├── InternalError                 api_error                   500  (an unexpected error in the sidecar)
    └── CredentialsUnavailable        api_error                   503  x-should-retry: true

Every answer the sidecar makes itself in Anthropic's error shape comes from :func:`error_response_parts`
(or :func:`error_body`): other modules raise or pass one of these, never write the JSON. On Bedrock's
routes the same errors take Bedrock's shape (:func:`bedrock_error_parts`: ``x-amzn-errortype`` and
``{"message": …}``, which boto3 and the Bedrock SDK clients read).
"""

from __future__ import annotations

import secrets
import uuid

import orjson


class SidecarError(Exception):
    status: int = 500
    error_type: str = "api_error"
    should_retry: bool | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(SidecarError):
    """Invalid configuration; the message names the bad key."""


class UpstreamError(SidecarError):
    """The upstream could not be used. Each upstream client maps its transport's failures to these once,
    so the proxy sees the same error, and answers the same way, whichever client carried the call."""

    default_message = "The upstream API failed."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class UpstreamUnavailable(UpstreamError):
    """No answer: the connection was refused, reset or closed before the answer's headers."""

    status = 502
    error_type = "api_error"
    should_retry = True
    default_message = "The upstream API could not be reached."


class UpstreamBroken(UpstreamUnavailable):
    """The answer broke off after its headers (reset, closed early, or not valid HTTP)."""

    default_message = "The upstream API closed the connection early."


class UpstreamTimeout(UpstreamError):
    """Nothing arrived within the connect or read timeout, before or after the answer's headers."""

    status = 504
    error_type = "timeout_error"
    should_retry = True
    default_message = "The upstream API did not answer in time."


class InvalidRequest(SidecarError):
    status = 400
    error_type = "invalid_request_error"


class Conflict(SidecarError):
    """The request is well formed but contradicts the state (e.g. a check-in for a fleet check)."""

    status = 409
    error_type = "invalid_request_error"


class RequestTooLarge(SidecarError):
    status = 413
    error_type = "request_too_large"


class HeadersTooLarge(SidecarError):
    status = 431
    error_type = "invalid_request_error"


class NotFound(SidecarError):
    status = 404
    error_type = "not_found_error"


class Unauthorized(SidecarError):
    status = 401
    error_type = "authentication_error"


class TooManyRequests(SidecarError):
    """A count the sidecar bounds (e.g. dynamic checks) is at its limit."""

    status = 429
    error_type = "rate_limit_error"


class BudgetExceeded(SidecarError):
    status = 429
    error_type = "budget_exceeded_error"
    should_retry = False

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class ServiceUnavailable(SidecarError):
    status = 503
    error_type = "api_error"
    should_retry = True


class InternalError(SidecarError):
    """What the client is told when the sidecar itself failed unexpectedly (a bug; the traceback is
    logged). The SDKs retry a 500 as they would Anthropic's own."""

    status = 500
    error_type = "api_error"


class CredentialsUnavailable(SidecarError):
    """The sidecar has no usable credentials for a cloud upstream (AWS chain, Google ADC)."""

    status = 503
    error_type = "api_error"
    should_retry = True


def new_request_id() -> str:
    """An id in Anthropic's style for answers the sidecar makes itself."""
    return "req_sidecar_" + secrets.token_hex(12)


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    )


def error_response_parts(exc: SidecarError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of Anthropic's error shape for ``exc``."""
    request_id = new_request_id()
    body = error_body(exc.error_type, exc.message, request_id)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"request-id", request_id.encode()),
    ]
    if exc.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if exc.should_retry else b"false"))
    return exc.status, headers, body


# Bedrock's error type for each of the sidecar's errors, most specific first (``x-amzn-errortype``).
_BEDROCK_TYPES: tuple[tuple[type[SidecarError], str], ...] = (
    (BudgetExceeded, "ServiceQuotaExceededException"),
    (TooManyRequests, "ThrottlingException"),
    (UpstreamTimeout, "ModelTimeoutException"),
    (UpstreamUnavailable, "ServiceUnavailableException"),
    (ServiceUnavailable, "ServiceUnavailableException"),
    (CredentialsUnavailable, "ServiceUnavailableException"),
    (NotFound, "ResourceNotFoundException"),
    (Unauthorized, "AccessDeniedException"),
    (RequestTooLarge, "ValidationException"),
    (InvalidRequest, "ValidationException"),
    (HeadersTooLarge, "ValidationException"),
    (Conflict, "ConflictException"),
)


def bedrock_error_type(exc: SidecarError) -> str:
    for kind, name in _BEDROCK_TYPES:
        if isinstance(exc, kind):
            return name
    return "InternalServerException"


def bedrock_error_parts(exc: SidecarError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of Bedrock's error shape for ``exc`` (same status as Anthropic's)."""
    body = orjson.dumps({"message": exc.message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
        (b"x-amzn-errortype", bedrock_error_type(exc).encode()),
    ]
    if exc.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if exc.should_retry else b"false"))
    return exc.status, headers, body
