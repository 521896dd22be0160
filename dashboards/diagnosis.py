"""Panels on why the cache missed (prompt-cache dashboard) and on rate-limit headroom (overview).

Series: ``sidecar_cache_misses_total`` / ``sidecar_cache_miss_cost_usd_total`` {app, model, reason};
``sidecar_ratelimit_remaining`` / ``sidecar_ratelimit_limit`` {app, type} (API keys) and
``sidecar_ratelimit_unified_utilization`` {app, key, window} (subscriptions: 5-hour, 7-day … windows).
"""

from __future__ import annotations

from dashboards.kit import APP, MODEL, RATE, PanelBuilder, Q, graph, single

F = f"{APP},{MODEL}"
MISSES = "sidecar_cache_misses_total"
MISS_COST = "sidecar_cache_miss_cost_usd_total"
# Share of each API-key limit used, by app and type (requests, tokens, input/output tokens).
KEY_LIMIT_USED = (
    f"1 - max by (app, type) (sidecar_ratelimit_remaining{{{APP}}} / (sidecar_ratelimit_limit{{{APP}}} > 0))"
)
WINDOW_USED = f"max by (app, key, window) (sidecar_ratelimit_unified_utilization{{{APP}}})"


def _by_reason(metric: str, scale: str) -> str:
    return f"sum by (reason) (rate({metric}{{{F}}}{RATE})) * {scale}"


def cache_miss_headline() -> PanelBuilder:
    return single(
        "Lost to cache misses / hour",
        "Dollars per hour paid above reading prefixes the session had cached (alert "
        "ClaudeSidecarCacheMissCostHigh).",
        "currencyUSD",
        Q(f"sum (rate({MISS_COST}{{{F}}}{RATE})) * 3600"),
        steps=((None, "green"), (1, "orange"), (5, "red")),
        width=6,
    )


def cache_miss_panels() -> list[PanelBuilder]:
    return [
        graph(
            "Cache misses by reason",
            "Calls per minute that paid again for a cached prefix, by the sidecar's reason: "
            "system_changed, tools_changed, messages_changed, model_changed, breakpoint_moved, "
            "ttl_expired, evicted. The request log and the sessions API say where the prefix changed.",
            "short",
            [Q(_by_reason(MISSES, "60"), "{{reason}}")],
            stack=True,
        ),
        graph(
            "Dollars lost to cache misses by reason",
            "Per hour: what the missed tokens cost (written again or paid as input) minus reading them.",
            "currencyUSD",
            [Q(_by_reason(MISS_COST, "3600"), "{{reason}}")],
            stack=True,
        ),
        graph(
            "Dollars lost to cache misses by app",
            "Per hour, by app and reason: where to look first.",
            "currencyUSD",
            [Q(f"sum by (app, reason) (rate({MISS_COST}{{{F}}}{RATE})) * 3600", "{{app}} {{reason}}")],
            width=24,
        ),
    ]


def headroom_panels() -> list[PanelBuilder]:
    return [
        graph(
            "Rate-limit headroom (API keys)",
            "Share of each Anthropic rate limit used, from the anthropic-ratelimit-* headers of the latest "
            "answer, by app and limit (alert ClaudeSidecarRateLimitHeadroomLow at 90%).",
            "percentunit",
            [Q(KEY_LIMIT_USED, "{{app}} {{type}}")],
        ),
        graph(
            "Subscription windows used",
            "anthropic-ratelimit-unified-*: utilization of each window (5-hour, 7-day …) by app and key "
            "fingerprint (alert at 90%).",
            "percentunit",
            [Q(WINDOW_USED, "{{app}} {{key}} {{window}}")],
        ),
    ]
