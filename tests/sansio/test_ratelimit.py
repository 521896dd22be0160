"""Anthropic's rate-limit headers, both families, read generically from raw header bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from sidecar.core.ratelimits import RateLimits, StandardLimit, UnifiedWindow
from sidecar.sansio.ratelimit import parse_ratelimits


def test_the_api_key_family() -> None:
    headers = [
        (b"request-id", b"req_1"),
        (b"anthropic-ratelimit-requests-limit", b"4000"),
        (b"anthropic-ratelimit-requests-remaining", b"3999"),
        (b"anthropic-ratelimit-requests-reset", b"2026-11-20T10:00:00Z"),
        (b"Anthropic-RateLimit-Input-Tokens-Limit", b"2000000"),
        (b"anthropic-ratelimit-input-tokens-remaining", b"1993000"),
        (b"anthropic-ratelimit-tokens-remaining", b"not a number"),
        (b"anthropic-ratelimit-bogus-remaining", b"7"),
        (b"anthropic-priority-input-tokens-limit", b"100"),
    ]
    assert parse_ratelimits(headers) == RateLimits(
        standard=(
            StandardLimit("input_tokens", 2_000_000, 1_993_000),
            StandardLimit("requests", 4000, 3999),
            StandardLimit("tokens"),  # present, but its only value did not parse
        )
    )


def test_the_subscription_family_with_windows_it_has_never_seen() -> None:
    reset = int(datetime(2026, 11, 20, 15, tzinfo=UTC).timestamp())
    headers = [
        (b"anthropic-ratelimit-unified-status", b"allowed_warning"),
        (b"anthropic-ratelimit-unified-5h-utilization", b"0.93"),
        (b"anthropic-ratelimit-unified-5h-reset", str(reset).encode()),
        (b"anthropic-ratelimit-unified-7d-utilization", b"0.41"),
        (b"anthropic-ratelimit-unified-7d_opus-utilization", b"1.2"),
        (b"anthropic-ratelimit-unified-7d_sonnet-reset", b"2026-11-21T00:00:00+00:00"),
        (b"anthropic-ratelimit-unified-representative-claim", b"five_hour"),
        (b"anthropic-ratelimit-unified-overage-status", b"rejected"),
        (b"anthropic-ratelimit-unified-overage-reset", b"1763700000"),
        (b"anthropic-ratelimit-unified-fallback", b"available"),
        (b"anthropic-ratelimit-unified-reset", b"1763690000"),
        (b"anthropic-ratelimit-unified-b@d window-utilization", b"0.5"),
    ]
    limits = parse_ratelimits(headers)
    assert limits is not None and limits.unified
    assert limits.status == "allowed_warning" and limits.representative_claim == "five_hour"
    assert limits.overage_status == "rejected" and limits.reset == 1763690000.0
    assert limits.windows == (
        UnifiedWindow("5h", 0.93, float(reset)),
        UnifiedWindow("7d", 0.41),
        UnifiedWindow("7d_opus", 1.0),  # capped at the whole window
        UnifiedWindow("7d_sonnet", None, datetime(2026, 11, 21, tzinfo=UTC).timestamp()),
    )


def test_nothing_to_read() -> None:
    assert parse_ratelimits([(b"content-type", b"application/json"), (b"a", b"b")]) is None
    assert parse_ratelimits([]) is None
    odd = parse_ratelimits([(b"anthropic-ratelimit-unified-status", b"Something Odd!")])
    assert odd is not None and odd.status is None and not odd.windows
    # Found by the fuzzer: a superscript digit is a "digit" to str.isdigit, not to float().
    for junk in ("\xb91763700000", "9999-99-99", "1e999", "nan", "99999-01-01T00:00:00"):
        bad = parse_ratelimits([(b"anthropic-ratelimit-unified-7d-reset", junk.encode("latin-1"))])
        assert bad is None or not bad.windows
