"""Figures: R2 vs SNR with the ceilings, learning curves, parity/residuals, spectra,
reliability diagrams.

Every function draws on the given Axes (or a new one) and returns it; nothing
touches pyplot's global state beyond creating a figure when no Axes is given.
The public figures are listed once, in ``specreg.plotting.__all__``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spectra._validation import check_finite, check_int, check_real


def _axes(ax, figsize=None):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    # a bare Figure (no pyplot): no global figure registry, safe in loops and threads
    fig = Figure(figsize=figsize or (6.4, 4.4), layout="tight")
    return fig.add_subplot()


#: Tick values of a log SNR axis: the fine set for short ranges, the coarse one for long.
_SNR_TICKS_FINE = (1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500)
_SNR_TICKS_COARSE = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _snr_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Plain-number ticks (3, 5, 10, 20) inside ``[lo, hi]`` of a log SNR axis.

    Examples
    --------
    >>> _snr_ticks(2.6, 14.0)
    [3, 4, 5, 7, 10]
    >>> _snr_ticks(1.5, 95.0)
    [2, 5, 10, 20, 50]
    """
    for ticks in (_SNR_TICKS_FINE, _SNR_TICKS_COARSE):
        inside = [t for t in ticks if lo <= t <= hi]
        if len(inside) <= max_ticks:
            break
    return inside


def _log_snr_axis(ax) -> None:
    """A log x axis labelled with plain SNR values, minor ticks unlabelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = _snr_ticks(lo, hi)
    if len(ticks) >= 2:  # else keep matplotlib's own (a range within one tick step)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _place_legend(ax, legend) -> None:
    """``"outside"``: right of the axes, clear of the curves; a matplotlib ``loc``; or none."""
    if legend is None or legend is False:
        return
    if legend == "outside":
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small"
        )
    else:
        ax.legend(loc=legend, fontsize="small")


def plot_r2_vs_snr(
    scores: dict | None = None,
    ceiling=None,
    *,
    fisher: bool = True,
    reference=None,
    ax=None,
    log_snr: bool = True,
    legend: str | None = "outside",
):
    """R2 vs per-spectrum SNR for several models, with the Bayes-optimal ceiling.

    Parameters
    ----------
    scores : dict of str -> DataFrame, optional
        Per-model tables from :func:`specreg.metrics.scores_by_snr` (columns
        ``snr``, ``r2`` and optionally ``r2_lo``/``r2_hi`` for a band).
    ceiling : DataFrame, optional
        :meth:`FisherCeiling.table_by_snr` on the same spectra and bins (or
        :meth:`FisherCeiling.table` per magnitude): ``snr``, ``r2_bayes``,
        ``r2_bayes_mc_err`` and, for the reference-style band,
        ``r2_max_median``/``r2_max_p10``/``r2_max_p90``.
    fisher : bool, default=True
        Draw the reference-style Fisher curve (median of pointwise R2_max)
        with its p10-p90 band, dashed, next to the Bayes ceiling.
    reference : DataFrame, optional
        :meth:`FisherCeiling.reference_table`: the reference's own procedure
        (``snr_grid``, ``r2_max_median``), drawn dotted at the grid SNR, to show
        how far it sits from the ceiling on the models' axis.
    ax : matplotlib Axes, optional
        Without one, a new figure wide enough for the legend beside the axes.
    log_snr : bool, default=True
        A log SNR axis, labelled with plain numbers (3, 5, 10, 20).
    legend : str or None, default="outside"
        ``"outside"`` puts the legend to the right of the axes, where it hides
        no curve (call ``fig.tight_layout()`` or save with
        ``bbox_inches="tight"`` to keep it in the figure); a matplotlib
        ``loc`` such as ``"lower right"`` puts it inside; None draws none.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"snr": [3.0, 10.0], "r2": [0.3, 0.8]})
    >>> c = pd.DataFrame({"snr": [3.0, 10.0], "r2_bayes": [0.4, 0.9],
    ...                   "r2_bayes_mc_err": [0.01, 0.01]})
    >>> ax = plot_r2_vs_snr({"ridge": s}, c)
    >>> ax.get_ylabel()
    '$R^2$ (log g)'
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['3', '4', '5', '7', '10']
    """
    from matplotlib.legend import Legend

    if legend not in (None, False, "outside", *Legend.codes):
        raise ValueError(
            f"legend must be 'outside', None or a matplotlib location "
            f"({', '.join(map(repr, Legend.codes))}); got {legend!r}"
        )
    if scores is not None and not isinstance(scores, dict):
        raise ValueError(
            f"scores must be a dict of model name -> per-SNR table, got {type(scores).__name__}"
        )
    ax = _axes(ax, figsize=(8.4, 4.4) if legend == "outside" else None)
    if ceiling is not None:
        c = ceiling.sort_values("snr")
        if "r2_bayes" in c:
            err = c["r2_bayes_mc_err"] if "r2_bayes_mc_err" in c else 0.0
            ax.plot(c["snr"], c["r2_bayes"], "k-", lw=2, label="Bayes-optimal ceiling", zorder=5)
            ax.fill_between(
                c["snr"],
                c["r2_bayes"] - 2 * err,
                c["r2_bayes"] + 2 * err,
                color="k",
                alpha=0.2,
                lw=0,
            )
        if fisher and "r2_max_median" in c:
            ax.plot(
                c["snr"],
                c["r2_max_median"],
                "--",
                color="0.4",
                label="Fisher median $R^2_{max}$ (reference)",
            )
            if "r2_max_p10" in c and "r2_max_p90" in c:
                ax.fill_between(
                    c["snr"],
                    c["r2_max_p10"],
                    c["r2_max_p90"],
                    color="0.5",
                    alpha=0.15,
                    lw=0,
                    label="Fisher p10-p90",
                )
    if reference is not None:
        r = reference.sort_values("snr_grid")
        ax.plot(
            r["snr_grid"],
            r["r2_max_median"],
            ":",
            color="C3",
            marker="s",
            ms=3,
            label="reference procedure (nodes, Var of nodes, grid SNR)",
        )
    for name, table in (scores or {}).items():
        t = table.dropna(subset=["r2"]).sort_values("snr")
        (line,) = ax.plot(t["snr"], t["r2"], "o-", ms=4, label=name)
        if "r2_lo" in t and "r2_hi" in t:
            ax.fill_between(
                t["snr"], t["r2_lo"], t["r2_hi"], color=line.get_color(), alpha=0.2, lw=0
            )
    if log_snr:
        _log_snr_axis(ax)
    ax.set_xlabel("per-spectrum SNR (median flux / error)")
    ax.set_ylabel("$R^2$ (log g)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.grid(alpha=0.3)
    _place_legend(ax, legend)
    return ax


def _count_label(n: float) -> str:
    """A training-set size as a short tick label: 250, 2,000, 50k, 1M.

    Examples
    --------
    >>> [_count_label(n) for n in (250, 2000, 50_000, 1_000_000, 1_500_000)]
    ['250', '2,000', '50k', '1M', '1.5M']
    """
    if n >= 1e6:
        return f"{n / 1e6:g}M"
    if n >= 1e4:
        return f"{n / 1e3:g}k"
    return f"{n:,.0f}"


def plot_learning_curve(
    train_sizes, scores: dict, *, ceiling: float | None = None, ax=None, ylabel: str = "$R^2$"
):
    """Scaling curves: score vs training-set size on a log axis, several models.

    Parameters
    ----------
    train_sizes : array-like of shape (n_sizes,)
    scores : dict of str -> array-like of shape (n_sizes,) or (n_sizes, n_folds)
        Per model; with folds, the mean is drawn with a +-1 sd band.
    ceiling : float, optional
        A horizontal line (e.g. the Bayes-optimal R2 of the test set).
    ax : matplotlib Axes, optional
    ylabel : str, default="$R^2$"

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> r2 = {"ridge": [[0.3, 0.35], [0.5, 0.52]]}  # two folds per size
    >>> ax = plot_learning_curve([1e3, 1e4], r2, ceiling=0.8)
    >>> ax.get_xscale()
    'log'
    >>> [t.get_text() for t in ax.get_xticklabels()]  # the sizes
    ['1,000', '10k']
    """
    sizes = np.asarray(train_sizes, dtype=float)
    if sizes.ndim != 1 or sizes.size == 0 or not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise ValueError(
            f"train_sizes must be one or more sizes > 0 (a log axis); got {train_sizes}"
        )
    if ceiling is not None:
        check_real(ceiling, "ceiling", high=1.0)
    ax = _axes(ax)
    for name, s in scores.items():
        s = np.asarray(s, dtype=float)
        if s.shape[0] != sizes.size:
            raise ValueError(f"scores[{name!r}] has {s.shape[0]} rows for {sizes.size} sizes")
        mean = s.mean(axis=1) if s.ndim == 2 else s
        (line,) = ax.plot(sizes, mean, "o-", label=name)
        if s.ndim == 2 and s.shape[1] > 1:
            sd = s.std(axis=1)
            ax.fill_between(sizes, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
    if ceiling is not None:
        ax.axhline(ceiling, color="k", lw=1.5, label="Bayes-optimal ceiling")
    ax.set_xscale("log")
    if 2 <= sizes.size <= 8:  # the sizes themselves, not 3x10^2 on the minor ticks
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        ax.xaxis.set_major_locator(FixedLocator(sizes))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _count_label(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training spectra N")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def _labels_and_predictions(y_true, y_pred, crlb, bins):
    """1-D true labels, predictions and CRLB variances of one length, or a clear error."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if y.ndim != 1 or y.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must be 1-D and of one length; got shapes {y.shape} and {p.shape}."
        )
    check_finite(y, "y_true")
    check_finite(p, "y_pred")
    if crlb is not None:
        crlb = np.asarray(crlb, dtype=float)
        if crlb.shape != y.shape:
            raise ValueError(f"crlb must have the shape of y_true {y.shape}; got {crlb.shape}.")
        check_finite(crlb, "crlb")
        if (crlb < 0).any():
            raise ValueError("crlb holds variances: every value must be >= 0.")
    check_int(bins, "bins")
    return y, p, crlb


def _envelope(y, crlb, bins):
    """Bin centres of ``y`` and the median ``sqrt(crlb)`` in each non-empty bin."""
    sig = np.sqrt(crlb)
    edges = np.linspace(y.min(), y.max(), bins + 1)
    idx = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, bins - 1)
    centres, med = [], []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            centres.append(0.5 * (edges[b] + edges[b + 1]))
            med.append(np.median(sig[sel]))
    return np.array(centres), np.array(med)


def plot_parity(y_true, y_pred, *, crlb=None, bins: int = 20, ax=None, label: str | None = None):
    """Predicted vs true labels with the +-sigma_CRLB envelope (median per true-label bin).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    crlb : array-like of shape (n,), optional
        Per-spectrum CRLB (variance); the envelope is ``y = x +- sqrt(CRLB)``.
    bins : int, default=20
        Bins of the true label over which the median CRLB is taken.
    ax : matplotlib Axes, optional
    label : str, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> y_true, y_pred = [1.0, 3.0, 5.0], [1.2, 2.9, 4.5]
    >>> ax = plot_parity(y_true, y_pred, crlb=[0.1, 0.2, 0.3], bins=3)
    >>> ax.get_xlabel()
    'true log g'
    """
    y, p, crlb = _labels_and_predictions(y_true, y_pred, crlb, bins)
    ax = _axes(ax)
    ax.scatter(y, p, s=4, alpha=0.4, label=label)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k-", lw=1)
    if crlb is not None:
        c, s = _envelope(y, crlb, bins)
        ax.fill_between(c, c - s, c + s, color="C1", alpha=0.25, lw=0, label=r"$\pm\sigma_{CRLB}$")
    ax.set_xlabel("true log g")
    ax.set_ylabel("predicted log g")
    if label is not None or crlb is not None:
        ax.legend(fontsize="small")
    return ax


def plot_residuals(y_true, y_pred, *, crlb=None, bins: int = 20, ax=None):
    """Residuals (pred - true) vs true label with +-1 and +-1.96 sigma_CRLB bands.

    The reference's residual overlay: per-spectrum ``sqrt(CRLB)`` binned by
    the true label, the median per bin drawn as bands around zero.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    crlb : array-like of shape (n,), optional
        Per-spectrum CRLB (variance); the bands are ``+-sqrt(CRLB)`` and
        ``+-1.96 sqrt(CRLB)``.
    bins : int, default=20
        Bins of the true label over which the median CRLB is taken.
    ax : matplotlib Axes, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> y_true, y_pred = [1.0, 3.0, 5.0], [1.2, 2.9, 4.5]
    >>> ax = plot_residuals(y_true, y_pred, crlb=[0.1, 0.2, 0.3], bins=3)
    >>> ax.get_ylabel()
    'residual (dex)'
    """
    y, p, crlb = _labels_and_predictions(y_true, y_pred, crlb, bins)
    ax = _axes(ax)
    ax.scatter(y, p - y, s=4, alpha=0.4)
    ax.axhline(0.0, color="k", lw=1)
    if crlb is not None:
        c, s = _envelope(y, crlb, bins)
        ax.fill_between(
            c, -1.96 * s, 1.96 * s, color="C1", alpha=0.15, lw=0, label=r"$\pm1.96\sigma_{CRLB}$"
        )
        ax.fill_between(c, -s, s, color="C1", alpha=0.3, lw=0, label=r"$\pm\sigma_{CRLB}$")
        ax.legend(fontsize="small")
    ax.set_xlabel("true log g")
    ax.set_ylabel("residual (dex)")
    return ax


def plot_spectrum(wave, flux, *, error=None, model=None, ax=None, label: str | None = None):
    """One spectrum with its 1-sigma error band and, optionally, a model spectrum.

    Parameters
    ----------
    wave, flux : array-like of shape (n_pix,)
    error : array-like of shape (n_pix,), optional
    model : array-like of shape (n_pix,), optional
    ax : matplotlib Axes, optional
    label : str, optional

    Examples
    --------
    >>> import numpy as np
    >>> ax = plot_spectrum(np.arange(5.0), np.ones(5), error=np.full(5, 0.1))
    >>> ax.get_xlabel()
    'wavelength (Å)'
    """
    w, f = np.asarray(wave, float), np.asarray(flux, float)
    if w.ndim != 1 or f.shape != w.shape:
        raise ValueError(f"flux has shape {f.shape}; wave has {w.shape} (1-D, one length)")
    e = None if error is None else np.asarray(error, float)
    m = None if model is None else np.asarray(model, float)
    for name, values in (("error", e), ("model", m)):
        if values is not None and values.shape != w.shape:
            raise ValueError(f"{name} has shape {values.shape}; wave has {w.shape}")
    if e is not None and (e < 0).any():
        raise ValueError("error holds 1-sigma errors: every value must be >= 0")
    ax = _axes(ax)
    ax.plot(w, f, lw=0.6, label=label or "flux")
    if e is not None:
        ax.fill_between(w, f - e, f + e, color="C0", alpha=0.2, lw=0, label=r"$\pm1\sigma$")
    if m is not None:
        ax.plot(w, m, "k-", lw=0.8, label="model")
    ax.set_xlabel("wavelength (Å)")
    ax.set_ylabel("normalised flux")
    ax.legend(fontsize="small")
    return ax


_RELIABILITY_COLUMNS = ("snr_lo", "snr_hi", "level", "coverage", "n")


def plot_reliability(curve, ax=None, *, label: str | None = None, band: bool = True):
    """Reliability diagram: empirical against nominal coverage, one line per SNR bin.

    Parameters
    ----------
    curve : DataFrame
        :func:`specreg.metrics.reliability_curve` (columns ``snr_lo``,
        ``snr_hi``, ``level``, ``coverage``, ``n``). Bins without spectra are
        skipped.
    ax : matplotlib Axes, optional
    label : str, optional
        Prefix of the legend entries (e.g. the model's name); the entries are
        ``"<label>, SNR a-b"``, or ``"<label>"`` alone for a single bin
        without SNR edges (``"all spectra"`` without a label).
    band : bool, default=True
        Shade ``level +- 2`` binomial standard errors around the diagonal,
        ``sqrt(level * (1 - level) / n)`` with ``n`` of the smallest plotted
        bin (the widest band): a bin whose curve leaves it is miscalibrated
        beyond chance.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.metrics import reliability_curve
    >>> rng = np.random.default_rng(0)
    >>> snr = rng.uniform(3, 30, 2000)
    >>> y_true = rng.standard_normal(2000) / snr
    >>> curve = reliability_curve(y_true, np.zeros(2000), 1 / snr, snr, bins=2)
    >>> ax = plot_reliability(curve, label="model")
    >>> len(ax.get_lines()), ax.get_xlabel()
    (3, 'nominal coverage')
    """
    curve = pd.DataFrame(curve)
    missing = [c for c in _RELIABILITY_COLUMNS if c not in curve.columns]
    if missing:
        raise ValueError(
            f"curve lacks the columns {missing}; pass the table of "
            "specreg.metrics.reliability_curve"
        )
    ax = _axes(ax)
    drawn = curve[(curve["n"] > 0) & curve["coverage"].notna()]
    if band and not drawn.empty:
        n_min = float(drawn["n"].min())
        p = np.linspace(0.0, 1.0, 201)
        se = np.sqrt(p * (1 - p) / n_min)
        ax.fill_between(
            p,
            p - 2 * se,
            p + 2 * se,
            color="0.5",
            alpha=0.2,
            lw=0,
            label=rf"$\pm2$ SE (n={n_min:.0f})",
        )
    ax.plot([0.0, 1.0], [0.0, 1.0], "k--", lw=1, label="calibrated")
    groups = drawn.groupby(["snr_lo", "snr_hi"], dropna=False, sort=False)
    for (lo, hi), g in groups:
        g = g.sort_values("level")
        if np.isnan(lo) and np.isnan(hi):
            name = label or "all spectra"
        else:
            snr = f"SNR {lo:.3g}-{hi:.3g}"
            name = f"{label}, {snr}" if label else snr
        ax.plot(g["level"], g["coverage"], "o-", ms=3, label=name)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax
