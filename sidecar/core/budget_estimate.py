"""What a call may cost before it runs (an upper bound to reserve) and what it really cost (to charge),
in counter units (:mod:`sidecar.core.budget_config`). Pure.

Estimates round up, real costs to nearest. The admission rule (:mod:`sidecar.core.budget_counts`) keeps
usage under a ceiling plus one call as long as every estimate is at least the real amount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sidecar.core.budget_config import NANOS
from sidecar.core.events import REFUSED, CallEvent
from sidecar.core.pricing import PriceTable
from sidecar.core.usage import Usage

# Text tokens are byte-level BPE pieces of at least one UTF-8 byte, and JSON encoding only lengthens
# text, so text input never has more tokens than the body has bytes. Anthropic also adds a system prompt
# of its own when tools are present (a few hundred tokens) that the body does not show: the slack.
TOKEN_SLACK = 512
DEFAULT_MAX_TOKENS = 128_000  # when a request names none (it is then rejected, but stay an upper bound)


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
    regional_multiplier: float = 1.0,
) -> Estimate:
    """Upper bound of a ``/v1/messages`` call: input tokens <= body bytes + ``TOKEN_SLACK`` at the
    dearest input-side price, output tokens <= ``max_tokens`` (thinking included). An unknown model
    takes ``unknown`` (default: :func:`worst_rates`, which callers should cache). Not bounded by the
    body's size: content it only references (file ids, URLs), images and PDF pages that compress far
    below their token count, and server tools (web search results); reconciliation still counts them,
    only the burst bound loosens for such calls. A call to a cloud's regional endpoint passes that
    provider's ``regional_multiplier`` (applied whatever the model: an upper bound either way).
    """
    n_in = max(0, body_bytes) + TOKEN_SLACK
    n_out = DEFAULT_MAX_TOKENS if max_tokens is None else max(0, max_tokens)
    r = rates(prices, model, n_in, at, speed=speed, geo=inference_geo) if model else None
    if r is None:
        r = unknown or worst_rates(prices, at, speed=speed, geo=inference_geo)
    usd = (n_in * r.input + n_out * r.output) * max(1.0, regional_multiplier)
    return Estimate(math.ceil(usd * NANOS), n_in + n_out)


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
