"""Settings: the only module that reads the environment and the config file.

Precedence: flag > environment (``SIDECAR_*``) > YAML file > default. Every value is validated at start;
a bad one raises ``ConfigError`` with one line naming the key, never at the first request.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sidecar.errors import ConfigError

MB = 1_000_000
# Policy sections of the YAML file, parsed by the modules that own them.
POLICY_SECTIONS = ("budgets", "prompt_cache", "response_cache", "pricing", "checks", "notify")
BUDGET_ENV = (
    "SIDECAR_SESSION_MAX_USD",
    "SIDECAR_SESSION_MAX_TOKENS",
    "SIDECAR_SESSION_MAX_MODEL_CALLS",
    "SIDECAR_SESSION_MAX_TOOL_CALLS",
    "SIDECAR_APP_MAX_USD_PER_DAY",
    "SIDECAR_BUDGET_MODE",
    "SIDECAR_REDIS_FAIL_MODE",
)
# Fleet heartbeats and dead-man alerting (parsed by sidecar.fleet.service).
FLEET_ENV = (
    "SIDECAR_FLEET_PORT",
    "SIDECAR_FLEET_PING_INTERVAL",
    "SIDECAR_FLEET_PING_TIMEOUT",
    "SIDECAR_CHECK_DEFAULT_PERIOD",
    "SIDECAR_CHECK_DEFAULT_GRACE",
    "SIDECAR_ALERT_REPEAT_INTERVAL",
    "SIDECAR_ALERT_AFTER_MISSES",
    "SIDECAR_ALERTMANAGER_URL",
    "SIDECAR_ALERT_WEBHOOK_URL",
)
# SIDECAR_* variables handed over unparsed to the policy modules that own them.
POLICY_ENV = frozenset(BUDGET_ENV + FLEET_ENV)
# Read elsewhere: the config file's path (here), the key-fingerprint salt (proxy/keys.py), and the 0.x SDK
# interpreter of the compatibility test (scripts/test). With the Settings fields (SIDECAR_ + the name in
# upper case) and POLICY_ENV they make KNOWN_ENV, the one list of names; any other SIDECAR_* name is
# warned about at start as a probable typo.
OTHER_ENV = ("SIDECAR_CONFIG", "SIDECAR_KEY_SALT", "SIDECAR_SDK0_PYTHON")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8788
    upstream_url: str = "https://api.anthropic.com"
    store: str = "sqlite:///sidecar-data/events.db"
    # ClickHouse mode: the embedded store kept beside it (sessions API, budgets) and the durable spool.
    local_store: str = "sqlite:///sidecar-data/events.db"
    spool_path: str = "sidecar-data/spool.db"
    spool_max_bytes: int = 1_000_000_000
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    redis_url: str | None = None
    session_header: str = "x-session-id"
    app_header: str = "x-app-name"
    admin_token: str | None = None
    ingest_token: str | None = None
    prompt_cache: str = "auto"
    cache_ttl: str = "5m"
    # The response cache (SPEC §19): off | opt-in | on; entry lifetime (s); the embedded store's bound;
    # whether tenants (API keys) share entries. Per app in the YAML ``response_cache:`` section.
    response_cache: str = "off"
    response_cache_ttl: int = 3600
    response_cache_max_bytes: int = 512 * MB
    response_cache_shared: bool = False
    # Why the cache missed (SPEC R-CD): passive reads the API's diagnosis when a response has one; api
    # also asks for it on every call (a body field and a beta header); off stops both diagnoses.
    cache_diagnostics: str = "passive"
    cache_diag_max_sessions: int = 100_000
    drain_timeout: float = 30.0
    upstream_timeout: float = 600.0
    upstream_connect_timeout: float = 5.0
    upstream_pool_size: int = 1000
    # Idle upstream connections are reused for at most this long (an origin's shorter Keep-Alive timeout
    # wins). 4 s, as undici: below the shortest idle timeouts in common use (5 s in Node's and uvicorn's
    # servers; nginx 75 s, AWS ALB 60 s), so the origin rarely closes a connection as a request crosses
    # it; the cost is one new connection after a lull, and none under steady traffic.
    upstream_keepalive_timeout: float = 4.0
    public_url: str | None = None
    retention_days: int = 30
    upstream_api_key: str | None = None
    client_tokens: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "auto"  # auto: text on a terminal, JSON lines otherwise
    queue_capacity: int = 100_000
    max_body_messages: int = 32 * MB
    max_body_batches: int = 256 * MB
    max_body_files: int = 500 * MB
    max_body_default: int = 32 * MB
    max_apps: int = 50
    max_tools: int = 100
    pricing_file: str | None = None
    session_idle_timeout: float = 900.0
    # Claude on Amazon Bedrock and Google Vertex AI (SPEC §18). Bedrock's region falls back to AWS_REGION;
    # the URLs are scheme and host only and replace the hosts derived from the region / location.
    bedrock_region: str | None = None
    bedrock_url: str | None = None
    bedrock_api_key: str | None = None
    bedrock_inference_profiles: tuple[str, ...] = ()
    vertex_url: str | None = None
    # Raw policy sections from the YAML file (validated by their owners at start).
    policies: Mapping[str, Any] = field(default_factory=dict)  # checks: a list; the others: mappings
    # Standard OTEL_EXPORTER_OTLP_* variables: traces are exported only when an endpoint is configured.
    otlp_traces: bool = False
    # SIDECAR_* variables owned by policy modules (budgets), handed over unparsed.
    policy_env: Mapping[str, str] = field(default_factory=dict)
    # One line per SIDECAR_* variable nothing reads (a typo?), for serve to log once logging is set up.
    warnings: tuple[str, ...] = ()

    @property
    def upstream_host_header(self) -> bytes:
        return urlsplit(self.upstream_url).netloc.encode()


def _pos_int(key: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
    return value


def _port(key: str, raw: object) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"{key}: expected a port number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key}: port out of range: {value}")
    return value


def _pos_float(key: str, raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise ConfigError(f"{key}: expected a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
    return value


def _http_url(key: str, raw: object) -> str:
    text = str(raw).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: expected an http(s) URL, got {raw!r}")
    return text


def _origin_url(key: str, raw: object) -> str:
    text = _http_url(key, raw)
    parts = urlsplit(text)
    if parts.path or parts.query or parts.fragment:
        raise ConfigError(f"{key}: expected a scheme and host only (no path), got {raw!r}")
    return text


def _region(key: str, raw: object) -> str:
    text = _text(key, raw).lower()
    if not all(part.isalnum() for part in text.split("-")):
        raise ConfigError(f"{key}: expected an AWS region such as us-east-1, got {raw!r}")
    return text


def _store_url(key: str, raw: object) -> str:
    text = str(raw)
    if not text.startswith(("sqlite:///", "clickhouse://", "clickhouses://")):
        raise ConfigError(
            f"{key}: expected sqlite:///path or clickhouse://host:port/db, got a {text[:12]!r}… URL"
        )
    return text


def _choice(*allowed: str) -> Callable[[str, object], str]:
    def parse(key: str, raw: object) -> str:
        text = str(raw).strip().lower()
        if text not in allowed:
            raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {raw!r}")
        return text

    return parse


def _text(key: str, raw: object) -> str:
    text = str(raw).strip()
    if not text:
        raise ConfigError(f"{key}: must not be empty")
    return text


def _header_name(key: str, raw: object) -> str:
    return _text(key, raw).lower()


def _bool(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {raw!r}")


def _tokens(key: str, raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else str(raw).split(",")
    return tuple(t for t in (str(i).strip() for i in items) if t)


PARSERS: dict[str, Callable[[str, object], Any]] = {
    "host": _text,
    "port": _port,
    "upstream_url": _http_url,
    "store": _store_url,
    "local_store": _store_url,
    "spool_path": _text,
    "spool_max_bytes": _pos_int,
    "admin_host": _text,
    "admin_port": _port,
    "redis_url": _text,
    "session_header": _header_name,
    "app_header": _header_name,
    "admin_token": _text,
    "ingest_token": _text,
    "prompt_cache": _choice("auto", "off", "force"),
    "cache_ttl": _choice("5m", "1h"),
    "response_cache": _choice("off", "opt-in", "on"),
    "response_cache_ttl": _pos_int,
    "response_cache_max_bytes": _pos_int,
    "response_cache_shared": _bool,
    "cache_diagnostics": _choice("passive", "api", "off"),
    "cache_diag_max_sessions": _pos_int,
    "drain_timeout": _pos_float,
    "upstream_timeout": _pos_float,
    "upstream_connect_timeout": _pos_float,
    "upstream_pool_size": _pos_int,
    "upstream_keepalive_timeout": _pos_float,
    "public_url": _http_url,
    "retention_days": _pos_int,
    "upstream_api_key": _text,
    "client_tokens": _tokens,
    "log_level": _choice("debug", "info", "warning", "error"),
    "log_format": _choice("auto", "text", "json"),
    "queue_capacity": _pos_int,
    "max_body_messages": _pos_int,
    "max_body_batches": _pos_int,
    "max_body_files": _pos_int,
    "max_body_default": _pos_int,
    "max_apps": _pos_int,
    "max_tools": _pos_int,
    "pricing_file": _text,
    "session_idle_timeout": _pos_float,
    "bedrock_region": _region,
    "bedrock_url": _origin_url,
    "bedrock_api_key": _text,
    "bedrock_inference_profiles": _tokens,
    "vertex_url": _origin_url,
}

KNOWN_ENV = frozenset({"SIDECAR_" + key.upper() for key in PARSERS} | POLICY_ENV | set(OTHER_ENV))


def _closest(name: str, known: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean X?)`` for the known name most like ``name``; a shared prefix is not compared."""
    by_rest = {k.removeprefix(prefix): k for k in known}
    match = difflib.get_close_matches(name.removeprefix(prefix), sorted(by_rest), n=1, cutoff=0.6)
    return f" (did you mean {by_rest[match[0]]}?)" if match else ""


def unknown_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """A warning for each ``SIDECAR_*`` variable that nothing reads, naming the closest known name."""
    return tuple(
        f"{name}: unknown environment variable, ignored{_closest(name, KNOWN_ENV, 'SIDECAR_')}"
        for name in sorted(env)
        if name.startswith("SIDECAR_") and name not in KNOWN_ENV
    )


def _read_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"--config: {path} must hold a mapping at the top level")
    return doc


def load_settings(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
) -> Settings:
    """Build settings from flags, environment and file. Raises ``ConfigError`` on the first bad key."""
    env = os.environ if env is None else env
    config_path = config_path or env.get("SIDECAR_CONFIG")
    file_doc = _read_file(config_path) if config_path else {}
    values: dict[str, Any] = {}
    policies: dict[str, Any] = {}
    for key, raw in file_doc.items():
        if key in POLICY_SECTIONS:
            expected = list if key == "checks" else dict
            if not isinstance(raw, expected):
                kind = "a list" if expected is list else "a mapping"
                raise ConfigError(f"{key}: expected {kind} in the config file")
            policies[key] = raw
        elif key in PARSERS:
            if raw is not None:
                values[key] = PARSERS[key](key, raw)
        else:
            hint = _closest(str(key), (*PARSERS, *POLICY_SECTIONS))
            raise ConfigError(f"{key}: unknown key in config file {config_path}{hint}")
    for key, parse in PARSERS.items():
        env_name = "SIDECAR_" + key.upper()
        if env.get(env_name, "") != "":
            values[key] = parse(env_name, env[env_name])
    for key, raw in (flags or {}).items():
        if raw is None:
            continue
        if key not in PARSERS:
            raise ConfigError(f"--{key.replace('_', '-')}: unknown setting")
        values[key] = PARSERS[key]("--" + key.replace("_", "-"), raw)
    if "bedrock_region" not in values and env.get("AWS_REGION", "").strip():
        values["bedrock_region"] = _region("AWS_REGION", env["AWS_REGION"])
    known = {f.name for f in fields(Settings)}
    assert set(values) <= known
    policy_env = {k: v for k, v in env.items() if k in POLICY_ENV}
    otlp = bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    otlp = (
        otlp
        and env.get("OTEL_SDK_DISABLED", "").lower() != "true"
        and env.get("OTEL_TRACES_EXPORTER") != "none"
    )
    return Settings(
        **values, policies=policies, policy_env=policy_env, otlp_traces=otlp, warnings=unknown_env(env)
    )
