"""Every error the sidecar answers itself has Anthropic's shape, built in one place."""

from __future__ import annotations

import orjson
import pytest

from sidecar.alerting.engine import CheckinRefused
from sidecar.errors import (
    BudgetExceeded,
    Conflict,
    HeadersTooLarge,
    InvalidRequest,
    SidecarError,
    TooManyRequests,
    UpstreamTimeout,
    error_response_parts,
)


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "retry"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error", None),
        (Conflict("bad"), 409, "invalid_request_error", None),
        (HeadersTooLarge("bad"), 431, "invalid_request_error", None),
        (TooManyRequests("bad"), 429, "rate_limit_error", None),
        (BudgetExceeded("bad", "session_usd"), 429, "budget_exceeded_error", b"false"),
        (UpstreamTimeout("bad"), 504, "timeout_error", b"true"),
        (CheckinRefused(TooManyRequests, "bad"), 429, "rate_limit_error", None),
        (CheckinRefused(Conflict, "bad"), 409, "invalid_request_error", None),
    ],
)
def test_error_response_parts(exc: SidecarError, status: int, error_type: str, retry: bytes | None) -> None:
    got_status, headers, body = error_response_parts(exc)
    doc = orjson.loads(body)
    fields = dict(headers)
    assert got_status == status
    assert doc == {
        "type": "error",
        "error": {"type": error_type, "message": "bad"},
        "request_id": doc["request_id"],
    }
    assert doc["request_id"].startswith("req_sidecar_")
    assert fields[b"request-id"] == doc["request_id"].encode()
    assert fields[b"content-type"] == b"application/json"
    assert fields[b"content-length"] == str(len(body)).encode()
    assert fields.get(b"x-should-retry") == retry
