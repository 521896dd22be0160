"""Budget configuration: file, environment and runtime layers, and errors that name the key."""

from __future__ import annotations

import pytest

from sidecar.core.budget_config import WARN, BudgetConfig, Limits, limits_json
from sidecar.errors import ConfigError

SPEC_EXAMPLE = {
    "defaults": {"session_max_usd": 2.00, "session_max_tool_calls": 40, "mode": "enforce"},
    "apps": {"voice-agent": {"session_max_usd": 0.50, "app_max_usd_per_day": 200}},
}


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


def test_limits_json_uses_the_file_keys_and_reads_back() -> None:
    limits = BudgetConfig.from_sources(SPEC_EXAMPLE, {}).limits_for("voice-agent")
    doc = limits_json(limits)
    assert doc == {
        "session_max_usd": 0.5,
        "session_max_tokens": None,
        "session_max_model_calls": None,
        "session_max_tool_calls": 40,
        "app_max_usd_per_day": 200.0,
        "mode": "enforce",
    }
    assert BudgetConfig().with_app_override("x", doc).limits_for("x") == limits
