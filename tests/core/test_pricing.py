"""Cost engine against hand calculations (USD per million tokens, written out from the price notes)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.pricing import CostBreakdown, PriceTable, PricingError, normalise_model
from sidecar.core.usage import Usage

TOL = 1e-9  # the product promises $0.000001; keep a wide margin


def ts(day: str, time: str = "12:00:00") -> float:
    return datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=UTC).timestamp()


NOW = ts("2026-11-20")


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def raw_table() -> dict[str, Any]:
    text = (resources.files("sidecar") / "data" / "pricing.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def priced(table: PriceTable, model: str, usage: Usage, at: float = NOW, **kw: bool) -> CostBreakdown:
    result = table.cost(model, usage, at, **kw)
    assert result is not None, model
    return result


# Standard prices per model, typed in from the price notes (§4.2): input, output, 5m write, 1h write, read.
RATES: dict[str, tuple[float, float, float, float, float]] = {
    "claude-fable-5-2": (8, 40, 10, 16, 0.80),  # writes/read derived 1.25x / 2x / 0.1x of 8
    "claude-fable-5-1": (10, 50, 12.50, 20, 0.25),
    "claude-fable-5": (10, 50, 12.50, 20, 1),
    "claude-mythos-5-2": (8, 40, 10, 16, 0.80),  # assumed equal to Fable 5.2
    "claude-mythos-5-1": (10, 50, 12.50, 20, 0.25),
    "claude-mythos-5": (10, 50, 12.50, 20, 1),
    "claude-mythos-preview": (25, 125, 31.25, 50, 2.50),
    "claude-opus-5-5": (4, 20, 5, 8, 0.20),
    "claude-opus-5": (5, 25, 6.25, 10, 0.50),
    "claude-opus-4-8": (5, 25, 6.25, 10, 0.50),
    "claude-opus-4-7": (5, 25, 6.25, 10, 0.50),
    "claude-opus-4-6": (5, 25, 6.25, 10, 0.50),
    "claude-opus-4-5": (5, 25, 6.25, 10, 0.50),
    "claude-opus-4-1": (15, 75, 18.75, 30, 1.50),
    "claude-opus-4-0": (15, 75, 18.75, 30, 1.50),
    "claude-sonnet-5-5": (2, 10, 2.50, 4, 0.10),  # read price from 2026-10-07
    "claude-sonnet-5": (2, 10, 2.50, 4, 0.20),
    "claude-sonnet-4-6": (3, 15, 3.75, 6, 0.30),
    "claude-sonnet-4-5": (3, 15, 3.75, 6, 0.30),
    "claude-sonnet-4-0": (3, 15, 3.75, 6, 0.30),
    "claude-3-7-sonnet": (3, 15, 3.75, 6, 0.30),
    "claude-haiku-5-5": (0.10, 0.50, 0.125, 0.20, 0.01),
    "claude-haiku-4-5": (1, 5, 1.25, 2, 0.10),
    "claude-3-5-haiku": (0.80, 4, 1, 1.6, 0.08),
    "claude-3-haiku": (0.25, 1.25, 0.30, 0.50, 0.03),
    "claude-3-opus": (15, 75, 18.75, 30, 1.50),
}

# 1000 uncached in, 2000 out, 3000 cache read, 400 written for 5m and 500 for 1h.
MIXED = Usage(1000, 2000, 3000, 900, cache_creation_5m=400, cache_creation_1h=500)
MIXED_TOTALS = [
    (
        "claude-fable-5-2",
        1000 * 8 / 1e6 + 2000 * 40 / 1e6 + 3000 * 0.80 / 1e6 + 400 * 10 / 1e6 + 500 * 16 / 1e6,
    ),
    (
        "claude-fable-5-1",
        1000 * 10 / 1e6 + 2000 * 50 / 1e6 + 3000 * 0.25 / 1e6 + 400 * 12.5 / 1e6 + 500 * 20 / 1e6,
    ),
    (
        "claude-fable-5",
        1000 * 10 / 1e6 + 2000 * 50 / 1e6 + 3000 * 1 / 1e6 + 400 * 12.5 / 1e6 + 500 * 20 / 1e6,
    ),
    (
        "claude-mythos-5-2",
        1000 * 8 / 1e6 + 2000 * 40 / 1e6 + 3000 * 0.80 / 1e6 + 400 * 10 / 1e6 + 500 * 16 / 1e6,
    ),
    (
        "claude-mythos-5-1",
        1000 * 10 / 1e6 + 2000 * 50 / 1e6 + 3000 * 0.25 / 1e6 + 400 * 12.5 / 1e6 + 500 * 20 / 1e6,
    ),
    (
        "claude-mythos-5",
        1000 * 10 / 1e6 + 2000 * 50 / 1e6 + 3000 * 1 / 1e6 + 400 * 12.5 / 1e6 + 500 * 20 / 1e6,
    ),
    (
        "claude-mythos-preview",
        1000 * 25 / 1e6 + 2000 * 125 / 1e6 + 3000 * 2.5 / 1e6 + 400 * 31.25 / 1e6 + 500 * 50 / 1e6,
    ),
    ("claude-opus-5-5", 1000 * 4 / 1e6 + 2000 * 20 / 1e6 + 3000 * 0.20 / 1e6 + 400 * 5 / 1e6 + 500 * 8 / 1e6),
    (
        "claude-opus-5",
        1000 * 5 / 1e6 + 2000 * 25 / 1e6 + 3000 * 0.50 / 1e6 + 400 * 6.25 / 1e6 + 500 * 10 / 1e6,
    ),
    (
        "claude-opus-4-8",
        1000 * 5 / 1e6 + 2000 * 25 / 1e6 + 3000 * 0.50 / 1e6 + 400 * 6.25 / 1e6 + 500 * 10 / 1e6,
    ),
    (
        "claude-opus-4-7",
        1000 * 5 / 1e6 + 2000 * 25 / 1e6 + 3000 * 0.50 / 1e6 + 400 * 6.25 / 1e6 + 500 * 10 / 1e6,
    ),
    (
        "claude-opus-4-6",
        1000 * 5 / 1e6 + 2000 * 25 / 1e6 + 3000 * 0.50 / 1e6 + 400 * 6.25 / 1e6 + 500 * 10 / 1e6,
    ),
    (
        "claude-opus-4-5",
        1000 * 5 / 1e6 + 2000 * 25 / 1e6 + 3000 * 0.50 / 1e6 + 400 * 6.25 / 1e6 + 500 * 10 / 1e6,
    ),
    (
        "claude-opus-4-1",
        1000 * 15 / 1e6 + 2000 * 75 / 1e6 + 3000 * 1.5 / 1e6 + 400 * 18.75 / 1e6 + 500 * 30 / 1e6,
    ),
    (
        "claude-opus-4-0",
        1000 * 15 / 1e6 + 2000 * 75 / 1e6 + 3000 * 1.5 / 1e6 + 400 * 18.75 / 1e6 + 500 * 30 / 1e6,
    ),
    (
        "claude-sonnet-5-5",
        1000 * 2 / 1e6 + 2000 * 10 / 1e6 + 3000 * 0.10 / 1e6 + 400 * 2.5 / 1e6 + 500 * 4 / 1e6,
    ),
    (
        "claude-sonnet-5",
        1000 * 2 / 1e6 + 2000 * 10 / 1e6 + 3000 * 0.20 / 1e6 + 400 * 2.5 / 1e6 + 500 * 4 / 1e6,
    ),
    (
        "claude-sonnet-4-6",
        1000 * 3 / 1e6 + 2000 * 15 / 1e6 + 3000 * 0.30 / 1e6 + 400 * 3.75 / 1e6 + 500 * 6 / 1e6,
    ),
    (
        "claude-sonnet-4-5",
        1000 * 3 / 1e6 + 2000 * 15 / 1e6 + 3000 * 0.30 / 1e6 + 400 * 3.75 / 1e6 + 500 * 6 / 1e6,
    ),
    (
        "claude-sonnet-4-0",
        1000 * 3 / 1e6 + 2000 * 15 / 1e6 + 3000 * 0.30 / 1e6 + 400 * 3.75 / 1e6 + 500 * 6 / 1e6,
    ),
    (
        "claude-3-7-sonnet",
        1000 * 3 / 1e6 + 2000 * 15 / 1e6 + 3000 * 0.30 / 1e6 + 400 * 3.75 / 1e6 + 500 * 6 / 1e6,
    ),
    (
        "claude-haiku-5-5",
        1000 * 0.1 / 1e6 + 2000 * 0.5 / 1e6 + 3000 * 0.01 / 1e6 + 400 * 0.125 / 1e6 + 500 * 0.2 / 1e6,
    ),
    (
        "claude-haiku-4-5",
        1000 * 1 / 1e6 + 2000 * 5 / 1e6 + 3000 * 0.10 / 1e6 + 400 * 1.25 / 1e6 + 500 * 2 / 1e6,
    ),
    (
        "claude-3-5-haiku",
        1000 * 0.8 / 1e6 + 2000 * 4 / 1e6 + 3000 * 0.08 / 1e6 + 400 * 1 / 1e6 + 500 * 1.6 / 1e6,
    ),
    (
        "claude-3-haiku",
        1000 * 0.25 / 1e6 + 2000 * 1.25 / 1e6 + 3000 * 0.03 / 1e6 + 400 * 0.3 / 1e6 + 500 * 0.5 / 1e6,
    ),
    (
        "claude-3-opus",
        1000 * 15 / 1e6 + 2000 * 75 / 1e6 + 3000 * 1.5 / 1e6 + 400 * 18.75 / 1e6 + 500 * 30 / 1e6,
    ),
]


def test_every_table_model_has_hand_rates() -> None:
    assert set(RATES) == set(raw_table()["models"])
    assert {m for m, _ in MIXED_TOTALS} == set(RATES)


@pytest.mark.parametrize(("model", "expected"), MIXED_TOTALS)
def test_mixed_usage_total_matches_hand_calculation(table: PriceTable, model: str, expected: float) -> None:
    result = priced(table, model, MIXED)
    assert result.model == model
    assert abs(result.total_usd - expected) < TOL
    assert result.rules == ()


BUCKETS = [  # (usage with one bucket only, CostBreakdown field, index into RATES)
    (Usage(input_tokens=12_345), "input_usd", 0),
    (Usage(output_tokens=6_789), "output_usd", 1),
    (
        Usage(cache_creation_input_tokens=4_321, cache_creation_5m=4_321, cache_creation_1h=0),
        "cache_write_5m_usd",
        2,
    ),
    (
        Usage(cache_creation_input_tokens=5_432, cache_creation_5m=0, cache_creation_1h=5_432),
        "cache_write_1h_usd",
        3,
    ),
    (Usage(cache_read_input_tokens=54_321), "cache_read_usd", 4),
]


@pytest.mark.parametrize("model", sorted(RATES))
@pytest.mark.parametrize(("usage", "field", "index"), BUCKETS, ids=[b[1] for b in BUCKETS])
def test_each_bucket_for_every_model(
    table: PriceTable, model: str, usage: Usage, field: str, index: int
) -> None:
    tokens = max(usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens)
    tokens = max(tokens, usage.cache_creation_input_tokens)
    expected = tokens * RATES[model][index] / 1e6
    result = priced(table, model, usage)
    assert abs(getattr(result, field) - expected) < TOL
    assert abs(result.total_usd - expected) < TOL


def test_uncached_only(table: PriceTable) -> None:
    r = priced(table, "claude-sonnet-4-5", Usage(input_tokens=1000, output_tokens=500))
    assert abs(r.total_usd - (1000 * 3 / 1e6 + 500 * 15 / 1e6)) < TOL
    assert r.cache_read_usd == r.cache_write_5m_usd == r.cache_write_1h_usd == 0.0
    assert r.savings_usd == 0.0


def test_cache_read_only(table: PriceTable) -> None:
    r = priced(
        table, "claude-sonnet-4-5", Usage(input_tokens=10, output_tokens=100, cache_read_input_tokens=20_000)
    )
    assert abs(r.total_usd - (10 * 3 / 1e6 + 100 * 15 / 1e6 + 20_000 * 0.30 / 1e6)) < TOL


def test_five_minute_and_one_hour_writes(table: PriceTable) -> None:
    five = Usage(
        input_tokens=10, cache_creation_input_tokens=8000, cache_creation_5m=8000, cache_creation_1h=0
    )
    hour = Usage(
        input_tokens=10, cache_creation_input_tokens=8000, cache_creation_5m=0, cache_creation_1h=8000
    )
    assert abs(priced(table, "claude-opus-4-5", five).total_usd - (10 * 5 / 1e6 + 8000 * 6.25 / 1e6)) < TOL
    assert abs(priced(table, "claude-opus-4-5", hour).total_usd - (10 * 5 / 1e6 + 8000 * 10 / 1e6)) < TOL


def test_mixed_split(table: PriceTable) -> None:
    usage = Usage(
        input_tokens=100, output_tokens=50, cache_creation_input_tokens=3000, cache_creation_1h=1200
    )
    r = priced(table, "claude-haiku-4-5", usage)
    assert abs(r.cache_write_5m_usd - 1800 * 1.25 / 1e6) < TOL
    assert abs(r.cache_write_1h_usd - 1200 * 2 / 1e6) < TOL
    expected = 100 * 1 / 1e6 + 50 * 5 / 1e6 + 1800 * 1.25 / 1e6 + 1200 * 2 / 1e6
    assert abs(r.total_usd - expected) < TOL


def test_missing_split_prices_all_writes_as_five_minute(table: PriceTable) -> None:
    r = priced(table, "claude-sonnet-4-5", Usage(input_tokens=5, cache_creation_input_tokens=7000))
    assert abs(r.cache_write_5m_usd - 7000 * 3.75 / 1e6) < TOL
    assert r.cache_write_1h_usd == 0.0
    assert abs(r.total_usd - (5 * 3 / 1e6 + 7000 * 3.75 / 1e6)) < TOL


def test_cache_tokens_are_never_counted_twice(table: PriceTable) -> None:
    # input_tokens already excludes cache reads and writes: 12 uncached tokens cost 12 tokens of input.
    usage = Usage(
        input_tokens=12, output_tokens=300, cache_read_input_tokens=50_000, cache_creation_input_tokens=2_000
    )
    r = priced(table, "claude-sonnet-4-5", usage)
    assert abs(r.input_usd - 12 * 3 / 1e6) < TOL
    right = 12 * 3 / 1e6 + 300 * 15 / 1e6 + 50_000 * 0.30 / 1e6 + 2_000 * 3.75 / 1e6
    wrong = (12 + 50_000 + 2_000) * 3 / 1e6 + 300 * 15 / 1e6 + 50_000 * 0.30 / 1e6 + 2_000 * 3.75 / 1e6
    assert abs(r.total_usd - right) < TOL
    assert abs(r.total_usd - wrong) > 0.1


def test_long_context_threshold_counts_cache_and_is_strictly_above_200k(table: PriceTable) -> None:
    at_limit = Usage(
        input_tokens=100_000,
        output_tokens=1000,
        cache_read_input_tokens=60_000,
        cache_creation_input_tokens=40_000,
    )
    r = priced(table, "claude-sonnet-4-5", at_limit)
    assert r.rules == ()
    assert abs(r.total_usd - (100_000 * 3 + 1000 * 15 + 60_000 * 0.30 + 40_000 * 3.75) / 1e6) < TOL
    over = Usage(
        input_tokens=100_001,
        output_tokens=1000,
        cache_read_input_tokens=60_000,
        cache_creation_input_tokens=40_000,
        cache_creation_1h=10_000,
    )
    r = priced(table, "claude-sonnet-4-5-20250929", over)
    assert r.rules == ("long_context",)
    expected = (100_001 * 6 + 1000 * 22.5 + 60_000 * 0.60 + 30_000 * 7.50 + 10_000 * 12) / 1e6
    assert abs(r.total_usd - expected) < TOL


def test_long_context_driven_by_cache_reads_alone(table: PriceTable) -> None:
    r = priced(
        table, "claude-sonnet-4-0", Usage(input_tokens=3, output_tokens=10, cache_read_input_tokens=199_998)
    )
    assert r.rules == ("long_context",)
    assert abs(r.total_usd - (3 * 6 + 10 * 22.5 + 199_998 * 0.60) / 1e6) < TOL


def test_long_context_for_4_6_models_only_before_the_1m_ga(table: PriceTable) -> None:
    usage = Usage(input_tokens=300_000, output_tokens=2000)
    before, after = ts("2026-03-12", "23:59:59"), ts("2026-03-13", "00:00:00")
    r = priced(table, "claude-sonnet-4-6", usage, before)
    assert (r.rules, abs(r.total_usd - (300_000 * 6 + 2000 * 22.5) / 1e6) < TOL) == (("long_context",), True)
    r = priced(table, "claude-opus-4-6", usage, before)
    assert (r.rules, abs(r.total_usd - (300_000 * 10 + 2000 * 37.5) / 1e6) < TOL) == (("long_context",), True)
    r = priced(table, "claude-sonnet-4-6", usage, after)
    assert (r.rules, abs(r.total_usd - (300_000 * 3 + 2000 * 15) / 1e6) < TOL) == ((), True)
    r = priced(table, "claude-opus-4-7", usage)
    assert (r.rules, abs(r.total_usd - (300_000 * 5 + 2000 * 25) / 1e6) < TOL) == ((), True)


def test_haiku_5_5_two_bands(table: PriceTable) -> None:
    low = Usage(input_tokens=60_000, output_tokens=1000, cache_read_input_tokens=40_000)
    r = priced(table, "claude-haiku-5-5", low)
    assert r.rules == ()
    assert abs(r.total_usd - (60_000 * 0.10 + 1000 * 0.50 + 40_000 * 0.01) / 1e6) < TOL
    high = Usage(
        input_tokens=60_001, output_tokens=1000, cache_read_input_tokens=40_000, cache_creation_input_tokens=5
    )
    r = priced(table, "claude-haiku-5-5", high)
    assert r.rules == ("prompt_over_100k",)
    assert abs(r.total_usd - (60_001 * 0.50 + 1000 * 2.50 + 40_000 * 0.05 + 5 * 0.625) / 1e6) < TOL


def test_batch_halves_every_bucket(table: PriceTable) -> None:
    usage = Usage(1000, 2000, 3000, 900, cache_creation_5m=400, cache_creation_1h=500, service_tier="batch")
    r = priced(table, "claude-sonnet-4-5", usage)
    full = 1000 * 3 / 1e6 + 2000 * 15 / 1e6 + 3000 * 0.30 / 1e6 + 400 * 3.75 / 1e6 + 500 * 6 / 1e6
    assert r.rules == ("batch",)
    assert abs(r.total_usd - full * 0.5) < TOL
    assert abs(r.cache_read_usd - 3000 * 0.30 * 0.5 / 1e6) < TOL
    assert abs(r.cache_write_1h_usd - 500 * 6 * 0.5 / 1e6) < TOL
    flagged = priced(table, "claude-sonnet-4-5", MIXED, batch=True)
    assert flagged.rules == ("batch",) and abs(flagged.total_usd - full * 0.5) < TOL


def test_batch_stacks_on_long_context(table: PriceTable) -> None:
    r = priced(table, "claude-sonnet-4-5", Usage(input_tokens=250_000, output_tokens=100), batch=True)
    assert r.rules == ("long_context", "batch")
    assert abs(r.total_usd - (250_000 * 6 + 100 * 22.5) * 0.5 / 1e6) < TOL


def test_geo_us_only_on_opus_4_6_and_newer(table: PriceTable) -> None:
    us = Usage(input_tokens=1000, output_tokens=1000, cache_read_input_tokens=1000, inference_geo="us")
    r = priced(table, "claude-opus-4-6", us)
    assert r.rules == ("geo_us",)
    assert abs(r.total_usd - (1000 * 5 + 1000 * 25 + 1000 * 0.5) * 1.1 / 1e6) < TOL
    r = priced(table, "claude-fable-5", us, batch=True)
    assert r.rules == ("batch", "geo_us")
    assert abs(r.total_usd - (1000 * 10 + 1000 * 50 + 1000 * 1) * 0.5 * 1.1 / 1e6) < TOL
    older = priced(table, "claude-haiku-4-5", us)
    assert older.rules == () and abs(older.total_usd - (1000 * 1 + 1000 * 5 + 1000 * 0.1) / 1e6) < TOL
    global_geo = Usage(input_tokens=1000, inference_geo="global")
    assert priced(table, "claude-opus-4-6", global_geo).rules == ()


def test_long_context_and_geo_draw_2_2_times_input(table: PriceTable) -> None:
    usage = Usage(input_tokens=300_000, inference_geo="us")
    r = priced(table, "claude-sonnet-4-6", usage, ts("2026-03-01"))
    assert r.rules == ("long_context", "geo_us")
    assert abs(r.input_usd - 300_000 * 3 * 2.2 / 1e6) < TOL


def test_fast_mode(table: PriceTable) -> None:
    fast = Usage(input_tokens=1000, output_tokens=1000, speed="fast")
    r = priced(table, "claude-opus-4-6", fast)
    assert r.rules == ("fast",) and abs(r.total_usd - (1000 * 5 + 1000 * 25) * 6 / 1e6) < TOL
    r = priced(table, "claude-opus-5", fast)  # premium unknown: standard price, flagged
    assert r.rules == ("fast_unpriced",) and abs(r.total_usd - (1000 * 5 + 1000 * 25) / 1e6) < TOL


def test_web_search_is_billed_per_request(table: PriceTable) -> None:
    r = priced(
        table, "claude-sonnet-4-5", Usage(input_tokens=1000, web_search_requests=3, web_fetch_requests=2)
    )
    assert r.rules == ("web_search",)
    assert abs(r.server_tool_usd - 3 * 10 / 1000) < TOL
    assert abs(r.total_usd - (1000 * 3 / 1e6 + 3 * 10 / 1000)) < TOL


def test_sonnet_5_5_read_price_changes_on_2026_10_07(table: PriceTable) -> None:
    usage = Usage(input_tokens=100, cache_read_input_tokens=1_000_000)
    before = priced(table, "claude-sonnet-5-5", usage, ts("2026-10-06", "23:59:59"))
    after = priced(table, "claude-sonnet-5-5", usage, ts("2026-10-07", "00:00:00"))
    assert abs(before.total_usd - (100 * 2 / 1e6 + 1_000_000 * 0.20 / 1e6)) < TOL
    assert abs(after.total_usd - (100 * 2 / 1e6 + 1_000_000 * 0.10 / 1e6)) < TOL
    early, late = table.price("claude-sonnet-5-5", ts("2026-10-01")), table.price("claude-sonnet-5-5", NOW)
    assert early is not None and late is not None
    assert (early.cache_read, late.cache_read, early.input, late.input) == (0.20, 0.10, 2.0, 2.0)
    assert early.source and late.source and early.source != late.source


def test_first_period_covers_earlier_request_times(table: PriceTable) -> None:
    old = table.price("claude-opus-5", ts("2020-01-01"))
    assert old is not None and (old.input, old.output) == (5.0, 25.0)


def test_savings_formula_on_a_hand_example(table: PriceTable) -> None:
    usage = Usage(
        input_tokens=500,
        output_tokens=100,
        cache_read_input_tokens=10_000,
        cache_creation_input_tokens=3_000,
        cache_creation_5m=2_000,
        cache_creation_1h=1_000,
    )
    r = priced(table, "claude-sonnet-4-5", usage)
    # reads saved (3 - 0.30) each; 5m writes cost (3.75 - 3) extra; 1h writes (6 - 3) extra
    expected = (10_000 * (3 - 0.30) - 2_000 * (3.75 - 3) - 1_000 * (6 - 3)) / 1e6
    assert abs(expected - 0.0225) < 1e-12
    assert abs(r.savings_usd - expected) < TOL
    assert abs(priced(table, "claude-sonnet-4-5", usage, batch=True).savings_usd - expected * 0.5) < TOL
    writes_only = priced(table, "claude-sonnet-4-5", Usage(cache_creation_input_tokens=4000))
    assert abs(writes_only.savings_usd - (-4000 * (3.75 - 3) / 1e6)) < TOL


def test_negative_counts_are_treated_as_zero(table: PriceTable) -> None:
    r = priced(
        table, "claude-sonnet-4-5", Usage(input_tokens=-5, output_tokens=10, cache_read_input_tokens=-1)
    )
    assert abs(r.total_usd - 10 * 15 / 1e6) < TOL


@given(
    st.integers(0, 2_000_000),
    st.integers(0, 200_000),
    st.integers(0, 2_000_000),
    st.integers(0, 500_000),
    st.one_of(st.none(), st.integers(0, 600_000)),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_total_is_the_sum_of_independently_priced_buckets(
    n_in: int, n_out: int, n_read: int, n_write: int, n_1h: int | None, batch: bool
) -> None:
    table = PriceTable.load()
    usage = Usage(n_in, n_out, n_read, n_write, cache_creation_1h=n_1h)
    r = priced(table, "claude-sonnet-4-5", usage, batch=batch)
    w1h = min(n_1h or 0, n_write)
    long = n_in + n_read + n_write > 200_000
    i, o, w5p, w1p, rd = (6, 22.5, 7.5, 12, 0.6) if long else (3, 15, 3.75, 6, 0.30)
    m = 0.5 if batch else 1.0
    expected = (n_in * i + n_out * o + n_read * rd + (n_write - w1h) * w5p + w1h * w1p) * m / 1e6
    assert abs(r.total_usd - expected) < TOL
    parts = r.input_usd + r.output_usd + r.cache_read_usd + r.cache_write_5m_usd + r.cache_write_1h_usd
    assert abs(r.total_usd - parts) < TOL


ALIASES = [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ("claude-opus-4-0", "claude-opus-4-0"),
    ("claude-sonnet-4-0", "claude-sonnet-4-0"),
    ("claude-opus-4-20250514", "claude-opus-4-0"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
    ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-3-opus-20240229", "claude-3-opus"),
    ("claude-3-haiku-20240307", "claude-3-haiku"),
    ("claude-opus-4-6[1m]", "claude-opus-4-6"),
    ("claude-sonnet-4-5-20250929[1m]", "claude-sonnet-4-5"),
    ("  Claude-Opus-5-5 ", "claude-opus-5-5"),
    ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
    ("anthropic/claude-3.7-sonnet:thinking", "claude-3-7-sonnet"),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
    ("us.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("claude-opus-4-1@20250805", "claude-opus-4-1"),
    ("bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("claude-fable-5.1", "claude-fable-5-1"),
    ("claude-sonnet-5-5-20261001", "claude-sonnet-5-5"),
]


@pytest.mark.parametrize(("alias", "canonical"), ALIASES)
def test_aliases_and_dated_ids_resolve(table: PriceTable, alias: str, canonical: str) -> None:
    assert table.canonical(alias) == canonical
    assert table.canonical(alias) == canonical  # second call: served from the normalisation cache
    result = table.cost(alias, Usage(input_tokens=1), NOW)
    assert result is not None and result.model == canonical


# Every model id listed in §4.1 of the protocol notes (SDK 0.121.0, SDK 2.10.0, deprecated list, spec).
SECTION_4_1_IDS = [
    "claude-sonnet-5",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-mythos-preview",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-fable-5-2",
    "claude-mythos-5-2",
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-fable-5-1",
    "claude-opus-5-5",
    "claude-mythos-5-1",
    "claude-3-opus-20240229",
    "claude-3-7-sonnet-20250219",
    "claude-3-7-sonnet-latest",
    "claude-3-5-haiku-20241022",
    "claude-3-5-haiku-latest",
    "claude-opus-4-0",
    "claude-opus-4-20250514",
    "claude-sonnet-4-0",
    "claude-sonnet-4-20250514",
    "claude-opus-4-1",
    "claude-opus-4-1-20250805",
    "claude-3-haiku-20240307",
]


@pytest.mark.parametrize("model", SECTION_4_1_IDS)
def test_every_sdk_model_id_resolves_and_is_priced(table: PriceTable, model: str) -> None:
    assert table.canonical(model) is not None
    assert table.price(model, NOW) is not None


@pytest.mark.parametrize("model", ["gpt-4o", "sonnet", "opus[1m]", "claude-opus-9", "", "x" * 10_000])
def test_unknown_model_is_none_everywhere(table: PriceTable, model: str) -> None:
    assert table.canonical(model) is None
    assert table.price(model, NOW) is None
    assert table.cost(model, Usage(input_tokens=10), NOW) is None
    assert table.min_cacheable_tokens(model) is None


def test_normalisation_cache_stays_bounded(table: PriceTable) -> None:
    for i in range(10_000):
        assert table.canonical(f"unknown-model-{i}") is None
    assert len(table._norm_cache) <= 4096
    assert table.canonical("Claude-Sonnet-4-5-20250929") == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-opus-5", 512),
        ("claude-fable-5", 512),
        ("claude-mythos-5", 512),
        ("claude-opus-4-8", 1024),
        ("claude-sonnet-5", 1024),
        ("claude-sonnet-4-5-20250929", 1024),
        ("claude-opus-4-1", 1024),
        ("claude-opus-4-20250514", 1024),
        ("claude-sonnet-4-0", 1024),
        ("claude-3-7-sonnet-20250219", 1024),
        ("claude-opus-4-7", 2048),
        ("claude-opus-4-6", 4096),
        ("claude-opus-4-5", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-3-5-haiku-20241022", 2048),
        ("claude-3-haiku-20240307", 2048),
    ],
)
def test_min_cacheable_tokens(table: PriceTable, model: str, minimum: int) -> None:
    assert table.min_cacheable_tokens(model) == minimum


def test_partial_override_keeps_other_fields() -> None:
    t = PriceTable.load(overrides={"claude-sonnet-4-5-20250929": {"input": 2.0}})
    p = t.price("claude-sonnet-4-5", NOW)
    assert p is not None
    assert (p.input, p.output, p.cache_write_5m, p.cache_write_1h, p.cache_read) == (
        2.0,
        15.0,
        3.75,
        6.0,
        0.30,
    )
    assert "override" in p.source
    r = priced(t, "claude-sonnet-4-5", Usage(input_tokens=1000, output_tokens=1000))
    assert abs(r.total_usd - (1000 * 2 + 1000 * 15) / 1e6) < TOL
    untouched = PriceTable.load().price("claude-sonnet-4-5", NOW)
    assert untouched is not None and untouched.input == 3.0


def test_override_applies_to_every_dated_period() -> None:
    t = PriceTable.load(overrides={"claude-sonnet-5-5": {"output": 12.0}})
    early, late = t.price("claude-sonnet-5-5", ts("2026-10-01")), t.price("claude-sonnet-5-5", NOW)
    assert early is not None and late is not None
    assert (early.output, late.output, early.cache_read, late.cache_read) == (12.0, 12.0, 0.20, 0.10)


def test_override_creates_a_new_model_with_derived_cache_prices() -> None:
    t = PriceTable.load(
        overrides={"claude-nova-1": {"input": 2.0, "output": 8.0, "min_cacheable_tokens": 1024}}
    )
    p = t.price("claude-nova-1-20270101", NOW)
    assert p is not None
    assert (p.input, p.output, p.cache_write_5m, p.cache_write_1h, p.cache_read) == (2.0, 8.0, 2.5, 4.0, 0.2)
    assert t.min_cacheable_tokens("claude-nova-1") == 1024
    usage = Usage(1000, 1000, 1000, 2000, cache_creation_5m=1000, cache_creation_1h=1000)
    r = priced(t, "claude-nova-1", usage)
    assert abs(r.total_usd - (1000 * 2 + 1000 * 8 + 1000 * 0.2 + 1000 * 2.5 + 1000 * 4) / 1e6) < TOL
    explicit = PriceTable.load(overrides={"my-model": {"input": 1.0, "output": 2.0, "cache_read": 0.05}})
    q = explicit.price("my-model", NOW)
    assert q is not None and (q.cache_read, q.cache_write_5m) == (0.05, 1.25)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"claude-sonnet-4-5": {"inptu": 3.0}}, "inptu"),
        ({"claude-sonnet-4-5": {"output": -1.0}}, "output"),
        ({"claude-sonnet-4-5": {"cache_read": "cheap"}}, "cache_read"),
        ({"claude-sonnet-4-5": {"input": math.nan}}, "input"),
        ({"claude-sonnet-4-5": {"min_cacheable_tokens": "x"}}, "min_cacheable_tokens"),
        ({"claude-new-model": {"input": 1.0}}, "output"),
        ({"claude-new-model": 3.0}, "claude-new-model"),
    ],
)
def test_bad_override_names_the_key(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(PricingError, match=named):
        PriceTable.load(overrides=overrides)


def write_table(tmp_path: Path, mutate: Any) -> str:
    data = raw_table()
    mutate(data)
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _row(data: dict[str, Any], model: str, i: int = 0) -> dict[str, Any]:
    row: dict[str, Any] = data["models"][model]["prices"][i]
    return row


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda d: _row(d, "claude-opus-5").pop("source"), "claude-opus-5.prices[0].source"),
        (lambda d: _row(d, "claude-opus-5").update(input=0), "claude-opus-5.prices[0].input"),
        (lambda d: _row(d, "claude-opus-5").update(output=True), "claude-opus-5.prices[0].output"),
        (lambda d: _row(d, "claude-opus-5").update({"from": "2026-13-01"}), "claude-opus-5.prices[0].from"),
        (lambda d: _row(d, "claude-sonnet-5-5").update(to="2026-10-08"), "claude-sonnet-5-5.prices[0].to"),
        (lambda d: _row(d, "claude-sonnet-5-5", 1).update(to="2027-01-01"), "claude-sonnet-5-5.prices[1].to"),
        (lambda d: d["models"]["claude-opus-5"]["aliases"].append("claude-opus-4-5"), "claude-opus-4-5"),
        (
            lambda d: d["models"]["claude-haiku-5-5"]["bands"][0].pop("above_input_tokens"),
            "above_input_tokens",
        ),
        (lambda d: d.update(version="Nov 2026"), "version"),
        (lambda d: d.update(currency="EUR"), "currency"),
        (lambda d: d["rules"]["batch"].pop("multiplier"), "rules.batch.multiplier"),
        (lambda d: d.pop("models"), "models"),
    ],
)
def test_bad_table_names_the_key(tmp_path: Path, mutate: Any, named: str) -> None:
    with pytest.raises(PricingError, match=named.replace("[", r"\[").replace("]", r"\]")):
        PriceTable.load(write_table(tmp_path, mutate))


def test_unreadable_table_is_a_pricing_error(tmp_path: Path) -> None:
    with pytest.raises(PricingError):
        PriceTable.load(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PricingError):
        PriceTable.load(str(tmp_path / "broken.json"))


def test_a_valid_copy_of_the_table_loads_from_a_path(tmp_path: Path) -> None:
    t = PriceTable.load(write_table(tmp_path, lambda d: None))
    assert t.version == "2026-12-07" and set(t.model_ids()) == set(RATES)


def test_json_version_is_a_date() -> None:
    data = raw_table()
    assert date.fromisoformat(data["version"]) == date(2026, 12, 7)
    assert (data["currency"], data["unit"]) == ("USD", "per_million_tokens")
    assert "cache" in data["rules"]["batch"]["notes"]


def _valid_day(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 10 and date.fromisoformat(value) is not None


@pytest.mark.parametrize("model", sorted(RATES))
def test_every_json_row_has_source_positive_prices_and_valid_dates(model: str) -> None:
    entry = raw_table()["models"][model]
    rows = [*entry["prices"], *entry.get("bands", [])]
    for row in rows:
        assert isinstance(row["source"], str) and row["source"].strip()
        for field in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read"):
            assert isinstance(row[field], int | float) and row[field] > 0, field
        assert row.get("to") is None or _valid_day(row["to"])
    for row in entry["prices"]:
        assert _valid_day(row["from"])
    assert entry["prices"][-1]["to"] is None


def test_unverified_and_derived_rows_say_so() -> None:
    models = raw_table()["models"]
    assert "unverified" in models["claude-mythos-5-2"]["prices"][0]["source"]
    assert "derived" in models["claude-fable-5-2"]["prices"][0]["source"]
    assert "unverified" in models["claude-mythos-preview"]["prices"][0]["source"]


def test_age_days(table: PriceTable) -> None:
    assert table.version == "2026-12-07"
    assert table.age_days(ts("2026-12-07", "00:00:00")) == 0.0
    assert abs(table.age_days(ts("2027-03-07", "12:00:00")) - 90.5) < 1e-9


def test_model_ids_and_normalise() -> None:
    t = PriceTable.load()
    assert "claude-opus-5-5" in t.model_ids()
    assert normalise_model(" US.Anthropic.Claude-Sonnet-4.5-20250929-V1:0[1M] ") == "claude-sonnet-4-5"
