"""Which calls the response cache answers and keeps (SPEC R-RC-1, R-RC-7): the mode per deployment, per
app and per request.

Modes: ``off`` (nothing is looked up or stored; request headers are ignored), ``opt-in`` (only requests
sent with ``x-sidecar-cache: on`` or ``refresh``), ``on`` (every ``POST /v1/messages``). The deployment's
mode is ``SIDECAR_RESPONSE_CACHE``, or the YAML section's ``mode``; an app's entry under ``apps`` replaces
it for that app. Per request, ``x-sidecar-cache: on | off | refresh`` (refresh calls the upstream and
replaces the entry) and ``x-sidecar-cache-ttl`` (seconds: the lifetime of the entry this call stores).
The YAML section::

    response_cache:
      mode: opt-in           # off | opt-in | on
      ttl: 3600              # seconds an entry lives (x-sidecar-cache-ttl overrides it per call)
      apps:
        eval-suite: {mode: "on", ttl: 86400}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidecar.errors import ConfigError

MODES = ("off", "opt-in", "on")
OFF, OPT_IN, ON = MODES
DEFAULT_TTL_S = 3600
MAX_TTL_S = 365 * 86400
HEADER = b"x-sidecar-cache"
TTL_HEADER = b"x-sidecar-cache-ttl"
SECTION_KEYS = ("mode", "ttl", "apps")
APP_KEYS = ("mode", "ttl")


@dataclass(frozen=True, slots=True)
class AppRule:
    mode: str | None = None  # None: the deployment's
    ttl_s: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the cache does for one call. ``lookup`` False and ``store`` False: bypassed on request."""

    lookup: bool
    store: bool
    ttl_s: int

    @property
    def refresh(self) -> bool:
        return self.store and not self.lookup


def _empty() -> Mapping[str, AppRule]:
    return MappingProxyType({})


@dataclass(frozen=True)
class CacheConfig:
    mode: str = OFF
    ttl_s: int = DEFAULT_TTL_S
    apps: Mapping[str, AppRule] = field(default_factory=_empty)

    @property
    def enabled(self) -> bool:
        """False when no app can use the cache: the proxy then never consults it."""
        return self.mode != OFF or any(rule.mode not in (None, OFF) for rule in self.apps.values())

    @classmethod
    def from_sources(cls, section: Mapping[str, Any] | None, mode: str, ttl_s: int) -> CacheConfig:
        """Build from the YAML ``response_cache:`` section and ``Settings.response_cache`` /
        ``response_cache_ttl``. As for the prompt cache, a flag or environment value wins over the file,
        but a value equal to the default (``off``, 3600) lets the file's apply. Raises ``ConfigError``
        naming the bad key."""
        doc = dict(section or {})
        for key in doc:
            if key not in SECTION_KEYS:
                raise ConfigError(f"response_cache.{key}: unknown key (expected {', '.join(SECTION_KEYS)})")
        given_mode = _mode(mode, "response_cache")
        if given_mode == OFF and doc.get("mode") is not None:
            given_mode = _mode(doc["mode"], "response_cache.mode")
        given_ttl = _ttl(ttl_s, "response_cache_ttl")
        if given_ttl == DEFAULT_TTL_S and doc.get("ttl") is not None:
            given_ttl = _ttl(doc["ttl"], "response_cache.ttl")
        return cls(mode=given_mode, ttl_s=given_ttl, apps=MappingProxyType(_apps(doc.get("apps"))))

    def decide(self, app: str, header: bytes | None, ttl_header: bytes | None) -> Decision | None:
        """The cache's part in one ``POST /v1/messages`` call; ``None``: the cache is not involved (its
        mode is off for the app, or opt-in and the request did not opt in). An unknown header value or a
        bad TTL is ignored, as if not sent."""
        rule = self.apps.get(app)
        mode = self.mode if rule is None or rule.mode is None else rule.mode
        if mode == OFF:
            return None
        wanted = header.strip().lower() if header is not None else b""
        if mode == OPT_IN and wanted not in (b"on", b"refresh"):
            return None
        ttl = self.ttl_s if rule is None or rule.ttl_s is None else rule.ttl_s
        if ttl_header is not None:
            ttl = _header_ttl(ttl_header, ttl)
        if wanted == b"off":
            return Decision(False, False, ttl)
        return Decision(lookup=wanted != b"refresh", store=True, ttl_s=ttl)


def _header_ttl(raw: bytes, default: int) -> int:
    text = raw.strip()
    if not text.isdigit() or len(text) > 9:
        return default
    value = int(text)
    return min(value, MAX_TTL_S) if value > 0 else default


def _mode(raw: object, where: str) -> str:
    if raw is False:  # YAML 1.1 reads a bare `off` as false, and a bare `on` as true
        return OFF
    if raw is True:
        return ON
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text not in MODES:
        raise ConfigError(f"{where}: expected one of {', '.join(MODES)}, got {raw!r}")
    return text


def _ttl(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ConfigError(f"{where}: expected a number of seconds, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{where}: expected a number of seconds, got {raw!r}") from None
    if not 0 < value <= MAX_TTL_S:
        raise ConfigError(f"{where}: must be between 1 and {MAX_TTL_S} seconds, got {value}")
    return value


def _apps(raw: object) -> dict[str, AppRule]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("response_cache.apps: expected a mapping of app name to {mode: ..., ttl: ...}")
    out: dict[str, AppRule] = {}
    for app, entry in raw.items():
        where = f"response_cache.apps.{app}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f'{where}: expected a mapping like {{mode: "on"}}')
        for key in entry:
            if key not in APP_KEYS:
                raise ConfigError(f"{where}.{key}: unknown key (expected {', '.join(APP_KEYS)})")
        mode = _mode(entry["mode"], f"{where}.mode") if entry.get("mode") is not None else None
        ttl = _ttl(entry["ttl"], f"{where}.ttl") if entry.get("ttl") is not None else None
        out[str(app)] = AppRule(mode, ttl)
    return out
