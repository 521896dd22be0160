"""Which calls the response cache answers and keeps: mode per deployment, app and request."""

from __future__ import annotations

import pytest

from sidecar.errors import ConfigError
from sidecar.respcache.config import CacheConfig, Decision


def test_off_ignores_every_header() -> None:
    config = CacheConfig()
    assert not config.enabled
    for header in (b"on", b"refresh", b"off", None):
        assert config.decide("app", header, b"60") is None


def test_opt_in_needs_the_header() -> None:
    config = CacheConfig(mode="opt-in", ttl_s=120)
    assert config.enabled
    assert config.decide("app", None, None) is None
    assert config.decide("app", b"off", None) is None
    assert config.decide("app", b"bogus", None) is None
    assert config.decide("app", b" ON ", None) == Decision(lookup=True, store=True, ttl_s=120)
    refresh = config.decide("app", b"refresh", b"30")
    assert refresh == Decision(lookup=False, store=True, ttl_s=30) and refresh.refresh


def test_on_caches_unless_told_otherwise() -> None:
    config = CacheConfig(mode="on")
    assert config.decide("app", None, None) == Decision(True, True, 3600)
    assert config.decide("app", b"off", None) == Decision(False, False, 3600)
    # A bad TTL header is ignored, a huge one capped.
    assert config.decide("app", None, b"-5") == Decision(True, True, 3600)
    assert config.decide("app", None, b"soon") == Decision(True, True, 3600)
    assert config.decide("app", None, b"999999999") == Decision(True, True, 365 * 86400)


def test_apps_override_the_deployment() -> None:
    config = CacheConfig.from_sources(
        {
            "mode": "opt-in",
            "ttl": 600,
            "apps": {"evals": {"mode": "on", "ttl": 86400}, "live": {"mode": False}},
        },
        "off",
        3600,
    )
    assert config.mode == "opt-in" and config.ttl_s == 600
    assert config.decide("evals", None, None) == Decision(True, True, 86400)
    assert config.decide("live", b"on", None) is None
    assert config.decide("other", b"on", None) == Decision(True, True, 600)
    only_app = CacheConfig.from_sources({"apps": {"evals": {"mode": True}}}, "off", 3600)
    assert only_app.enabled and only_app.decide("other", b"on", None) is None


def test_the_environment_wins_over_the_file_unless_default() -> None:
    config = CacheConfig.from_sources({"mode": "on", "ttl": 60}, "opt-in", 120)
    assert (config.mode, config.ttl_s) == ("opt-in", 120)


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"bogus": 1}, "response_cache.bogus"),
        ({"mode": "sometimes"}, "response_cache.mode"),
        ({"ttl": 0}, "response_cache.ttl"),
        ({"ttl": "1h"}, "response_cache.ttl"),
        ({"apps": []}, "response_cache.apps"),
        ({"apps": {"x": "on"}}, "response_cache.apps.x"),
        ({"apps": {"x": {"mode": "on", "size": 1}}}, "response_cache.apps.x.size"),
        ({"apps": {"x": {"ttl": True}}}, "response_cache.apps.x.ttl"),
    ],
)
def test_a_bad_key_is_named(section: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        CacheConfig.from_sources(section, "off", 3600)
    assert str(info.value).startswith(where + ":")
