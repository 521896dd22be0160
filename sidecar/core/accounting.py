"""Turns what was observed about a call into its priced event. Pure."""

from __future__ import annotations

from sidecar.core.events import CallEvent
from sidecar.core.pricing import PriceTable


def price_event(event: CallEvent, prices: PriceTable) -> None:
    """Fill ``model_canonical``, ``cost_usd`` and ``cache_savings_usd`` from the usage seen.

    The response's model wins over the requested one when both are known (aliases resolve to dated ids).
    An unknown model leaves ``cost_usd`` None: counted as unpriced, never a silent zero.
    """
    model = event.model
    if model is None:
        return
    canonical = prices.canonical(model)
    event.model_canonical = canonical
    if canonical is None or event.operation != "chat":
        return
    batch = event.usage.service_tier == "batch"
    at, provider, regional = event.started_at, event.provider, event.regional
    cost = prices.cost(canonical, event.usage, at, batch=batch, provider=provider, regional=regional)
    if cost is None:
        return
    event.cost_usd = cost.total_usd
    event.cache_savings_usd = cost.savings_usd
