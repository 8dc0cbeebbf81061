"""TemplateFitRegressor: maximum-likelihood chi-square fit of a spectral model to each spectrum.

A thin estimator around the functional core in :mod:`._chi2`: validation, grid
resolution, batching, threads and the progress bar live here; the mathematics there.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from .._checks import ODD_WIDTH_CHECKS, ODD_WIDTH_REASON
from .._numerics import levenberg_marquardt, profiled_information
from ..datasets._grid_io import resolve_model
from ..spectra import SpectralGrid, split_stacked
from ..spectra._interp import axis_weights, weight_matrix
from ..spectra._validation import (
    check_bool,
    check_int,
    check_noise_model,
    check_real,
    check_target_y,
    is_integer,
    renamed,
    resolve_target,
    target_shaped,
)
from ._chi2 import coarse_chi2, legendre_basis

__all__ = ["OUT_OF_MODEL_Z", "TemplateFitRegressor", "split_flux_error"]

# nodes per axis of the start lattice for spectral models that are not grids
_LATTICE_POINTS = 5
# further starts (n_starts > 1): a discrete local minimum of the coarse chi-square, or a
# node at least this fraction of an axis away from every start so far (along some
# axis: the other half of the grid, where the giant/dwarf-like valleys lie) ...
_FAR_FRACTION = 0.5
# ... whose coarse chi-square is at most this much above the best node's: the gate
# spares the LM for spectra with a single clear valley. (On the embedded grid, in
# 2000 spectra at mag 20.5-22.5, each of the 42 local minima of the single start had a
# better valley with a node at most 11 above the best node.)
_START_DCHI2 = 20.0

#: ``fit_z`` above which :meth:`TemplateFitRegressor.predict_params` flags a spectrum as
#: not described by the spectral model. ``fit_z = (chi2 - dof) / sqrt(2 dof)`` is about
#: N(0, 1) for a spectrum the model describes, so 5 flags about one in 3 million of
#: them by chance.
OUT_OF_MODEL_Z = 5.0


# scikit-learn common checks failed by design (TemplateFitRegressor._expected_failed_checks)
_MODEL_WIDTH = (
    "the check's X has 2 or 4 columns (1 or 2 pixels), but the spectral model has "
    "another number of pixels; X must be [flux | error] on the model's pixels, so it "
    "is refused by design"
)
_MODEL_WIDTH_CHECKS = (
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_regressors_no_decision_function",
    "check_non_transformer_estimators_n_iter",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_requires_y_none",
)
_ERROR_WEIGHTS = (
    "the check's X has values <= 0 in the error half; the template fit uses 1/error**2 "
    "as chi-square weights and refuses errors <= 0 by design (no silent infinite weight)"
)
_ERROR_WEIGHT_CHECKS = (
    "check_positive_only_tag_during_fit",
    "check_regressors_train",
    "check_regressor_data_not_an_array",
    "check_regressors_int",
)


def split_flux_error(X: np.ndarray, n_pix: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Views of the flux and error halves of a stacked ``X = [flux | error]``, checked.

    Parameters
    ----------
    X : ndarray of shape (n_samples, 2 * n_pix)
        Finite values (validated by the caller).
    n_pix : int, optional
        Expected number of pixels (e.g. the spectral model's).

    Returns
    -------
    flux, error : ndarray of shape (n_samples, n_pix)
        Views into ``X`` (never written to).

    Raises
    ------
    ValueError
        Odd width, a pixel count that differs from ``n_pix``, or errors <= 0 (which
        would be infinite chi-square weights).

    Examples
    --------
    >>> f, e = split_flux_error(np.array([[1.0, 2.0, 0.1, 0.2]]))
    >>> f.tolist(), e.tolist()
    ([[1.0, 2.0]], [[0.1, 0.2]])
    """
    # one validation of the stacked input for every consumer; the template fit divides
    # by the errors (chi-square weights), so they must be > 0
    return split_stacked(X, n_pix=n_pix, error_rule="positive")


def _resolve_model(model):
    # the embedded grid for None (a clear FileNotFoundError when it is absent)
    return resolve_model(model, jacobian=True)


class TemplateFitRegressor(RegressorMixin, BaseEstimator):
    """Maximum-likelihood template fit of a spectral model to each spectrum.

    Every spectrum (the flux half of ``X``) is fitted by ``A(lambda) * T(theta)``,
    where ``T`` is the spectral model (by default the embedded grid), ``theta`` the
    labels and ``A`` a multiplicative Legendre polynomial of degree ``poly_degree``
    (0: a single amplitude), minimising ``chi2 = sum ((f - A T) / sigma)**2`` with
    ``sigma`` the error half of ``X``. ``A`` is solved analytically for every
    ``theta`` (profiled out). The chi-square against every grid node, computed for
    all spectra at once by matrix products, gives up to ``n_starts`` starting labels
    per spectrum: the best node and the best nodes of other chi-square valleys. From
    each, a vectorised Levenberg-Marquardt iteration that uses the model Jacobian and
    stays inside the grid box refines the labels; the lowest final chi-square wins.

    The fit learns nothing from the training data: ``fit`` only validates the data
    and resolves the spectral model, so the estimator can sit in pipelines and
    ``cross_validate`` next to trained regressors.

    Parameters
    ----------
    model : SpectralModel or None, default=None
        The forward model (a :class:`~specreg.spectra.SpectralGrid` or any object
        with ``param_names``, ``wave``, ``bounds``, ``flux`` and ``jacobian``).
        ``None`` uses the embedded grid (:func:`specreg.datasets.load_grid`), which
        raises ``FileNotFoundError`` when it is not installed.
    params : tuple of str or None, default=None
        Labels fitted; must be the model's labels (in any order). They are
        reported in this order by :meth:`predict_params`. ``None`` fits all of
        the model's labels in its own order (three for the 3-D grid, five for
        ``load_grid("5d")``).
    target : str or tuple of str, default="log_g"
        The label(s) :meth:`predict` returns: one label (shape (n,)) or several
        (e.g. ``("T_eff", "log_g", "M_H")``, shape (n, k) in this order); all
        come from the same joint fit.
    noise_model : PFSNoiseModel or None, default=None
        The noise process of the spectra, for the uncertainties and the
        goodness of fit: the error half of ``X`` then holds this model's
        reported (reference) errors, and the chi-square of the fitted spectrum
        is evaluated with the physical noise at the fitted flux. None: the
        errors are the true per-pixel sigma. The fit itself always weights by
        the error half.
    poly_degree : int, default=0
        Degree of the multiplicative polynomial; 0 fits a single amplitude.
    max_iter : int, default=30
        Maximum Levenberg-Marquardt iterations per spectrum.
    tol : float, default=1e-3
        Convergence when the Gauss-Newton decrement (the chi-square an undamped
        step would still gain) falls below ``tol``: the fit then lies within about
        ``sqrt(tol)`` formal standard deviations of the minimum, at any SNR.
    xtol : float, default=1e-4
        Also converged when a step moves every label by less than ``xtol`` times the
        node spacing of its axis (label scaling: K and dex alike).
    n_starts : int, default=3
        Maximum number of starting points per spectrum; the fit from each is refined
        and the one with the lowest final chi-square is returned, so a spectrum
        whose chi-square has several valleys (typical at low SNR: a giant-like and
        a dwarf-like solution) is not left in a local minimum. The first start is
        the best grid node (``n_starts=1`` is a single-start fit); each further one
        is the lowest-chi-square node that is a discrete local minimum of the node
        chi-square or lies at least half an axis away from every earlier start,
        and whose chi-square is within 20 of the best node's. Spectra with a single
        clear valley therefore get fewer starts (the mean over a PFS-like
        mag 20.5-22.5 set is about 1.7 for the default), which bounds the cost.
        Ignored with ``init``.
    batch_size : int, default=256
        Spectra fitted together (bounds memory: about ``batch_size * n_pix * 100``
        bytes per start, i.e. up to ``n_starts`` times that).
    n_jobs : int or None, default=None
        Batches fitted in parallel threads (numpy's heavy kernels release the GIL).
        ``None`` runs batches one after the other and lets BLAS use its own
        threads; with ``n_jobs`` set, BLAS is limited to one thread per worker so
        the two kinds of parallelism do not oversubscribe the cores.
    progress_bar : bool, default=False
        Show a tqdm progress bar over spectra.
    grid : SpectralModel, optional
        Deprecated alias of ``model``.

    Attributes
    ----------
    model_ : SpectralModel
        The resolved spectral model.
    param_names_ : tuple of str
        The fitted labels, in output order.
    n_pix_ : int
    n_features_in_ : int
        ``2 * n_pix_``.

    See Also
    --------
    HeteroscedasticNoise : adds noise to training flux; ``keep_error=True`` chains
        into this estimator.

    Notes
    -----
    Results per spectrum (all labels, formal 1-sigma errors from the inverse of the
    profiled normal matrix, the chi-square, the amplitude, iterations and a
    convergence flag) come from :meth:`predict_params`; :meth:`predict` returns the
    ``log_g`` column of the same fit. The formal errors are the Cramer-Rao bound
    evaluated at the fitted labels (amplitude marginalised), not scaled by the
    reduced chi-square.

    Labels whose interpolation stencil would touch a missing grid node are not
    reached: such trial steps are rejected.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> wave = np.linspace(7100.0, 8850.0, 200)
    >>> g = np.linspace(1.0, 5.0, 5)
    >>> t = np.linspace(4000.0, 6000.0, 5)
    >>> def line(tt, gg):
    ...     centre = 8000 + 0.1 * (tt - 5000)
    ...     return 1 - (0.3 + 0.05 * gg) * np.exp(-(((wave - centre) / 3) ** 2))
    >>> flux = np.array([[line(a, b) for b in g] for a in t])
    >>> grid = SpectralGrid({"T_eff": t, "log_g": g}, flux, wave)
    >>> truth = np.array([[4700.0, 2.3]])
    >>> X = np.hstack([grid.flux(truth), np.full((1, 200), 0.01)])
    >>> reg = TemplateFitRegressor(grid, params=("T_eff", "log_g")).fit(X, [2.3])
    >>> reg.predict(X).round(3).tolist()
    [2.3]
    >>> reg.predict_params(X)[["T_eff", "log_g"]].round(1).values.tolist()
    [[4700.0, 2.3]]
    """

    def __init__(
        self,
        model=None,
        params: tuple[str, ...] | None = None,
        target: str | tuple[str, ...] = "log_g",
        noise_model=None,
        poly_degree: int = 0,
        max_iter: int = 30,
        tol: float = 1e-3,
        xtol: float = 1e-4,
        n_starts: int = 3,
        batch_size: int = 256,
        n_jobs: int | None = None,
        progress_bar: bool = False,
        grid="deprecated",
    ):
        self.model = model
        self.params = params
        self.target = target
        self.noise_model = noise_model
        self.poly_degree = poly_degree
        self.max_iter = max_iter
        self.tol = tol
        self.xtol = xtol
        self.n_starts = n_starts
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.progress_bar = progress_bar
        self.grid = grid

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # errors are part of X and must be > 0; no NaN (they would be silent zero weights)
        tags.input_tags.allow_nan = False
        # several labels at once with a tuple target (y of shape (n, k))
        tags.target_tags.multi_output = not isinstance(self.target, str)
        tags.target_tags.single_output = isinstance(self.target, str)
        return tags

    def _expected_failed_checks(self) -> dict[str, str]:
        """scikit-learn common checks this estimator fails by design, with the reason.

        For the instance the common tests build: a 1-label spectral model on 5
        pixels, matching the checks' 10-feature regression data.

        Returns
        -------
        dict of str to str
            Check name -> reason.

        Examples
        --------
        >>> reasons = TemplateFitRegressor()._expected_failed_checks()
        >>> reasons["check_regressors_int"][:29]
        "the check's X has values <= 0"
        """
        return {
            **dict.fromkeys(ODD_WIDTH_CHECKS, ODD_WIDTH_REASON),
            **dict.fromkeys(_MODEL_WIDTH_CHECKS, _MODEL_WIDTH),
            **dict.fromkeys(_ERROR_WEIGHT_CHECKS, _ERROR_WEIGHTS),
        }

    @property
    def grid_(self):
        """Deprecated alias of ``model_``."""
        warnings.warn(
            "'grid_' was renamed 'model_' in 0.1 and will be removed in 0.3",
            FutureWarning,
            stacklevel=2,
        )
        return self.model_

    # ------------------------------------------------------------------ checks
    def _check_hyper_params(self) -> None:
        for name in ("max_iter", "n_starts", "batch_size"):
            check_int(getattr(self, name), name)
        check_int(self.poly_degree, "poly_degree", low=0)
        for name in ("tol", "xtol"):
            check_real(getattr(self, name), name, low=0.0, low_open=True)
        if self.n_jobs is not None:
            # joblib's convention: -1 all cores, -2 all but one; 0 means nothing
            if not is_integer(self.n_jobs):
                raise ValueError(f"n_jobs must be None or a non-zero integer; got {self.n_jobs!r}")
            if self.n_jobs == 0:
                raise ValueError("n_jobs must be None or a non-zero integer; got 0")
        check_bool(self.progress_bar, "progress_bar")

    def _check_params_against(self, model) -> tuple[str, ...]:
        names = tuple(model.param_names)
        if self.params is None:
            return names
        params = (self.params,) if isinstance(self.params, str) else tuple(self.params)
        if sorted(params) != sorted(names):
            raise ValueError(
                f"params={params} must be the spectral model's labels {names} (in any "
                "order); fitting a subset with the others fixed is not supported"
            )
        return params

    def _check_X(self, X, reset: bool):
        kwargs = dict(reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1)
        return validate_data(self, X, **kwargs)

    # --------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Validate the data and resolve the spectral model (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix)
            ``[flux | error]``; errors > 0.
        y : array-like of shape (n_samples,) or (n_samples, k), or DataFrame, optional
            The target label(s); checked to lie inside the model's range (a
            DataFrame's columns must be the target labels).

        Returns
        -------
        self : TemplateFitRegressor
            The estimator, with the spectral model and target labels resolved.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> grid = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, np.ones((3, 4)), range(4))
        >>> reg = TemplateFitRegressor(grid, params=("log_g",))
        >>> reg.fit(np.ones((2, 8)), [2.0, 3.0]).n_pix_
        4
        """
        self._check_hyper_params()
        X = self._check_X(X, reset=True)
        # the marker compared by value: an unpickled estimator holds another str object
        grid = None if isinstance(self.grid, str) and self.grid == "deprecated" else self.grid
        model = _resolve_model(renamed(self.model, grid, old="grid", new="model"))
        params = self._check_params_against(model)
        names = tuple(model.param_names)
        target = resolve_target(self.target, names)
        if self.noise_model is not None:
            check_noise_model(self.noise_model)
        n_pix = int(np.asarray(model.wave).shape[0])
        split_flux_error(X, n_pix)
        if y is not None:
            y = check_target_y(y, self.target, X.shape[0], names).reshape(X.shape[0], -1)
            for j, label in enumerate(target):
                lo, hi = model.bounds[label]
                outside = (y[:, j] < lo) | (y[:, j] > hi)
                if outside.any():
                    raise ValueError(
                        f"{int(outside.sum())} {label} label(s) in y lie outside the "
                        f"spectral model's range [{lo:g}, {hi:g}] (e.g. "
                        f"{y[outside, j][0]:g}); a template fit cannot return them"
                    )
        self.model_ = model
        self.param_names_ = params
        self.target_ = target
        self.n_pix_ = n_pix
        return self

    # ----------------------------------------------------------------- predict
    def predict(self, X, return_std: bool = False):
        """The target label(s) of the best-fitting model spectrum for each spectrum.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix)
        return_std : bool, default=False
            Also return the 1-sigma uncertainty of each estimate (the
            ``GaussianProcessRegressor`` convention): the formal error at the
            fit, widened where the chi-square has several valleys and confined
            to the grid box (the ``<label>_std`` column of :meth:`predict_params`).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, k)
            Shape (n_samples, k) for a tuple ``target``, in its order.
        y_std : ndarray of the same shape
            Only with ``return_std=True``.

        Examples
        --------
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[1.0, 0.5], [1.0, 0.6], [1.0, 0.9]]
        >>> grid = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, [1.0, 2.0])
        >>> X = [[2.0, 1.2, 0.01, 0.01]]  # twice the node spectrum at log g = 3
        >>> reg = TemplateFitRegressor(grid, params=("log_g",)).fit(X)
        >>> reg.predict(X).round(4).tolist()
        [3.0]
        """
        res = self.predict_params(X)
        mean = target_shaped(res[list(self.target_)].to_numpy(), self.target)
        if not return_std:
            return mean
        std = res[[f"{t}_std" for t in self.target_]].to_numpy()
        return mean, target_shaped(std, self.target)

    def predict_params(self, X, *, init=None, return_cov: bool = False):
        """All fitted labels, their formal errors and the fit statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix)
            ``[flux | error]``; errors > 0.
        init : array-like of shape (n_samples, n_params) or DataFrame, optional
            Starting labels (in ``param_names_`` order, or a DataFrame with those
            columns) instead of the coarse search over the grid nodes; must lie
            inside the grid box. One start per spectrum (``n_starts`` is ignored).
        return_cov : bool, default=False
            Also return the formal covariance matrices of the labels.

        Returns
        -------
        result : DataFrame of n_samples rows
            One column per label (``param_names_``); ``<label>_err`` (formal 1-sigma,
            the square root of the diagonal of the inverse profiled normal matrix);
            ``<label>_std`` (the uncertainty :meth:`predict` returns: the formal
            error, widened by the other chi-square minima found from the starts,
            each weighted by its Laplace evidence, then the RMS distance to the
            truth under that Gaussian confined to the grid box); ``chi2``, ``dof`` (pixels minus
            labels minus polynomial coefficients), ``amplitude`` (the constant term
            of the polynomial), ``n_iter`` and ``converged`` (both of the winning
            start's fit); and the goodness of fit: ``chi2_red`` (chi-square per
            degree of freedom, with the physical noise of ``noise_model`` at the
            fitted spectrum when one is set), ``fit_z`` (``(chi2 - dof) /
            sqrt(2 dof)``, about N(0, 1) for a spectrum the model describes) and
            ``out_of_model`` (``fit_z > OUT_OF_MODEL_Z``).
        cov : ndarray of shape (n_samples, n_params, n_params)
            Only with ``return_cov=True``; in ``param_names_`` order.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[1.0, 0.4], [1.0, 0.6], [1.0, 1.0]]
        >>> grid = SpectralGrid({"log_g": [0.0, 2.0, 4.0]}, flux, [1.0, 2.0])
        >>> X = np.hstack([2 * grid.flux([[3.0]]), [[0.01, 0.01]]])
        >>> reg = TemplateFitRegressor(grid, params=("log_g",)).fit(X)
        >>> res = reg.predict_params(X)
        >>> list(res.columns)[:6]
        ['log_g', 'log_g_err', 'log_g_std', 'chi2', 'dof', 'amplitude']
        >>> round(float(res["amplitude"][0]), 4)
        2.0
        """
        check_is_fitted(self)
        self._check_hyper_params()
        X = self._check_X(X, reset=False)
        flux, error = split_flux_error(X, self.n_pix_)
        model = self.model_
        names = tuple(model.param_names)
        order = [names.index(p) for p in self.param_names_]  # model order -> output order
        start = None
        if init is not None:
            start = self._check_init(init, X.shape[0])

        n = X.shape[0]
        batches = [slice(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]
        job = _BatchFitter(
            model,
            self.poly_degree,
            self.max_iter,
            self.tol,
            self.xtol,
            self.n_starts,
            noise_model=self.noise_model,
        )
        results = self._run(job, flux, error, start, batches)

        def stacked(key):
            return np.concatenate([r[key] for r in results])

        theta = stacked("theta")[:, order]
        cov = stacked("cov")[:, order][:, :, order]
        cov_modes = stacked("cov_modes")[:, order][:, :, order]
        out = pd.DataFrame(theta, columns=list(self.param_names_))
        err = np.sqrt(np.clip(np.einsum("nii->ni", cov), 0.0, None))
        std = np.sqrt(np.clip(np.einsum("nii->ni", cov_modes), 0.0, None))
        lo, hi = _box(model)
        std = _box_rms(theta, std, lo[order], hi[order])
        for k, p in enumerate(self.param_names_):
            out[f"{p}_err"] = err[:, k]
        for k, p in enumerate(self.param_names_):
            out[f"{p}_std"] = std[:, k]
        dof = self.n_pix_ - len(names) - (self.poly_degree + 1)
        out["chi2"] = stacked("chi2")
        out["dof"] = dof
        out["amplitude"] = stacked("coef")[:, 0]
        out["n_iter"] = stacked("n_iter")
        out["converged"] = stacked("converged")
        chi2_fit = stacked("chi2_fit")
        out["chi2_red"] = chi2_fit / max(dof, 1)
        out["fit_z"] = (chi2_fit - dof) / np.sqrt(2.0 * max(dof, 1))
        out["out_of_model"] = out["fit_z"].to_numpy() > OUT_OF_MODEL_Z
        return (out, cov) if return_cov else out

    def _check_init(self, init, n: int) -> np.ndarray:
        from ..spectra._validation import as_label_array

        names = tuple(self.model_.param_names)
        if isinstance(init, pd.DataFrame):
            arr = as_label_array(init, names)
        else:
            arr = as_label_array(init, self.param_names_)
            arr = arr[:, [self.param_names_.index(p) for p in names]]
        if arr.shape[0] != n:
            raise ValueError(f"init has {arr.shape[0]} rows for {n} spectra")
        lo, hi = _box(self.model_)
        outside = (arr < lo) | (arr > hi)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(
                f"{int(outside.any(axis=1).sum())} init label vector(s) lie outside the grid "
                f"box, e.g. row {row}: {names[col]}={arr[row, col]:g} not in "
                f"[{lo[col]:g}, {hi[col]:g}]"
            )
        return arr

    def _run(self, job, flux, error, start, batches) -> list[dict]:
        from tqdm.auto import tqdm

        def pieces():
            for sl in batches:
                yield sl, flux[sl], error[sl], None if start is None else start[sl]

        bar = tqdm(
            total=flux.shape[0],
            disable=not self.progress_bar,
            desc="template fit",
            unit="spectra",
        )
        results = []
        with bar:
            if self.n_jobs is None or self.n_jobs == 1 or len(batches) == 1:
                for sl, f, e, s in pieces():
                    results.append(job(f, e, s))
                    bar.update(sl.stop - sl.start)
            else:
                # one BLAS thread per worker: joblib threads already fill the cores
                with threadpool_limits(limits=1):
                    parallel = Parallel(
                        n_jobs=self.n_jobs, prefer="threads", return_as="generator"
                    )
                    gen = parallel(delayed(job)(f, e, s) for _, f, e, s in pieces())
                    for sl, res in zip(batches, gen):
                        results.append(res)
                        bar.update(sl.stop - sl.start)
        return results


def _box(model) -> tuple[np.ndarray, np.ndarray]:
    names = tuple(model.param_names)
    lo = np.array([model.bounds[p][0] for p in names], dtype=float)
    hi = np.array([model.bounds[p][1] for p in names], dtype=float)
    return lo, hi


class _BatchFitter:
    """Fit one batch: coarse start over templates, then LM (picklable, stateless).

    With ``n_starts > 1`` the LM runs, for every spectrum, from each of its starts
    (:meth:`_candidates`; all starts of the batch in one vectorised call) and the fit
    with the lowest final chi-square is kept.
    """

    def __init__(
        self,
        model,
        poly_degree: int,
        max_iter: int,
        tol: float,
        xtol: float,
        n_starts: int = 1,
        noise_model=None,
    ):
        self.model = model
        self.noise_model = noise_model
        self.max_iter = max_iter
        self.tol = tol
        self.n_starts = int(n_starts)
        self.basis = legendre_basis(np.asarray(model.wave, dtype=float), poly_degree)
        self.lo, self.hi = _box(model)
        self.is_grid = isinstance(model, SpectralGrid)
        if self.is_grid:
            valid = model.valid.reshape(-1)
            self.templates = np.asarray(model.node_flux[valid], dtype=np.float64)
            self.axes = [np.asarray(a, dtype=float) for a in model.axes.values()]
            self.node_index = np.flatnonzero(valid)
            self.cube = model.node_flux  # (n_nodes, n_pix) float32, read-only view
            self.hole = ~valid
            self.has_holes = bool(self.hole.any())
        else:
            self.axes = [np.linspace(a, b, _LATTICE_POINTS) for a, b in zip(self.lo, self.hi)]
            mesh = np.meshgrid(*self.axes, indexing="ij")
            lattice = np.stack([m.ravel() for m in mesh], axis=1)
            self.templates = np.asarray(model.flux(lattice), dtype=np.float64)
            self.node_index = np.arange(lattice.shape[0])
        self.shape = tuple(a.size for a in self.axes)
        self.n_nodes = int(np.prod(self.shape))
        # multi-index of every lattice node, (n_nodes, d), and the index distance per
        # axis beyond which a node counts as far from a start
        self.node_ijk = np.stack(np.unravel_index(np.arange(self.n_nodes), self.shape), axis=1)
        self.far_cells = np.maximum(
            1, np.ceil(_FAR_FRACTION * (np.array(self.shape) - 1) - 1e-9)
        ).astype(int)
        spacing = np.array([np.median(np.diff(a)) if a.size > 1 else 1.0 for a in self.axes])
        self.xtol = xtol * np.where(spacing > 0, spacing, 1.0)

    def _node_cube(self, chi2: np.ndarray) -> np.ndarray:
        """Coarse chi-square on the full node lattice, inf at holes: (n, *shape)."""
        n = chi2.shape[0]
        full = np.full((n, self.n_nodes), np.inf)
        full[:, self.node_index] = chi2
        return full.reshape(n, *self.shape)

    def _local_minima(self, full: np.ndarray) -> np.ndarray:
        """Nodes whose coarse chi-square is <= that of all their 3**d - 1 neighbours.

        A discrete local minimum marks a chi-square valley; the best node is always
        one. Holes (inf) are never minima.
        """
        n, d = full.shape[0], full.ndim - 1
        padded = np.pad(full, [(0, 0)] + [(1, 1)] * d, constant_values=np.inf)
        is_min = np.isfinite(full)
        for offset in np.ndindex(*(3,) * d):
            if all(o == 1 for o in offset):
                continue
            sl = tuple([slice(None)] + [slice(o, o + m) for o, m in zip(offset, self.shape)])
            is_min &= full <= padded[sl]
        return is_min.reshape(n, -1)

    def _candidates(self, chi2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` starting nodes per spectrum, chosen on the coarse chi-square.

        The first start is the best node (the single-start answer). Each further start
        is the lowest-chi-square node that is either a discrete local minimum (another
        valley) or at least ``_FAR_FRACTION`` of an axis away (along some axis) from
        every start chosen so far, and whose chi-square is within ``_START_DCHI2`` of
        the best node's; a spectrum runs out of starts when no node qualifies.

        The k lowest nodes themselves would be neighbours of the best one and lead
        into the same valley: on the embedded grid at mag 22.5 the three lowest
        nodes repair about half of the single start's local minima at three times
        the cost, these starts nearly all of them at well under twice. The local
        minima that the LM misses lie mostly along log g (a giant-like and a
        dwarf-like solution), a valley that the nodes often do not resolve as a
        discrete minimum, hence the far starts.

        Returns ``(rows, nodes)``: the spectrum and the flat lattice index of each
        start, sorted by spectrum, best node first within a spectrum.
        """
        full = self._node_cube(chi2)
        n = full.shape[0]
        flat = full.reshape(n, -1)
        rows = np.arange(n)
        first = np.argmin(flat, axis=1)
        if k == 1:
            return rows, first
        valley = self._local_minima(full)
        within = flat - flat[rows, first][:, None] < _START_DCHI2  # False at holes
        chosen = np.zeros_like(within)
        chosen[rows, first] = True
        far = np.ones_like(within)
        picks, last = [first], first
        for _ in range(min(k, flat.shape[1]) - 1):
            gap = np.abs(self.node_ijk[None] - self.node_ijk[last][:, None])
            far &= (gap >= self.far_cells).any(axis=2)
            key = np.where((valley | far) & within & ~chosen, flat, np.inf)
            nxt = np.argmin(key, axis=1)
            ok = np.isfinite(key[rows, nxt])
            if not ok.any():
                break
            chosen[rows[ok], nxt[ok]] = True
            picks.append(np.where(ok, nxt, -1))
            last = np.where(ok, nxt, last)
        cand = np.stack(picks, axis=1)
        keep = cand >= 0
        return np.broadcast_to(rows[:, None], cand.shape)[keep], cand[keep]

    def _subnode_start(self, full: np.ndarray, best: tuple, start: np.ndarray) -> np.ndarray:
        """Move each start node to the vertex of the parabola through the chi-square of
        it and its neighbours, axis by axis (within half a cell).

        A start between nodes is closer to the minimum, and it avoids starting exactly
        on a node where the interpolant's slope along an axis can vanish (the
        Gauss-Newton step would then be undefined there).

        ``full`` is the node chi-square (m, *shape) of each start's spectrum and
        ``best`` the start nodes' multi-index (one int array per axis).
        """
        rows = np.arange(full.shape[0])
        start = start.copy()
        for a, x in enumerate(self.axes):
            m = x.size
            if m < 3:
                continue
            i = best[a]
            c = np.clip(i, 1, m - 2)
            y = []
            for k in (c - 1, c, c + 1):
                idx = list(best)
                idx[a] = k
                y.append(full[(rows, *idx)])
            y0, y1, y2 = y
            x0, x1, x2 = x[c - 1], x[c], x[c + 1]
            with np.errstate(invalid="ignore", divide="ignore"):
                num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
                den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
                vertex = x1 - 0.5 * num / den
                # a minimum only: positive curvature (second divided difference)
                curv = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
            left = x[i] - 0.5 * (x[i] - x[np.maximum(i - 1, 0)])
            right = x[i] + 0.5 * (x[np.minimum(i + 1, m - 1)] - x[i])
            ok = np.isfinite(vertex) & (curv > 0)
            start[:, a] = np.where(ok, np.clip(vertex, left, right), start[:, a])
        return start

    def starts(self, flux: np.ndarray, ivar: np.ndarray, k: int):
        """Coarse search: ``(rows, theta0)``, up to ``k`` starts per spectrum."""
        chi2 = coarse_chi2(flux, ivar, self.templates, self.basis)
        rows, nodes = self._candidates(chi2, k)
        best = np.unravel_index(nodes, self.shape)
        start = np.stack([x[i] for x, i in zip(self.axes, best)], axis=1)
        if self.is_grid:
            sub = self._subnode_start(self._node_cube(chi2)[rows], best, start)
            # keep the node itself where the shifted start would need a hole
            ok = self.model.stencil_valid(sub)
            start = np.where(ok[:, None], sub, start)
        return rows, start

    def cell_index(self, theta):
        cells = [
            np.clip(np.searchsorted(x, theta[:, a], side="right") - 1, 0, max(x.size - 2, 0))
            for a, x in enumerate(self.model.axes.values())
        ]
        return np.stack(cells, axis=1)

    def _stencil(self, theta: np.ndarray, derivatives: bool):
        """Grid stencil of the interpolant at ``theta`` (inside the box): the flat node
        indices and the weights of the value (``derivatives=False``) or of each partial
        derivative (a list of d weight arrays).

        The same arithmetic as :meth:`SpectralGrid.flux` / ``jacobian`` (so the same
        numbers), but the per-axis weights are computed once for the value and all
        d derivatives instead of once per output.
        """
        n = theta.shape[0]
        per_axis = [
            axis_weights(x, theta[:, a], self.model.method) for a, x in enumerate(self.axes)
        ]
        n_out = len(self.axes) if derivatives else 1
        flat = np.zeros((n, 1), dtype=np.int64)
        weights = [np.ones((n, 1)) for _ in range(n_out)]
        for a, (idx, w, dw) in enumerate(per_axis):
            stride = int(np.prod(self.shape[a + 1 :], dtype=np.int64))
            flat = (flat[:, :, None] + idx[:, None, :] * stride).reshape(n, -1)
            for j in range(n_out):
                w_a = dw if derivatives and j == a else w
                weights[j] = (weights[j][:, :, None] * w_a[:, None, :]).reshape(n, -1)
        return flat, weights

    def _holes(self, flat: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Rows whose stencil gives weight to a missing node."""
        return (self.hole[flat] & (weight != 0)).any(axis=1)

    def flux(self, theta):
        theta = np.clip(theta, self.lo, self.hi)
        if not self.is_grid:
            return self.model.flux(theta)
        flat, (weight,) = self._stencil(theta, derivatives=False)
        out = weight_matrix(flat, weight, self.n_nodes) @ self.cube
        out = np.asarray(out, dtype=np.float32)
        if self.has_holes:
            out[self._holes(flat, weight)] = np.nan  # the LM rejects such a step
        return out

    def jacobian(self, theta):
        theta = np.clip(theta, self.lo, self.hi)
        if not self.is_grid:
            return self.model.jacobian(theta)
        flat, weights = self._stencil(theta, derivatives=True)
        n, d = theta.shape
        # all d partial derivatives in one sparse product: (d * n, n_nodes) @ cube
        mat = weight_matrix(np.tile(flat, (d, 1)), np.concatenate(weights), self.n_nodes)
        out = np.asarray(mat @ self.cube, dtype=np.float32).reshape(d, n, -1)
        if self.has_holes:
            # a derivative stencil reaching a hole carries no information: zero, so
            # the step along that label vanishes (its formal error becomes huge)
            for a, w in enumerate(weights):
                out[a, self._holes(flat, w)] = 0.0
        return np.moveaxis(out, 0, -1)  # (n, n_pix, d): a view; the LM casts it anyway

    def refine(self, flux, ivar, start) -> dict:
        return levenberg_marquardt(
            self.flux,
            self.jacobian,
            flux,
            ivar,
            start,
            self.lo,
            self.hi,
            basis=self.basis,
            max_iter=self.max_iter,
            xtol=self.xtol,
            ftol=self.tol,
            cell_index=self.cell_index if self.is_grid else None,
        )

    def __call__(self, flux, error, start=None) -> dict:
        flux = np.asarray(flux, dtype=np.float64)
        ivar = 1.0 / np.asarray(error, dtype=np.float64) ** 2
        res = self._fit(flux, ivar, start)
        # goodness of fit with the noise the spectra were drawn with (the fit itself
        # weights by the reported errors); the fitted spectra are dropped here, so
        # the results of many batches stay small
        fitted = res.pop("template") * (res["coef"] @ self.basis.T)
        if self.noise_model is None:
            fit_ivar = ivar
        else:
            sigma = self.noise_model.true_error(fitted, error)
            fit_ivar = 1.0 / np.asarray(sigma, dtype=np.float64) ** 2
        res["chi2_fit"] = np.einsum("np,np->n", (flux - fitted) ** 2, fit_ivar)
        return res

    def _fit(self, flux, ivar, start=None) -> dict:
        if start is not None:
            res = self.refine(flux, ivar, start)
            res["cov_modes"] = res["cov"]
            return res
        return self._fit_from_nodes(flux, ivar)

    def _fit_from_nodes(self, flux, ivar) -> dict:
        rows, start = self.starts(flux, ivar, self.n_starts)
        n = flux.shape[0]
        if rows.size == n:  # one start per spectrum: rows is arange(n)
            res = self.refine(flux, ivar, start)
            res["cov_modes"] = res["cov"]
            return res
        res = self.refine(flux[rows], ivar[rows], start)
        # the lowest final chi-square per spectrum; ties go to the earlier (better
        # node) start, so a single valley gives the single-start answer
        order = np.lexsort((np.arange(rows.size), res["chi2"], rows))
        first = np.ones(rows.size, dtype=bool)
        first[1:] = rows[order][1:] != rows[order][:-1]
        pick = order[first]
        best = {key: value[pick] for key, value in res.items()}
        best["cov_modes"] = _mode_mixture_cov(rows, pick, res)
        return best


def _box_rms(theta: np.ndarray, std: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """RMS distance from the fit to the truth under its Laplace posterior within the box.

    The truth lies in the grid box, so the Gaussian ``N(theta, std**2)`` of each label
    is truncated to ``[lo, hi]``; its second moment about ``theta``,
    ``std**2 * (1 + (a phi(a) - b phi(b)) / (Phi(b) - Phi(a)))`` with ``a, b`` the
    box's edges in units of ``std``, is the expected squared error of the fit. It
    equals ``std**2`` far from the edges and shrinks where the Gaussian reaches
    beyond them (low SNR, where the formal error is comparable to the box).

    Parameters
    ----------
    theta, std : ndarray of shape (n, d)
    lo, hi : ndarray of shape (d,)

    Returns
    -------
    ndarray of shape (n, d)
    """
    from scipy.special import ndtr

    out = std.copy()
    ok = std > 0
    s = np.where(ok, std, 1.0)
    a, b = (lo - theta) / s, (hi - theta) / s
    phi_a, phi_b = np.exp(-0.5 * a**2), np.exp(-0.5 * b**2)
    mass = ndtr(b) - ndtr(a)
    moment = 1.0 + (a * phi_a - b * phi_b) / np.sqrt(2.0 * np.pi) / np.maximum(mass, 1e-300)
    out[ok] = (s * np.sqrt(np.clip(moment, 0.0, None)))[ok]
    return out


def _mode_mixture_cov(rows: np.ndarray, pick: np.ndarray, res: dict) -> np.ndarray:
    """Covariance of the best fit's error under a mixture of the chi-square's modes.

    At low SNR the chi-square of a spectrum can have several valleys (a giant-like
    and a dwarf-like solution); the formal covariance of the deepest one then
    misses the chance that the truth lies in another. Each distinct minimum found
    from the starts (more than one formal sigma from the best) is a Laplace
    component with weight ``exp(-chi2 / 2) * sqrt(det cov)`` (its evidence under a
    flat prior), the determinant capped at the best fit's (a minimum on the box's
    wall has a nearly singular normal matrix, whose huge formal covariance would
    otherwise outweigh a far better fit); the covariance about the best fit is
    ``sum_k w_k (cov_k + (theta_k - theta_best)(theta_k - theta_best)^T)``.
    With a single valley this is the formal covariance.

    Parameters
    ----------
    rows : ndarray of shape (m,)
        Spectrum of each start.
    pick : ndarray of shape (n,)
        Index of each spectrum's best start.
    res : dict
        The LM results of all ``m`` starts (``theta``, ``cov``, ``chi2``).

    Returns
    -------
    ndarray of shape (n, d, d)
    """
    theta, cov, chi2 = res["theta"], res["cov"], res["chi2"]
    b = pick[rows]  # the best start of each start's spectrum (rows[pick] is arange(n))
    delta = theta - theta[b]
    prec = np.linalg.pinv(cov[b], hermitian=True)
    dist2 = np.einsum("ma,mab,mb->m", delta, prec, delta)
    distinct = (np.arange(rows.size) == b) | (dist2 > 1.0)
    _, logdet = np.linalg.slogdet(cov)
    _, logdet_b = np.linalg.slogdet(cov[b])
    logw = -0.5 * (chi2 - chi2[b]) + 0.5 * np.minimum(logdet - logdet_b, 0.0)
    w = np.where(distinct & np.isfinite(logw), np.exp(np.minimum(logw, 50.0)), 0.0)
    w[np.arange(rows.size) == b] = 1.0
    spread = cov + delta[:, :, None] * delta[:, None, :]
    n = pick.size
    total = np.zeros((n, *cov.shape[1:]))
    norm = np.zeros(n)
    np.add.at(total, rows, w[:, None, None] * spread)
    np.add.at(norm, rows, w)
    return total / norm[:, None, None]


def _fisher_labels(model, theta, error, poly_degree: int = 0, coef=None) -> np.ndarray:
    """Fisher matrix of the labels with the polynomial amplitude as nuisance (private).

    ``F = J^T diag(1/sigma**2) J`` over (labels, polynomial coefficients), then the
    Schur complement that marginalises the coefficients. Used by the tests to check
    the fitter against the Cramer-Rao bound.

    Parameters
    ----------
    model : SpectralModel
    theta : ndarray of shape (n, d)
        True labels in the model's order.
    error : ndarray of shape (n, n_pix)
    poly_degree : int, default=0
    coef : ndarray of shape (n, poly_degree + 1), optional
        True polynomial coefficients; default a unit amplitude.

    Returns
    -------
    fisher : ndarray of shape (n, d, d)

    Examples
    --------
    >>> from specreg.spectra import SpectralGrid
    >>> flux = [[1.0, 1.0], [1.0, 2.0]]
    >>> grid = SpectralGrid({"x": [0.0, 1.0]}, flux, [1.0, 2.0], method="linear")
    >>> _fisher_labels(grid, [[0.5]], [[1.0, 1.0]]).round(4).tolist()
    [[[0.3077]]]
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    basis = legendre_basis(np.asarray(model.wave, dtype=float), poly_degree)
    if coef is None:
        coef = np.zeros((theta.shape[0], poly_degree + 1))
        coef[:, 0] = 1.0
    flux = np.asarray(model.flux(theta), dtype=np.float64)
    jac = np.asarray(model.jacobian(theta), dtype=np.float64)
    ivar = 1.0 / np.asarray(error, dtype=np.float64) ** 2
    return profiled_information(flux, jac, ivar, basis, coef)
