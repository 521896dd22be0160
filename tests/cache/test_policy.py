"""Prompt-cache policy glue: configuration, mode precedence, per-model minimums, and the planned body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import yaml

from sidecar.cache.policy import CacheSettings, apply, decide_mode, min_tokens_for
from sidecar.core.pricing import PriceTable
from sidecar.errors import ConfigError


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


def section(text: str) -> Any:
    return yaml.safe_load(text)["prompt_cache"]


def system_of_tokens(n: int) -> str:
    return "x" * (4 * n - 25)  # a text block of exactly n tokens in the estimate (see test_cache_plan)


def body(model: str, tokens: int) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "max_tokens": 5,
            "system": system_of_tokens(tokens),
            "messages": [{"role": "user", "content": "hi"}],
        }
    )


def test_yaml_section_is_parsed() -> None:
    doc = section(
        """
prompt_cache:
  mode: force
  ttl: 1h
  apps:
    batch-jobs: {mode: off}      # bare `off` is YAML false
    chat: {mode: "auto"}
  min_tokens:
    Claude-Sonnet-4-6-20260217: 1024
"""
    )
    s = CacheSettings.from_sources(doc, None, None)
    assert (s.mode, s.ttl) == ("force", "1h")
    assert dict(s.per_app) == {"batch-jobs": "off", "chat": "auto"}
    assert dict(s.min_tokens_override) == {"claude-sonnet-4-6": 1024}


def test_defaults_and_precedence_of_flag_or_env_over_file() -> None:
    assert CacheSettings.from_sources(None, None, None) == CacheSettings("auto", "5m")
    assert CacheSettings.from_sources(None, "auto", "5m") == CacheSettings("auto", "5m")
    file = {"mode": "force", "ttl": "1h"}
    # Settings' defaults (auto, 5m) cannot be told from explicit values: the file's then apply.
    s = CacheSettings.from_sources(file, "auto", "5m")
    assert (s.mode, s.ttl) == ("force", "1h")
    s = CacheSettings.from_sources(file, "off", "5m")  # SIDECAR_PROMPT_CACHE=off wins
    assert (s.mode, s.ttl) == ("off", "1h")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"mdoe": "auto"}, "prompt_cache.mdoe: unknown key"),
        ({"mode": "sometimes"}, "prompt_cache.mode: expected one of auto, off, force, got 'sometimes'"),
        ({"mode": True}, "prompt_cache.mode: expected one of auto, off, force, got True"),
        ({"ttl": "10m"}, "prompt_cache.ttl: expected one of 5m, 1h, got '10m'"),
        ({"ttl": 300}, "prompt_cache.ttl: expected one of 5m, 1h, got 300"),
        ({"apps": ["a"]}, "prompt_cache.apps: expected a mapping"),
        ({"apps": {"x": "off"}}, "prompt_cache.apps.x: expected a mapping"),
        ({"apps": {"x": {"mode": "never"}}}, "prompt_cache.apps.x.mode: expected one of"),
        ({"apps": {"x": {"ttl": "1h"}}}, "prompt_cache.apps.x.ttl: unknown key"),
        (
            {"min_tokens": {"claude-opus-5": -1}},
            "prompt_cache.min_tokens.claude-opus-5: expected a non-negative",
        ),
        ({"min_tokens": {"claude-opus-5": "many"}}, "prompt_cache.min_tokens.claude-opus-5: expected"),
        ({"min_tokens": 5}, "prompt_cache.min_tokens: expected a mapping"),
    ],
)
def test_bad_config_names_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CacheSettings.from_sources(doc, None, None)
    assert message in str(info.value)


def test_mode_precedence_header_then_app_then_global() -> None:
    s = CacheSettings("auto", "5m", per_app={"batch": "off"})
    assert decide_mode(s, "web", None) == "auto"
    assert decide_mode(s, "batch", None) == "off"
    assert decide_mode(s, "batch", " FORCE ") == "force"
    assert decide_mode(s, "web", "off") == "off"
    assert decide_mode(s, "batch", "bogus") == "off"  # an unknown header value is ignored


def test_min_tokens_override_then_table(prices: PriceTable) -> None:
    s = CacheSettings(min_tokens_override={"claude-sonnet-4-6": 1024})
    assert min_tokens_for(s, prices, "claude-sonnet-4-6") == 1024  # the table says 2048
    assert min_tokens_for(s, prices, "anthropic/claude-sonnet-4-6[1m]") == 1024
    assert min_tokens_for(s, prices, "claude-haiku-4-5-20251001") == 4096
    assert min_tokens_for(s, prices, "claude-unknown-9") is None
    assert min_tokens_for(s, prices, None) is None


def test_apply_uses_the_model_minimum_and_overrides(prices: PriceTable) -> None:
    model = "claude-sonnet-4-6"  # 2048 in the table
    original = body(model, 1500)
    new, plan = apply(CacheSettings(), prices, original, model, "web", None)
    assert new is original and plan.reason == "below_minimum"
    lowered = CacheSettings(min_tokens_override={model: 1024})
    new, plan = apply(lowered, prices, original, model, "web", None)
    assert plan.positions == ("system[-1]",) and orjson.loads(new)["system"][0]["cache_control"] == {
        "type": "ephemeral"
    }
    new, plan = apply(CacheSettings(), prices, original, model, "web", "force")
    assert plan.changed


def test_apply_off_by_app_or_header_returns_the_same_bytes(prices: PriceTable) -> None:
    original = body("claude-sonnet-4-5", 3000)
    s = CacheSettings(per_app={"batch": "off"})
    for app, header in (("batch", None), ("web", "off")):
        new, plan = apply(s, prices, original, "claude-sonnet-4-5", app, header)
        assert new is original and plan.reason == "off" and not plan.changed
    new, plan = apply(CacheSettings(ttl="1h"), prices, original, "claude-sonnet-4-5", "web", None)
    assert plan.ttls == ("1h",) and orjson.loads(new)["system"][0]["cache_control"]["ttl"] == "1h"
