"""Dead-man checks and receivers from the YAML ``checks:`` / ``notify:`` sections and ``SIDECAR_*`` variables.

Environment beats the file, the file beats defaults. Every error is a ``ConfigError`` whose message
starts with the bad key (``checks[2].period``, ``SIDECAR_ALERT_AFTER_MISSES``, ...), raised at start.

``checks:`` is a list of mappings (a mapping of name -> fields is accepted too). The kind is inferred
unless given: ``no_success_for`` → ``traffic``; ``fleet`` + ``min_members`` → ``fleet_size``; ``fleet``
alone → ``fleet_members``; otherwise a ``checkin`` with ``period`` and ``grace``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sidecar.core import durations
from sidecar.errors import ConfigError

CHECKIN, FLEET_MEMBERS, FLEET_SIZE, TRAFFIC = "checkin", "fleet_members", "fleet_size", "traffic"
KINDS = (CHECKIN, FLEET_MEMBERS, FLEET_SIZE, TRAFFIC)
CHECK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_HOURS_RE = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_CHECK_KEYS = frozenset(
    {"name", "kind", "period", "grace", "fleet", "min_members", "no_success_for", "hours", "labels"}
)
_NOTIFY_KEYS = frozenset({"alertmanager", "webhooks", "after_misses", "repeat_interval"})
WEBHOOK_FORMATS = ("slack", "json")


def parse_duration(key: str, raw: object, *, allow_zero: bool = False) -> float:
    """Seconds from a number or a text such as ``90``, ``30s``, ``1h30m`` (the syntax of
    :func:`sidecar.core.durations.parse_duration`); ``ConfigError`` naming ``key`` otherwise, and for
    zero unless ``allow_zero``."""
    if isinstance(raw, bool):
        raise ConfigError(f"{key}: expected a duration, got {raw!r}")
    try:
        value = durations.parse_duration(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if value == 0 and not allow_zero:
        raise ConfigError(f"{key}: must be a positive duration, got {raw!r}")
    return value


def parse_count(key: str, raw: object, *, minimum: int = 1) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    return value


def parse_url(key: str, raw: object) -> str:
    text = str(raw).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: expected an http(s) URL, got {raw!r}")
    return text


def parse_hours(key: str, raw: object) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` (UTC) as minutes of the day ``(start, end)``; ``end <= start`` wraps midnight."""
    m = _HOURS_RE.fullmatch(str(raw).strip())
    if m is None:
        raise ConfigError(f"{key}: expected HH:MM-HH:MM (UTC), got {raw!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or h1 * 60 + m1 > 1440 or h2 * 60 + m2 > 1440:
        raise ConfigError(f"{key}: not a time of day: {raw!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ConfigError(f"{key}: empty window {raw!r}")
    return start, end


@dataclass(frozen=True)
class CheckSpec:
    """One named check. ``period_s`` is the traffic check's ``no_success_for``; fleet kinds use grace only."""

    name: str
    kind: str = CHECKIN
    period_s: float = 60.0
    grace_s: float = 30.0
    fleet: str | None = None
    min_members: int = 0
    hours: tuple[int, int] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    dynamic: bool = False  # created by its first check-in, not by configuration


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str = "slack"  # slack: {"text": ...}; json: {"text": ..., "status": ..., "check": ..., ...}


@dataclass(frozen=True)
class AlertingConfig:
    checks: tuple[CheckSpec, ...] = ()
    default_period_s: float = 60.0
    default_grace_s: float = 30.0
    after_misses: int = 1
    repeat_interval_s: float = 4 * 3600.0
    alertmanager_url: str | None = None
    alertmanager_resend_s: float = 60.0  # re-post firing alerts; endsAt = now + 4 x this
    webhooks: tuple[Webhook, ...] = ()
    max_checks: int = 200  # configured + created by check-ins (each is a metric label value)

    def spec(self, name: str) -> CheckSpec | None:
        for spec in self.checks:
            if spec.name == name:
                return spec
        return None

    @classmethod
    def from_sources(cls, checks: object, notify: object, env: Mapping[str, str]) -> AlertingConfig:
        """Build from the raw YAML sections (``None`` when absent) and ``SIDECAR_*`` variables."""
        period = parse_duration("SIDECAR_CHECK_DEFAULT_PERIOD", env.get("SIDECAR_CHECK_DEFAULT_PERIOD") or 60)
        grace = parse_duration(
            "SIDECAR_CHECK_DEFAULT_GRACE", env.get("SIDECAR_CHECK_DEFAULT_GRACE") or 30, allow_zero=True
        )
        values = _notify_values(notify)
        for env_name, key, parse in (
            ("SIDECAR_ALERT_AFTER_MISSES", "after_misses", parse_count),
            ("SIDECAR_ALERT_REPEAT_INTERVAL", "repeat_interval_s", parse_duration),
            ("SIDECAR_ALERTMANAGER_URL", "alertmanager_url", parse_url),
        ):
            if env.get(env_name):
                values[key] = parse(env_name, env[env_name])
        if env.get("SIDECAR_ALERT_WEBHOOK_URL"):
            urls = [u for u in env["SIDECAR_ALERT_WEBHOOK_URL"].split(",") if u.strip()]
            values["webhooks"] = tuple(Webhook(parse_url("SIDECAR_ALERT_WEBHOOK_URL", u)) for u in urls)
        specs = _parse_checks(checks, period, grace)
        config = cls(checks=specs, default_period_s=period, default_grace_s=grace, **values)
        if len(specs) > config.max_checks:
            raise ConfigError(f"checks: at most {config.max_checks} checks, got {len(specs)}")
        return config


def _notify_values(notify: object) -> dict[str, Any]:
    if notify is None:
        return {}
    if not isinstance(notify, Mapping):
        raise ConfigError("notify: expected a mapping")
    for key in notify:
        if key not in _NOTIFY_KEYS:
            raise ConfigError(f"notify.{key}: unknown key")
    values: dict[str, Any] = {}
    if notify.get("after_misses") is not None:
        values["after_misses"] = parse_count("notify.after_misses", notify["after_misses"])
    if notify.get("repeat_interval") is not None:
        values["repeat_interval_s"] = parse_duration("notify.repeat_interval", notify["repeat_interval"])
    am = notify.get("alertmanager")
    if am is not None:
        if not isinstance(am, Mapping) or "url" not in am or set(am) - {"url", "resend_interval"}:
            raise ConfigError("notify.alertmanager: expected {url: ..., resend_interval: ...}")
        values["alertmanager_url"] = parse_url("notify.alertmanager.url", am["url"])
        if am.get("resend_interval") is not None:
            key = "notify.alertmanager.resend_interval"
            values["alertmanager_resend_s"] = parse_duration(key, am["resend_interval"])
    hooks = notify.get("webhooks")
    if hooks is not None:
        if not isinstance(hooks, list):
            raise ConfigError("notify.webhooks: expected a list of {url: ..., format: slack|json}")
        values["webhooks"] = tuple(_webhook(f"notify.webhooks[{i}]", h) for i, h in enumerate(hooks))
    return values


def _webhook(key: str, raw: object) -> Webhook:
    if not isinstance(raw, Mapping) or "url" not in raw or set(raw) - {"url", "format"}:
        raise ConfigError(f"{key}: expected {{url: ..., format: slack|json}}")
    fmt = str(raw.get("format", "slack")).lower()
    if fmt not in WEBHOOK_FORMATS:
        raise ConfigError(f"{key}.format: expected slack or json, got {raw.get('format')!r}")
    return Webhook(parse_url(f"{key}.url", raw["url"]), fmt)


def _parse_checks(raw: object, period: float, grace: float) -> tuple[CheckSpec, ...]:
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        items: list[object] = [
            {"name": k, **(v or {})} if isinstance(v, Mapping | None) else v for k, v in raw.items()
        ]
    elif isinstance(raw, list):
        items = raw
    else:
        raise ConfigError("checks: expected a list of checks")
    specs: list[CheckSpec] = []
    for i, item in enumerate(items):
        spec = parse_check(f"checks[{i}]", item, period, grace)
        if any(s.name == spec.name for s in specs):
            raise ConfigError(f"checks[{i}].name: duplicate check name {spec.name!r}")
        specs.append(spec)
    return tuple(specs)


def parse_check(key: str, raw: object, period: float, grace: float) -> CheckSpec:
    """One entry of ``checks:``; ``period``/``grace`` are the defaults for what it leaves out."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping")
    for k in raw:
        if k not in _CHECK_KEYS:
            raise ConfigError(f"{key}.{k}: unknown key")
    name = str(raw.get("name", ""))
    if not CHECK_NAME_RE.fullmatch(name) or name.startswith("fleet:"):
        raise ConfigError(f"{key}.name: 1-128 characters of [A-Za-z0-9._:@-], not starting with fleet:")
    kind = str(raw.get("kind") or _infer_kind(raw))
    if kind not in KINDS:
        raise ConfigError(f"{key}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    labels = raw.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{key}.labels: expected a mapping of strings")
    spec = CheckSpec(name=name, kind=kind, labels={str(k): str(v) for k, v in labels.items()})
    if raw.get("grace") is not None:
        grace = parse_duration(f"{key}.grace", raw["grace"], allow_zero=True)
    if kind == CHECKIN:
        if raw.get("period") is not None:
            period = parse_duration(f"{key}.period", raw["period"])
        return replace(spec, period_s=period, grace_s=grace)
    if kind == TRAFFIC:
        if raw.get("no_success_for") is None:
            raise ConfigError(f"{key}.no_success_for: required for a traffic check")
        window = parse_duration(f"{key}.no_success_for", raw["no_success_for"])
        hours = parse_hours(f"{key}.hours", raw["hours"]) if raw.get("hours") is not None else None
        default_grace = grace if raw.get("grace") is not None else 0.0
        return replace(spec, period_s=window, grace_s=default_grace, hours=hours)
    fleet = str(raw.get("fleet") or "")
    if not CHECK_NAME_RE.fullmatch(fleet):
        raise ConfigError(f"{key}.fleet: required, 1-128 characters of [A-Za-z0-9._:@-]")
    members = 0
    if kind == FLEET_SIZE:
        members = parse_count(f"{key}.min_members", raw.get("min_members", ""))
    return replace(spec, period_s=0.0, grace_s=grace, fleet=fleet, min_members=members)


def _infer_kind(raw: Mapping[Any, Any]) -> str:
    if raw.get("no_success_for") is not None:
        return TRAFFIC
    if raw.get("fleet") is not None:
        return FLEET_SIZE if raw.get("min_members") is not None else FLEET_MEMBERS
    return CHECKIN
