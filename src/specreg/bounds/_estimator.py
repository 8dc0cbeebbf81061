"""BayesCeilingRegressor: the posterior mean as a scikit-learn regressor."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._bayes import PosteriorSummary, split_X
from ._ceiling import FisherCeiling

__all__ = ["BayesCeilingRegressor"]


class BayesCeilingRegressor(RegressorMixin, BaseEstimator):
    """The Bayes-optimal estimator ``E[label | spectrum]`` as a regressor.

    Nothing is learned: ``fit`` only checks X and resolves the spectral model;
    ``predict`` returns posterior means under (spectral model, noise process,
    label prior) by importance sampling (see
    :func:`~specreg.bounds.posterior_summary`). On spectra drawn from that
    model, noise and prior no regressor has a lower expected squared error,
    so it belongs next to the trained models in every comparison
    (``cross_validate``, learning curves, per-SNR tables).

    Parameters
    ----------
    grid : SpectralModel, optional
        Default: the embedded grid (:func:`~specreg.datasets.load_grid`).
    prior : LabelPrior, optional
        The prior the labels were drawn from; default uniform on the grid box.
    noise : PFSNoiseModel, "given" or None, default=None
        The noise process (see :class:`FisherCeiling`): by default the error
        half of X holds the reference errors of ``PFSNoiseModel(grid.wave)``
        and the likelihood uses its physical noise; ``"given"`` takes the
        errors as the true sigma.
    target : str, default="log_g"
    n_samples : int, default=256
        Importance samples per spectrum.
    lattice : int or sequence of int, optional
        Cells per label of the coarse likelihood lattice.
    random_state : int or None
    progress : bool, default=False

    Attributes
    ----------
    grid_ : SpectralModel
    ceiling_ : FisherCeiling
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> g = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, np.array([[1.0] * 8, [2.0] * 8, [3.0] * 8]), np.arange(8.0))
    >>> X = np.hstack([g.flux([[2.0], [4.0]]), np.full((2, 8), 0.05)])
    >>> BayesCeilingRegressor(g, noise="given", n_samples=32, random_state=0).fit(X).predict(X).round(1).tolist()
    [2.0, 4.0]
    """

    def __init__(
        self,
        grid=None,
        prior=None,
        noise=None,
        target: str = "log_g",
        n_samples: int = 256,
        lattice=None,
        random_state=None,
        progress: bool = False,
    ) -> None:
        self.grid = grid
        self.prior = prior
        self.noise = noise
        self.target = target
        self.n_samples = n_samples
        self.lattice = lattice
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True  # Monte-Carlo posterior means
        tags.target_tags.required = False
        return tags

    def fit(self, X, y=None):
        """Check X against the spectral model (nothing is learned).

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)
            ``[flux | error]``.
        y : ignored

        Returns
        -------
        self
        """
        X = validate_data(self, X, reset=True, dtype=np.float32)
        if self.grid is None:
            from ..datasets import load_grid

            self.grid_ = load_grid()
        else:
            self.grid_ = self.grid
        split_X(X, getattr(self.grid_, "n_pix", None))
        self.ceiling_ = FisherCeiling(
            self.grid_,
            self.noise,
            prior=self.prior,
            target=self.target,
            n_samples=self.n_samples,
            lattice=self.lattice,
            random_state=self.random_state,
            progress=self.progress,
        )
        self.ceiling_._index()  # a clear error for an unknown target, at fit time
        self.ceiling_._noise_model()  # and for a bad noise
        return self

    def predict_posterior(self, X) -> PosteriorSummary:
        """Posterior summaries of all labels (means, variances, MC errors, ESS).

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)

        Returns
        -------
        PosteriorSummary
        """
        check_is_fitted(self, "ceiling_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        flux, error = split_X(X, getattr(self.grid_, "n_pix", None))
        return self.ceiling_.posterior(flux, error)

    def predict(self, X) -> np.ndarray:
        """Posterior mean of the target label.

        Parameters
        ----------
        X : array-like of shape (n, 2 * n_pix)

        Returns
        -------
        y_pred : ndarray of shape (n,)
        """
        post = self.predict_posterior(X)
        return post.mean[:, post.index(self.target)]
