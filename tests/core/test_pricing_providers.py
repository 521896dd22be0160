"""Cloud prices (SPEC R-CP-3, R-CP-5): the regional-endpoint premium, against hand calculations."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.cloud import PROVIDERS
from sidecar.core.pricing import PriceTable, PricingError
from sidecar.core.usage import Usage

TOL = 1e-9  # the product promises $0.000001
AT = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
# 1000 uncached in, 2000 out, 3000 cache read, 400 written for 5m and 500 for 1h.
MIXED = Usage(1000, 2000, 3000, 900, cache_creation_5m=400, cache_creation_1h=500)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def raw_table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (resources.files("sidecar") / "data" / "pricing.json").read_text("utf-8")
    )
    return data


def cost(table: PriceTable, model: str, usage: Usage = MIXED, **kw: Any) -> float:
    result = table.cost(model, usage, AT, **kw)
    assert result is not None
    return result.total_usd


# Sonnet 4.5 global: 1000*3 + 2000*15 + 3000*0.30 + 400*3.75 + 500*6 = 38,400 per million.
SONNET_45_GLOBAL = 0.0384
# Haiku 4.5 global: 1000*1 + 2000*5 + 3000*0.10 + 400*1.25 + 500*2 = 12,800 per million.
HAIKU_45_GLOBAL = 0.0128
# Opus 4.1 (before the premium): 1000*15 + 2000*75 + 3000*1.5 + 400*18.75 + 500*30 = 192,000 per million.
OPUS_41 = 0.192


@pytest.mark.parametrize("provider", ["bedrock", "vertex"])
def test_a_regional_endpoint_costs_ten_percent_more_on_every_bucket(table: PriceTable, provider: str) -> None:
    result = table.cost("claude-sonnet-4-5", MIXED, AT, provider=provider, regional=True)
    assert result is not None
    assert abs(result.total_usd - 0.04224) < TOL  # 38,400 * 1.1 per million
    assert abs(result.input_usd - 1000 * 3 * 1.1e-6) < TOL
    assert abs(result.output_usd - 2000 * 15 * 1.1e-6) < TOL
    assert abs(result.cache_read_usd - 3000 * 0.3 * 1.1e-6) < TOL
    assert abs(result.cache_write_5m_usd - 400 * 3.75 * 1.1e-6) < TOL
    assert abs(result.cache_write_1h_usd - 500 * 6 * 1.1e-6) < TOL
    assert "regional" in result.rules
    # Savings are measured at the prices paid: 3000*(3-0.3) - 400*(3.75-3) - 500*(6-3) = 6,300, x 1.1.
    assert abs(result.savings_usd - 6300 * 1.1e-6) < TOL


@pytest.mark.parametrize("provider", ["bedrock", "vertex", "anthropic"])
def test_global_endpoints_cost_the_first_party_rates(table: PriceTable, provider: str) -> None:
    assert abs(cost(table, "claude-sonnet-4-5", provider=provider) - SONNET_45_GLOBAL) < TOL
    assert abs(cost(table, "claude-haiku-4-5", provider=provider) - HAIKU_45_GLOBAL) < TOL


def test_first_party_has_no_regional_premium(table: PriceTable) -> None:
    assert abs(cost(table, "claude-sonnet-4-5", provider="anthropic", regional=True) - SONNET_45_GLOBAL) < TOL


def test_models_before_sonnet_45_have_no_premium(table: PriceTable) -> None:
    result = table.cost("claude-opus-4-1", MIXED, AT, provider="bedrock", regional=True)
    assert result is not None
    assert abs(result.total_usd - OPUS_41) < TOL
    assert "regional" not in result.rules


def test_haiku_45_on_a_vertex_region(table: PriceTable) -> None:
    assert abs(cost(table, "claude-haiku-4-5", provider="vertex", regional=True) - 0.01408) < TOL


def test_provider_forms_of_the_model_id_price_the_same(table: PriceTable) -> None:
    for model in (
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5@20250929",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    ):
        assert table.canonical(model) == "claude-sonnet-4-5", model
        assert abs(cost(table, model, provider="bedrock", regional=True) - 0.04224) < TOL


def test_the_premium_stacks_with_batch_and_long_context(table: PriceTable) -> None:
    # Batch: 38,400 * 0.5 * 1.1 per million.
    assert (
        abs(cost(table, "claude-sonnet-4-5", provider="bedrock", regional=True, batch=True) - 0.02112) < TOL
    )
    # Above 200k input the whole request is at the band's 6 / 22.5: (250,000*6 + 1000*22.5) * 1.1.
    long = Usage(input_tokens=250_000, output_tokens=1000)
    assert abs(cost(table, "claude-sonnet-4-5", long, provider="vertex", regional=True) - 1.67475) < TOL


def test_every_model_from_sonnet_45_on_has_the_premium() -> None:
    models = raw_table()["models"]
    with_premium = {m for m, entry in models.items() if entry.get("regional_premium")}
    before = {"claude-opus-4-1", "claude-opus-4-0", "claude-sonnet-4-0", "claude-3-7-sonnet",
              "claude-3-5-haiku", "claude-3-haiku", "claude-3-opus"}  # fmt: skip
    assert with_premium == set(models) - before
    assert {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"} <= with_premium


def test_every_provider_row_names_its_source() -> None:
    rows = raw_table()["providers"]
    assert set(rows) == set(PROVIDERS) == {"anthropic", "bedrock", "vertex"}
    for name, row in rows.items():
        assert isinstance(row["source"], str) and len(row["source"]) > 40, name
        assert isinstance(row["regional_when"], str) and row["regional_when"], name
    assert rows["anthropic"]["regional_multiplier"] == 1.0
    assert rows["bedrock"]["regional_multiplier"] == rows["vertex"]["regional_multiplier"] == 1.1


def test_a_model_added_by_override_is_treated_as_recent() -> None:
    table = PriceTable.load(overrides={"claude-next-9": {"input": 2.0, "output": 10.0}})
    usage = Usage(input_tokens=1_000_000)
    assert abs(cost(table, "claude-next-9", usage, provider="bedrock", regional=True) - 2.2) < TOL


def _write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _bedrock(d: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = d["providers"]["bedrock"]
    return row


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda d: d["providers"].pop("vertex"), "providers.vertex"),
        (lambda d: d["providers"].update(azure={"source": "x", "regional_multiplier": 1}), "providers.azure"),
        (lambda d: _bedrock(d).pop("source"), "providers.bedrock.source"),
        (lambda d: _bedrock(d).update(regional_multiplier=0), "providers.bedrock.regional_multiplier"),
        (lambda d: d.pop("providers"), "providers"),
        (lambda d: d["models"]["claude-haiku-4-5"].update(regional_premium="yes"), "regional_premium"),
    ],
)
def test_bad_provider_data_names_the_key(tmp_path: Path, mutate: Any, named: str) -> None:
    data = raw_table()
    mutate(data)
    with pytest.raises(PricingError, match=named.replace(".", r"\.")):
        PriceTable.load(_write(tmp_path, data))


def test_price_event_applies_the_premium_of_the_call_location(table: PriceTable) -> None:
    from sidecar.core.accounting import price_event
    from sidecar.core.events import CallEvent

    def event(provider: str, region: str | None) -> CallEvent:
        e = CallEvent("e", AT, "app", "s", "header", "POST", "/x", "chat", False, model="claude-sonnet-4-5")
        e.usage, e.provider, e.cloud_region = MIXED, provider, region
        price_event(e, table)
        return e

    assert abs((event("bedrock", "us").cost_usd or 0) - 0.04224) < TOL
    assert abs((event("vertex", "us-east5").cost_usd or 0) - 0.04224) < TOL
    assert abs((event("vertex", "global").cost_usd or 0) - SONNET_45_GLOBAL) < TOL
    assert abs((event("anthropic", None).cost_usd or 0) - SONNET_45_GLOBAL) < TOL
    assert not event("bedrock", "global").regional and event("bedrock", "eu").regional


def test_a_regional_call_reserves_at_least_its_premium(table: PriceTable) -> None:
    from sidecar.core.budget_estimate import estimate_call

    plain = estimate_call(table, "claude-opus-4-1", 10_000, 1000, AT)
    regional = estimate_call(table, "claude-opus-4-1", 10_000, 1000, AT, regional_multiplier=1.1)
    assert regional.nanos >= plain.nanos * 1.1 - 1
    assert regional.tokens == plain.tokens
