"""The upper-bound estimate of a call and what a finished call is charged, against hand calculations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sidecar.core.budget_estimate import (
    TOKEN_SLACK,
    Rates,
    actual_of,
    call_tokens,
    charge_usd,
    estimate_call,
    worst_rates,
)
from sidecar.core.events import REFUSED, CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


# --- configuration -------------------------------------------------------------------------------


def test_estimate_known_model_hand_calculation(prices: PriceTable) -> None:
    # claude-sonnet-4-5: $3 input, $3.75 5m write, $6 1h write, $15 output per million; no geo multiplier.
    est = estimate_call(prices, "claude-sonnet-4-5", 1000, 500, NOW)
    n_in = 1000 + TOKEN_SLACK  # 1512
    assert est.tokens == n_in + 500 == 2012
    usd = 1512 * 6e-6 + 500 * 15e-6  # 0.009072 + 0.0075 = 0.016572
    assert 16_572_000 <= est.nanos <= 16_572_001
    assert abs(est.nanos / 1e9 - usd) < 2e-9


def test_estimate_applies_geo_and_fast_multipliers(prices: PriceTable) -> None:
    # claude-opus-4-6: $10 1h write, $25 output; geo us x1.1; fast mode x6.
    n_in = 10_000 + TOKEN_SLACK  # 10512
    default_geo = estimate_call(prices, "claude-opus-4-6", 10_000, 4096, NOW)
    assert abs(default_geo.nanos / 1e9 - (n_in * 10e-6 + 4096 * 25e-6) * 1.1) < 2e-9  # 0.228272
    global_geo = estimate_call(prices, "claude-opus-4-6", 10_000, 4096, NOW, inference_geo="global")
    assert abs(global_geo.nanos / 1e9 - 0.20752) < 2e-9
    fast = estimate_call(prices, "claude-opus-4-6", 10_000, 4096, NOW, speed="fast", inference_geo="global")
    assert abs(fast.nanos / 1e9 - 0.20752 * 6) < 2e-9


def test_estimate_uses_the_band_for_long_prompts(prices: PriceTable) -> None:
    # claude-haiku-5-5: $0.2 1h write / $0.5 output; above 100k input: $1.0 1h write / $2.5 output; geo x1.1.
    small = estimate_call(prices, "claude-haiku-5-5", 1000, 100, NOW)
    assert abs(small.nanos / 1e9 - (1512 * 0.2e-6 + 100 * 0.5e-6) * 1.1) < 2e-9
    big = estimate_call(prices, "claude-haiku-5-5", 150_000, 100, NOW)
    assert abs(big.nanos / 1e9 - (150_512 * 1.0e-6 + 100 * 2.5e-6) * 1.1) < 2e-9
    # One token above the threshold: a real prompt of 100,001 tokens is billed in the band.
    edge = estimate_call(prices, "claude-haiku-5-5", 100_001 - TOKEN_SLACK, 0, NOW)
    assert abs(edge.nanos / 1e9 - 100_001 * 1.0e-6 * 1.1) < 2e-9


def test_unknown_model_reserves_the_dearest_price_in_the_table(prices: PriceTable) -> None:
    # claude-mythos-preview is the dearest: $50 1h write, $125 output, geo us x1.1.
    worst = worst_rates(prices, NOW)
    assert (worst.input, worst.output) == pytest.approx((50e-6 * 1.1, 125e-6 * 1.1))
    est = estimate_call(prices, "claude-unreleased-9", 1000, 1000, NOW)
    assert abs(est.nanos / 1e9 - (1512 * 55e-6 + 1000 * 137.5e-6)) < 2e-9  # 0.22066
    assert estimate_call(prices, None, 1000, 1000, NOW) == est
    given = estimate_call(prices, "x", 1000, 1000, NOW, unknown=Rates(1e-6, 2e-6))
    assert abs(given.nanos / 1e9 - (1512e-6 + 2000e-6)) < 2e-9


def test_missing_max_tokens_stays_an_upper_bound(prices: PriceTable) -> None:
    est = estimate_call(prices, "claude-sonnet-4-5", 0, None, NOW)
    assert est.tokens == TOKEN_SLACK + 128_000


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=800, output_tokens=500),
        Usage(input_tokens=10, cache_creation_input_tokens=790, cache_creation_1h=790, output_tokens=500),
        Usage(
            input_tokens=10, cache_read_input_tokens=700, cache_creation_input_tokens=90, output_tokens=500
        ),
    ],
)
def test_estimate_bounds_the_real_cost(prices: PriceTable, usage: Usage) -> None:
    # 800 input tokens fit in 800 body bytes; output <= max_tokens.
    est = estimate_call(prices, "claude-opus-4-6", 800, 500, NOW)
    real = prices.cost("claude-opus-4-6", replace(usage, inference_geo="us"), NOW)
    assert real is not None
    assert real.total_usd * 1e9 <= est.nanos
    assert call_tokens(usage) <= est.tokens


# --- actual amounts --------------------------------------------------------------------------------


def _event(cost: float | None, usage: Usage, **kw: object) -> CallEvent:
    defaults: dict[str, object] = dict(
        event_id="e", started_at=NOW, app="a", session_id="s", session_source="header", method="POST",
        path="/v1/messages", operation="chat", stream=False, cost_usd=cost, usage=usage,
    )  # fmt: skip
    return CallEvent(**{**defaults, **kw})  # type: ignore[arg-type]


def test_actual_counts_cache_tokens_and_tool_uses(prices: PriceTable) -> None:
    usage = Usage(
        input_tokens=10, output_tokens=20, cache_read_input_tokens=300, cache_creation_input_tokens=40
    )
    actual = actual_of(_event(0.0123, usage, tool_uses=("a", "b")), prices)
    assert (actual.nanos, actual.tokens, actual.model_calls, actual.tool_calls) == (12_300_000, 370, 1, 2)
    assert actual_of(_event(0.5, usage, outcome=REFUSED), prices).nanos == 0


def test_unpriced_call_is_charged_the_dearest_rates_not_zero(prices: PriceTable) -> None:
    event = _event(None, Usage(input_tokens=1000, output_tokens=100))
    assert charge_usd(event, prices) == pytest.approx(1000 * 55e-6 + 100 * 137.5e-6)  # 0.06875
    assert charge_usd(_event(None, Usage()), prices) == 0.0


# --- admission math --------------------------------------------------------------------------------
