"""Admin JSON carries no float noise: every float is rounded to 1e-12."""

from __future__ import annotations

import orjson

from sidecar.admin.api import admin_api
from sidecar.admin.json import CleanJSONResponse


def test_floats_are_rounded_at_every_depth() -> None:
    noisy = 1e-06 + 105 * 1e-06
    assert repr(noisy) == "0.00010599999999999999"
    body = CleanJSONResponse({"cost_usd": noisy, "calls": [{"cost_usd": noisy, "n": 3}], "t": (noisy,)}).body
    expected = {"cost_usd": 0.000106, "calls": [{"cost_usd": 0.000106, "n": 3}], "t": [0.000106]}
    assert orjson.loads(body) == expected
    assert b"0.000106," in body and b"99999" not in body


def test_the_admin_api_answers_with_it() -> None:
    assert admin_api().router.default_response_class is CleanJSONResponse
