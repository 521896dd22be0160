"""Cost ceilings (SPEC §7): configuration, the upper-bound estimate of a call, and the admission rule. Pure.

Units. Counters are integers: USD in nano-dollars (``NANOS`` per dollar) so that sums are exact and the
same in every backend (Redis adds them with ``HINCRBY``); estimates round up, real costs to nearest.

Admission rule (R-CC-4). Per ceiling, a call is refused only when ``used + reserved >= ceiling``, where
``reserved`` is what *other* calls in flight reserved; its own estimate never refuses it. An admitted call
then reserves an upper bound of its cost (:func:`estimate_call`), released when it is reconciled with the
real amount. Claim: if every estimate is at least the real amount, the final usage stays below
``ceiling + a``, where ``a`` is the real amount of one call. Proof: let ``k`` be the last admission. Just
before it, ``used + reserved < ceiling``. Every call admitted earlier is in that sum, by its real amount
if it was reconciled, else by its reservation; reconciling replaces a reservation by a real amount that
is no larger, so those calls finally add up to less than ``ceiling``. No call is admitted after ``k``, so
the final usage is below ``ceiling + a_k``. Sequential calls see ``reserved == 0``: they are refused
exactly once ``used >= ceiling``. Model calls reserve 1 each, so that ceiling is never overshot. Tool
calls are only known from responses: refused once ``tool_calls >= ceiling``, so a burst can add the tool
calls of the calls in flight.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from sidecar.core.events import REFUSED, CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage
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
# Text tokens are byte-level BPE pieces of at least one UTF-8 byte, and JSON encoding only lengthens
# text, so text input never has more tokens than the body has bytes. Anthropic also adds a system prompt
# of its own when tools are present (a few hundred tokens) that the body does not show: the slack.
TOKEN_SLACK = 512
DEFAULT_MAX_TOKENS = 128_000  # when a request names none (it is then rejected, but stay an upper bound)

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


@functools.lru_cache(maxsize=8)
def _day_of(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, tz=UTC).strftime("%Y-%m-%d")


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` of unix time ``ts`` in UTC: the key of the daily app ceiling."""
    return _day_of(int(ts // 86400))  # unix days are exactly 86,400 s (no leap seconds)


def threshold(cap: int) -> int:
    """The soft-warning level: the smallest integer usage ``u`` with ``u >= 0.8 * cap``."""
    return (4 * cap + 4) // 5


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


@dataclass(frozen=True, slots=True)
class Estimate:
    """An upper bound of one call: nano-dollars and tokens (input + output, cache tokens included)."""

    nanos: int
    tokens: int


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token: the dearest input-side bucket (input, 5-minute or 1-hour write) and output."""

    input: float
    output: float


_ABOVE_EVERY_BAND = 1_000_000_000  # input tokens: picks each model's dearest band


def rates(
    prices: PriceTable, model: str, n_in: int, at: float, *, speed: str | None = None, geo: str | None = None
) -> Rates | None:
    """Per-token prices of ``model`` for a request of ``n_in`` input tokens (its band), with the
    multipliers (``us`` geo unless another is named; fast mode when ``speed == "fast"``); ``None`` when
    the model is unknown. One ``cost`` call: the input is split over the three input-side buckets, so
    the band is the one for ``n_in`` and each bucket's price can be read back."""
    third = max(1, -(-n_in // 3))  # rounded up: the band is chosen for at least ``n_in``
    region = "us" if geo is None or geo.strip().lower() == "us" else geo
    usage = Usage(
        input_tokens=third,
        output_tokens=1_000_000,
        cache_creation_input_tokens=2 * third,
        cache_creation_1h=third,  # the other third is priced as 5-minute writes
        inference_geo=region,
        speed=speed,
    )
    cost = prices.cost(model, usage, at)
    if cost is None:
        return None
    per_input = max(cost.input_usd, cost.cache_write_5m_usd, cost.cache_write_1h_usd) / third
    return Rates(per_input, cost.output_usd / 1_000_000)


def worst_rates(prices: PriceTable, at: float, *, speed: str | None = None, geo: str | None = None) -> Rates:
    """The dearest rates in the table at ``at`` (each model's dearest band): for unknown models."""
    found = [rates(prices, m, _ABOVE_EVERY_BAND, at, speed=speed, geo=geo) for m in prices.model_ids()]
    known = [r for r in found if r is not None]
    return Rates(max((r.input for r in known), default=0.0), max((r.output for r in known), default=0.0))


def estimate_call(
    prices: PriceTable,
    model: str | None,
    body_bytes: int,
    max_tokens: int | None,
    at: float,
    *,
    speed: str | None = None,
    inference_geo: str | None = None,
    unknown: Rates | None = None,
) -> Estimate:
    """Upper bound of a ``/v1/messages`` call: input tokens <= body bytes + ``TOKEN_SLACK`` at the
    dearest input-side price, output tokens <= ``max_tokens`` (thinking included). An unknown model
    takes ``unknown`` (default: :func:`worst_rates`, which callers should cache). Not bounded by the
    body's size: content it only references (file ids, URLs), images and PDF pages that compress far
    below their token count, and server tools (web search results); reconciliation still counts them,
    only the burst bound loosens for such calls.
    """
    n_in = max(0, body_bytes) + TOKEN_SLACK
    n_out = DEFAULT_MAX_TOKENS if max_tokens is None else max(0, max_tokens)
    r = rates(prices, model, n_in, at, speed=speed, geo=inference_geo) if model else None
    if r is None:
        r = unknown or worst_rates(prices, at, speed=speed, geo=inference_geo)
    return Estimate(math.ceil((n_in * r.input + n_out * r.output) * NANOS), n_in + n_out)


@dataclass(frozen=True, slots=True)
class Actual:
    """What a finished call really used, in counter units."""

    nanos: int = 0
    tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0


def call_tokens(usage: Usage) -> int:
    """Tokens for the token ceiling: input + output, cache reads and writes included."""
    return max(0, usage.total_input) + max(0, usage.output_tokens)


def charge_usd(event: CallEvent, prices: PriceTable, unknown: Rates | None = None) -> float:
    """USD a call counts for: its cost; an unpriced call with usage is charged the table's dearest
    rates (``unknown``, default :func:`worst_rates`), never zero."""
    if event.cost_usd is not None:
        return event.cost_usd
    u = event.usage
    if not (u.total_input or u.output_tokens):
        return 0.0
    r = unknown or worst_rates(prices, event.started_at, speed=u.speed)
    return max(0, u.total_input) * r.input + max(0, u.output_tokens) * r.output


def actual_of(event: CallEvent, prices: PriceTable, unknown: Rates | None = None) -> Actual:
    """The counters a finished ``/v1/messages`` event adds (a refused one adds nothing)."""
    if event.outcome == REFUSED:
        return Actual()
    nanos = round(charge_usd(event, prices, unknown) * NANOS)
    return Actual(nanos, call_tokens(event.usage), 1, len(event.tool_uses))


@dataclass(slots=True)
class Counts:
    """Counters of one scope (a session, or an app's UTC day: only the USD fields)."""

    used_nanos: int = 0
    used_tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    reserved_nanos: int = 0
    reserved_tokens: int = 0
    reserved_calls: int = 0

    def copy(self) -> Counts:
        # Spelled out: dataclasses.replace costs several times more, and this runs on every call.
        return Counts(
            self.used_nanos,
            self.used_tokens,
            self.model_calls,
            self.tool_calls,
            self.reserved_nanos,
            self.reserved_tokens,
            self.reserved_calls,
        )


@dataclass(frozen=True, slots=True)
class Breach:
    """A ceiling a call would break: ``used + reserved >= ceiling`` (counter units)."""

    limit: str
    ceiling: int
    used: int
    reserved: int = 0


def breaches(caps: Mapping[str, int], session: Counts | None, app_day: Counts) -> list[Breach]:
    """Every ceiling that refuses a new call now (the admission rule above), in a fixed order."""
    if not caps:
        return []
    rows: list[tuple[str, int, int]] = []
    if session is not None:
        s = session
        rows += [
            (SESSION_USD, s.used_nanos, s.reserved_nanos),
            (SESSION_TOKENS, s.used_tokens, s.reserved_tokens),
            (SESSION_MODEL_CALLS, s.model_calls, s.reserved_calls),
            (SESSION_TOOL_CALLS, s.tool_calls, 0),
        ]
    rows.append((APP_DAILY_USD, app_day.used_nanos, app_day.reserved_nanos))
    return [
        Breach(name, caps[name], used, reserved)
        for name, used, reserved in rows
        if name in caps and used + reserved >= caps[name]
    ]


def reached(caps: Mapping[str, int], session: Counts | None, app_day: Counts) -> list[str]:
    """Ceilings whose *used* amount is at or above 80 % (soft warning)."""
    if not caps:
        return []
    used = {APP_DAILY_USD: app_day.used_nanos}
    if session is not None:
        used |= {
            SESSION_USD: session.used_nanos,
            SESSION_TOKENS: session.used_tokens,
            SESSION_MODEL_CALLS: session.model_calls,
            SESSION_TOOL_CALLS: session.tool_calls,
        }
    return [name for name, cap in caps.items() if name in used and used[name] >= threshold(cap)]


def remaining_usd(caps: Mapping[str, int], session: Counts | None, app_day: Counts) -> float | None:
    """USD left under the tightest USD ceiling (never negative); ``None`` when none applies."""
    left = [caps[APP_DAILY_USD] - app_day.used_nanos] if APP_DAILY_USD in caps else []
    if session is not None and SESSION_USD in caps:
        left.append(caps[SESSION_USD] - session.used_nanos)
    return max(0, min(left)) / NANOS if left else None
