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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.cloud import ANTHROPIC
from sidecar.core.price_data import (
    PRICE_FIELDS,
    Band,
    ModelEntry,
    ModelPrice,
    PricingError,
    add_alias,
    cache_multipliers,
    day,
    new_model,
    normalise_model,
    overridden,
    parse_override,
    parse_table,
    read_table,
)
from sidecar.core.usage import Usage

FIRST_PARTY = ANTHROPIC
_PER_TOKEN = 1e-6  # prices are per million tokens
_NORM_CACHE_MAX = 4096  # model strings come from clients: memory must stay bounded
_MAX_MODEL_LEN = 256


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


class PriceTable:
    """A loaded, validated price table. Build it with :meth:`load`; lookups never raise."""

    def __init__(
        self,
        version: str,
        models: dict[str, ModelEntry],
        aliases: dict[str, str],
        batch: float,
        web_search: float,
        regional: Mapping[str, float],
    ) -> None:
        self.version = version
        self._version_ts = day(version, "version", default=math.nan)
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
        raw = read_table(path)
        derive = cache_multipliers(raw)
        d = parse_table(raw)
        table = cls(d.version, d.models, d.aliases, d.batch, d.web_search, d.regional)
        for key, fields in (overrides or {}).items():
            table._override(str(key), fields, derive)
        return table

    def _override(self, key: str, fields: Any, derive: Mapping[str, float]) -> None:
        where = f"pricing.overrides.{key}"
        override = parse_override(fields, where)
        prices = override.prices
        canon = self.canonical(key)
        if canon is None:
            entry = new_model(prices, derive, where)
            canon = normalise_model(key)
            self._models[canon] = entry
            add_alias(self._aliases, key, canon, where)
            self._norm_cache.clear()
            prices = {}  # the new model's prices are all in its entry already
        self._models[canon] = overridden(self._models[canon], override, prices)

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

    def _multiplier(self, entry: ModelEntry, usage: Usage, batch: bool, rules: list[str]) -> float:
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


def _period_at(entry: ModelEntry, at: float) -> ModelPrice:
    # The first period also covers earlier times (clock skew, previews): never unpriced by date.
    chosen = entry.periods[0][1]
    for start, price in entry.periods:
        if start > at:
            break
        chosen = price
    return chosen


def _band_at(entry: ModelEntry, total_input: int, at: float) -> Band | None:
    active = [b for b in entry.bands if total_input > b.above and b.start <= at < b.end]
    return max(active, key=lambda b: b.above, default=None)


__all__ = [
    "FIRST_PARTY",
    "PRICE_FIELDS",
    "CostBreakdown",
    "ModelPrice",
    "PriceTable",
    "PricingError",
    "normalise_model",
]
