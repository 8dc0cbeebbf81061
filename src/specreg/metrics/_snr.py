"""Scores per SNR bin on the per-spectrum SNR axis, with bootstrap bands."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spectra import split_stacked
from ..spectra._validation import as_generator, check_int

__all__ = [
    "REFERENCE_SNR_EDGES",
    "assign_snr_bins",
    "compare_to_ceiling",
    "efficiency_by_snr",
    "regression_scores",
    "scores_by_snr",
    "snr_bin_edges",
    "snr_from_X",
]

#: The reference study's fixed SNR bins (centres 3, 4, 5, 6, 7, 10, 15, 21).
REFERENCE_SNR_EDGES = np.array([2.5, 3.5, 4.5, 5.5, 6.5, 8.5, 12.5, 18.0, 28.0])


def _as_1d(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_edges(edges) -> np.ndarray:
    """SNR bin edges: at least 2 finite, strictly increasing values."""
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise ValueError(f"bin edges must be at least 2 finite, increasing values, got {edges}")
    return e


def _same_length_1d(**arrays) -> tuple[np.ndarray, ...]:
    """The named arrays as finite 1-D float arrays, which must all have one length."""
    out = tuple(_as_1d(a, name) for name, a in arrays.items())
    if len({a.shape for a in out}) > 1:
        *head, last = arrays
        raise ValueError(f"{', '.join(head)} and {last} must have the same length")
    return out


def snr_from_X(X) -> np.ndarray:
    """Per-spectrum SNR ``median(flux / error)`` from the stacked input ``[flux | error]``.

    On noisy flux this is close to, not equal to, the noiseless SNR stored in
    ``Spectra.params["snr"]``; prefer the stored one for test sets.

    Examples
    --------
    >>> snr_from_X([[1.0, 2.0, 0.1, 0.2]]).tolist()
    [10.0]
    """
    flux, err = split_stacked(np.asarray(X, dtype=np.float64), error_rule="positive")
    return np.median(flux / err, axis=1)


def snr_bin_edges(snr, bins=8, *, strategy: str = "quantile") -> np.ndarray:
    """Edges of SNR bins.

    Parameters
    ----------
    snr : array-like of shape (n,)
    bins : int or array-like, default=8
        Number of bins, or explicit increasing edges (``strategy`` is then ignored),
        e.g. :data:`REFERENCE_SNR_EDGES`.
    strategy : {"quantile", "uniform", "log"}, default="quantile"
        Equal-count bins, equal-width bins, or equal width in log SNR.

    Returns
    -------
    edges : ndarray of shape (n_bins + 1,)

    Examples
    --------
    >>> snr_bin_edges([1, 2, 3, 4], 2).tolist()
    [1.0, 2.5, 4.0]
    """
    snr = _as_1d(snr, "snr")
    if np.ndim(bins) > 0:
        return _check_edges(bins)
    k = check_int(bins, "bins")
    if snr.size == 0:
        raise ValueError("snr is empty")
    if strategy == "quantile":
        edges = np.quantile(snr, np.linspace(0, 1, k + 1))
    elif strategy == "uniform":
        edges = np.linspace(snr.min(), snr.max(), k + 1)
    elif strategy == "log":
        if np.any(snr <= 0):
            raise ValueError("log bins need snr > 0")
        edges = np.exp(np.linspace(np.log(snr.min()), np.log(snr.max()), k + 1))
    else:
        raise ValueError(f"strategy must be 'quantile', 'uniform' or 'log', got {strategy!r}")
    return np.unique(edges) if np.unique(edges).size > 1 else np.array([edges[0], edges[0] + 1])


def assign_snr_bins(snr, edges) -> np.ndarray:
    """Bin index of each spectrum (last bin closed on the right); -1 outside the edges.

    Examples
    --------
    >>> assign_snr_bins([0.5, 1.0, 2.0, 3.0, 9.0], [1.0, 2.0, 3.0]).tolist()
    [-1, 0, 1, 1, -1]
    """
    snr = _as_1d(snr, "snr")
    edges = _check_edges(edges)
    idx = np.searchsorted(edges, snr, side="right") - 1
    idx[snr == edges[-1]] = edges.size - 2
    idx[(snr < edges[0]) | (snr > edges[-1])] = -1
    return idx


def _snr_bins(snr: np.ndarray, bins, strategy: str) -> list[tuple[float, float, np.ndarray]]:
    """``(low edge, high edge, indices of the bin's spectra)`` per SNR bin, in order.

    The bins of :func:`snr_bin_edges` and :func:`assign_snr_bins`, as every per-SNR table
    walks them (empty bins included; spectra outside explicit edges are in none).

    Examples
    --------
    >>> for lo, hi, sel in _snr_bins([1, 2, 3, 4], 2, "uniform"):
    ...     print(float(lo), float(hi), sel.tolist())
    1.0 2.5 [0, 1]
    2.5 4.0 [2, 3]
    """
    edges = snr_bin_edges(snr, bins, strategy=strategy)
    idx = assign_snr_bins(snr, edges)
    return [(edges[b], edges[b + 1], np.flatnonzero(idx == b)) for b in range(edges.size - 1)]


def _table_by_snr(snr, bins, strategy, scores, columns=None) -> pd.DataFrame:
    """The table every ``*_by_snr`` function returns: one row per bin of :func:`_snr_bins`.

    A row holds ``snr_lo``, ``snr_hi``, ``n`` and, for a non-empty bin, its median
    ``snr`` and the dict ``scores(sel)`` (``sel`` the indices of the bin's spectra).
    ``columns``, when given, fixes the columns and their order (NaN where a bin has no
    value), so that a table of empty bins has the same columns as any other.

    Examples
    --------
    >>> snr = np.array([1.0, 2.0, 3.0, 4.0])
    >>> _table_by_snr(snr, 2, "uniform", lambda sel: {"top": float(snr[sel].max())})
       snr_lo  snr_hi  n  snr  top
    0     1.0     2.5  2  1.5  2.0
    1     2.5     4.0  2  3.5  4.0
    """
    rows = []
    for lo, hi, sel in _snr_bins(snr, bins, strategy):
        row = {"snr_lo": float(lo), "snr_hi": float(hi), "n": int(sel.size)}
        if sel.size:
            row["snr"] = float(np.median(snr[sel]))
            row.update(scores(sel))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def regression_scores(y_true, y_pred) -> dict:
    """R2 (with the labels' own variance, ddof=0), MAE, RMSE and bias (pred - true).

    R2 is NaN where it is undefined: labels that do not vary (one spectrum, or a bin
    of equal labels) have no variance to explain.

    Examples
    --------
    >>> regression_scores([1.0, 3.0], [1.5, 2.5])
    {'r2': 0.75, 'mae': 0.5, 'rmse': 0.5, 'bias': 0.0, 'mse': 0.25}
    """
    y, p = _as_1d(y_true, "y_true"), _as_1d(y_pred, "y_pred")
    if y.shape != p.shape:
        raise ValueError(f"y_true {y.shape} and y_pred {p.shape} differ in shape")
    if y.size == 0:
        raise ValueError("y_true is empty: no scores to compute")
    e = p - y
    mse = float(np.mean(e**2))
    var = float(np.var(y))
    return {
        "r2": 1.0 - mse / var if var > 0 else float("nan"),
        "mae": float(np.mean(np.abs(e))),
        "rmse": float(np.sqrt(mse)),
        "bias": float(np.mean(e)),
        "mse": mse,
    }


def scores_by_snr(
    y_true,
    y_pred,
    snr,
    *,
    bins=8,
    strategy: str = "quantile",
    n_bootstrap: int = 200,
    quantiles: tuple[float, float] = (0.1, 0.9),
    random_state=None,
) -> pd.DataFrame:
    """R2, MAE, RMSE and bias per SNR bin, with bootstrap bands.

    R2 in a bin uses the variance of that bin's true labels, the same
    denominator as the ceiling for those spectra.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    snr : array-like of shape (n,)
        Per-spectrum SNR (median of noiseless flux / error).
    bins : int or array-like, default=8
        See :func:`snr_bin_edges`.
    strategy : {"quantile", "uniform", "log"}, default="quantile"
    n_bootstrap : int, default=200
        Resamples (within each bin) for the bands; 0 disables them.
    quantiles : (float, float), default=(0.1, 0.9)
        Band quantiles (the reference's q10-q90).
    random_state : int or None

    Returns
    -------
    DataFrame with columns ``snr_lo``, ``snr_hi``, ``snr`` (median), ``n``,
    ``var_y``, ``r2``, ``mae``, ``rmse``, ``bias``, ``mse`` and
    ``<metric>_lo`` / ``<metric>_hi`` bands for r2, mae, rmse, bias.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.uniform(1, 5, 200); snr = rng.uniform(2, 20, 200)
    >>> pred = y + rng.normal(0, 1 / snr)
    >>> t = scores_by_snr(y, pred, snr, bins=4, random_state=0)
    >>> t.shape[0], bool(t["r2"].is_monotonic_increasing)
    (4, True)
    """
    y, p, s = _same_length_1d(y_true=y_true, y_pred=y_pred, snr=snr)
    n_bootstrap, quantiles, rng = _bootstrap_options(n_bootstrap, quantiles, random_state)

    def scores(sel):
        row = {"var_y": float(np.var(y[sel])), **regression_scores(y[sel], p[sel])}
        if n_bootstrap and sel.size > 1:
            boot = _bootstrap(y[sel], p[sel], n_bootstrap, rng)
            for key in ("r2", "mae", "rmse", "bias"):
                lo, hi = np.nanquantile(boot[key], quantiles)
                row[f"{key}_lo"], row[f"{key}_hi"] = float(lo), float(hi)
        return row

    return _table_by_snr(s, bins, strategy, scores)


def _bootstrap_options(n_bootstrap, quantiles, random_state):
    """The checked bootstrap options of the per-SNR tables: count, band quantiles, generator."""
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", low=0)
    q = np.asarray(quantiles, dtype=float)
    if q.shape != (2,) or not (0.0 <= q[0] < q[1] <= 1.0):
        raise ValueError(
            f"quantiles must be two levels 0 <= low < high <= 1 (the band); got {quantiles!r}"
        )
    return n_bootstrap, (float(q[0]), float(q[1])), as_generator(random_state)


def _bootstrap(y, p, n_boot, rng) -> dict:
    m = y.size
    pick = rng.integers(0, m, size=(n_boot, m))
    yb, eb = y[pick], p[pick] - y[pick]
    mse = np.mean(eb**2, axis=1)
    var = np.var(yb, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(var > 0, 1.0 - mse / var, np.nan)
    return {
        "r2": r2,
        "mae": np.mean(np.abs(eb), axis=1),
        "rmse": np.sqrt(mse),
        "bias": np.mean(eb, axis=1),
    }


def efficiency_by_snr(
    y_true,
    y_pred,
    y_bayes,
    snr,
    *,
    bins=8,
    strategy: str = "quantile",
    n_bootstrap: int = 200,
    quantiles: tuple[float, float] = (0.1, 0.9),
    random_state=None,
) -> pd.DataFrame:
    """Efficiency ``MSE_Bayes / MSE_model`` per SNR bin, on exactly the same spectra.

    1 means the model reaches the Bayes-optimal ceiling; the bootstrap
    resamples the (model, Bayes) error pairs together, so the band reflects
    the paired comparison.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    y_bayes : array-like of shape (n,)
        Posterior means (e.g. ``FisherCeiling.last_evaluation_["posterior_mean"]``).
    snr : array-like of shape (n,)
    bins, strategy, n_bootstrap, quantiles, random_state
        As in :func:`scores_by_snr`.

    Returns
    -------
    DataFrame with ``snr_lo``, ``snr_hi``, ``snr``, ``n``, ``mse_model``,
    ``mse_bayes``, ``efficiency``, ``efficiency_lo``, ``efficiency_hi``.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(1, 5, 100)
    >>> snr = np.linspace(1, 10, 100)
    >>> t = efficiency_by_snr(y, y + 0.2, y + 0.1, snr, bins=2, n_bootstrap=0)
    >>> t["efficiency"].round(3).tolist()
    [0.25, 0.25]
    """
    y, p, q, s = _same_length_1d(y_true=y_true, y_pred=y_pred, y_bayes=y_bayes, snr=snr)
    n_bootstrap, quantiles, rng = _bootstrap_options(n_bootstrap, quantiles, random_state)

    def scores(sel):
        em, eb = (p[sel] - y[sel]) ** 2, (q[sel] - y[sel]) ** 2
        row = {
            "mse_model": float(em.mean()),
            "mse_bayes": float(eb.mean()),
            "efficiency": float(eb.mean() / em.mean()) if em.mean() > 0 else float("nan"),
        }
        if n_bootstrap and sel.size > 1:
            pick = rng.integers(0, sel.size, size=(n_bootstrap, sel.size))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = eb[pick].mean(axis=1) / em[pick].mean(axis=1)
            lo, hi = np.nanquantile(ratio, quantiles)
            row["efficiency_lo"], row["efficiency_hi"] = float(lo), float(hi)
        return row

    return _table_by_snr(s, bins, strategy, scores)


def bayes_squared_errors(err, mc_se) -> tuple[np.ndarray, float]:
    """Squared errors of Monte-Carlo posterior means, with the Monte-Carlo part removed.

    ``E[(mean_hat - y)^2] = (mean - y)^2 + se^2``, so ``err**2 - se**2`` estimates the
    squared error of the exact posterior mean. Also returns the Monte-Carlo standard
    error of the mean of those values (independent draws per spectrum).

    Parameters
    ----------
    err : array-like of shape (n,)
        Posterior mean minus label.
    mc_se : array-like of shape (n,)
        Monte-Carlo standard errors of the posterior means.

    Returns
    -------
    sq_err : ndarray of shape (n,)
    mc_err : float

    Examples
    --------
    >>> sq, mc = bayes_squared_errors([0.5, -0.5], [0.1, 0.1])
    >>> sq.round(2).tolist(), round(mc, 4)
    ([0.24, 0.24], 0.0714)
    """
    err = np.asarray(err, dtype=float)
    se = np.asarray(mc_se, dtype=float)
    mc_err = float(np.sqrt(np.sum((2 * err * se) ** 2 + 2 * se**4)) / max(err.size, 1))
    return err**2 - se**2, mc_err


def compare_to_ceiling(
    y_true,
    y_pred,
    y_bayes,
    snr,
    *,
    bayes_mc_se=None,
    bins=8,
    strategy: str = "quantile",
) -> pd.DataFrame:
    """R2 of a model minus the Bayes ceiling per SNR bin, with a paired standard error.

    Both R2 use the same spectra and the same denominator (the variance of
    the bin's labels), so the difference is ``(MSE_Bayes - MSE_model) /
    Var(y)``. Its standard error combines the test set's own sampling error,
    estimated from the per-spectrum differences of squared errors (paired:
    the two estimators see the same noise, which cancels most of it), with the
    Monte-Carlo error of the posterior means. Quoting the Monte-Carlo error
    alone understates the uncertainty several-fold.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    y_bayes : array-like of shape (n,)
        Posterior means (``FisherCeiling.last_evaluation_["posterior_mean"]``).
    snr : array-like of shape (n,)
    bayes_mc_se : array-like of shape (n,), optional
        Monte-Carlo standard errors of ``y_bayes`` (``"posterior_mean_se"``):
        the Bayes MSE is corrected for them and they enter the error.
    bins : int or array-like, default=8
    strategy : {"quantile", "uniform", "log"}, default="quantile"

    Returns
    -------
    DataFrame with one row per bin: ``snr_lo``, ``snr_hi``, ``snr``, ``n``,
    ``r2_model``, ``r2_bayes``, ``delta_r2`` (model minus ceiling),
    ``se_sampling``, ``se_mc``, ``se`` (both combined) and ``z``
    (``delta_r2 / se``: a model above the ceiling by more than about 2-3
    standard errors beats it, which for data from the model means that the
    inputs carry information the ceiling does not see). A bin with fewer than
    3 spectra, or with labels that do not vary, has NaN scores.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.uniform(1, 5, 400)
    >>> bayes = y + rng.normal(0, 0.3, 400)
    >>> model = bayes + rng.normal(0, 0.3, 400)   # the ceiling plus extra error
    >>> t = compare_to_ceiling(y, model, bayes, rng.uniform(3, 30, 400), bins=2)
    >>> bool((t["delta_r2"] < 0).all()), bool((t["z"] < -2).all())
    (True, True)
    """
    if bayes_mc_se is None:
        bayes_mc_se = np.zeros(np.size(y_bayes))
    y, p, q, s, se_b = _same_length_1d(
        y_true=y_true, y_pred=y_pred, y_bayes=y_bayes, snr=snr, bayes_mc_se=bayes_mc_se
    )
    if np.any(se_b < 0):
        raise ValueError("bayes_mc_se must be >= 0")

    def scores(sel):
        # a paired standard error needs at least 3 spectra and labels that vary
        if sel.size <= 2 or not np.var(y[sel]) > 0:
            return {}
        var_y = float(np.var(y[sel]))
        em = (p[sel] - y[sel]) ** 2
        eb, mc_err = bayes_squared_errors(q[sel] - y[sel], se_b[sel])
        d = eb - em
        se_sampling = float(np.std(d, ddof=1) / np.sqrt(sel.size) / var_y)
        se_mc = mc_err / var_y
        se = float(np.hypot(se_sampling, se_mc))
        delta = float(d.mean() / var_y)
        return {
            "r2_model": float(1 - em.mean() / var_y),
            "r2_bayes": float(1 - eb.mean() / var_y),
            "delta_r2": delta,
            "se_sampling": se_sampling,
            "se_mc": se_mc,
            "se": se,
            "z": delta / se if se > 0 else float("nan"),
        }

    columns = "snr_lo snr_hi n snr r2_model r2_bayes delta_r2 se_sampling se_mc se z".split()
    return _table_by_snr(s, bins, strategy, scores, columns)
