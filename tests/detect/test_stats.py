"""The tail probabilities against direct sums."""

from __future__ import annotations

import math

import pytest

from tollguard.detect.stats import compound_spend_sf, gamma_sf, nbinom_sf, poisson_sf


def _nb_pmf(k: int, r: float, mean: float) -> float:
    p = r / (r + mean)
    return math.exp(
        math.lgamma(k + r)
        - math.lgamma(r)
        - math.lgamma(k + 1)
        + r * math.log(p)
        + k * math.log1p(-p)
    )


@pytest.mark.parametrize(
    ("k", "shape", "mean"),
    [
        (10, 0.4, 1.0),
        (25, 4.0, 10.0),
        (1, 0.01, 0.01),
        (20, 50.0, 3.0),
        (5, 2.0, 100.0),
        (60, 3.0, 2.0),
    ],
)
def test_nbinom_sf_matches_sum(k: int, shape: float, mean: float) -> None:
    direct = 1.0 - sum(_nb_pmf(j, shape, mean) for j in range(k))
    tail = sum(_nb_pmf(j, shape, mean) for j in range(k, k + 5000))
    expected = tail if direct < 1e-6 else direct
    assert nbinom_sf(k, shape, mean) == pytest.approx(expected, rel=1e-6)


def test_poisson_sf() -> None:
    assert poisson_sf(3, 1.0) == pytest.approx(1 - math.exp(-1) * 2.5)
    assert poisson_sf(0, 5.0) == 1.0
    assert nbinom_sf(7, 1e12, 2.0) == pytest.approx(poisson_sf(7, 2.0), rel=1e-9)


def test_gamma_and_compound_tails() -> None:
    # Gamma(shape 1) is exponential
    assert gamma_sf(3.0, 1.0, 1.0) == pytest.approx(math.exp(-3.0))
    # more spend is less likely; a huge spend for a cheap account is essentially impossible
    p1 = compound_spend_sf(5.0, 2.0, 3.0, 0.05, 0.05)
    p2 = compound_spend_sf(50.0, 2.0, 3.0, 0.05, 0.05)
    assert 0 < p2 < p1 < 1
    assert p2 < 1e-10
