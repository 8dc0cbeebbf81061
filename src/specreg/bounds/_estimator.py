"""BayesCeilingRegressor: the posterior mean as a scikit-learn regressor.

A thin estimator: validation, the resolution of the model, prior and noise,
and the shape of the predictions live here; the posterior is the functional
core of :mod:`._bayes`.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._checks import ODD_WIDTH_REASON
from ..datasets._grid_io import resolve_model
from ..spectra._validation import (
    as_generator,
    check_target_y,
    renamed,
    resolve_target,
    target_shaped,
)
from . import _bayes
from ._bayes import _ONE_SIGMA, QUANTILE_LEVELS, PosteriorSummary, split_X

__all__ = ["BayesCeilingRegressor"]

# scikit-learn common checks failed by design (BayesCeilingRegressor._expected_failed_checks),
# for the instance the common tests build: a 1-label model on 5 pixels, noise="given"
_ODD_WIDTH_CHECKS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_estimators_dtypes",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_predict1d",
    "check_fit_score_takes_y",
    "check_supervised_y_2d",
)
_MODEL_WIDTH = (
    "the check's X has 2 or 4 columns (1 or 2 pixels) while the spectral model has "
    "another number of pixels; the likelihood compares X with the model's spectra "
    "pixel by pixel, so X of another width is refused by design"
)
_MODEL_WIDTH_CHECKS = (
    "check_estimators_fit_returns_self",
    "check_estimators_overwrite_params",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_readonly_memmap_input",
    "check_regressors_no_decision_function",
)
_ERROR_HALF = (
    "the check's X has values <= 0 in its second half, the 1-sigma error half of "
    "[flux | error]; the likelihood divides by the errors, so errors <= 0 are refused "
    "by design (positive_only is not claimed: noisy flux may be negative)"
)
_ERROR_HALF_CHECKS = (
    "check_positive_only_tag_during_fit",
    "check_regressor_data_not_an_array",
    "check_regressors_int",
    "check_regressors_train",
)


class BayesCeilingRegressor(RegressorMixin, BaseEstimator):
    """The Bayes-optimal estimator ``E[label | spectrum]`` as a regressor.

    Nothing is learned: ``fit`` only checks X and resolves the spectral model,
    prior and noise process; ``predict`` returns posterior means under
    (spectral model, noise process, label prior) by importance sampling (see
    :func:`~specreg.bounds.posterior_summary`). On spectra drawn from that
    model, noise and prior no regressor has a lower expected squared error,
    so it belongs next to the trained models in every comparison
    (``cross_validate``, learning curves, per-SNR tables).

    Parameters
    ----------
    model : SpectralModel, optional
        Default: the embedded grid (:func:`~specreg.datasets.load_grid`).
    prior : LabelPrior, optional
        The prior the labels were drawn from; default uniform on the model's box.
        A snapped prior (``LabelPrior.from_grid(model, snap=True)``) gets its
        exact posterior (see :func:`~specreg.bounds.posterior_summary`).
    noise : PFSNoiseModel, "given" or None, default=None
        The noise process (see :class:`FisherCeiling`): by default the error
        half of X holds the reference errors of ``PFSNoiseModel(model.wave)``
        and the likelihood uses its physical noise; ``"given"`` takes the
        errors as the true sigma.
    target : str or tuple of str, default="log_g"
        The label predicted, or several (e.g. ``("T_eff", "log_g", "M_H")``;
        predictions then have shape (n, k) in this order).
    n_draws : int, default=256
        Importance draws per spectrum.
    lattice : int or sequence of int, optional
        Cells per label of the coarse likelihood lattice.
    random_state : int or None
        Seed of the generator that ``fit`` creates; successive predictions of
        one fit draw fresh samples from it.
    progress : bool, default=False
    grid : SpectralModel, optional
        Deprecated alias of ``model``.
    n_samples : int, optional
        Deprecated alias of ``n_draws`` (``n_samples`` is the number of
        spectra in scikit-learn).

    Attributes
    ----------
    model_ : SpectralModel
        The resolved spectral model.
    noise_model_ : PFSNoiseModel or None
        The resolved noise process (None: the errors are the true sigma).
    target_ : tuple of str
        The target label(s).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> flux = np.repeat([[1.0], [2.0], [3.0]], 8, axis=1)
    >>> g = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, np.arange(8.0))
    >>> X = np.hstack([g.flux([[2.0], [4.0]]), np.full((2, 8), 0.05)])
    >>> est = BayesCeilingRegressor(g, noise="given", n_draws=32, random_state=0)
    >>> est.fit(X).predict(X).round(1).tolist()
    [2.0, 4.0]
    """

    def __init__(
        self,
        model=None,
        prior=None,
        noise=None,
        target: str | tuple[str, ...] = "log_g",
        n_draws: int = 256,
        lattice=None,
        random_state=None,
        progress: bool = False,
        grid="deprecated",
        n_samples="deprecated",
    ) -> None:
        self.model = model
        self.prior = prior
        self.noise = noise
        self.target = target
        self.n_draws = n_draws
        self.lattice = lattice
        self.random_state = random_state
        self.progress = progress
        self.grid = grid
        self.n_samples = n_samples

    def _expected_failed_checks(self) -> dict[str, str]:
        """scikit-learn common checks this estimator fails by design, with the reason.

        For the instance the common tests build (a 1-label spectral model on 5
        pixels, ``noise="given"``); the checks that need a deterministic
        ``predict`` are skipped by the ``non_deterministic`` tag.

        Returns
        -------
        dict
            The name of each check that fails, and why.

        Examples
        --------
        >>> reasons = BayesCeilingRegressor()._expected_failed_checks()
        >>> len(reasons), reasons["check_regressors_int"][:29]
        (21, "the check's X has values <= 0")
        """
        return {
            **dict.fromkeys(_ODD_WIDTH_CHECKS, ODD_WIDTH_REASON),
            **dict.fromkeys(_MODEL_WIDTH_CHECKS, _MODEL_WIDTH),
            **dict.fromkeys(_ERROR_HALF_CHECKS, _ERROR_HALF),
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True  # Monte-Carlo posterior means
        tags.target_tags.required = False
        # several labels at once with a tuple target (y of shape (n, k))
        tags.target_tags.multi_output = not isinstance(self.target, str)
        tags.target_tags.single_output = isinstance(self.target, str)
        return tags

    def fit(self, X, y=None):
        """Check X (and y) against the spectral model (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)
            ``[flux | error]``.
        y : array-like of shape (n,) or (n, k), or DataFrame, optional
            Not used; checked against ``target`` when given (a DataFrame's
            columns must be the target labels).

        Returns
        -------
        self : BayesCeilingRegressor
            The estimator, with ``model_``, ``target_`` and ``noise_model_`` set.

        Examples
        --------
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, [[1.0] * 4] * 2, range(4))
        >>> est = BayesCeilingRegressor(g, noise="given").fit([[1.0] * 8] * 3)
        >>> est.target_
        ('log_g',)
        """
        X = validate_data(self, X, reset=True, dtype=np.float32)
        model = renamed(self.model, self.grid, old="grid", new="model", unset="deprecated")
        n_draws = renamed(
            self.n_draws,
            self.n_samples,
            old="n_samples",
            new="n_draws",
            default=256,
            unset="deprecated",
        )
        model = resolve_model(model, jacobian=True)
        names = tuple(model.param_names)
        target = resolve_target(self.target, names)
        if y is not None:
            check_target_y(y, self.target, X.shape[0], names)
        split_X(X, getattr(model, "n_pix", None))
        # clear errors for a bad noise, prior or lattice at fit time; the lattice
        # templates themselves are computed at the first prediction
        self.noise_model_ = _bayes.resolve_noise(self.noise, model)
        self._problem = _bayes._Problem(model, self.prior, self.lattice)
        self._settings = _bayes._SamplerSettings(n_draws=n_draws)
        self._random = as_generator(self.random_state)
        self.model_ = model
        self.target_ = target
        return self

    @property
    def grid_(self):
        """Deprecated alias of ``model_``."""
        _bayes._warn_renamed_attribute("grid_", "model_")
        return self.model_

    def predict_posterior(self, X, *, quantiles=QUANTILE_LEVELS) -> PosteriorSummary:
        """Posterior summaries of all labels (means, variances, quantiles, MC errors, ESS).

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)
        quantiles : sequence of float, default=QUANTILE_LEVELS
            Levels of the posterior quantiles kept.

        Returns
        -------
        PosteriorSummary
            Per-spectrum posterior means, variances and quantiles of every label,
            with their Monte-Carlo errors and effective sample sizes.

        Examples
        --------
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"a": [0.0, 1.0]}, [[1.0] * 6, [2.0] * 6], range(6))
        >>> X = [[1.5] * 6 + [0.05] * 6]  # the model spectrum at a = 0.5
        >>> est = BayesCeilingRegressor(g, noise="given", target="a", n_draws=64)
        >>> post = est.fit(X).predict_posterior(X)
        >>> post.mean.shape, post.quantiles.shape
        ((1, 1), (1, 5, 1))
        """
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        flux, error = split_X(X, getattr(self.model_, "n_pix", None))
        return _bayes._posterior(
            self._problem,
            flux,
            error,
            dataclasses.replace(self._settings, quantiles=quantiles),
            noise_model=self.noise_model_,
            random_state=self._random,
            progress=self.progress,
        )

    def _columns(self, post: PosteriorSummary) -> list[int]:
        return [post.index(t) for t in self.target_]

    def predict(self, X, return_std: bool = False):
        """Posterior mean (and standard deviation) of the target label(s).

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)
        return_std : bool, default=False
            Also return the posterior standard deviation (the
            ``GaussianProcessRegressor`` convention).

        Returns
        -------
        y_mean : ndarray of shape (n,) or (n, k)
            Shape (n, k) for a tuple target, in its order.
        y_std : ndarray of the same shape
            Only with ``return_std=True``.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"x": [0.0, 4.0]}, [[0.0] * 8, [4.0] * 8], np.arange(8.0))
        >>> X = np.hstack([g.flux([[1.0]]), np.full((1, 8), 0.05)])
        >>> est = BayesCeilingRegressor(g, noise="given", target="x", n_draws=64)
        >>> mean, std = est.fit(X).predict(X, return_std=True)
        >>> mean.round(1).tolist(), bool(0 < std[0] < 0.1)
        ([1.0], True)
        """
        post = self.predict_posterior(X)
        cols = self._columns(post)
        mean = target_shaped(post.mean[:, cols], self.target)
        if not return_std:
            return mean
        return mean, target_shaped(post.std[:, cols], self.target)

    def predict_quantiles(self, X, quantiles=(_ONE_SIGMA[0], 0.5, _ONE_SIGMA[1])) -> np.ndarray:
        """Posterior quantiles of the target label(s).

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)
        quantiles : sequence of float, default=(0.1587, 0.5, 0.8413)
            Levels in (0, 1); the default gives the median and the central
            68 % credible interval.

        Returns
        -------
        ndarray of shape (n, n_quantiles) or (n, n_quantiles, k)

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"t": [2.0, 6.0]}, [[1.0], [3.0]], [0.0])
        >>> X = [[2.0, 0.05]]
        >>> est = BayesCeilingRegressor(g, noise="given", target="t").fit(X)
        >>> q = est.predict_quantiles(X)
        >>> q.shape, bool(q[0, 0] < 4.0 < q[0, 2])
        ((1, 3), True)
        """
        post = self.predict_posterior(X, quantiles=quantiles)
        return target_shaped(post.quantiles[:, :, self._columns(post)], self.target)

    @property
    def ceiling_(self):
        """Deprecated: the :class:`FisherCeiling` of the same settings."""
        from ._ceiling import FisherCeiling

        check_is_fitted(self, "model_")
        warnings.warn(
            "the ceiling_ attribute is deprecated in 0.1 and will be removed in 0.3; "
            "the estimator no longer uses a FisherCeiling: build one with the same "
            "settings if you need its tables",
            FutureWarning,
            stacklevel=2,
        )
        return FisherCeiling(
            self.model_,
            "given" if self.noise_model_ is None else self.noise_model_,
            prior=self.prior,
            target=self.target,
            n_draws=self._settings.n_draws,
            lattice=self.lattice,
            random_state=self.random_state,
            progress=self.progress,
        )
