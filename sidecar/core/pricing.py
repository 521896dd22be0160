"""Dated price table and the pure cost engine (SPEC R-AC-2).

Prices are USD per million tokens, per model id (not per family), in dated periods chosen by
request time. The four input buckets are priced separately and never counted twice:
``usage.input_tokens`` is uncached input only, then cache read, 5-minute write and 1-hour write.
A token band (long context, Haiku 5.5's >100k band) replaces the five prices for the whole
request; batch, ``inference_geo == "us"``, fast mode and a cloud's regional endpoint (Bedrock, Vertex:
``providers`` in the data) then multiply all five. Costs keep full float precision. Data:
``sidecar/data/pricing.json`` (its ``conventions`` document the format).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

from sidecar.core.cloud import ANTHROPIC, PROVIDERS
from sidecar.core.usage import Usage

PRICE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_OVERRIDE_EXTRA = ("min_cacheable_tokens", "geo_us_multiplier")
FIRST_PARTY = ANTHROPIC
_PER_TOKEN = 1e-6  # prices are per million tokens
_NORM_CACHE_MAX = 4096  # model strings come from clients: memory must stay bounded
_MAX_MODEL_LEN = 256
_PROVIDER_PREFIX = re.compile(r"^.*(?:anthropic[./]|/)")  # through the last provider marker
_SUFFIX = re.compile(r"(?:\[[^\]]*\]|@[\w-]*|:[\w-]*|-v\d+|-latest|-\d{8})$")
_NEW_MODEL_GEO_US = 1.1  # a model missing from the table is newer than Opus 4.6


def normalise_model(model: str) -> str:
    """Lower-case ``model`` and strip provider prefixes and date/version/context suffixes."""
    name = _PROVIDER_PREFIX.sub("", model.strip().lower()).replace(".", "-")
    for _ in range(6):  # bounded: each pass removes one suffix
        shorter = _SUFFIX.sub("", name)
        if shorter == name:
            break
        name = shorter
    return name


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens for one model in one period (or band)."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    source: str


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The cost of one call in USD, full precision.

    ``total_usd`` is the five token parts plus ``server_tool_usd`` (web search, per request).
    ``savings_usd`` is what caching saved net of write premiums against the same tokens billed as
    uncached input, with the same band and multipliers: ``cr*(in-read) - w5*(w5-in) - w1h*(w1h-in)``;
    negative when writes were not (yet) paid back by reads.
    """

    model: str
    input_usd: float
    output_usd: float
    cache_read_usd: float
    cache_write_5m_usd: float
    cache_write_1h_usd: float
    total_usd: float
    savings_usd: float
    rules: tuple[str, ...]
    server_tool_usd: float = 0.0


class PricingError(ValueError):
    """A bad price table or override; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class _Band:
    rule: str
    above: int
    start: float
    end: float
    price: ModelPrice


@dataclass(frozen=True, slots=True)
class _Model:
    periods: tuple[tuple[float, ModelPrice], ...]  # (start, price), sorted and contiguous
    bands: tuple[_Band, ...]
    min_cacheable: int | None
    geo_us: float
    fast: float | None
    regional: bool = False  # a cloud's regional endpoints cost its regional_multiplier (Sonnet 4.5 on)


def _number(obj: Mapping[str, Any], key: str, where: str, *, allow_zero: bool = False) -> float:
    value: Any = obj.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise PricingError(f"{where}.{key}: expected a {kind} number, got {value!r}")
    return float(value)


def _count(value: Any) -> bool:
    """True for a positive whole number (an int, or a float with an integral value)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return ok and value > 0 and value == int(value)


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PricingError(f"{where}: expected an object")
    return value


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PricingError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _day(value: Any, where: str, *, default: float) -> float:
    """A ``YYYY-MM-DD`` date as unix seconds at 00:00 UTC; ``None`` gives ``default``."""
    if value is None:
        return default
    try:
        day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise PricingError(f"{where}: expected a YYYY-MM-DD date, got {value!r}")
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _price(row: Any, where: str) -> ModelPrice:
    row = _obj(row, where)
    i, o, w5, w1h, r = (_number(row, f, where) for f in PRICE_FIELDS)
    return ModelPrice(i, o, w5, w1h, r, _text(row, "source", where))


def _periods(rows: Any, where: str) -> tuple[tuple[float, ModelPrice], ...]:
    if not isinstance(rows, list) or not rows:
        raise PricingError(f"{where}: expected a non-empty list of dated prices")
    prices = [_price(row, f"{where}[{i}]") for i, row in enumerate(rows)]
    starts = [_day(row.get("from"), f"{where}[{i}].from", default=math.nan) for i, row in enumerate(rows)]
    ends = [_day(row.get("to"), f"{where}[{i}].to", default=math.inf) for i, row in enumerate(rows)]
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if math.isnan(start):
            raise PricingError(f"{where}[{i}].from: every price period needs a date")
        if end != (starts[i + 1] if i + 1 < len(rows) else math.inf) or end <= start:
            raise PricingError(f"{where}[{i}].to: must be after 'from' and equal the next 'from' (null last)")
    return tuple(zip(starts, prices, strict=True))


def _bands(rows: Any, where: str) -> tuple[_Band, ...]:
    if not isinstance(rows, list):
        raise PricingError(f"{where}: expected a list")
    out = []
    for i, row in enumerate(rows):
        at, price = f"{where}[{i}]", _price(row, f"{where}[{i}]")
        above = row.get("above_input_tokens")
        if not isinstance(above, int) or not _count(above):
            raise PricingError(f"{at}.above_input_tokens: expected a positive integer, got {above!r}")
        start = _day(row.get("from"), f"{at}.from", default=-math.inf)
        end = _day(row.get("to"), f"{at}.to", default=math.inf)
        out.append(_Band(_text(row, "rule", at), above, start, end, price))
    return tuple(out)


def _model(raw: Any, where: str) -> _Model:
    raw = _obj(raw, where)
    minimum = raw.get("min_cacheable_tokens")
    if minimum is not None and not (isinstance(minimum, int) and _count(minimum)):
        raise PricingError(f"{where}.min_cacheable_tokens: expected a positive integer or null")
    geo = _number(raw, "geo_us_multiplier", where) if "geo_us_multiplier" in raw else 1.0
    fast = _number(raw, "fast_multiplier", where) if "fast_multiplier" in raw else None
    regional = raw.get("regional_premium", False)
    if not isinstance(regional, bool):
        raise PricingError(f"{where}.regional_premium: expected true or false, got {regional!r}")
    periods = _periods(raw.get("prices"), f"{where}.prices")
    return _Model(periods, _bands(raw.get("bands", []), f"{where}.bands"), minimum, geo, fast, regional)


def _providers(raw: Any) -> dict[str, float]:
    """The regional multiplier of each provider; every provider (``core.cloud.PROVIDERS``) needs a row
    with its source."""
    rows = _obj(raw, "providers")
    out: dict[str, float] = {}
    for name in PROVIDERS:
        where = f"providers.{name}"
        row = _obj(rows.get(name), where)
        _text(row, "source", where)
        out[name] = _number(row, "regional_multiplier", where)
    for name in rows:
        if name not in PROVIDERS:
            raise PricingError(f"providers.{name}: unknown provider (expected {', '.join(PROVIDERS)})")
    return out


def _add_alias(aliases: dict[str, str], name: str, model_id: str, where: str) -> None:
    for key in {name.strip().lower(), normalise_model(name)}:
        if aliases.setdefault(key, model_id) != model_id:
            raise PricingError(f"{where}: {name!r} already names {aliases[key]!r}")


class PriceTable:
    """A loaded, validated price table. Build it with :meth:`load`; lookups never raise."""

    def __init__(
        self,
        version: str,
        models: dict[str, _Model],
        aliases: dict[str, str],
        batch: float,
        web_search: float,
        regional: Mapping[str, float],
    ) -> None:
        self.version = version
        self._version_ts = _day(version, "version", default=math.nan)
        self._models = models
        self._aliases = aliases
        self._batch = batch
        self._web_search = web_search
        self._regional = dict(regional)
        self._norm_cache: dict[str, str | None] = {}

    @classmethod
    def load(
        cls, path: str | None = None, overrides: Mapping[str, Mapping[str, float]] | None = None
    ) -> PriceTable:
        """Read and validate the table (default: the packaged file), then apply config overrides.

        An override replaces the named fields in every dated price of a known model (bands keep the
        table's prices). For an unknown model it creates one: ``input`` and ``output`` are required,
        cache prices not given are derived by the standard multipliers. Besides the five prices an
        override may set ``min_cacheable_tokens`` and ``geo_us_multiplier``.
        Raises :class:`PricingError` naming the key on bad data.
        """
        try:
            if path is None:
                text = (resources.files("sidecar") / "data" / "pricing.json").read_text("utf-8")
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            raw = json.loads(text)
        except (OSError, ValueError) as exc:
            raise PricingError(f"pricing table {path or 'sidecar/data/pricing.json'}: {exc}") from exc
        raw = _obj(raw, "table")
        std = _obj(raw.get("standard_multipliers"), "standard_multipliers")
        derive = {f: _number(std, f, "standard_multipliers") for f in PRICE_FIELDS[2:]}
        table = cls._build(raw)
        for key, fields in (overrides or {}).items():
            table._override(str(key), fields, derive)
        return table

    @classmethod
    def _build(cls, raw: Mapping[str, Any]) -> PriceTable:
        version = _text(raw, "version", "table")
        _day(version, "version", default=math.nan)
        if raw.get("currency") != "USD":
            raise PricingError(f"currency: expected 'USD', got {raw.get('currency')!r}")
        batch = _obj(_obj(raw.get("rules"), "rules").get("batch"), "rules.batch")
        search = _obj(
            _obj(raw.get("server_tools"), "server_tools").get("web_search"), "server_tools.web_search"
        )
        models: dict[str, _Model] = {}
        aliases: dict[str, str] = {}
        for model_id, entry in _obj(raw.get("models"), "models").items():
            where = f"models.{model_id}"
            models[model_id] = _model(entry, where)
            names = entry.get("aliases", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise PricingError(f"{where}.aliases: expected a list of strings")
            for name in (model_id, *names):
                _add_alias(aliases, name, model_id, f"{where}.aliases")
        search_usd = _number(search, "per_request", "server_tools.web_search", allow_zero=True)
        batch_factor = _number(batch, "multiplier", "rules.batch")
        return cls(version, models, aliases, batch_factor, search_usd, _providers(raw.get("providers")))

    def _override(self, key: str, fields: Any, derive: Mapping[str, float]) -> None:
        where = f"pricing.overrides.{key}"
        fields = _obj(fields, where)
        for name in fields:
            if name not in PRICE_FIELDS and name not in _OVERRIDE_EXTRA:
                raise PricingError(
                    f"{where}.{name}: unknown field (expected {PRICE_FIELDS + _OVERRIDE_EXTRA})"
                )
        new = {f: _number(fields, f, where, allow_zero=True) for f in PRICE_FIELDS if f in fields}
        minimum = fields.get("min_cacheable_tokens")
        if minimum is not None and not _count(minimum):
            raise PricingError(f"{where}.min_cacheable_tokens: expected a positive integer, got {minimum!r}")
        geo = _number(fields, "geo_us_multiplier", where) if "geo_us_multiplier" in fields else None
        canon = self.canonical(key)
        if canon is None:
            for required in ("input", "output"):
                if required not in new:
                    raise PricingError(f"{where}.{required}: required for a model not in the table")
            full = {f: new.get(f, new["input"] * derive.get(f, 1.0)) for f in PRICE_FIELDS}
            price = ModelPrice(**full, source="config override (new model; cache prices derived if absent)")
            canon = normalise_model(key)
            self._models[canon] = _Model(((-math.inf, price),), (), None, _NEW_MODEL_GEO_US, None, True)
            _add_alias(self._aliases, key, canon, where)
            self._norm_cache.clear()
            new = {}
        model = self._models[canon]
        note = f"config override of {', '.join(new)}; table: "
        periods = tuple((s, replace(p, **new, source=note + p.source)) for s, p in model.periods)
        self._models[canon] = replace(
            model,
            periods=periods if new else model.periods,
            min_cacheable=int(minimum) if minimum is not None else model.min_cacheable,
            geo_us=model.geo_us if geo is None else geo,
        )

    def canonical(self, model: str) -> str | None:
        """The table's id for ``model`` (alias, dated id, provider form), or ``None`` when unknown."""
        hit = self._aliases.get(model)
        if hit is not None or len(model) > _MAX_MODEL_LEN:
            return hit
        if model in self._norm_cache:
            return self._norm_cache[model]
        found = self._aliases.get(normalise_model(model))
        if len(self._norm_cache) >= _NORM_CACHE_MAX:
            self._norm_cache.clear()  # crude but bounded; the real working set is a few ids
        self._norm_cache[model] = found
        return found

    def regional_multiplier(self, provider: str) -> float:
        """The premium ``provider`` charges at regional endpoints (1.0 for an unknown provider)."""
        return self._regional.get(provider, 1.0)

    def model_ids(self) -> tuple[str, ...]:
        """Every canonical id, e.g. to initialise metric label values."""
        return tuple(self._models)

    def min_cacheable_tokens(self, model: str) -> int | None:
        """The shortest prompt the model caches; ``None`` when the model or its minimum is unknown."""
        canon = self.canonical(model)
        return None if canon is None else self._models[canon].min_cacheable

    def price(self, model: str, at: float) -> ModelPrice | None:
        """The base prices in force at unix time ``at`` (no band, no multiplier)."""
        canon = self.canonical(model)
        return None if canon is None else _period_at(self._models[canon], at)

    def cost(
        self,
        model: str,
        usage: Usage,
        at: float,
        *,
        batch: bool = False,
        provider: str = FIRST_PARTY,
        regional: bool = False,
    ) -> CostBreakdown | None:
        """Price one call made at unix time ``at``; ``None`` when the model is unknown (unpriced).

        ``batch=True`` marks a Message Batches call even when ``usage.service_tier`` does not say so.
        ``regional=True``: ``provider`` served the call at a regional endpoint (its premium applies to
        the models that have one). Negative token counts are treated as zero.
        """
        canon = self.canonical(model)
        if canon is None:
            return None
        entry = self._models[canon]
        # Spelled out, not looped: this runs for every call. Negative counts count as zero.
        w5, w1h = usage.write_buckets()
        w5, w1h = max(0, w5), max(0, w1h)
        n_in, n_out = max(0, usage.input_tokens), max(0, usage.output_tokens)
        n_read = max(0, usage.cache_read_input_tokens)
        rules: list[str] = []
        p = _period_at(entry, at)
        band = _band_at(entry, n_in + n_read + w5 + w1h, at) if entry.bands else None
        if band is not None:
            p = band.price
            rules.append(band.rule)
        scale = _PER_TOKEN * self._multiplier(entry, usage, batch, rules)
        if regional and entry.regional:
            premium = self._regional.get(provider, 1.0)
            if premium != 1.0:
                scale *= premium
                rules.append("regional")
        in_usd = n_in * p.input * scale
        out_usd = n_out * p.output * scale
        read_usd = n_read * p.cache_read * scale
        w5_usd = w5 * p.cache_write_5m * scale
        w1h_usd = w1h * p.cache_write_1h * scale
        saved = n_read * (p.input - p.cache_read) - w5 * (p.cache_write_5m - p.input)
        saved -= w1h * (p.cache_write_1h - p.input)
        tools = max(0, usage.web_search_requests) * self._web_search
        if tools:
            rules.append("web_search")
        total = in_usd + out_usd + read_usd + w5_usd + w1h_usd + tools
        return CostBreakdown(
            canon, in_usd, out_usd, read_usd, w5_usd, w1h_usd, total, saved * scale, tuple(rules), tools
        )

    def effective_rates(
        self, model: str, usage: Usage, at: float, *, batch: bool = False
    ) -> ModelPrice | None:
        """USD per token (not per million) that :meth:`cost` applies to this call's buckets: its band and
        multipliers included. ``None`` when the model is unknown."""
        canon = self.canonical(model)
        if canon is None:
            return None
        entry = self._models[canon]
        w5, w1h = usage.write_buckets()
        total = max(0, usage.input_tokens) + max(0, usage.cache_read_input_tokens) + max(0, w5) + max(0, w1h)
        band = _band_at(entry, total, at) if entry.bands else None
        p = band.price if band is not None else _period_at(entry, at)
        scale = _PER_TOKEN * self._multiplier(entry, usage, batch or usage.service_tier == "batch", [])
        return ModelPrice(
            p.input * scale,
            p.output * scale,
            p.cache_write_5m * scale,
            p.cache_write_1h * scale,
            p.cache_read * scale,
            p.source,
        )

    def _multiplier(self, entry: _Model, usage: Usage, batch: bool, rules: list[str]) -> float:
        factor = 1.0
        if batch or usage.service_tier == "batch":
            factor *= self._batch
            rules.append("batch")
        if entry.geo_us != 1.0 and (usage.inference_geo or "").strip().lower() == "us":
            factor *= entry.geo_us
            rules.append("geo_us")
        if usage.speed == "fast":
            if entry.fast is None:
                rules.append("fast_unpriced")  # premium unknown: standard price, but visible
            else:
                factor *= entry.fast
                rules.append("fast")
        return factor

    def age_days(self, now: float) -> float:
        """Days from the table's ``version`` date (00:00 UTC) to unix time ``now``."""
        return (now - self._version_ts) / 86400.0


def _period_at(entry: _Model, at: float) -> ModelPrice:
    # The first period also covers earlier times (clock skew, previews): never unpriced by date.
    chosen = entry.periods[0][1]
    for start, price in entry.periods:
        if start > at:
            break
        chosen = price
    return chosen


def _band_at(entry: _Model, total_input: int, at: float) -> _Band | None:
    active = [b for b in entry.bands if total_input > b.above and b.start <= at < b.end]
    return max(active, key=lambda b: b.above, default=None)
