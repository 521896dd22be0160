"""The one place that builds and wires everything. No module globals; nothing happens at import.

``build_sidecar(settings)`` returns a ``Sidecar`` holding the ASGI apps (proxy listener and, when
``SIDECAR_ADMIN_PORT`` is set, a separate admin listener) and the components behind them. ASGI lifespan
on the proxy app opens and closes the upstream client, the store and the recorder.

``build`` composes the stages of ``stages``; ``runtime`` is the running ``Sidecar`` (start-up, reload,
housekeeping, shutdown); ``prices`` the price table it charges with.
"""

from __future__ import annotations

from sidecar.app.build import build_sidecar
from sidecar.app.prices import PRICING_KEYS, PriceHolder, load_prices
from sidecar.app.runtime import Sidecar, restore_local_counters

__all__ = ["PRICING_KEYS", "PriceHolder", "Sidecar", "build_sidecar", "load_prices", "restore_local_counters"]
