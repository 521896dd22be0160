from __future__ import annotations

import pytest

from sidecar.core.money import clean_usd, format_usd


def test_clean_removes_the_noise_of_sums() -> None:
    noisy = 1e-06 + 105 * 1e-06  # 0.00010599999999999999
    assert noisy != 0.000106  # the noise this exists for
    assert clean_usd(noisy) == 0.000106
    assert clean_usd(1.2345678901234567) == 1.234567890123


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.000106, "$0.000106"),
        (0.00010599999999999999, "$0.000106"),
        (0.0001, "$0.0001"),
        (0.0000004, "$0.0000004"),
        (0.0123456, "$0.0123"),
        (0.5, "$0.50"),
        (0.055, "$0.055"),
        (1, "$1.00"),
        (1234.5678, "$1,234.57"),
        (0, "$0"),
        (-0.000106, "-$0.000106"),
    ],
)
def test_format_keeps_meaningful_digits(value: float, text: str) -> None:
    assert format_usd(value) == text
