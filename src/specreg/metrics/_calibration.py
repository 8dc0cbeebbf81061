"""Calibration of predictive uncertainties: coverage, z scores, PIT, std ratios."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from ..spectra._validation import check_int
from ._snr import _snr_bins, _table_by_snr

__all__ = [
    "calibration_by_snr",
    "calibration_scores",
    "reliability_curve",
    "std_ratio",
]

#: Default nominal levels of :func:`reliability_curve`: 0.05, 0.10, ..., 0.95.
_RELIABILITY_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))


# --------------------------------------------------------------------------- validation


def _vector(a, name: str) -> np.ndarray:
    """A finite 1-D float copy of ``a`` (the caller's array is never modified)."""
    arr = np.array(a, dtype=float, copy=True)
    if arr.ndim == 2:
        raise ValueError(
            f"{name} is 2-D with shape {arr.shape}; calibration is scored one label "
            f"at a time: pass a single column, e.g. {name}[:, 0]"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (n,), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))
        raise ValueError(
            f"{name} contains NaN or infinite values ({bad.size} of {arr.size}, "
            f"first at index {bad[0]})"
        )
    return arr


def _positive(a, name: str) -> np.ndarray:
    arr = _vector(a, name)
    if np.any(arr <= 0):
        bad = np.flatnonzero(arr <= 0)
        raise ValueError(
            f"{name} must be > 0 everywhere; {bad.size} of {arr.size} values are <= 0 "
            f"(first at index {bad[0]}: {arr[bad[0]]!r})"
        )
    return arr


def _same_length(**arrays) -> None:
    given = {k: v for k, v in arrays.items() if v is not None}
    sizes = {v.size for v in given.values()}
    if len(sizes) > 1:
        desc = ", ".join(f"{k} has {v.size}" for k, v in given.items())
        raise ValueError(f"inputs differ in length: {desc}")


def _levels(levels) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(levels, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"levels must be a non-empty sequence of floats, got {levels!r}")
    if not np.all(np.isfinite(arr)) or np.any((arr <= 0) | (arr >= 1)):
        raise ValueError(f"levels must lie strictly between 0 and 1, got {arr.tolist()}")
    return arr


def _prepare(y_true, y_pred, y_std, pit) -> dict:
    """Validate the inputs; return the arrays (None where not given), z and the PIT."""
    y = _vector(y_true, "y_true")
    p = None if y_pred is None else _vector(y_pred, "y_pred")
    s = None if y_std is None else _positive(y_std, "y_std")
    u = None if pit is None else _vector(pit, "pit")
    if u is not None and np.any((u < 0) | (u > 1)):
        bad = np.flatnonzero((u < 0) | (u > 1))
        raise ValueError(
            f"pit must lie in [0, 1]; {bad.size} of {u.size} values are outside "
            f"(first at index {bad[0]}: {u[bad[0]]!r})"
        )
    if u is None and (p is None or s is None):
        missing = " and ".join(n for n, v in (("y_pred", p), ("y_std", s)) if v is None)
        raise ValueError(
            f"{missing} missing: pass y_pred and y_std (a Gaussian predictive "
            "distribution), or pit (predictive CDF values at y_true)"
        )
    _same_length(y_true=y, y_pred=p, y_std=s, pit=u)
    z = (y - p) / s if p is not None and s is not None else None
    return {
        "y": y,
        "pred": p,
        "std": s,
        "z": z,
        "pit": u if u is not None else ndtr(z),
        "gaussian": u is None,
    }


def _covered(d: dict, sel, level: float) -> np.ndarray:
    """Membership in the central ``level`` interval of the predictive distribution."""
    if d["gaussian"]:
        return np.abs(d["z"][sel]) <= ndtri(0.5 + level / 2)
    return np.abs(d["pit"][sel] - 0.5) <= level / 2


def _level_key(level: float) -> str:
    return f"coverage_{round(100 * level):d}"


def _level_keys(levels: np.ndarray) -> list[str]:
    keys = [_level_key(lv) for lv in levels]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"levels {levels.tolist()} give duplicate keys {keys}: levels must differ "
            "in whole percent"
        )
    return keys


def _ks_uniform(u: np.ndarray) -> float:
    u = np.sort(u)
    n = u.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


def _scores(d: dict, sel, levels: np.ndarray, n_pit_bins: int) -> dict:
    u = d["pit"][sel]
    n = int(u.size)
    out: dict = {"n": n}
    for level, key in zip(levels, _level_keys(levels)):
        out[key] = float(np.mean(_covered(d, sel, level)))
        out[f"{key}_se"] = float(np.sqrt(level * (1 - level) / n))
    if d["z"] is not None:
        z = d["z"][sel]
        out["z_mean"] = float(np.mean(z))
        out["z_std"] = float(np.std(z))
    counts, _ = np.histogram(u, bins=n_pit_bins, range=(0.0, 1.0))
    out["pit_hist"] = (counts * (n_pit_bins / n)).tolist()
    out["pit_ks"] = _ks_uniform(u)
    if d["std"] is not None:
        out["mean_std"] = float(np.mean(d["std"][sel]))
    if d["pred"] is not None:
        out["rmse"] = float(np.sqrt(np.mean((d["pred"][sel] - d["y"][sel]) ** 2)))
    return out


def _ratio_stats(ratio: np.ndarray) -> dict:
    q16, med, q84 = np.quantile(ratio, [0.16, 0.5, 0.84])
    return {
        "median": float(med),
        "q16": float(q16),
        "q84": float(q84),
        "mean_log_ratio": float(np.mean(np.log(ratio))),
    }


# --------------------------------------------------------------------------- public API


def calibration_scores(
    y_true,
    y_pred=None,
    y_std=None,
    *,
    pit=None,
    levels: Sequence[float] = (0.68, 0.95),
    n_pit_bins: int = 10,
) -> dict:
    """Coverage, z-score moments and PIT histogram of predictive uncertainties.

    A Gaussian predictive distribution is given by ``y_pred`` and ``y_std``:
    ``z = (y_true - y_pred) / y_std`` and the PIT (probability integral
    transform, the predictive CDF at the true label) is ``Phi(z)``. Any other
    predictive distribution, e.g. an exact posterior, is given by its ``pit``
    values directly. A calibrated model has coverages equal to the levels,
    ``z_mean`` 0, ``z_std`` 1 and uniform PIT values.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels (one label; pass 2-D labels one column at a time).
    y_pred : array-like of shape (n,), optional
        Predictive means.
    y_std : array-like of shape (n,), optional
        Predictive standard deviations, > 0.
    pit : array-like of shape (n,), optional
        Predictive CDF at ``y_true``, in [0, 1]. When given, coverage and the
        PIT statistics use it (``y_pred`` / ``y_std``, if also given, still
        give ``z_mean``, ``z_std``, ``mean_std`` and ``rmse``); otherwise
        ``y_pred`` and ``y_std`` are both required.
    levels : sequence of float, default=(0.68, 0.95)
        Nominal probabilities in (0, 1) of the central intervals. A spectrum
        is covered at ``level`` when ``|PIT - 0.5| <= level / 2`` (for the
        Gaussian, ``|z| <= Phi^-1(0.5 + level / 2)``).
    n_pit_bins : int, default=10
        Bins of the PIT histogram on [0, 1].

    Returns
    -------
    scores : dict
        ``n`` (int); per level ``coverage_<pct>`` (``pct`` is
        ``round(100 * level)``, e.g. ``coverage_68``) and ``coverage_<pct>_se``
        (binomial standard error ``sqrt(level * (1 - level) / n)`` at the
        nominal level); ``z_mean`` and ``z_std`` (ddof=0; only with both
        ``y_pred`` and ``y_std``); ``pit_hist`` (list of ``n_pit_bins``
        densities, 1.0 per bin for uniform PIT); ``pit_ks`` (Kolmogorov-Smirnov
        distance of the PIT values from uniform); ``mean_std`` (with
        ``y_std``); ``rmse`` (with ``y_pred``). All values are Python floats.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y_pred = rng.uniform(1, 5, 20000)
    >>> y_std = rng.uniform(0.1, 0.5, 20000)
    >>> y_true = y_pred + y_std * rng.standard_normal(20000)
    >>> s = calibration_scores(y_true, y_pred, y_std)
    >>> round(s["coverage_68"], 2), round(s["coverage_95"], 2)
    (0.68, 0.95)
    >>> round(s["z_std"], 2), s["pit_ks"] < 0.02
    (1.0, True)
    >>> half = calibration_scores(y_true, y_pred, y_std / 2)  # over-confident
    >>> round(half["coverage_68"], 2), round(half["z_std"], 1)
    (0.38, 2.0)
    """
    lv = _levels(levels)
    _level_keys(lv)
    n_pit_bins = check_int(n_pit_bins, "n_pit_bins")
    d = _prepare(y_true, y_pred, y_std, pit)
    return _scores(d, slice(None), lv, n_pit_bins)


def std_ratio(y_std, posterior_std) -> dict:
    """How an estimator's uncertainties compare with the exact posterior's.

    Parameters
    ----------
    y_std : array-like of shape (n,)
        The estimator's predictive standard deviations, > 0.
    posterior_std : array-like of shape (n,)
        The exact posterior standard deviations of the same spectra, > 0.

    Returns
    -------
    stats : dict
        Of the per-spectrum ratio ``y_std / posterior_std`` (1 is ideal):
        ``median``, ``q16`` and ``q84`` (16th and 84th percentiles) and
        ``mean_log_ratio`` (mean natural log; ``exp`` of it is the geometric
        mean ratio, 0 is ideal).

    Examples
    --------
    >>> r = std_ratio([0.1, 0.2, 0.4], [0.2, 0.2, 0.2])
    >>> r["median"], round(r["mean_log_ratio"], 12)
    (1.0, 0.0)
    """
    s = _positive(y_std, "y_std")
    q = _positive(posterior_std, "posterior_std")
    _same_length(y_std=s, posterior_std=q)
    return _ratio_stats(s / q)


def calibration_by_snr(
    y_true,
    y_pred=None,
    y_std=None,
    snr=None,
    *,
    pit=None,
    bins=8,
    strategy: str = "quantile",
    levels: Sequence[float] = (0.68, 0.95),
    posterior_std=None,
) -> pd.DataFrame:
    """:func:`calibration_scores` per bin of per-spectrum SNR.

    The whole sample's scores are :func:`calibration_scores`; this table has
    one row per bin only.

    Parameters
    ----------
    y_true, y_pred, y_std, pit : array-like of shape (n,)
        As in :func:`calibration_scores`.
    snr : array-like of shape (n,)
        Per-spectrum SNR (required).
    bins : int or array-like, default=8
        Number of bins or explicit edges; see
        :func:`~specreg.metrics.snr_bin_edges`. Spectra outside explicit
        edges are left out.
    strategy : {"quantile", "uniform", "log"}, default="quantile"
    levels : sequence of float, default=(0.68, 0.95)
    posterior_std : array-like of shape (n,), optional
        Exact posterior standard deviations; needs ``y_std``. Adds the
        median, 16th and 84th percentiles of ``y_std / posterior_std``.

    Returns
    -------
    DataFrame with one row per bin: ``snr_lo``, ``snr_hi``, ``snr`` (median),
    ``n``, the scalar keys of :func:`calibration_scores` (``coverage_<pct>``,
    ``coverage_<pct>_se``, ``z_mean``, ``z_std``, ``pit_ks``, ``mean_std``,
    ``rmse``, as the inputs allow) and, with ``posterior_std``,
    ``std_ratio_median``, ``std_ratio_q16``, ``std_ratio_q84``. The PIT
    histogram is left out (call :func:`calibration_scores` on a bin's
    spectra for it). Empty bins keep their row with ``n`` 0 and NaN scores.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> snr = rng.uniform(3, 30, 4000)
    >>> y_pred, y_std = np.zeros(4000), 2 / snr
    >>> y_true = y_pred + y_std * rng.standard_normal(4000)
    >>> t = calibration_by_snr(y_true, y_pred, y_std, snr, bins=4)
    >>> t["n"].tolist()
    [1000, 1000, 1000, 1000]
    >>> bool((abs(t["coverage_68"] - 0.68) < 3 * t["coverage_68_se"]).all())
    True
    """
    if snr is None:
        raise ValueError("snr is required: the per-spectrum SNR of every spectrum")
    lv = _levels(levels)
    _level_keys(lv)
    d = _prepare(y_true, y_pred, y_std, pit)
    s = _vector(snr, "snr")
    q = None if posterior_std is None else _positive(posterior_std, "posterior_std")
    if q is not None and d["std"] is None:
        raise ValueError("posterior_std needs y_std: the ratio is y_std / posterior_std")
    _same_length(y_true=d["y"], snr=s, posterior_std=q)
    keys = [k for k in _scores(d, slice(None), lv, 1) if k not in ("n", "pit_hist")]
    if q is not None:
        keys += ["std_ratio_median", "std_ratio_q16", "std_ratio_q84"]

    def scores(sel):
        sc = _scores(d, sel, lv, 1)
        row = {k: sc[k] for k in keys if k in sc}
        if q is not None:
            r = _ratio_stats(d["std"][sel] / q[sel])
            row.update(
                std_ratio_median=r["median"], std_ratio_q16=r["q16"], std_ratio_q84=r["q84"]
            )
        return row

    return _table_by_snr(s, bins, strategy, scores, ["snr_lo", "snr_hi", "snr", "n", *keys])


def reliability_curve(
    y_true,
    y_pred=None,
    y_std=None,
    snr=None,
    *,
    pit=None,
    bins=4,
    strategy: str = "quantile",
    levels: Sequence[float] = _RELIABILITY_LEVELS,
) -> pd.DataFrame:
    """Empirical coverage of central intervals against their nominal level.

    The data of a reliability diagram (:func:`specreg.plotting.plot_reliability`):
    for each SNR bin and nominal level, the fraction of spectra whose true
    label lies in the central predictive interval of that probability. A
    calibrated model lies on the diagonal; below it the intervals are too
    narrow (over-confident), above it too wide.

    Parameters
    ----------
    y_true, y_pred, y_std, pit : array-like of shape (n,)
        As in :func:`calibration_scores`.
    snr : array-like of shape (n,), optional
        Per-spectrum SNR; None: one bin holding every spectrum.
    bins : int or array-like, default=4
        See :func:`~specreg.metrics.snr_bin_edges`.
    strategy : {"quantile", "uniform", "log"}, default="quantile"
    levels : sequence of float, default=(0.05, 0.10, ..., 0.95)
        Nominal levels in (0, 1).

    Returns
    -------
    DataFrame in long form, one row per SNR bin and level: ``snr_lo``,
    ``snr_hi``, ``snr`` (median; all three NaN when ``snr`` is None),
    ``level``, ``coverage``, ``coverage_se`` (binomial standard error at the
    nominal level) and ``n`` (spectra in the bin; empty bins have NaN
    coverage).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y_std = rng.uniform(0.1, 0.5, 5000)
    >>> y_true = y_std * rng.standard_normal(5000)
    >>> c = reliability_curve(y_true, np.zeros(5000), y_std, levels=[0.5, 0.9])
    >>> c[["level", "coverage", "n"]].round(2).values.tolist()
    [[0.5, 0.5, 5000.0], [0.9, 0.9, 5000.0]]
    """
    lv = _levels(levels)
    d = _prepare(y_true, y_pred, y_std, pit)
    nan = float("nan")
    if snr is None:
        groups = [(nan, nan, nan, np.arange(d["y"].size))]
    else:
        s = _vector(snr, "snr")
        _same_length(y_true=d["y"], snr=s)
        groups = [
            (float(lo), float(hi), float(np.median(s[sel])) if sel.size else nan, sel)
            for lo, hi, sel in _snr_bins(s, bins, strategy)
        ]
    rows = []
    for lo, hi, med, sel in groups:
        n = int(sel.size)
        for level in lv:
            cov = float(np.mean(_covered(d, sel, level))) if n else nan
            se = float(np.sqrt(level * (1 - level) / n)) if n else nan
            rows.append(
                {
                    "snr_lo": lo,
                    "snr_hi": hi,
                    "snr": med,
                    "level": float(level),
                    "coverage": cov,
                    "coverage_se": se,
                    "n": n,
                }
            )
    return pd.DataFrame(
        rows, columns=["snr_lo", "snr_hi", "snr", "level", "coverage", "coverage_se", "n"]
    )
