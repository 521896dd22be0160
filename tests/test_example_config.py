"""``sidecar.example.yaml`` is loaded by the product's own configuration path, every key in it is one the
parsers know (they reject unknown ones at every level), and every key the parsers know is in it."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.alerting import config as alerting_config
from sidecar.app import PRICING_KEYS, build_sidecar
from sidecar.cache import policy as cache_policy
from sidecar.core import budget_config as budgets
from sidecar.core import price_data
from sidecar.errors import ConfigError
from sidecar.respcache import config as response_cache
from sidecar.settings import PARSERS, POLICY_SECTIONS, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "sidecar.example.yaml"
# Mappings whose keys are names the user chooses (apps, models, labels), not keys of the format.
FREE_NAMES = (
    "budgets.apps",
    "prompt_cache.apps",
    "prompt_cache.min_tokens",
    "response_cache.apps",
    "pricing.overrides",
    "checks[].labels",
)


def _load(path: Path, tmp_path: Path) -> Settings:
    """What ``serve --config`` does up to serving: settings, then every component validating its part."""
    settings = load_settings({}, env={}, config_path=str(path))
    store = f"sqlite:///{tmp_path}/data/events.db"
    build_sidecar(replace(settings, store=store, local_store=store, spool_path=str(tmp_path / "spool.db")))
    return settings


def _paths(node: Any, at: str = "") -> set[str]:
    """Key paths of a YAML document, with chosen names as ``*`` and list items as ``[]``."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            name = "*" if at in FREE_NAMES else str(key)
            path = f"{at}.{name}" if at else name
            out.add(path)
            out |= _paths(value, path)
    elif isinstance(node, list):
        for item in node:
            out |= _paths(item, at + "[]")
    return out


def _known() -> set[str]:
    """Every key path the parsers accept, from their own key lists."""
    limits = set(budgets._KEYS)
    # prompt_cache and response_cache: the sections (their modes are set by environment or flag)
    paths = (set(PARSERS) - {"prompt_cache", "response_cache"}) | set(POLICY_SECTIONS)
    paths |= {"budgets.defaults", "budgets.apps", "budgets.redis_fail_mode", "budgets.apps.*"}
    paths |= {f"budgets.defaults.{k}" for k in limits} | {f"budgets.apps.*.{k}" for k in limits}
    paths |= {f"prompt_cache.{k}" for k in cache_policy._SECTION_KEYS}
    paths |= {"prompt_cache.apps.*", "prompt_cache.apps.*.mode", "prompt_cache.min_tokens.*"}
    paths |= {f"response_cache.{k}" for k in response_cache.SECTION_KEYS} | {"response_cache.apps.*"}
    paths |= {f"response_cache.apps.*.{k}" for k in response_cache.APP_KEYS}
    paths |= {f"pricing.{k}" for k in PRICING_KEYS} | {"pricing.overrides.*"}
    paths |= {f"pricing.overrides.*.{f}" for f in (*price_data.PRICE_FIELDS, *price_data.OVERRIDE_EXTRA)}
    paths |= {f"checks[].{k}" for k in alerting_config._CHECK_KEYS} | {"checks[].labels.*"}
    paths |= {f"notify.{k}" for k in alerting_config._NOTIFY_KEYS}
    paths |= {"notify.alertmanager.url", "notify.alertmanager.resend_interval"}
    paths |= {"notify.webhooks[].url", "notify.webhooks[].format"}
    return paths


def test_the_example_loads_through_the_products_own_configuration(tmp_path: Path) -> None:
    settings = _load(EXAMPLE, tmp_path)
    assert settings.port == 8788 and settings.log_format == "auto"
    assert [c["name"] for c in settings.policies["checks"]] == [
        "nightly-eval",
        "voice-members",
        "voice-size",
        "traffic",
    ]


def test_the_example_documents_every_key_the_parsers_know_and_no_other() -> None:
    documented = _paths(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    known = _known()
    per_app = {f"budgets.apps.*.{k}" for k in budgets._KEYS}  # the defaults' keys again: some suffice
    assert documented - known == set(), "documented but unknown"
    assert known - per_app - documented == set(), "known but not documented in sidecar.example.yaml"


def _mappings(node: Any, at: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if at not in FREE_NAMES:
            found.append((at, node))
        for key, value in node.items():
            name = "*" if at in FREE_NAMES else str(key)
            found += _mappings(value, f"{at}.{name}" if at else name)
    elif isinstance(node, list):
        for item in node:
            found += _mappings(item, at + "[]")
    return found


def test_an_unknown_key_is_refused_at_every_level_of_the_example(tmp_path: Path) -> None:
    """So a key in the example that loads is a key the product reads, not one it silently ignores."""
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    levels = _mappings(doc)
    assert len(levels) > 15
    for i, (at, _) in enumerate(levels):
        broken = copy.deepcopy(doc)
        _mappings(broken)[i][1]["bogus_key"] = 1
        path = tmp_path / f"broken-{i}.yaml"
        path.write_text(yaml.safe_dump(broken), encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            _load(path, tmp_path / f"run-{i}")
        assert "\n" not in str(info.value), at
