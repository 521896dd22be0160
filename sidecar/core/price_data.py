"""The price table's data (SPEC R-AC-2): ``sidecar/data/pricing.json`` and config overrides, read and
validated into per-model entries that :class:`sidecar.core.pricing.PriceTable` looks up and prices with.

Every error is a :class:`PricingError` naming the offending key (``models.x.prices[0].from``).
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

from sidecar.core.cloud import PROVIDERS

PRICE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
OVERRIDE_EXTRA = ("min_cacheable_tokens", "geo_us_multiplier")
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


class PricingError(ValueError):
    """A bad price table or override; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class Band:
    rule: str
    above: int
    start: float
    end: float
    price: ModelPrice


@dataclass(frozen=True, slots=True)
class ModelEntry:
    periods: tuple[tuple[float, ModelPrice], ...]  # (start, price), sorted and contiguous
    bands: tuple[Band, ...]
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


def day(value: Any, where: str, *, default: float) -> float:
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
    starts = [day(row.get("from"), f"{where}[{i}].from", default=math.nan) for i, row in enumerate(rows)]
    ends = [day(row.get("to"), f"{where}[{i}].to", default=math.inf) for i, row in enumerate(rows)]
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if math.isnan(start):
            raise PricingError(f"{where}[{i}].from: every price period needs a date")
        if end != (starts[i + 1] if i + 1 < len(rows) else math.inf) or end <= start:
            raise PricingError(f"{where}[{i}].to: must be after 'from' and equal the next 'from' (null last)")
    return tuple(zip(starts, prices, strict=True))


def _bands(rows: Any, where: str) -> tuple[Band, ...]:
    if not isinstance(rows, list):
        raise PricingError(f"{where}: expected a list")
    out = []
    for i, row in enumerate(rows):
        at, price = f"{where}[{i}]", _price(row, f"{where}[{i}]")
        above = row.get("above_input_tokens")
        if not isinstance(above, int) or not _count(above):
            raise PricingError(f"{at}.above_input_tokens: expected a positive integer, got {above!r}")
        start = day(row.get("from"), f"{at}.from", default=-math.inf)
        end = day(row.get("to"), f"{at}.to", default=math.inf)
        out.append(Band(_text(row, "rule", at), above, start, end, price))
    return tuple(out)


def _model(raw: Any, where: str) -> ModelEntry:
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
    return ModelEntry(periods, _bands(raw.get("bands", []), f"{where}.bands"), minimum, geo, fast, regional)


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


def add_alias(aliases: dict[str, str], name: str, model_id: str, where: str) -> None:
    for key in {name.strip().lower(), normalise_model(name)}:
        if aliases.setdefault(key, model_id) != model_id:
            raise PricingError(f"{where}: {name!r} already names {aliases[key]!r}")


@dataclass(frozen=True, slots=True)
class TableData:
    """A validated table: what :class:`~sidecar.core.pricing.PriceTable` is built from."""

    version: str
    models: dict[str, ModelEntry]
    aliases: dict[str, str]  # every name (lower-cased and normalised) -> model id
    batch: float
    web_search: float  # USD per request
    regional: dict[str, float]  # provider -> regional multiplier


def read_table(path: str | None) -> Mapping[str, Any]:
    """The table's JSON object (default: the packaged file)."""
    try:
        if path is None:
            text = (resources.files("sidecar") / "data" / "pricing.json").read_text("utf-8")
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        raw = json.loads(text)
    except (OSError, ValueError) as exc:
        raise PricingError(f"pricing table {path or 'sidecar/data/pricing.json'}: {exc}") from exc
    return _obj(raw, "table")


def cache_multipliers(raw: Mapping[str, Any]) -> dict[str, float]:
    """The standard cache-price multipliers of input (5-minute write, 1-hour write, read), which derive
    the cache prices of a new model an override adds."""
    std = _obj(raw.get("standard_multipliers"), "standard_multipliers")
    return {f: _number(std, f, "standard_multipliers") for f in PRICE_FIELDS[2:]}


def parse_table(raw: Mapping[str, Any]) -> TableData:
    """Validate the table's prices, aliases, rules and providers."""
    version = _text(raw, "version", "table")
    day(version, "version", default=math.nan)
    if raw.get("currency") != "USD":
        raise PricingError(f"currency: expected 'USD', got {raw.get('currency')!r}")
    batch = _obj(_obj(raw.get("rules"), "rules").get("batch"), "rules.batch")
    search = _obj(_obj(raw.get("server_tools"), "server_tools").get("web_search"), "server_tools.web_search")
    models: dict[str, ModelEntry] = {}
    aliases: dict[str, str] = {}
    for model_id, entry in _obj(raw.get("models"), "models").items():
        where = f"models.{model_id}"
        models[model_id] = _model(entry, where)
        names = entry.get("aliases", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise PricingError(f"{where}.aliases: expected a list of strings")
        for name in (model_id, *names):
            add_alias(aliases, name, model_id, f"{where}.aliases")
    search_usd = _number(search, "per_request", "server_tools.web_search", allow_zero=True)
    batch_factor = _number(batch, "multiplier", "rules.batch")
    return TableData(version, models, aliases, batch_factor, search_usd, _providers(raw.get("providers")))


@dataclass(frozen=True, slots=True)
class Override:
    """One model's ``pricing.overrides`` entry: the prices it replaces and the extras it sets."""

    prices: dict[str, float]
    min_cacheable: int | None
    geo_us: float | None


def parse_override(fields: Any, where: str) -> Override:
    fields = _obj(fields, where)
    for name in fields:
        if name not in PRICE_FIELDS and name not in OVERRIDE_EXTRA:
            raise PricingError(f"{where}.{name}: unknown field (expected {PRICE_FIELDS + OVERRIDE_EXTRA})")
    new = {f: _number(fields, f, where, allow_zero=True) for f in PRICE_FIELDS if f in fields}
    minimum = fields.get("min_cacheable_tokens")
    if minimum is not None and not _count(minimum):
        raise PricingError(f"{where}.min_cacheable_tokens: expected a positive integer, got {minimum!r}")
    geo = _number(fields, "geo_us_multiplier", where) if "geo_us_multiplier" in fields else None
    return Override(new, int(minimum) if minimum is not None else None, geo)


def new_model(prices: Mapping[str, float], derive: Mapping[str, float], where: str) -> ModelEntry:
    """A model the table lacks, from an override's prices: ``input`` and ``output`` required, cache
    prices not given derived from ``input`` by ``derive``."""
    for required in ("input", "output"):
        if required not in prices:
            raise PricingError(f"{where}.{required}: required for a model not in the table")
    full = {f: prices.get(f, prices["input"] * derive.get(f, 1.0)) for f in PRICE_FIELDS}
    price = ModelPrice(**full, source="config override (new model; cache prices derived if absent)")
    return ModelEntry(((-math.inf, price),), (), None, _NEW_MODEL_GEO_US, None, True)


def overridden(model: ModelEntry, override: Override, prices: Mapping[str, float]) -> ModelEntry:
    """``model`` with ``prices`` replaced in every dated price (bands keep the table's) and the
    override's extras set."""
    note = f"config override of {', '.join(prices)}; table: "
    periods = tuple((s, replace(p, **prices, source=note + p.source)) for s, p in model.periods)
    minimum, geo = override.min_cacheable, override.geo_us
    return replace(
        model,
        periods=periods if prices else model.periods,
        min_cacheable=minimum if minimum is not None else model.min_cacheable,
        geo_us=model.geo_us if geo is None else geo,
    )
