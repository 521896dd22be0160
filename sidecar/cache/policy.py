"""Prompt-cache policy glue (SPEC R-PC-0, R-PC-1): which mode applies to a call, and the planned body.

Modes (``auto`` | ``off`` | ``force``) come from, strongest first: the request header
``x-sidecar-prompt-cache``, the app's entry in the YAML ``prompt_cache.apps``, the global mode. The YAML
section::

    prompt_cache:
      mode: auto            # global mode when neither the flag nor SIDECAR_PROMPT_CACHE sets one
      ttl: 5m               # 5m | 1h
      apps:
        batch-jobs: {mode: "off"}
      min_tokens:           # per-model minimum cacheable length, overriding the price table
        claude-sonnet-4-6: 1024
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidecar.core.cache_plan import MODES, TTLS, CachePlan, plan_and_apply
from sidecar.core.pricing import PriceTable, normalise_model
from sidecar.errors import ConfigError

HEADER = b"x-sidecar-prompt-cache"
CONTROL = "prompt-cache"  # the header's key in ``sansio.headers.sidecar_controls``
DEFAULT_MODE = "auto"
DEFAULT_TTL = "5m"
_SECTION_KEYS = ("mode", "ttl", "apps", "min_tokens")


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class CacheSettings:
    """The validated prompt-cache configuration; ``min_tokens_override`` keys are normalised model ids."""

    mode: str = DEFAULT_MODE
    ttl: str = DEFAULT_TTL
    per_app: Mapping[str, str] = field(default_factory=_empty)
    min_tokens_override: Mapping[str, int] = field(default_factory=_empty)

    @classmethod
    def from_sources(
        cls, prompt_cache_section: Mapping[str, Any] | None, mode: str | None, ttl: str | None
    ) -> CacheSettings:
        """Build from the YAML ``prompt_cache:`` section and the flag/environment values.

        ``mode``/``ttl`` are ``Settings.prompt_cache``/``Settings.cache_ttl``. A flag or environment value
        wins over the file; since ``Settings`` cannot tell its default from an explicit value, the
        section's ``mode``/``ttl`` apply when the given value is ``None`` or the default (``auto``,
        ``5m``). Raises ``ConfigError`` naming the bad key, e.g. ``prompt_cache.apps.x.mode: ...``.
        """
        doc = dict(prompt_cache_section or {})
        for key in doc:
            if key not in _SECTION_KEYS:
                raise ConfigError(f"prompt_cache.{key}: unknown key (expected {', '.join(_SECTION_KEYS)})")
        file_mode = _mode(doc["mode"], "prompt_cache.mode") if doc.get("mode") is not None else None
        file_ttl = _ttl(doc["ttl"], "prompt_cache.ttl") if doc.get("ttl") is not None else None
        given_mode = _mode(mode, "prompt_cache") if mode is not None else None
        given_ttl = _ttl(ttl, "cache_ttl") if ttl is not None else None
        if given_mode is None or (given_mode == DEFAULT_MODE and file_mode is not None):
            given_mode = file_mode or DEFAULT_MODE
        if given_ttl is None or (given_ttl == DEFAULT_TTL and file_ttl is not None):
            given_ttl = file_ttl or DEFAULT_TTL
        return cls(
            mode=given_mode,
            ttl=given_ttl,
            per_app=MappingProxyType(_apps(doc.get("apps"))),
            min_tokens_override=MappingProxyType(_min_tokens(doc.get("min_tokens"))),
        )


def _mode(raw: object, where: str) -> str:
    if raw is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    text = str(raw).strip().lower() if isinstance(raw, str) else None
    if text not in MODES:
        raise ConfigError(f"{where}: expected one of {', '.join(MODES)}, got {raw!r}")
    return text


def _ttl(raw: object, where: str) -> str:
    text = str(raw).strip().lower() if isinstance(raw, str) else None
    if text not in TTLS:
        raise ConfigError(f"{where}: expected one of {', '.join(TTLS)}, got {raw!r}")
    return text


def _apps(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("prompt_cache.apps: expected a mapping of app name to {mode: ...}")
    out: dict[str, str] = {}
    for app, entry in raw.items():
        where = f"prompt_cache.apps.{app}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a mapping like {{mode: auto}}")
        for key in entry:
            if key != "mode":
                raise ConfigError(f"{where}.{key}: unknown key (expected mode)")
        if "mode" in entry:
            out[str(app)] = _mode(entry["mode"], f"{where}.mode")
    return out


def _min_tokens(raw: object) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("prompt_cache.min_tokens: expected a mapping of model id to a token count")
    out: dict[str, int] = {}
    for model, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(
                f"prompt_cache.min_tokens.{model}: expected a non-negative integer, got {value!r}"
            )
        out[normalise_model(str(model))] = value
    return out


def decide_mode(settings: CacheSettings, app: str, header_value: str | None) -> str:
    """The mode for one call: a valid ``x-sidecar-prompt-cache`` value, else the app's, else the global.

    An unrecognised header value is ignored (the call proceeds under the configured mode).
    """
    if header_value is not None:
        wanted = header_value.strip().lower()
        if wanted in MODES:
            return wanted
    return settings.per_app.get(app, settings.mode)


def min_tokens_for(settings: CacheSettings, prices: PriceTable, model: str | None) -> int | None:
    """The model's minimum cacheable length: the config override, else the price table, else ``None``."""
    if model is None:
        return None
    overrides = settings.min_tokens_override
    if overrides:
        for name in (normalise_model(model), prices.canonical(model)):
            if name is not None and name in overrides:
                return overrides[name]
    return prices.min_cacheable_tokens(model)


def apply(
    settings: CacheSettings,
    prices: PriceTable,
    body: bytes,
    model: str | None,
    app: str,
    header_value: str | None,
    doc: dict[str, Any] | None = None,
) -> tuple[bytes, CachePlan]:
    """Plan breakpoints for one ``POST /v1/messages`` body; returns ``body`` itself when unchanged.

    Never raises; ``plan.changed`` tells whether a marker was added (``CallEvent.cache_breakpoint_injected``).
    """
    mode = decide_mode(settings, app, header_value)
    if mode == "off":
        return body, CachePlan(False, 0, (), "off")
    minimum = min_tokens_for(settings, prices, model) if mode == "auto" else None
    return plan_and_apply(body, model=model, mode=mode, ttl=settings.ttl, min_tokens=minimum, doc=doc)
