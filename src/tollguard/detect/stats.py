"""Tail probabilities for the detectors: Poisson, negative binomial (Gamma-Poisson) and Gamma.

No SciPy: the regularized incomplete beta and gamma functions are computed with the
classic series / continued fractions (Lentz), accurate to ~1e-12 relative, which is
far more than a p-value threshold like 1e-7 needs. Every function is pure and works in
floats; money is converted by the caller.
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 400


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def gammainc_upper(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = 1 - P(a, x), a > 0."""
    if x <= 0.0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # series for P(a, x)
        ap = a
        total = 1.0 / a
        delta = total
        for _ in range(_MAX_ITER):
            ap += 1.0
            delta *= x / ap
            total += delta
            if abs(delta) < abs(total) * _EPS:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    # continued fraction for Q(a, x)
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER + 1):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(log_front) * h


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean)."""
    if k <= 0:
        return 1.0
    if mean <= 0.0:
        return 0.0
    return 1.0 - gammainc_upper(float(k), mean)


def nbinom_sf(k: int, shape: float, mean: float) -> float:
    """P(X >= k) for a negative binomial with the given shape (r) and mean.

    This is the Gamma-Poisson posterior predictive: a Poisson count whose rate has a
    Gamma(shape, shape/mean) distribution. Variance = mean + mean^2/shape. A huge shape
    tends to the Poisson.
    """
    if k <= 0:
        return 1.0
    if mean <= 0.0:
        return 0.0
    if shape > 1e8:
        return poisson_sf(k, mean)
    # X counts failures before `shape` successes with success probability p = shape/(shape+mean)
    q = mean / (shape + mean)
    return betainc(float(k), shape, q)


def gamma_sf(x: float, mean: float, variance: float) -> float:
    """P(S >= x) for a Gamma distribution matched to a mean and variance."""
    if x <= 0.0:
        return 1.0
    if mean <= 0.0:
        return 0.0
    variance = max(variance, 1e-12)
    shape = mean * mean / variance
    scale = variance / mean
    return gammainc_upper(shape, x / scale)


def compound_spend_sf(
    spend: float,
    calls_mean: float,
    calls_var: float,
    cost_mean: float,
    cost_m2: float,
) -> float:
    """P(S >= spend) for S = sum of N call costs, N with the given mean/variance,
    costs i.i.d. with mean ``cost_mean`` and second moment ``cost_m2``.

    E[S] = E[N] E[C];  Var[S] = E[N] Var[C] + Var[N] E[C]^2; the tail is that of a Gamma
    with those two moments (a standard approximation of a compound distribution).
    """
    mean = calls_mean * cost_mean
    var_c = max(cost_m2 - cost_mean * cost_mean, 0.0)
    variance = calls_mean * var_c + calls_var * cost_mean * cost_mean
    return gamma_sf(spend, mean, variance)


def effective_shape(level_shape: float, dispersion: float) -> float:
    """Shape of a Gamma rate that combines level uncertainty (posterior shape A) and a
    window-to-window multiplicative random effect Gamma(phi, phi):
    1/shape = 1/A + 1/phi + 1/(A*phi) (variance of the product of two mean-one Gammas)."""
    a = max(level_shape, 1e-9)
    phi = max(dispersion, 1e-9)
    return 1.0 / (1.0 / a + 1.0 / phi + 1.0 / (a * phi))
