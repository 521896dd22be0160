"""Budget configuration, the upper-bound estimate and the admission math, against hand calculations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sidecar.core.budgets import (
    APP_DAILY_USD,
    SESSION_MODEL_CALLS,
    SESSION_TOKENS,
    SESSION_TOOL_CALLS,
    SESSION_USD,
    TOKEN_SLACK,
    WARN,
    Breach,
    BudgetConfig,
    Counts,
    Limits,
    Rates,
    actual_of,
    breaches,
    call_tokens,
    charge_usd,
    estimate_call,
    reached,
    remaining_usd,
    threshold,
    utc_day,
    worst_rates,
)
from sidecar.core.events import REFUSED, CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage
from sidecar.errors import ConfigError

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
SPEC_EXAMPLE = {
    "defaults": {"session_max_usd": 2.00, "session_max_tool_calls": 40, "mode": "enforce"},
    "apps": {"voice-agent": {"session_max_usd": 0.50, "app_max_usd_per_day": 200}},
}


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


# --- configuration -------------------------------------------------------------------------------


def test_spec_example_merges_defaults_and_app_overrides() -> None:
    config = BudgetConfig.from_sources(SPEC_EXAMPLE, {})
    assert config.limits_for("voice-agent") == Limits(
        session_usd=0.5, session_tool_calls=40, app_daily_usd=200.0, mode="enforce"
    )
    assert config.limits_for("anything-else") == Limits(session_usd=2.0, session_tool_calls=40)
    assert config.fail_mode == "open"
    assert config.has_ceilings


def test_env_overrides_file_defaults_but_not_per_app_values() -> None:
    env = {
        "SIDECAR_SESSION_MAX_USD": "1.5",
        "SIDECAR_SESSION_MAX_TOKENS": "100000",
        "SIDECAR_SESSION_MAX_MODEL_CALLS": "30",
        "SIDECAR_SESSION_MAX_TOOL_CALLS": "10",
        "SIDECAR_APP_MAX_USD_PER_DAY": "50",
        "SIDECAR_BUDGET_MODE": "WARN",
        "SIDECAR_REDIS_FAIL_MODE": "closed",
    }
    config = BudgetConfig.from_sources(SPEC_EXAMPLE, env)
    assert config.limits_for("other") == Limits(1.5, 100_000, 30, 10, 50.0, WARN)
    # The app's own file value is more specific than a default, wherever the default came from.
    assert config.limits_for("voice-agent") == Limits(0.5, 100_000, 30, 10, 200.0, WARN)
    assert config.fail_mode == "closed"


def test_empty_env_values_are_ignored_and_nothing_configured_means_no_ceiling() -> None:
    config = BudgetConfig.from_sources(None, {"SIDECAR_SESSION_MAX_USD": ""})
    assert config.limits_for("x") == Limits()
    assert not config.has_ceilings


def test_null_in_an_app_override_removes_a_default_ceiling() -> None:
    doc = {"defaults": {"session_max_usd": 2}, "apps": {"batch": {"session_max_usd": None}}}
    config = BudgetConfig.from_sources(doc, {})
    assert config.limits_for("batch").session_usd is None
    assert config.limits_for("other").session_usd == 2.0


@pytest.mark.parametrize(
    ("doc", "env", "message"),
    [
        (
            {"apps": {"voice-agent": {"session_max_usd": "x"}}},
            {},
            "budgets.apps.voice-agent.session_max_usd: expected a positive number, got 'x'",
        ),
        ({"defaults": {"session_max_usd": 0}}, {}, "budgets.defaults.session_max_usd: expected a positive"),
        ({"defaults": {"session_max_usd": -1}}, {}, "budgets.defaults.session_max_usd: expected a positive"),
        (
            {"defaults": {"session_max_usd": True}},
            {},
            "budgets.defaults.session_max_usd: expected a positive",
        ),
        (
            {"defaults": {"session_max_tokens": 10.5}},
            {},
            "budgets.defaults.session_max_tokens: expected a positive integer, got 10.5",
        ),
        ({"defaults": {"max_usd": 1}}, {}, "budgets.defaults.max_usd: unknown key"),
        ({"limits": {}}, {}, "budgets.limits: unknown key"),
        ({"apps": ["a"]}, {}, "budgets.apps: expected a mapping"),
        ({"apps": {"a": 3}}, {}, "budgets.apps.a: expected a mapping"),
        ({"defaults": {"mode": "strict"}}, {}, "budgets.defaults.mode: expected one of enforce, warn"),
        (
            {},
            {"SIDECAR_SESSION_MAX_USD": "nan"},
            "SIDECAR_SESSION_MAX_USD: expected a positive number, got 'nan'",
        ),
        (
            {},
            {"SIDECAR_SESSION_MAX_TOKENS": "1.5"},
            "SIDECAR_SESSION_MAX_TOKENS: expected a positive integer",
        ),
        ({}, {"SIDECAR_BUDGET_MODE": "off"}, "SIDECAR_BUDGET_MODE: expected one of enforce, warn"),
        ({}, {"SIDECAR_REDIS_FAIL_MODE": "maybe"}, "SIDECAR_REDIS_FAIL_MODE: expected one of open, closed"),
        ({"redis_fail_mode": "x"}, {}, "budgets.redis_fail_mode: expected one of open, closed"),
    ],
)
def test_bad_values_name_the_key(doc: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BudgetConfig.from_sources(doc, env)
    assert str(info.value).startswith(message)


def test_runtime_override_is_a_separate_layer_kept_across_reload() -> None:
    config = BudgetConfig.from_sources(SPEC_EXAMPLE, {})
    changed = config.with_app_override("voice-agent", {"session_max_usd": 0.25, "mode": "warn"})
    assert changed.limits_for("voice-agent") == Limits(0.25, None, None, 40, 200.0, WARN)
    assert config.limits_for("voice-agent").session_usd == 0.5  # the original is untouched
    reloaded = BudgetConfig.from_sources({"defaults": {"session_max_tool_calls": 5}}, {})
    merged = reloaded.with_runtime_of(changed)
    assert merged.limits_for("voice-agent") == Limits(0.25, None, None, 5, None, WARN)
    assert merged.without_app_override("voice-agent").limits_for("voice-agent") == Limits(
        session_tool_calls=5
    )
    with pytest.raises(ConfigError, match=r"^session_max_tokens: expected a positive integer, got 'lots'"):
        config.with_app_override("a", {"session_max_tokens": "lots"})


# --- estimate ------------------------------------------------------------------------------------


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


def test_refused_only_when_used_plus_others_reservations_reach_the_ceiling() -> None:
    caps = Limits(session_usd=0.10).caps()
    assert caps == {SESSION_USD: 100_000_000}
    assert breaches(caps, Counts(used_nanos=99_999_999), Counts()) == []
    assert breaches(caps, Counts(used_nanos=60_000_000, reserved_nanos=39_999_999), Counts()) == []
    assert breaches(caps, Counts(used_nanos=60_000_000, reserved_nanos=40_000_000), Counts()) == [
        Breach(SESSION_USD, 100_000_000, 60_000_000, 40_000_000)
    ]


def test_every_ceiling_in_order() -> None:
    caps = Limits(0.1, 1000, 5, 3, 1.0).caps()
    session = Counts(100_000_000, 1000, 4, 3, 0, 0, 1)
    app_day = Counts(used_nanos=999_000_000, reserved_nanos=1_000_000)
    assert [b.limit for b in breaches(caps, session, app_day)] == [
        SESSION_USD,
        SESSION_TOKENS,
        SESSION_MODEL_CALLS,  # 4 used + 1 in flight
        SESSION_TOOL_CALLS,
        APP_DAILY_USD,
    ]
    # With no session, only the app's day applies.
    assert [b.limit for b in breaches(caps, None, app_day)] == [APP_DAILY_USD]


def test_threshold_is_eighty_percent_rounded_up() -> None:
    assert threshold(100_000_000) == 80_000_000
    assert threshold(5) == 4  # 0.8 * 5 = 4
    assert threshold(3) == 3  # 0.8 * 3 = 2.4: 2 is below 80 %
    caps = Limits(session_usd=0.10, session_tool_calls=3).caps()
    assert reached(caps, Counts(used_nanos=79_999_999, tool_calls=2), Counts()) == []
    assert reached(caps, Counts(used_nanos=80_000_000, tool_calls=3), Counts()) == [
        SESSION_USD,
        SESSION_TOOL_CALLS,
    ]


def test_remaining_is_the_tightest_usd_ceiling() -> None:
    caps = Limits(session_usd=0.50, app_daily_usd=10.0).caps()
    assert remaining_usd(caps, Counts(used_nanos=120_000_000), Counts(used_nanos=9_700_000_000)) == 0.3
    assert remaining_usd(caps, Counts(used_nanos=120_000_000), Counts(used_nanos=1_000_000_000)) == 0.38
    assert remaining_usd(caps, Counts(used_nanos=600_000_000), Counts()) == 0.0
    assert remaining_usd(Limits(session_tokens=5).caps(), Counts(), Counts()) is None


def test_utc_day() -> None:
    assert utc_day(datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC).timestamp()) == "2026-11-20"
    assert utc_day(datetime(2026, 11, 21, 0, 0, 0, tzinfo=UTC).timestamp()) == "2026-11-21"
