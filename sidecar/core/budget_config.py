"""Cost ceilings (SPEC §7): the limit names, and their configuration from the file, the environment and
the admin API. Pure.

Units. Counters are integers: USD in nano-dollars (``NANOS`` per dollar) so that sums are exact and the
same in every backend (Redis adds them with ``HINCRBY``); estimates round up, real costs to nearest
(:mod:`sidecar.core.budget_estimate`). The admission rule is in :mod:`sidecar.core.budget_counts`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from sidecar.errors import ConfigError

NANOS = 1_000_000_000  # counter units per USD
SESSION_USD = "session_usd"
SESSION_TOKENS = "session_tokens"
SESSION_MODEL_CALLS = "session_model_calls"
SESSION_TOOL_CALLS = "session_tool_calls"
APP_DAILY_USD = "app_daily_usd"
BLOCKED = "blocked"
LIMIT_NAMES = (SESSION_USD, SESSION_TOKENS, SESSION_MODEL_CALLS, SESSION_TOOL_CALLS, APP_DAILY_USD, BLOCKED)
ENFORCE, WARN = "enforce", "warn"
FAIL_OPEN, FAIL_CLOSED = "open", "closed"

# file/env key -> Limits field
_KEYS = {
    "session_max_usd": "session_usd",
    "session_max_tokens": "session_tokens",
    "session_max_model_calls": "session_model_calls",
    "session_max_tool_calls": "session_tool_calls",
    "app_max_usd_per_day": "app_daily_usd",
    "mode": "mode",
}
_ENV = {"SIDECAR_" + k.upper(): k for k in _KEYS if k != "mode"} | {"SIDECAR_BUDGET_MODE": "mode"}


@dataclass(frozen=True, slots=True)
class Limits:
    """The ceilings that apply to one app's sessions and UTC days; ``None`` = no ceiling."""

    session_usd: float | None = None
    session_tokens: int | None = None
    session_model_calls: int | None = None
    session_tool_calls: int | None = None
    app_daily_usd: float | None = None
    mode: str = ENFORCE

    def caps(self) -> Mapping[str, int]:
        """Set ceilings by limit name, in counter units (nano-dollars for USD). Read-only; computed once
        per ``Limits`` (it is asked several times for every call)."""
        return _caps_of(self)


@functools.lru_cache(maxsize=256)
def _caps_of(limits: Limits) -> Mapping[str, int]:
    raw = {
        SESSION_USD: None if limits.session_usd is None else round(limits.session_usd * NANOS),
        SESSION_TOKENS: limits.session_tokens,
        SESSION_MODEL_CALLS: limits.session_model_calls,
        SESSION_TOOL_CALLS: limits.session_tool_calls,
        APP_DAILY_USD: None if limits.app_daily_usd is None else round(limits.app_daily_usd * NANOS),
    }
    return MappingProxyType({name: cap for name, cap in raw.items() if cap is not None})


def _number(where: str, raw: object, *, whole: bool) -> float | int | None:
    if raw is None:
        return None
    kind = "a positive integer" if whole else "a positive number"
    value: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        raise ConfigError(f"{where}: expected {kind}, got {raw!r}")
    return int(value) if whole else value


def _value(where: str, key: str, raw: object) -> object:
    if key == "mode":
        text = str(raw).strip().lower()
        if text not in (ENFORCE, WARN):
            raise ConfigError(f"{where}: expected one of enforce, warn, got {raw!r}")
        return text
    return _number(where, raw, whole=key not in ("session_max_usd", "app_max_usd_per_day"))


def parse_patch(raw: object, where: str) -> dict[str, Any]:
    """Validate a mapping of ceilings (file keys) into ``Limits`` field values; ``null`` removes one."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}" if where else str(key)
        if key not in _KEYS:
            raise ConfigError(f"{at}: unknown key (expected one of {', '.join(_KEYS)})")
        if key == "mode" and value is None:
            continue
        out[_KEYS[key]] = _value(at, key, value)
    return out


def limits_json(limits: Limits) -> dict[str, Any]:
    """``limits`` with the file's key names (what ``PUT /sidecar/v1/apps/{app}/budget`` accepts)."""
    return {key: getattr(limits, name) for key, name in _KEYS.items()}


class BudgetConfig:
    """Validated ceilings: defaults, per-app overrides from the file, and runtime overrides (admin PUT).

    Immutable: the ``with_*`` methods return a new config. ``limits_for`` is a dict lookup.
    """

    __slots__ = ("_resolved", "apps", "defaults", "fail_mode", "runtime")

    def __init__(
        self,
        defaults: Limits | None = None,
        apps: Mapping[str, Mapping[str, Any]] | None = None,
        runtime: Mapping[str, Mapping[str, Any]] | None = None,
        fail_mode: str = FAIL_OPEN,
    ) -> None:
        self.defaults = defaults or Limits()
        self.apps = dict(apps or {})
        self.runtime = dict(runtime or {})
        self.fail_mode = fail_mode
        resolved: dict[str, Limits] = {}
        for app in {*self.apps, *self.runtime}:
            merged = {**self.apps.get(app, {}), **self.runtime.get(app, {})}
            resolved[app] = replace(self.defaults, **merged)
        self._resolved = resolved

    @classmethod
    def from_sources(cls, policies_budgets: Mapping[str, Any] | None, env: Mapping[str, str]) -> BudgetConfig:
        """Parse the YAML ``budgets:`` section and the ``SIDECAR_*`` budget variables (env wins).

        Raises ``ConfigError`` naming the bad key, e.g. ``budgets.apps.x.session_max_usd: ...``.
        """
        doc = dict(policies_budgets or {})
        for key in doc:
            if key not in ("defaults", "apps", "redis_fail_mode"):
                raise ConfigError(f"budgets.{key}: unknown key (expected defaults, apps, redis_fail_mode)")
        defaults = parse_patch(doc.get("defaults") or {}, "budgets.defaults")
        for name, key in _ENV.items():
            if env.get(name, "").strip():
                defaults[_KEYS[key]] = _value(name, key, env[name])
        apps_raw = doc.get("apps") or {}
        if not isinstance(apps_raw, Mapping):
            raise ConfigError("budgets.apps: expected a mapping of app name to ceilings")
        apps = {str(app): parse_patch(v, f"budgets.apps.{app}") for app, v in apps_raw.items()}
        fail, where = doc.get("redis_fail_mode", FAIL_OPEN), "budgets.redis_fail_mode"
        if env.get("SIDECAR_REDIS_FAIL_MODE", "").strip():
            fail, where = env["SIDECAR_REDIS_FAIL_MODE"], "SIDECAR_REDIS_FAIL_MODE"
        fail_mode = str(fail).strip().lower()
        if fail_mode not in (FAIL_OPEN, FAIL_CLOSED):
            raise ConfigError(f"{where}: expected one of open, closed, got {fail!r}")
        return cls(replace(Limits(), **defaults), apps, None, fail_mode)

    def limits_for(self, app: str) -> Limits:
        return self._resolved.get(app, self.defaults)

    def with_app_override(self, app: str, mapping: object) -> BudgetConfig:
        """Replace ``app``'s runtime override by ``mapping`` (file keys). Raises ``ConfigError``."""
        runtime = {**self.runtime, app: parse_patch(mapping, "")}
        return BudgetConfig(self.defaults, self.apps, runtime, self.fail_mode)

    def without_app_override(self, app: str) -> BudgetConfig:
        runtime = {k: v for k, v in self.runtime.items() if k != app}
        return BudgetConfig(self.defaults, self.apps, runtime, self.fail_mode)

    def with_runtime_of(self, other: BudgetConfig) -> BudgetConfig:
        """This (reloaded) config carrying ``other``'s runtime overrides."""
        return BudgetConfig(self.defaults, self.apps, other.runtime, self.fail_mode)

    @property
    def has_ceilings(self) -> bool:
        return any(limits.caps() for limits in (self.defaults, *self._resolved.values()))
