"""Latency histograms of the read side: fixed log buckets, identical in SQLite, ClickHouse and Python.

Percentiles over days of calls cannot be taken from the raw values at read time without reading the whole
history, so the stores count successful calls per bucket (SPEC R-RS-3). A bucket is 1/16 of an octave:
bucket ``k`` holds values in ``(UPPER[k-1], UPPER[k]]``, ``UPPER[k] = 2 ** (k/16 - 10)`` seconds to 5
digits (about 1 ms up to 36 h; bucket 0 also holds everything below, the last one everything above).
A percentile is reported as the upper edge of the bucket that holds the nearest-rank value: never below
the exact value, at most 4.4 % above it. Since the edges are monotonic, that is exactly
``UPPER[bucket_of(p)]`` where ``p`` is the nearest-rank percentile of the raw values (see
:func:`sidecar.core.sessions.percentile`), which is what the tests check.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

STEPS_PER_OCTAVE = 16
LOWEST_OCTAVE = -10  # 2**-10 s ~ 0.98 ms
HIGHEST_OCTAVE = 17  # 2**17 s ~ 36 h
# Rounded to 5 significant digits: short decimals that every SQL parser reads as the same double.
UPPER: tuple[float, ...] = tuple(
    float(f"{2.0 ** (k / STEPS_PER_OCTAVE + LOWEST_OCTAVE):.5g}")
    for k in range((HIGHEST_OCTAVE - LOWEST_OCTAVE) * STEPS_PER_OCTAVE + 1)
)
LAST = len(UPPER) - 1

DURATION, TTFT = 0, 1  # the ``metric`` column of the histogram tables


def bucket_of(value: float) -> int:
    """The bucket of ``value`` seconds: the smallest ``k`` with ``value <= UPPER[k]``, clamped to the last."""
    if not value <= UPPER[LAST]:  # also NaN
        return LAST
    return bisect.bisect_left(UPPER, value)


def percentile_of_counts(counts: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0 < q <= 100) of a histogram ``{bucket: count}``, as the upper
    edge of its bucket; ``None`` when the histogram is empty (or holds only non-positive counts)."""
    total = sum(n for n in counts.values() if n > 0)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q / 100.0 * total))
    seen = 0
    for bucket in sorted(counts):
        n = counts[bucket]
        if n <= 0:
            continue
        seen += n
        if seen >= rank:
            return UPPER[min(max(bucket, 0), LAST)]
    return UPPER[LAST]  # pragma: no cover - unreachable: seen reaches total >= rank


def merge_counts(pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
    """``{bucket: count}`` from ``(bucket, count)`` pairs, adding repeated buckets."""
    out: dict[int, int] = {}
    for bucket, n in pairs:
        out[bucket] = out.get(bucket, 0) + n
    return out


def bounds_values_sql() -> str:
    """``(bucket, upper), ...`` for an SQL ``VALUES`` list (``repr`` keeps every bit of each edge)."""
    return ", ".join(f"({k}, {upper!r})" for k, upper in enumerate(UPPER))


def bounds_array_sql() -> str:
    """The edges as a ClickHouse ``Array(Float64)`` literal (index ``k + 1`` is bucket ``k``)."""
    return "[" + ", ".join(repr(upper) for upper in UPPER) + "]"
