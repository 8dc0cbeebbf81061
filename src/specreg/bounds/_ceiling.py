"""FisherCeiling: the Bayes-optimal ceiling next to the reference-style Fisher analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..datasets._grid_io import resolve_model
from ..metrics._snr import bayes_squared_errors
from ..spectra._validation import (
    as_generator,
    check_int,
    check_target_y,
    renamed,
    resolve_target,
)
from ._bayes import (
    QUANTILE_LEVELS,
    PosteriorSummary,
    _posterior,
    _Problem,
    _SamplerSettings,
    _warn_renamed_attribute,
    resolve_noise,
    resolve_prior,
    split_X,
)
from ._fisher import (
    aggregate_r2_max,
    condition_number,
    fisher_matrices,
    marginal_crlb,
    schur_decay,
    van_trees_bound,
)
from ._fisher import (
    fisher_matrix as fisher_matrices_from_jacobian,
)

__all__ = ["FisherCeiling", "summarise_ceiling", "AGGREGATIONS"]

#: Scorer aggregations and the column of :meth:`FisherCeiling.ceiling` each returns.
AGGREGATIONS = {
    "bayes": "r2_bayes",
    "bayes_expected": "r2_bayes_expected",
    "median": "r2_max_median",
    "mean": "r2_max_mean",
    "population": "r2_population",
    "van_trees": "r2_van_trees",
}


#: The per-spectrum columns `summarise_ceiling` reads.
_EVALUATION_COLUMNS = (
    "y posterior_mean posterior_mean_se posterior_var posterior_var_se theta_ml crlb schur "
    "cond snr ess"
).split()


def summarise_ceiling(frame: pd.DataFrame, *, prior=None, fisher=None, index: int = 1) -> dict:
    """Aggregate a per-spectrum evaluation (:meth:`FisherCeiling.evaluate`) into one row.

    Parameters
    ----------
    frame : DataFrame
        Columns ``y``, ``posterior_mean``, ``posterior_mean_se``,
        ``posterior_var``, ``posterior_var_se``, ``theta_ml``, ``crlb``,
        ``schur``, ``cond``, ``snr``, ``ess``.
    prior : LabelPrior, optional
        With ``taper > 0`` (and ``fisher`` at labels drawn from it) the van
        Trees bound is added.
    fisher : ndarray of shape (n, d, d), optional
        Fisher matrices in the prior's label order, for the van Trees bound.
    index : int, default=1
        Position of the target in the prior's label order.

    Returns
    -------
    dict
        ``n``, ``snr`` (median), ``var_y``; ``r2_bayes`` (R2 of the posterior
        mean on these spectra, corrected for Monte-Carlo noise) with
        ``r2_bayes_mc_err``; ``r2_bayes_expected`` = 1 - mean posterior
        variance / Var(y) with its Monte-Carlo error; ``r2_ml`` (the
        maximum-likelihood fit); the Fisher aggregations ``r2_max_median``,
        ``r2_max_p10``, ``r2_max_p90``, ``r2_max_mean``, ``r2_population``,
        ``sigma_min``, ``schur``, ``cond_median``, ``crlb_dynamic_range``;
        ``r2_van_trees`` (NaN unless available); ``ess_min``, ``ess_median``.

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({
    ...     "y": [1.0, 3.0], "posterior_mean": [1.5, 2.5],
    ...     "posterior_mean_se": [0.0, 0.0], "posterior_var": [0.25, 0.25],
    ...     "posterior_var_se": [0.0, 0.0], "theta_ml": [1.0, 3.0],
    ...     "crlb": [0.1, 0.1], "schur": [0.7, 0.7], "cond": [10.0, 10.0],
    ...     "snr": [5.0, 5.0], "ess": [100.0, 100.0]})
    >>> row = summarise_ceiling(f)
    >>> round(row["r2_bayes"], 3), round(row["r2_max_median"], 3)
    (0.75, 0.9)
    """
    missing = [c for c in _EVALUATION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"frame lacks the column(s) {missing} of FisherCeiling.evaluate's per-spectrum table"
        )
    y = frame["y"].to_numpy(float)
    n = y.size
    var_y = float(np.var(y)) if n > 1 else float("nan")
    row = {"n": n, "snr": float(np.median(frame["snr"])), "var_y": var_y}
    nan_keys = (
        "r2_bayes r2_bayes_mc_err r2_bayes_expected r2_bayes_expected_mc_err r2_ml "
        "r2_max_median r2_max_p10 r2_max_p90 r2_max_mean r2_population sigma_min "
        "crlb_dynamic_range r2_van_trees"
    ).split()
    row.update(dict.fromkeys(nan_keys, float("nan")))
    row.update(
        schur=float(np.median(frame["schur"])),
        cond_median=float(np.median(frame["cond"])),
        ess_min=float(frame["ess"].min()),
        ess_median=float(frame["ess"].median()),
    )
    if not (n > 1 and var_y > 0):
        return row
    pm, se = frame["posterior_mean"].to_numpy(float), frame["posterior_mean_se"].to_numpy(float)
    sq_err, mc_err = bayes_squared_errors(pm - y, se)
    row["r2_bayes"] = float(1.0 - sq_err.mean() / var_y)
    row["r2_bayes_mc_err"] = float(mc_err / var_y)
    pv, pvse = frame["posterior_var"].to_numpy(float), frame["posterior_var_se"].to_numpy(float)
    row["r2_bayes_expected"] = float(1.0 - pv.mean() / var_y)
    row["r2_bayes_expected_mc_err"] = float(np.sqrt(np.sum(pvse**2)) / n / var_y)
    row["r2_ml"] = float(1.0 - np.mean((frame["theta_ml"].to_numpy(float) - y) ** 2) / var_y)
    agg = aggregate_r2_max(frame["crlb"].to_numpy(float), var_y)
    row.update(
        r2_max_median=agg["median"],
        r2_max_p10=agg["p10"],
        r2_max_p90=agg["p90"],
        r2_max_mean=agg["mean"],
        r2_population=agg["population"],
        sigma_min=agg["sigma_min"],
        crlb_dynamic_range=agg["dynamic_range"],
    )
    if prior is not None and fisher is not None and getattr(prior, "taper", 0) > 0:
        row["r2_van_trees"] = float(1.0 - van_trees_bound(fisher, prior, index) / var_y)
    return row


def _refuse_snapped(model, labels: np.ndarray, prior=None) -> None:
    """Refuse labels drawn with ``snap=True`` when the ceiling's prior is continuous.

    Under a continuous prior no label lands exactly on a grid node; with the
    reference's snapped sampling all but one label of every spectrum do. The
    posterior mean under the wrong prior is not the Bayes-optimal estimator; under
    the snapped prior itself (``prior`` with ``snap_to``) it is, and nothing is
    refused.
    """
    axes = getattr(model, "axes", None)
    if getattr(prior, "snap_to", None) is not None:
        return
    if axes is None or labels.shape[0] < 10 or labels.shape[1] < 2:
        return
    on_node = np.zeros(labels.shape, dtype=bool)
    for k, nodes in enumerate(axes.values()):
        nodes = np.asarray(nodes, dtype=float)
        on_node[:, k] = np.isclose(labels[:, k, None], nodes[None, :], rtol=0, atol=1e-9).any(1)
    snapped = on_node.sum(axis=1) >= labels.shape[1] - 1
    if snapped.mean() > 0.5:
        raise ValueError(
            f"{int(snapped.sum())} of {labels.shape[0]} spectra have all but one label on "
            "grid nodes: they were drawn with make_spectra(snap=True), but the ceiling's "
            "prior is continuous. Pass the prior they were drawn from, "
            "prior=LabelPrior.from_grid(model, snap=True) (with the same box), or simulate "
            "the test set with snap=False"
        )


class FisherCeiling:
    """Noise-limited ceilings on the R2 of a label, for given spectra or magnitudes.

    Two kinds of ceiling, on the same spectra and the same per-spectrum SNR axis
    as the models:

    * **Bayes-optimal** (the headline): the R2 of the posterior mean
      ``E[label | spectrum]`` under (spectral model, per-pixel errors, label
      prior). No estimator beats it in expectation when the spectra come from
      that model, noise and prior. Computed by importance sampling
      (:func:`~specreg.bounds.posterior_summary`), with Monte-Carlo errors.
    * **Fisher / Cramer-Rao** (the reference's analysis): pointwise
      ``R2_max = 1 - CRLB / Var(y)`` aggregated as the median with p10/p90 (the
      reference), the population ``1 - mean(CRLB) / Var(y)`` and, for a
      tapered prior, van Trees. The CRLB binds unbiased estimators only, so
      shrinking estimators can beat these at low SNR.

    Var(y) is always the variance of the labels of the evaluated spectra, the
    denominator of the models' R2. The error half of X is data, not the truth:
    by default it is read as the reference errors of the generator's noise
    model, whose physical noise (photon noise of the model flux at each label,
    sky and read noise) the posterior then uses, exactly as ``make_spectra``
    draws it. ``noise="given"`` treats the errors as the true Gaussian sigma
    instead (spectra from elsewhere).

    Used as a scorer, ``FisherCeiling()(estimator, X, y)`` ignores the estimator
    and returns the ceiling for exactly those spectra, so
    ``cross_validate(..., scoring={"r2": "r2", "r2_max": FisherCeiling()})``
    reports both per fold. Nuisance labels are unknown to a scorer: the Fisher
    matrices are then evaluated at the maximum-likelihood labels (template fit)
    and the Bayes ceiling marginalises them.

    Parameters
    ----------
    model : SpectralModel, optional
        Default: the embedded grid (:func:`~specreg.datasets.load_grid`).
    noise : PFSNoiseModel, "given" or None, default=None
        The noise process of the spectra. A noise model (None:
        ``PFSNoiseModel(model.wave)``, the default of ``make_spectra``): the
        error half of X must be its reference errors
        (``make_spectra(errors="reference")``) and the likelihood uses its
        physical noise; it also simulates the spectra of :meth:`table`.
        ``"given"``: the error half is the true per-pixel sigma.
    prior : LabelPrior, optional
        The prior the spectra were drawn from; default uniform on the model's
        box (the default of :func:`~specreg.datasets.make_spectra`). A snapped
        prior (``LabelPrior.from_grid(model, snap=True)``, the reference's
        sampling) is supported: its posterior is computed exactly, by
        enumeration of the node combinations and quadrature along the free
        label (see :func:`~specreg.bounds.posterior_summary`).
    target : str or tuple of str, default="log_g"
        The label whose ceiling is computed, or several labels (e.g.
        ``("T_eff", "log_g", "M_H")``): one posterior serves them all;
        :meth:`evaluate` then returns one block of rows per label (column
        ``label``), :meth:`ceiling` a dict per label, the tables a ``label``
        column, and the scorer the mean over the labels.
    aggregation : str, default="bayes"
        What the scorer returns: ``"bayes"``, ``"bayes_expected"``,
        ``"median"``, ``"mean"``, ``"population"`` or ``"van_trees"``.
    n_draws : int, default=256
        Importance draws per spectrum.
    lattice : int or sequence of int, optional
        Cells per label of the coarse likelihood lattice.
    random_state : int or None
        Seed of the one generator of this instance: successive calls draw
        fresh samples.
    progress : bool, default=False
    chunk_size : int, default=64
    n_samples : int, optional
        Deprecated alias of ``n_draws``.

    Attributes
    ----------
    last_evaluation_ : DataFrame
        Per-spectrum results of the latest :meth:`evaluate` (also set by the scorer).

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
    >>> from specreg.datasets import make_spectra
    >>> wave = pfs_mr_wave(64)
    >>> lines = np.exp(-0.5 * ((wave - 8000) / 200) ** 2)
    >>> flux = 0.5 - 0.05 * np.array([1.0, 2.0, 3.0])[:, None] * lines
    >>> grid = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, wave)
    >>> spectra = make_spectra(40, model=grid, mag=20.0, noisy=True,
    ...                        random_state=0)
    >>> ceiling = FisherCeiling(grid, n_draws=64, random_state=0)
    >>> row = ceiling.ceiling(spectra.X, spectra.y)
    >>> 0 < row["r2_bayes"] <= 1
    True
    """

    def __init__(
        self,
        model=None,
        noise=None,
        *,
        prior=None,
        target: str = "log_g",
        aggregation: str = "bayes",
        n_draws: int = 256,
        lattice=None,
        random_state=None,
        progress: bool = False,
        chunk_size: int = 64,
        n_samples: int | None = None,
    ) -> None:
        self.model = model
        self.noise = noise
        self.prior = prior
        self.target = target
        self.aggregation = aggregation
        self.n_draws = renamed(n_draws, n_samples, old="n_samples", new="n_draws", default=256)
        self.lattice = lattice
        self.random_state = random_state
        self.progress = progress
        self.chunk_size = chunk_size

    @property
    def n_samples(self) -> int:
        """Deprecated alias of ``n_draws``."""
        _warn_renamed_attribute("n_samples", "n_draws")
        return self.n_draws

    def __repr__(self) -> str:
        return (
            f"FisherCeiling(target={self.target!r}, aggregation={self.aggregation!r}, "
            f"n_draws={self.n_draws})"
        )

    # ------------------------------------------------------------ resolution
    def _noise_model(self):
        """The noise model of the posterior and the Fisher matrices (None: errors given)."""
        return resolve_noise(self.noise, self._model())

    def _simulation_noise(self):
        noise = self._noise_model()
        if noise is None:
            raise ValueError('simulating spectra needs a noise model; noise="given" has none')
        return noise

    def _sigma(self, labels, error) -> np.ndarray:
        """The true noise at ``labels`` for spectra with reported errors ``error``."""
        noise = self._noise_model()
        if noise is None:
            return error
        return noise.true_error(self._model().flux(labels, out_of_bounds="clip"), error)

    def _model(self):
        if self.model is not None:
            return resolve_model(self.model, jacobian=True)
        # the embedded grid takes a second to load: once per instance, not per call
        if getattr(self, "_default_model", None) is None:
            self._default_model = resolve_model(None)
        return self._default_model

    def _prior(self):
        return resolve_prior(self.prior, self._model())

    def _targets(self) -> tuple[str, ...]:
        """The target label(s), checked against the model's labels."""
        return resolve_target(self.target, tuple(self._model().param_names))

    def _index(self) -> int:
        """Model column of a single target (the CRLB methods are per label)."""
        targets = self._targets()
        if len(targets) > 1:
            raise ValueError(
                f"this method is per label; target={targets} names {len(targets)} labels: "
                "use FisherCeiling(target=<one label>)"
            )
        return tuple(self._model().param_names).index(targets[0])

    def _rng(self):
        # one generator per instance, so successive calls draw fresh samples
        if getattr(self, "_generator", None) is None:
            self._generator = as_generator(self.random_state)
        return self._generator

    def _problem(self) -> _Problem:
        """The lattice problem, kept between calls (scorer folds, SNR bins, magnitudes)."""
        key = (id(self._model()), id(self.prior), str(self.lattice))
        cache = getattr(self, "_problem_cache", None)
        if cache is None or cache[0] != key:
            cache = (key, _Problem(self._model(), self.prior, self.lattice))
            self._problem_cache = cache
        return cache[1]

    # ------------------------------------------------------------------ math
    def fisher(self, theta, error) -> np.ndarray:
        """Fisher matrices at labels ``theta`` for errors ``error``, shape (n, d, d).

        Examples
        --------
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"a": [0.0, 1.0, 2.0]}, [[1.0], [3.0], [5.0]], [7000.0])
        >>> FisherCeiling(g).fisher([[1.0]], [[0.5]]).tolist()
        [[[16.0]]]
        """
        return fisher_matrices(self._model(), theta, error)

    def crlb(self, theta, error, *, method: str = "schur") -> np.ndarray:
        """Marginal CRLB of the target at labels ``theta``, shape (n,).

        Examples
        --------
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[1.0], [2.0], [3.0]]
        >>> g = SpectralGrid({"log_g": [1.0, 2.0, 3.0]}, flux, [7000.0])
        >>> FisherCeiling(g).crlb([[2.0]], [[0.5]]).tolist()
        [0.25]
        """
        return marginal_crlb(self.fisher(theta, error), self._index(), method=method)

    def posterior(self, flux, error, *, truth=None, quantiles=None) -> PosteriorSummary:
        """Posterior summaries of all labels (see :func:`~specreg.bounds.posterior_summary`).

        ``truth`` (true labels, (n, d) in the model's order) adds the posterior
        CDF there (``pit``); ``quantiles`` overrides the quantile levels kept.

        Examples
        --------
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, [[1.0] * 8, [3.0] * 8], range(8))
        >>> ceiling = FisherCeiling(g, "given", n_draws=32, random_state=0)
        >>> post = ceiling.posterior([[2.0] * 8], [[0.1] * 8])
        >>> bool(abs(post.mean[0, 0] - 3.0) < 0.1)
        True
        """
        settings = _SamplerSettings(
            n_draws=self.n_draws,
            chunk_size=self.chunk_size,
            quantiles=QUANTILE_LEVELS if quantiles is None else quantiles,
        )
        return _posterior(
            self._problem(),
            flux,
            error,
            settings,
            noise_model=self._noise_model(),
            truth=truth,
            random_state=self._rng(),
            progress=self.progress,
        )

    def evaluate(self, X, y, *, theta=None, snr=None) -> pd.DataFrame:
        """Per-spectrum posterior mean, CRLB and diagnostics for spectra ``X``.

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)
            ``[flux | error]`` with the observed (noisy) flux.
        y : array-like of shape (n,) or (n, k), or DataFrame
            True target labels (a DataFrame's columns must be the target
            labels).
        theta : array-like of shape (n, d) or DataFrame, optional
            True labels of all parameters. When given, the Fisher matrices are
            evaluated there (the reference's setting); otherwise at the
            maximum-likelihood labels.
        snr : array-like of shape (n,), optional
            Per-spectrum SNR (median of noiseless flux / error). Default: that
            of the model spectrum at ``theta`` (or at the ML labels).

        Returns
        -------
        DataFrame
            One row per spectrum and target label (``label``; for a tuple
            target the labels' blocks follow each other): ``y``, ``snr``,
            ``posterior_mean`` / ``_se``, ``posterior_var`` / ``_se``, the
            posterior quantiles ``posterior_q16``, ``posterior_q84`` (68 %
            credible interval), ``posterior_q025``, ``posterior_q975`` (95 %),
            ``pit`` (posterior CDF at ``y``), ``theta_ml``, ``ess``, ``crlb``,
            ``crlb_inverse``, ``schur`` and ``cond``.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = np.repeat([[1.0], [2.0], [3.0]], 8, axis=1)
        >>> g = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, np.arange(8.0))
        >>> X = np.hstack([g.flux([[3.0]]), np.full((1, 8), 0.1)])
        >>> frame = FisherCeiling(g, "given", n_draws=32).evaluate(X, [3.0])
        >>> frame[["y", "theta_ml", "crlb"]].round(4).values.tolist()
        [[3.0, 3.0, 0.005]]
        """
        return self._evaluate(X, y, theta=theta, snr=snr)[0]

    def _evaluate(self, X, y, *, theta=None, snr=None) -> tuple[pd.DataFrame, np.ndarray | None]:
        """:meth:`evaluate`, and the Fisher matrices at the true labels (None without them).

        The van Trees bound needs Fisher matrices at labels drawn from the prior,
        so only those at ``theta`` are handed on to the summaries.
        """
        model = self._model()
        names = tuple(model.param_names)
        targets = self._targets()
        flux, error = split_X(X, getattr(model, "n_pix", None))
        y = check_target_y(y, targets, flux.shape[0], names).reshape(flux.shape[0], -1)
        n = y.shape[0]
        if theta is not None:  # checked before the (costly) posterior
            from ..spectra._validation import as_label_array

            labels = as_label_array(theta, names)
            if labels.shape[0] != n:
                raise ValueError(f"theta has {labels.shape[0]} rows for {n} spectra")
            _refuse_snapped(model, labels, self._prior())
        truth = np.full((n, len(names)), np.inf)  # PIT 1 for labels without a truth
        for j, t in enumerate(targets):
            truth[:, names.index(t)] = y[:, j]
        post = self.posterior(flux, error, truth=truth)
        if theta is None:
            labels, source = post.theta_ml, "ml"
        else:
            source = "true"
        sigma = self._sigma(labels, error)
        F = post.fisher_ml if sigma is error and source == "ml" else self.fisher(labels, sigma)
        if snr is None:
            clean = model.flux(labels, out_of_bounds="clip")
            snr = np.median(clean / sigma, axis=1)
        snr = np.asarray(snr, dtype=float).reshape(-1)
        if snr.size != n:
            raise ValueError(f"snr has {snr.size} values for {n} spectra")
        if not np.all(np.isfinite(snr) & (snr > 0)):
            raise ValueError("snr must be finite and > 0 for every spectrum")
        lo68, hi68 = post.interval(0.68)
        lo95, hi95 = post.interval(0.95)
        cond = condition_number(F)
        frames = []
        for j, t in enumerate(targets):
            k = names.index(t)
            frames.append(
                pd.DataFrame(
                    {
                        "label": t,
                        "y": y[:, j],
                        "snr": snr,
                        "posterior_mean": post.mean[:, k],
                        "posterior_mean_se": post.mean_se[:, k],
                        "posterior_var": post.var[:, k],
                        "posterior_var_se": post.var_se[:, k],
                        "posterior_q16": lo68[:, k],
                        "posterior_q84": hi68[:, k],
                        "posterior_q025": lo95[:, k],
                        "posterior_q975": hi95[:, k],
                        "pit": post.pit[:, k],
                        "theta_ml": post.theta_ml[:, k],
                        "ess": post.ess,
                        "crlb": marginal_crlb(F, k),
                        "crlb_inverse": marginal_crlb(F, k, method="inverse"),
                        "schur": schur_decay(F, k),
                        "cond": cond,
                    }
                )
            )
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        frame.attrs["fisher_labels"] = source
        self.last_evaluation_ = frame
        return frame, (F if source == "true" else None)

    def _label_frames(self, frame: pd.DataFrame):
        """``(label, rows of that label)`` for each target; rows align with the spectra."""
        if isinstance(self.target, str) or "label" not in frame:
            return [(self._targets()[0], frame)]
        out = []
        for t in self._targets():
            sub = frame[frame["label"] == t].reset_index(drop=True)
            sub.attrs = frame.attrs
            out.append((t, sub))
        return out

    def _summarise_label(self, frame: pd.DataFrame, label: str, fisher=None) -> dict:
        prior = self._prior()
        names = tuple(self._model().param_names)
        F = None
        if fisher is not None:
            perm = [names.index(p) for p in prior.param_names]
            F = fisher[:, perm][:, :, perm]
        row = summarise_ceiling(
            frame, prior=prior, fisher=F, index=list(prior.param_names).index(label)
        )
        row["fisher_labels"] = frame.attrs.get("fisher_labels", "ml")
        return row

    def _summarise(self, frame: pd.DataFrame, fisher=None) -> dict:
        """One summary row: a dict, or ``{label: dict}`` for a tuple target."""
        rows = {t: self._summarise_label(sub, t, fisher) for t, sub in self._label_frames(frame)}
        return rows[self.target] if isinstance(self.target, str) else rows

    # -------------------------------------------------------------- reports
    def ceiling(self, X, y, *, theta=None, snr=None) -> dict:
        """All ceilings for the spectra ``X`` as one dict (see :func:`summarise_ceiling`).

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[1.0] * 8, [3.0] * 8]
        >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, flux, np.arange(8.0))
        >>> X = np.hstack([g.flux([[2.0], [4.0]]), np.full((2, 8), 0.1)])
        >>> ceiling = FisherCeiling(g, "given", n_draws=32, random_state=0)
        >>> ceiling.ceiling(X, [2.0, 4.0])["r2_bayes"] > 0.9
        True
        """
        return self._summarise(*self._evaluate(X, y, theta=theta, snr=snr))

    def __call__(self, estimator, X, y, theta=None) -> float:
        """Scorer interface: the ceiling (``aggregation``) for the spectra ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = np.outer([1.0, 2.0, 3.0], np.ones(6))
        >>> g = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, np.arange(6.0))
        >>> X = np.hstack([g.flux([[2.0], [4.0]]), np.full((2, 6), 0.1)])
        >>> scorer = FisherCeiling(g, "given", n_draws=32, random_state=0)
        >>> scorer(None, X, [2.0, 4.0]) > 0.9
        True
        """
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {sorted(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        row = self.ceiling(X, y, theta=theta)
        key = AGGREGATIONS[self.aggregation]
        if isinstance(self.target, str):
            return float(row[key])
        # several labels: their mean, as r2_score's multioutput="uniform_average"
        return float(np.mean([r[key] for r in row.values()]))

    def get_metadata_routing(self):
        """Request the true labels ``theta`` as scorer metadata (sklearn metadata routing).

        With ``sklearn.set_config(enable_metadata_routing=True)``,
        ``cross_validate(..., scoring={"c": FisherCeiling()}, params={"theta": labels})``
        passes each fold's true labels (all parameters) to the scorer, which
        then evaluates the Fisher matrices there instead of at the fitted labels.

        Examples
        --------
        >>> FisherCeiling().get_metadata_routing().score.requests
        {'theta': True}
        """
        from sklearn.utils.metadata_routing import MetadataRequest

        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="theta", alias=True)
        return request

    def table_by_snr(
        self, X, y, *, snr=None, bins=8, strategy="quantile", theta=None, n_bootstrap: int = 200
    ) -> pd.DataFrame:
        """Ceilings per SNR bin for a test set (the models' axis and bins).

        Parameters
        ----------
        X, y, theta, snr
            As in :meth:`evaluate`.
        bins : int or array-like, default=8
            Number of bins or explicit edges (see :func:`specreg.metrics.snr_bin_edges`).
        strategy : {"quantile", "uniform", "log"}, default="quantile"
        n_bootstrap : int, default=200
            Resamples for the q10-q90 band of the Bayes R2 (``r2_bayes_lo``,
            ``r2_bayes_hi``: sampling uncertainty of the bin, next to the
            Monte-Carlo error ``r2_bayes_mc_err``); 0 disables it.

        Returns
        -------
        DataFrame, one row per bin (``snr_lo``, ``snr_hi`` and the columns of
        :func:`summarise_ceiling`).

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> y = [2.0, 4.0, 3.0, 1.5]
        >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, [[1.0] * 8, [3.0] * 8], range(8))
        >>> X = np.hstack([g.flux(np.c_[y]), np.full((4, 8), 0.1)])
        >>> ceiling = FisherCeiling(g, "given", n_draws=32)
        >>> ceiling.table_by_snr(X, y, bins=2).shape[0]
        2
        """
        from ..metrics import assign_snr_bins, scores_by_snr, snr_bin_edges

        frame, F = self._evaluate(X, y, theta=theta, snr=snr)
        edges = snr_bin_edges(frame["snr"].to_numpy(), bins, strategy=strategy)
        rows = []
        for label, sub_frame in self._label_frames(frame):
            idx = assign_snr_bins(sub_frame["snr"].to_numpy(), edges)
            # sampling uncertainty of the Bayes R2: bootstrap over the bin's spectra
            boot = scores_by_snr(
                sub_frame["y"],
                sub_frame["posterior_mean"],
                sub_frame["snr"],
                bins=edges,
                n_bootstrap=n_bootstrap,
                random_state=self.random_state,
            )
            for b in range(len(edges) - 1):
                sel = idx == b
                if not sel.any():
                    continue
                sub = sub_frame.loc[sel].copy()
                sub.attrs = frame.attrs
                row = {"snr_lo": edges[b], "snr_hi": edges[b + 1]}
                if not isinstance(self.target, str):
                    row["label"] = label
                row.update(self._summarise_label(sub, label, None if F is None else F[sel]))
                if "r2_lo" in boot:
                    row["r2_bayes_lo"], row["r2_bayes_hi"] = boot["r2_lo"][b], boot["r2_hi"][b]
                rows.append(row)
        return pd.DataFrame(rows)

    def reference_table(self, mags) -> pd.DataFrame:
        """The reference study's Fisher procedure, reproduced as it was done.

        At every valid grid node: central differences along the axes
        (``SpectralGrid.node_jacobian``), errors from ``noise`` at each
        magnitude, the Schur-complement CRLB, ``R2_max = clip(1 - CRLB / Var)``
        with Var the variance of the **nodes'** labels, aggregated by the
        median (p10/p90), and plotted against the **grid SNR** (median of
        flux/error over all pixels of all node spectra). Use it to reproduce the
        reference's numbers; compare models with :meth:`table_by_snr`.

        Parameters
        ----------
        mags : sequence of float

        Returns
        -------
        DataFrame with ``mag``, ``snr_grid``, ``var_nodes``, ``r2_max_median``,
        ``r2_max_p10``, ``r2_max_p90``, ``r2_max_mean``, ``schur``,
        ``sigma_min``, ``cond_median`` (raw units, as reported there),
        ``crlb_dynamic_range``, ``n_nodes``.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
        >>> wave = pfs_mr_wave(64)
        >>> dip = np.exp(-0.5 * ((wave - 8000) / 200) ** 2)
        >>> flux = 0.5 - np.outer([0.05, 0.1, 0.15], dip)
        >>> grid = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, wave)
        >>> t = FisherCeiling(grid).reference_table([20.0])
        >>> round(float(t["var_nodes"].iloc[0]), 4)
        2.6667
        """
        model = self._model()
        if not hasattr(model, "node_jacobian"):
            raise ValueError("the reference procedure needs a grid (node_jacobian)")
        noise = self._simulation_noise()
        names = tuple(model.param_names)
        valid = model.valid.reshape(-1)
        J = model.node_jacobian().reshape(-1, model.n_pix, model.n_params)
        ok = valid & np.all(np.isfinite(J), axis=(1, 2))
        J, flux, nodes = J[ok], model.node_flux[ok], model.nodes[ok]
        rows = []
        for mag in mags:
            error = noise.error(flux, float(mag))
            F = fisher_matrices_from_jacobian(J, error)
            cond = float(np.median(condition_number(F, scaled=False)))
            for t in self._targets():
                k = names.index(t)
                var_nodes = float(np.var(nodes[:, k]))
                agg = aggregate_r2_max(marginal_crlb(F, k), var_nodes)
                row = {} if isinstance(self.target, str) else {"label": t}
                row.update(
                    {
                        "mag": float(mag),
                        "snr_grid": float(np.median(flux / error)),
                        "var_nodes": var_nodes,
                        "r2_max_median": agg["median"],
                        "r2_max_p10": agg["p10"],
                        "r2_max_p90": agg["p90"],
                        "r2_max_mean": agg["mean"],
                        "schur": float(np.median(schur_decay(F, k))),
                        "sigma_min": agg["sigma_min"],
                        "cond_median": cond,
                        "crlb_dynamic_range": agg["dynamic_range"],
                        "n_nodes": int(ok.sum()),
                    }
                )
                rows.append(row)
        return pd.DataFrame(rows)

    def table(self, mags, n: int = 2000, *, random_state=None) -> pd.DataFrame:
        """Ceiling table per magnitude on spectra simulated from the model.

        For each magnitude, ``n`` labels are drawn from the prior, the spectra
        get errors from ``noise`` and one noise draw; the Fisher matrices are
        evaluated at the true labels (as the reference did) and the posterior
        means on the noisy spectra.

        Parameters
        ----------
        mags : sequence of float
        n : int, default=2000
        random_state : int or None
            Seed of the simulated spectra (default: derived from ``random_state``).
            The same labels and unit noise draws are used at every magnitude.

        Returns
        -------
        DataFrame with one row per magnitude: ``mag``, ``snr`` (median
        per-spectrum SNR), ``r2_bayes`` (+ MC error), ``r2_max_median``,
        ``r2_max_p10``, ``r2_max_p90``, ``r2_population``, ``schur``,
        ``sigma_min`` and the other columns of :func:`summarise_ceiling`.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
        >>> wave = pfs_mr_wave(64)
        >>> line = np.exp(-0.5 * ((wave - 8000) / 200) ** 2)
        >>> depth = np.array([[0.05], [0.1], [0.15]])
        >>> grid = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, 0.5 - depth * line, wave)
        >>> ceiling = FisherCeiling(grid, n_draws=32, random_state=0)
        >>> t = ceiling.table([20.0, 23.0], n=30)
        >>> bool(t["r2_bayes"].iloc[0] > t["r2_bayes"].iloc[1])
        True
        """
        from ..datasets import make_spectra

        n = check_int(n, "n (spectra per magnitude)", low=2)  # an R2 needs a label variance
        model = self._model()
        noise = self._simulation_noise()
        seed = random_state if random_state is not None else int(self._rng().integers(2**32))
        rows = []
        for mag in mags:
            # one seed for all rows: the same labels and unit noise draws at every
            # magnitude, so rows differ by the noise level only (common random numbers)
            spectra = make_spectra(
                n,
                model=model,
                prior=self._prior(),
                mag=float(mag),
                noisy=True,
                noise_model=noise,
                random_state=seed,
            )
            theta = spectra.params.loc[:, list(model.param_names)]
            targets = self._targets()
            y = spectra.params[self.target if isinstance(self.target, str) else list(targets)]
            frame, F = self._evaluate(spectra.X, y, theta=theta, snr=spectra.params["snr"])
            # the reference's "grid SNR": median over all pixels of all spectra
            sigma = noise.true_error(spectra.flux, spectra.error)
            snr_grid = float(np.median(spectra.flux / sigma))
            for t, sub in self._label_frames(frame):
                row = {"mag": float(mag), "snr_grid": snr_grid}
                if not isinstance(self.target, str):
                    row["label"] = t
                row.update(self._summarise_label(sub, t, F))
                rows.append(row)
        return pd.DataFrame(rows)
