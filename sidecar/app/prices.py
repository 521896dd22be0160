"""The price table the running sidecar charges with, and how settings load it."""

from __future__ import annotations

from sidecar.core.accounting import price_event
from sidecar.core.events import CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.errors import ConfigError
from sidecar.settings import Settings

PRICING_KEYS = ("overrides",)  # the YAML pricing: section


class PriceHolder:
    """The current price table; replaced whole on reload (SIGHUP), read without locks."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table

    def price(self, event: CallEvent) -> None:
        price_event(event, self.table)


def load_prices(settings: Settings) -> PriceTable:
    pricing = settings.policies.get("pricing", {})
    for key in pricing:
        if key not in PRICING_KEYS:
            raise ConfigError(f"pricing.{key}: unknown key (expected {', '.join(PRICING_KEYS)})")
    overrides = pricing.get("overrides")
    try:
        return PriceTable.load(settings.pricing_file, overrides=overrides)
    except ValueError as exc:
        raise ConfigError(f"pricing: {exc}") from None
