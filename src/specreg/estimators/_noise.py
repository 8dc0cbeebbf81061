"""Transformers that prepare the stacked ``X = [flux | error]`` for regressors.

* :class:`HeteroscedasticNoise` draws training noise from the error half and drops
  it (or keeps it, to chain into specreg estimators that need the errors);
* :class:`MedianNormalizer` scales flux and error so the flux median is 0.5, the
  reference study's normalisation.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from .._checks import ODD_WIDTH_REASON
from ..spectra._validation import (
    check_bool,
    check_noise_model,
    check_real,
    check_seed,
    split_stacked,
)

__all__ = ["HeteroscedasticNoise", "MedianNormalizer"]

# reasons for the checks of scikit-learn's estimator suite that the transformers fail (found
# by running every check with check_estimator(on_fail=None) and reading each exception)
_NEGATIVE_ERROR = (
    "the check's X has negative values in its second half, which is the 1-sigma error "
    "half of [flux | error]; negative errors are refused by design (the estimator does "
    "not claim positive_only: the flux half may be negative, noisy flux often is)"
)
_NONPOSITIVE_MEDIAN = (
    "the check's X has rows whose flux median is <= 0, which cannot be "
    "median-normalised; refused by design (the estimator does not claim positive_only: "
    "only the median must be positive)"
)
# checks that fit on odd-width X, or on X with negative values in its second half
_NOISE_ODD_WIDTH_CHECKS = (
    "check_fit_score_takes_y",
    "check_dont_overwrite_parameters",
    "check_estimators_dtypes",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_transformer_data_not_an_array",
    "check_transformer_general",
    "check_transformer_preserve_dtypes",
    "check_dict_unchanged",
    "check_fit2d_predict1d",
)
_NEGATIVE_SECOND_HALF_CHECKS = (
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
)
# MedianNormalizer is stateless (transform without fit), so more checks reach its refusal
_MEDIAN_ODD_WIDTH_CHECKS = (
    *_NOISE_ODD_WIDTH_CHECKS,
    "check_pipeline_consistency",
    "check_transformers_unfitted_stateless",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
)


class _StackedTransformer(TransformerMixin, BaseEstimator):
    """What the transformers of ``X = [flux | error]`` share: their tags and failed checks.

    A subclass sets what sets it apart in scikit-learn's estimator checks: whether its
    output is a random draw (``_random_draw``), whether it is stateless
    (``_stateless``: ``transform`` needs no ``fit``), the checks that feed it X of odd
    width (``_odd_width_checks``) and why it refuses the negative values that the
    ``_NEGATIVE_SECOND_HALF_CHECKS`` put in the second half (``_second_half_reason``).
    """

    _random_draw = False
    _stateless = False
    _odd_width_checks: tuple[str, ...] = ()
    _second_half_reason = ""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self._random_draw
        tags.requires_fit = not self._stateless
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _expected_failed_checks(self) -> dict[str, str]:
        """Check name -> reason: the checks of scikit-learn's suite failed by design.

        ``X`` is ``[flux | error]``: the checks that feed X of odd width meet its
        refusal, and those that put negative values in its second half meet the
        transformer's own refusal of them. Pass
        ``expected_failed_checks=lambda est: est._expected_failed_checks()`` to
        :func:`sklearn.utils.estimator_checks.parametrize_with_checks`.

        Examples
        --------
        >>> table = HeteroscedasticNoise()._expected_failed_checks()
        >>> [name in table for name in ("check_transformer_general",
        ...                              "check_readonly_memmap_input")]
        [True, True]
        """
        return {
            **dict.fromkeys(self._odd_width_checks, ODD_WIDTH_REASON),
            **dict.fromkeys(_NEGATIVE_SECOND_HALF_CHECKS, self._second_half_reason),
        }


class HeteroscedasticNoise(_StackedTransformer):
    """Add Gaussian noise with per-pixel sigma from the error half, for training only.

    ``X`` is the stacked ``[flux | error]`` array of shape ``(n_samples, 2 * n_pix)``
    (see "The stacked input" in the noise user guide). In a :class:`~sklearn.pipeline.Pipeline` the training data
    go through :meth:`fit_transform` and the test data through :meth:`transform`:

    * ``fit_transform(X)`` returns ``flux + noise_level * error * N(0, 1)``, a fresh
      draw (a new one on every call when ``random_state`` is None or a
      ``RandomState``; the same one for an int seed, as sklearn's convention goes);
    * ``transform(X)`` returns the flux half **unchanged**: test flux is already
      noisy (one fixed draw stored with the test set), so no noise is added.
      Only with ``noisy_transform=True`` does it add noise too (a draw independent
      of the training one), for cross-validating on a *noiseless* set whose test
      folds must be noisy as well.

    The output is flux only, so ``make_pipeline(HeteroscedasticNoise(), Ridge())``
    just works; ``keep_error=True`` returns ``[noisy flux | error]`` instead, for
    specreg estimators that weight by the errors (e.g. ``TemplateFitRegressor``).
    ``noise_level=0`` simply strips the error half.

    The noise sigma is the error half itself, unless ``noise_model`` is given:
    then the error half holds that model's *reported* (reference) errors, as
    :func:`~specreg.datasets.make_spectra` writes them, and the draw uses the
    model's physical noise for the flux half (photon noise of the true flux,
    :meth:`~specreg.spectra.PFSNoiseModel.true_error`), the same process the
    test spectra were drawn with. The reported errors do not depend on the
    draw, so ``keep_error=True`` passes them on unchanged in both cases.

    Parameters
    ----------
    noise_level : float, default=1.0
        Multiplier of the error half (>= 0).
    keep_error : bool, default=False
        Append the (unchanged) error half to the output.
    noisy_transform : bool, default=False
        Let :meth:`transform` add noise as well (see above).
    noise_model : PFSNoiseModel, optional
        Draw the physical noise of this model (see above); None: sigma = error half.
    random_state : int, RandomState instance or None, default=None
        Seed of the noise draw in ``fit_transform``.

    Attributes
    ----------
    n_pix_ : int
        Pixels per spectrum (half the width of ``X``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.

    Notes
    -----
    The estimator is tagged ``non_deterministic``: its purpose is a random draw.
    The input is never modified; float32 input gives float32 output.
    The reference's classical baselines used one fixed draw (numpy seed 42) of the
    training set; pass ``random_state=42`` for that protocol, or leave it None and
    refit to average over draws.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> flux = np.full((4, 3), 0.5, dtype=np.float32)
    >>> X = np.hstack([flux, np.full_like(flux, 0.1)])
    >>> noise = HeteroscedasticNoise(random_state=0)
    >>> noise.fit_transform(X).shape, noise.transform(X).shape
    ((4, 3), (4, 3))
    >>> bool((noise.transform(X) == flux).all())  # test flux passes unchanged
    True
    >>> pipe = make_pipeline(HeteroscedasticNoise(), Ridge())
    >>> pipe.fit(X, [1.0, 2.0, 3.0, 4.0]).predict(X).shape
    (4,)
    """

    _random_draw = True  # its purpose
    _odd_width_checks = _NOISE_ODD_WIDTH_CHECKS
    _second_half_reason = _NEGATIVE_ERROR

    def __init__(
        self,
        noise_level: float = 1.0,
        keep_error: bool = False,
        noisy_transform: bool = False,
        noise_model=None,
        random_state=None,
    ):
        self.noise_level = noise_level
        self.keep_error = keep_error
        self.noisy_transform = noisy_transform
        self.noise_model = noise_model
        self.random_state = random_state

    def _validate(self, X, reset: bool) -> np.ndarray:
        check_real(self.noise_level, "noise_level", low=0)
        check_bool(self.keep_error, "keep_error")
        check_bool(self.noisy_transform, "noisy_transform")
        if self.noise_model is not None:
            check_noise_model(self.noise_model)
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        # the model's physical noise divides by the reported errors: they must be > 0
        split_stacked(X, error_rule="nonnegative" if self.noise_model is None else "positive")
        return X

    def fit(self, X: ArrayLike, y: None = None) -> HeteroscedasticNoise:
        """Check ``X`` and record its width (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix)
            Stacked ``[flux | error]``; only its width is kept.
        y : None
            Ignored.

        Returns
        -------
        self : HeteroscedasticNoise
            The transformer, with ``n_pix_`` (the flux width) set.

        Examples
        --------
        >>> import numpy as np
        >>> HeteroscedasticNoise().fit(np.ones((2, 6))).n_pix_
        3
        """
        self._fit(X)
        return self

    def _fit(self, X) -> np.ndarray:
        """Validate ``X``, record its width; return the validated array."""
        X = self._validate(X, reset=True)
        self.n_pix_ = X.shape[1] // 2
        return X

    def fit_transform(self, X: ArrayLike, y: None = None) -> np.ndarray:
        """Fit, then return the flux half plus a fresh noise draw (training data).

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix)
            Training spectra ``[flux | error]``, every error >= 0 (> 0 with a
            ``noise_model``, whose noise is computed from them).
        y : None
            Ignored.

        Returns
        -------
        X_noisy : ndarray of shape (n_samples, n_pix), or (n_samples, 2 * n_pix) with
            ``keep_error=True``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.hstack([np.zeros((1000, 1)), np.full((1000, 1), 2.0)])
        >>> noise = HeteroscedasticNoise(noise_level=0.5, random_state=0)
        >>> out = noise.fit_transform(X)
        >>> out.shape, round(float(out.std()), 1)
        ((1000, 1), 1.0)
        """
        return self._add_noise(self._fit(X), stream=0)

    def _add_noise(self, X: np.ndarray, stream: int) -> np.ndarray:
        n_pix = self.n_pix_
        flux, error = X[:, :n_pix], X[:, n_pix:]
        rs = check_seed(self.random_state)
        # a Generator seeded from the RandomState: ziggurat normals drawn directly in
        # the input's dtype (no float64 temporary of the size of the data); the
        # stream keeps training and test draws independent under an int seed
        rng = np.random.default_rng([rs.randint(np.iinfo(np.int32).max), stream])
        eps = rng.standard_normal(flux.shape, dtype=X.dtype)
        sigma = error
        if self.noise_model is not None:
            sigma = self.noise_model.true_error(flux, error).astype(X.dtype, copy=False)
        noisy = flux + X.dtype.type(self.noise_level) * sigma * eps
        return np.hstack([noisy, error]) if self.keep_error else noisy

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Return the flux half unchanged (test data are already noisy).

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix)

        Returns
        -------
        flux : ndarray of shape (n_samples, n_pix), or ``X`` itself (a copy) with
            ``keep_error=True``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.5, 0.6, 0.1, 0.1]])
        >>> HeteroscedasticNoise().fit(X).transform(X).tolist()
        [[0.5, 0.6]]
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        if self.noisy_transform:
            return self._add_noise(X, stream=1)
        if self.keep_error:
            return X.copy()
        return X[:, : self.n_pix_].copy()

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Output feature names: the flux half's input names (and the errors' with
        ``keep_error=True``).

        Parameters
        ----------
        input_features : array-like of str, optional

        Returns
        -------
        ndarray of str

        Examples
        --------
        >>> import numpy as np
        >>> noise = HeteroscedasticNoise().fit(np.ones((1, 4)))
        >>> noise.get_feature_names_out().tolist()
        ['x0', 'x1']
        """
        check_is_fitted(self, "n_pix_")
        names = _check_feature_names_in(self, input_features)
        return names if self.keep_error else names[: self.n_pix_]


class MedianNormalizer(_StackedTransformer):
    """Scale each spectrum (flux and error alike) so that its flux median is ``value``.

    The reference study normalises every spectrum to a median of 0.5 over the
    whole PFS MR range and scales ``error`` by the same factor (pfsspec's
    ``normalize_in``), so the errors stay in flux units.
    Stateless: every row is scaled on its own, in ``fit_transform`` and
    ``transform`` alike, so it can precede :class:`HeteroscedasticNoise` (normalise
    the clean flux, then add noise) or follow it.

    Parameters
    ----------
    value : float, default=0.5
        Target median (> 0).
    stacked : bool, default=True
        ``X`` is ``[flux | error]`` (both halves scaled, output of the same shape);
        ``False``: ``X`` is flux only.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0, 3.0, 0.1, 0.2, 0.3]])
    >>> MedianNormalizer().fit_transform(X).tolist()
    [[0.25, 0.5, 0.75, 0.025, 0.05, 0.075]]
    """

    _stateless = True  # every row is scaled on its own
    _odd_width_checks = _MEDIAN_ODD_WIDTH_CHECKS
    # the negative values of the checks' X are refused as flux medians <= 0
    _second_half_reason = _NONPOSITIVE_MEDIAN

    def __init__(self, value: float = 0.5, stacked: bool = True):
        self.value = value
        self.stacked = stacked

    def fit(self, X: ArrayLike, y: None = None) -> MedianNormalizer:
        """Check ``X`` (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : MedianNormalizer

        Examples
        --------
        >>> import numpy as np
        >>> MedianNormalizer().fit(np.ones((2, 4))).n_features_in_
        4
        """
        self._transform(X, reset=True)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Scale each row so that the flux median is ``value``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_scaled : ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> norm = MedianNormalizer(value=1.0, stacked=False)
        >>> norm.fit_transform([[2.0, 4.0, 6.0]]).tolist()
        [[0.5, 1.0, 1.5]]
        """
        return self._transform(X, reset=not hasattr(self, "n_features_in_"))

    def _transform(self, X, reset: bool) -> np.ndarray:
        check_real(self.value, "value", low=0.0, low_open=True)
        stacked = check_bool(self.stacked, "stacked")
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        n_flux = split_stacked(X, error_rule="nonnegative")[0].shape[1] if stacked else X.shape[1]
        med = np.median(X[:, :n_flux], axis=1)
        bad = ~(med > 0)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} spectrum/spectra have a flux median <= 0 (e.g. row "
                f"{int(np.argmax(bad))}: {med[bad][0]!r}); they cannot be median-normalised"
            )
        return X * (X.dtype.type(self.value) / med.astype(X.dtype))[:, None]

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Output feature names: the input names.

        Examples
        --------
        >>> import numpy as np
        >>> MedianNormalizer().fit(np.ones((1, 2))).get_feature_names_out().tolist()
        ['x0', 'x1']
        """
        return _check_feature_names_in(self, input_features)
