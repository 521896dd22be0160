"""The admin API's JSON: every float rounded to 1e-12, so sums of prices read as a hand calculation does
(``0.000106``, not ``0.00010599999999999999``)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

from sidecar.core.money import clean_usd


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return clean_usd(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class CleanJSONResponse(JSONResponse):
    """FastAPI's default response class for the admin API (the body is already JSON-compatible)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(_clean(content))
