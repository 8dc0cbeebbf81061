"""The Gaussian truncated to a label box: loss (torch) and predictive summaries (numpy).

A label drawn from a bounded prior (a grid's box) has a predictive distribution that
vanishes outside the box. At low SNR it approaches the prior itself, a flat density
whose central 68 % interval is not ``mean +- std`` (that covers 58 % of a uniform).
A Gaussian ``N(mu, sigma**2)`` truncated to ``[low, high]`` spans both regimes: a
narrow Gaussian inside the box and, as ``sigma`` grows, the uniform box.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special, stats

__all__ = [
    "clip_to_box",
    "location_sensitivity",
    "truncated_cdf",
    "truncated_location",
    "truncated_log_mass",
    "truncated_moments",
    "truncated_ppf",
]


def truncated_log_mass(mean: torch.Tensor, std: torch.Tensor, low, high) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` with ``a = (low - mean) / std``, ``b = (high - mean) / std``.

    Stable in both tails: when the box lies above the mean the mirrored difference
    ``Phi(-a) - Phi(-b)`` is used, so neither term rounds to 1.

    Examples
    --------
    >>> import torch
    >>> m = truncated_log_mass(torch.tensor([0.0]), torch.tensor([1.0]), -1.0, 1.0)
    >>> round(float(m.exp()), 4)
    0.6827
    """
    a = (low - mean) / std
    b = (high - mean) / std
    upper = a > 0  # the whole box above the mean: mirror it
    hi = torch.where(upper, -a, b)
    lo = torch.where(upper, -b, a)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    # log(exp(log_hi) - exp(log_lo)); the difference is > 0 since hi > lo
    return log_hi + torch.log1p(-torch.exp(torch.clamp(log_lo - log_hi, max=-1e-12)))


def _standardised(mean, std, low, high):
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    low = np.broadcast_to(np.asarray(low, dtype=float), mean.shape)
    high = np.broadcast_to(np.asarray(high, dtype=float), mean.shape)
    return (low - mean) / std, (high - mean) / std, mean, std, low, high


#: Below this width of the box in units of ``std`` the truncated Gaussian is the
#: uniform box to better than 1e-7 in its moments, and its closed forms cancel.
_FLAT = 1e-3


def _upper_ratios(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(phi(a) - phi(b)) / Z`` and ``(a phi(a) - b phi(b)) / Z`` for ``0 <= a < b``.

    With ``Z = Phi(b) - Phi(a)`` written through the scaled complementary error
    function, so that a box many standard deviations above the mean (``Z`` below
    the smallest float) still has finite ratios.
    """
    shrink = np.exp(np.clip(0.5 * (a * a - b * b), -745.0, 0.0))  # exp(-(b^2 - a^2) / 2)
    denom = special.erfcx(a / np.sqrt(2)) - shrink * special.erfcx(b / np.sqrt(2))
    scale = np.sqrt(2 / np.pi) / denom
    b_term = np.where(np.isfinite(b), b * shrink, 0.0)
    return scale * (1 - shrink), scale * (a - b_term)


def _ratios(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two ratios of `_upper_ratios` for any box, mirrored into ``a >= 0``."""
    r1, r2 = np.empty_like(a), np.empty_like(a)
    above, below = a >= 0, b <= 0
    r1[above], r2[above] = _upper_ratios(a[above], b[above])
    m1, m2 = _upper_ratios(-b[below], -a[below])
    r1[below], r2[below] = -m1, m2
    mid = ~above & ~below
    pa, pb = stats.norm.pdf(a[mid]), stats.norm.pdf(b[mid])
    z = special.ndtr(b[mid]) - special.ndtr(a[mid])
    r1[mid], r2[mid] = (pa - pb) / z, (a[mid] * pa - b[mid] * pb) / z
    return r1, r2


def truncated_moments(mean, std, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``N(mean, std**2)`` truncated to ``[low, high]``.

    Parameters
    ----------
    mean, std : array-like of shape (n,) or (n, k)
        Location and scale of the untruncated Gaussian (``std > 0``).
    low, high : float or array-like broadcasting to ``mean``
        The box.

    Returns
    -------
    mean, std : ndarray

    Examples
    --------
    >>> # a very wide one: the uniform distribution on [-1, 1]
    >>> m, s = truncated_moments([0.0], [1e6], -1.0, 1.0)
    >>> round(float(m[0]), 6), round(float(s[0]), 4)
    (0.0, 0.5774)
    >>> # a narrow Gaussian inside the box: the Gaussian itself
    >>> m, s = truncated_moments([0.0], [0.01], -1.0, 1.0)
    >>> round(float(m[0]), 6), round(float(s[0]), 6)
    (0.0, 0.01)
    """
    a, b, mean, std, low, high = _standardised(mean, std, low, high)
    flat = (b - a) < _FLAT
    a_, b_ = np.where(flat, -1.0, a).reshape(-1), np.where(flat, 1.0, b).reshape(-1)
    r1, r2 = (r.reshape(mean.shape) for r in _ratios(a_, b_))
    m = np.where(flat, 0.5 * (low + high), mean + std * r1)
    # far in a tail the variance is that of an exponential of scale std / |a|; the
    # closed form cancels to zero there, so it is floored by that limit's order
    far = np.minimum(np.abs(a), np.abs(b))
    floor = (std / np.maximum(far, 1.0)) ** 2 * 1e-6
    v = np.where(flat, (high - low) ** 2 / 12.0, np.maximum(std**2 * (1 + r2 - r1**2), floor))
    return np.clip(m, low, high), np.sqrt(v)


def truncated_ppf(q, mean, std, low, high) -> np.ndarray:
    """Quantiles ``q`` (in (0, 1)) of the truncated Gaussian, shape ``mean.shape``.

    Examples
    --------
    >>> truncated_ppf(0.5, [0.0], [1.0], -1.0, 1.0).round(6).tolist()
    [0.0]
    >>> truncated_ppf(0.84, [0.0], [1e9], -1.0, 1.0).round(6).tolist()
    [0.68]
    """
    a, b, mean, std, low, high = _standardised(mean, std, low, high)
    flat = (b - a) < _FLAT
    with np.errstate(divide="ignore", invalid="ignore"):
        x = stats.truncnorm.ppf(q, np.where(flat, -1.0, a), np.where(flat, 1.0, b), mean, std)
        return np.where(flat, low + q * (high - low), x)


def truncated_cdf(y, mean, std, low, high) -> np.ndarray:
    """The truncated Gaussian's CDF at ``y`` (the PIT of a true label).

    Examples
    --------
    >>> round(float(truncated_cdf(0.0, [0.0], [1.0], -1.0, 1.0)[0]), 12)
    0.5
    """
    a, b, mean, std, low, high = _standardised(mean, std, low, high)
    y = np.broadcast_to(np.asarray(y, dtype=float), mean.shape)
    flat = (b - a) < _FLAT
    with np.errstate(divide="ignore", invalid="ignore"):
        c = stats.truncnorm.cdf(y, np.where(flat, -1.0, a), np.where(flat, 1.0, b), mean, std)
        return np.clip(np.where(flat, (y - low) / (high - low), c), 0.0, 1.0)


#: log(sqrt(2 pi)), the constant of the Gaussian log-density.
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


#: A mean the truncated Gaussian is asked to match is kept this fraction of the box
#: width inside it: a mean on the edge would need a location infinitely far away.
MATCH_MARGIN = 1e-3


def clip_to_box(mean, low, high) -> np.ndarray:
    """``mean`` clipped to ``MATCH_MARGIN`` of the box width inside ``[low, high]``.

    Examples
    --------
    >>> clip_to_box([-5.0, 0.3, 5.0], -1.0, 1.0).tolist()
    [-0.998, 0.3, 0.998]
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    margin = MATCH_MARGIN * (high - low)
    return np.clip(np.asarray(mean, dtype=float), low + margin, high - margin)


def truncated_location(mean, std, low, high, *, rtol: float = 1e-10, max_iter: int = 200):
    """The location ``mu`` whose Gaussian ``N(mu, std**2)``, truncated, has mean ``mean``.

    Truncating a Gaussian to ``[low, high]`` pulls its mean towards the centre of the
    box, the more so the wider it is; this inverts that map element by element (the
    truncated mean grows monotonically with ``mu``, with slope ``var / std**2``). A
    Gaussian far below the box truncates to nearly an exponential above ``low``, of
    mean less than ``std**2 / (low - mu)``, so the root lies within
    ``std**2 / d + std`` of the box (``d``: the distance of ``mean`` from the nearer
    edge); that bracket safeguards a Newton iteration.

    Parameters
    ----------
    mean, std : array-like of one shape
        Wanted truncated means, strictly inside the box (see :func:`clip_to_box`),
        and the scales (> 0).
    low, high : float or array-like broadcasting to ``mean``
        The box.
    rtol : float, default=1e-10
        Tolerance on the truncated mean, relative to the box width.
    max_iter : int, default=200
        Iterations at most (about ten are typical; bisection steps where Newton's
        would leave the bracket).

    Returns
    -------
    mu : ndarray of the shape of ``mean``, float64
        The locations; ``truncated_moments(mu, std, low, high)[0]`` is ``mean``.

    Raises
    ------
    ValueError
        If a mean is not strictly inside the box or a scale is not > 0.

    Examples
    --------
    >>> mu = truncated_location([0.9], [2.0], -1.0, 1.0)
    >>> round(float(truncated_moments(mu, [2.0], -1.0, 1.0)[0][0]), 8)
    0.9
    """
    m = np.asarray(mean, dtype=float)
    s = np.broadcast_to(np.asarray(std, dtype=float), m.shape)
    low = np.broadcast_to(np.asarray(low, dtype=float), m.shape)
    high = np.broadcast_to(np.asarray(high, dtype=float), m.shape)
    if not np.all((m > low) & (m < high)):
        raise ValueError("the means to match must lie strictly inside the box (low, high).")
    if not np.all(s > 0):
        raise ValueError("the scales must be > 0.")
    tol = rtol * (high - low)
    lo = low - s - s * s / (m - low)
    hi = high + s + s * s / (high - m)
    x = m.copy()
    for _ in range(max_iter):
        value, spread = truncated_moments(x, s, low, high)
        gap = value - m
        above = gap > 0
        hi, lo = np.where(above, x, hi), np.where(above, lo, x)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = x - gap / (spread / s) ** 2
        inside = np.isfinite(step) & (step > lo) & (step < hi)
        new = np.where(inside, step, 0.5 * (lo + hi))
        # near an edge with a wide scale the location is ill-conditioned (a tiny change
        # of the mean moves it far): stop there once it no longer moves
        settled = np.abs(new - x) <= 1e-13 * (np.abs(x) + s)
        x = np.where(np.abs(gap) <= tol, x, new)
        if np.all((np.abs(gap) <= tol) | settled):
            break
    return x


def location_sensitivity(mu, std, low, high, *, step: float = 1e-5):
    """Derivatives of :func:`truncated_location` in the mean and in the scale.

    By the implicit function theorem on ``f(mu, std) = mean``: ``dmu/dmean = 1 / f_mu``
    and ``dmu/dstd = -f_std / f_mu``, with ``f_mu = var / std**2`` in closed form and
    ``f_std`` a central difference of :func:`truncated_moments` (relative step
    ``step``).

    Returns
    -------
    d_mean, d_std : ndarray of the shape of ``mu``

    Examples
    --------
    >>> d_mean, d_std = location_sensitivity([0.0], [1e-3], -1.0, 1.0)
    >>> round(float(d_mean[0]), 6), abs(round(float(d_std[0]), 6))  # a Gaussian deep inside
    (1.0, 0.0)
    """
    mu, std = np.asarray(mu, dtype=float), np.asarray(std, dtype=float)
    spread = truncated_moments(mu, std, low, high)[1]
    f_mu = (spread / std) ** 2
    up = truncated_moments(mu, std * (1 + step), low, high)[0]
    down = truncated_moments(mu, std * (1 - step), low, high)[0]
    f_std = (up - down) / (2 * step * std)
    return 1 / f_mu, -f_std / f_mu
