"""The Bayes-optimal ceiling: posterior means of the labels by importance sampling.

The spectra come from a known forward model ``f(theta)``, Gaussian noise with
known per-pixel sigma and a known label prior, so the posterior mean
``E[theta | x]`` minimises the mean squared error over *all* estimators. This
module computes it for many spectra at once:

1. **lattice**: chi^2 of every spectrum against the model on a regular lattice
   of cell centres filling the prior box (a pair of matrix products), which
   gives a coarse posterior over cells and global starting points;
2. **maximum likelihood**: vectorised Levenberg-Marquardt (Gauss-Newton) from
   the best lattice points (the iteration the template fit uses, without its
   free amplitude), then the Fisher matrix at the optimum;
3. **importance sampling** with a defensive mixture proposal: a Student-t
   around the optimum with the inverse Fisher matrix as scale (the Laplace
   approximation, heavy-tailed), the coarse lattice posterior (uniform within
   cells) and the prior itself, so multi-modal and prior-dominated posteriors
   are covered. Weights use the full mixture density (deterministic mixture).
   Spectra below the ESS floor are sampled again with more draws, around a
   maximum-likelihood fit repeated from their best draw.

Per spectrum it reports the posterior mean and variance, the effective sample
size and the Monte-Carlo standard errors of both (delta method for
self-normalised importance sampling).

The noise is the generator's: with a noise model, the reported errors fix each
spectrum's collected flux and the likelihood uses the physical variance at each
label (photon noise of the model flux, sky and read noise). Reported errors
computed from the noiseless flux would carry label information this ceiling
does not see (``make_spectra(errors="true")``): that is leakage, not spectroscopy.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.special import gammaln, logsumexp

from .._numerics import fisher_information, levenberg_marquardt
from ..spectra._validation import (
    as_generator,
    check_bool,
    check_flux_error,
    check_int,
    check_noise_model,
    check_prior,
    check_real,
    renamed,
    split_stacked,
)

__all__ = ["QUANTILE_LEVELS", "PosteriorSummary", "posterior_summary", "split_X"]

# the Gaussian 1-sigma points: the "68 %" interval of the tables is this 0.6827 one
_ONE_SIGMA = (0.15865525, 0.84134475)

#: Posterior quantile levels kept by default: the median and the central 68 % and 95 %
#: credible intervals (0.1587 and 0.8413 are the Gaussian 1-sigma points).
QUANTILE_LEVELS = (0.025, _ONE_SIGMA[0], 0.5, _ONE_SIGMA[1], 0.975)


@dataclass
class PosteriorSummary:
    """Per-spectrum posterior moments and importance-sampling diagnostics.

    Attributes
    ----------
    param_names : tuple of str
    mean : ndarray of shape (n, d)
        Posterior means (the Bayes-optimal point estimates under squared loss).
    var : ndarray of shape (n, d)
        Posterior variances (their mean over spectra estimates the Bayes MSE).
    mean_se : ndarray of shape (n, d)
        Monte-Carlo standard error of ``mean`` (under a snapped prior: the
        quadrature's error estimate).
    var_se : ndarray of shape (n, d)
        Monte-Carlo standard error of ``var`` (likewise).
    ess : ndarray of shape (n,)
        Effective sample size ``(sum w)^2 / sum w^2`` (under a snapped prior:
        of the quadrature cells' masses).
    theta_ml : ndarray of shape (n, d)
        Maximum-likelihood (within the prior box) labels.
    chi2_ml : ndarray of shape (n,)
        chi^2 at ``theta_ml``.
    fisher_ml : ndarray of shape (n, d, d)
        Fisher matrix at ``theta_ml``.
    n_draws : ndarray of shape (n,)
        Importance draws behind each spectrum's estimate (more than the
        requested ``n_draws`` where the ESS floor asked for resampling; under a
        snapped prior, the likelihood evaluations of the quadrature).
    quantile_levels : tuple of float
        Levels of ``quantiles``.
    quantiles : ndarray of shape (n, n_levels, d)
        Weighted posterior quantiles of every label.
    pit : ndarray of shape (n, d)
        Posterior CDF at the true labels (the probability integral transform;
        uniform on [0, 1] for a calibrated posterior), NaN unless the truth was
        given.
    """

    param_names: tuple
    mean: np.ndarray
    var: np.ndarray
    mean_se: np.ndarray
    var_se: np.ndarray
    ess: np.ndarray
    theta_ml: np.ndarray
    chi2_ml: np.ndarray
    fisher_ml: np.ndarray
    n_draws: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    quantile_levels: tuple = ()
    quantiles: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0)))
    pit: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    @property
    def std(self) -> np.ndarray:
        """Posterior standard deviations, shape (n, d)."""
        return np.sqrt(self.var)

    def interval(self, level: float = 0.68) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval at ``level`` from the stored quantiles.

        Parameters
        ----------
        level : float, default=0.68
            0.68 (the 0.1587-0.8413 quantiles) or 0.95 with the default levels;
            any level whose two quantiles were computed.

        Returns
        -------
        lower, upper : ndarrays of shape (n, d)
        """
        check_real(level, "level", low=0.0, high=1.0, low_open=True)
        if level == 1.0:
            raise ValueError("level must be < 1: a 100 % interval is the whole prior box")
        lo, hi = 0.5 - level / 2, 0.5 + level / 2
        levels = np.asarray(self.quantile_levels, dtype=float)
        # 0.68 stands for the 1-sigma interval (0.6827) as in every table of the docs
        if np.isclose(level, 0.68):
            lo, hi = _ONE_SIGMA
        i = np.flatnonzero(np.isclose(levels, lo, atol=1e-6))
        j = np.flatnonzero(np.isclose(levels, hi, atol=1e-6))
        if i.size == 0 or j.size == 0:
            raise ValueError(
                f"no {level:g} interval: the quantiles were computed at "
                f"{tuple(float(q) for q in levels)}; pass quantiles=({lo:g}, {hi:g}) to "
                "posterior_summary"
            )
        return self.quantiles[:, i[0]], self.quantiles[:, j[0]]

    def __len__(self) -> int:
        return self.mean.shape[0]

    def index(self, name: str) -> int:
        """Column of a label."""
        if name not in self.param_names:
            raise ValueError(f"unknown label {name!r}; have {self.param_names}")
        return self.param_names.index(name)


def split_X(X, n_pix: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split the stacked model input ``[flux | error]`` into its halves, as float32.

    :func:`specreg.spectra.split_stacked` with the bounds' rule (errors > 0).

    Parameters
    ----------
    X : array-like of shape (n, 2 * n_pix)
    n_pix : int, optional
        Checked against the width of X when given.

    Returns
    -------
    flux, error : ndarrays of shape (n, n_pix), float32

    Examples
    --------
    >>> import numpy as np
    >>> f, e = split_X(np.array([[1.0, 2.0, 0.1, 0.2]]))
    >>> f.tolist(), e.shape
    ([[1.0, 2.0]], (1, 2))
    """
    return split_stacked(np.asarray(X, dtype=np.float32), n_pix=n_pix, error_rule="positive")


def _check_spectra(flux: np.ndarray, error: np.ndarray) -> None:
    check_flux_error(flux, error, error_rule="positive")


def _warn_renamed_attribute(old: str, new: str) -> None:
    """FutureWarning for reading the deprecated attribute ``old``, now ``new``."""
    warnings.warn(
        f"{old!r} was renamed {new!r} in 0.1 and will be removed in 0.3",
        FutureWarning,
        stacklevel=3,
    )


def resolve_noise(noise, model):
    """The noise model of the likelihood for a ``noise`` argument (None: errors given).

    Parameters
    ----------
    noise : PFSNoiseModel, "given" or None
        None means ``PFSNoiseModel(model.wave)``, the default of ``make_spectra``;
        ``"given"`` means the errors are the true per-pixel sigma.
    model : SpectralModel

    Returns
    -------
    PFSNoiseModel or None
    """
    if isinstance(noise, str):
        if noise != "given":
            raise ValueError(f'noise must be a PFSNoiseModel, "given" or None, got {noise!r}')
        return None
    if noise is not None:
        check_noise_model(noise, "noise")
        return noise
    from ..spectra import PFSNoiseModel

    return PFSNoiseModel(model.wave)


def resolve_prior(prior, model):
    """``prior``, or the uniform prior on the model's box (``make_spectra``'s default)."""
    if prior is not None:
        check_prior(prior, ("param_names", "sample", "logpdf"))
        return prior
    from ..spectra import LabelPrior

    return LabelPrior(dict(model.bounds))


# --------------------------------------------------------------------- helpers
class _Problem:
    """Model + prior, aligned to the model's label order, with the lattice templates.

    Construction checks the prior and the lattice; the lattice templates (up to
    ~100 MB) are computed at first use and never pickled (a cache).
    """

    def __init__(self, model, prior, lattice):
        self.model = model
        self.names = tuple(model.param_names)
        self.d = len(self.names)
        prior = resolve_prior(prior, model)
        if set(prior.param_names) != set(self.names):
            raise ValueError(
                f"the prior's labels {prior.param_names} differ from the model's {self.names}"
            )
        self.prior = prior
        # prior column j holds model label perm[j]
        self.perm = [self.names.index(p) for p in prior.param_names]
        self.to_model = [prior.param_names.index(p) for p in self.names]
        self.lo = np.array([prior.bounds[p][0] for p in self.names])
        self.hi = np.array([prior.bounds[p][1] for p in self.names])
        for k, p in enumerate(self.names):
            mlo, mhi = model.bounds[p]
            if self.lo[k] < mlo - 1e-9 or self.hi[k] > mhi + 1e-9:
                raise ValueError(
                    f"the prior box of {p!r} [{self.lo[k]:g}, {self.hi[k]:g}] exceeds the "
                    f"model's [{mlo:g}, {mhi:g}]"
                )
        if lattice is None:
            lattice = max(3, int(round(4096 ** (1.0 / self.d))))
        given = np.atleast_1d(np.asarray(lattice, dtype=object))
        if given.ndim != 1 or given.size not in (1, self.d):
            raise ValueError(
                f"lattice must be one size or {self.d} sizes (one per label), got {lattice!r}"
            )
        self.sizes = tuple(check_int(s, "lattice size") for s in np.broadcast_to(given, (self.d,)))
        sizes = np.array(self.sizes)
        self.h = (self.hi - self.lo) / sizes
        axes = [self.lo[k] + (np.arange(sizes[k]) + 0.5) * self.h[k] for k in range(self.d)]
        mesh = np.meshgrid(*axes, indexing="ij")
        self.centres = np.stack([m.ravel() for m in mesh], axis=1)
        self.log_cell_volume = float(np.sum(np.log(self.h)))
        self.centre_logprior = self.logprior(self.centres)
        self.box_precision = np.diag(12.0 / (self.hi - self.lo) ** 2)
        # a snapped prior (point masses in all labels but one): its posterior is summed
        # over node combinations and integrated along the free label (._snapped)
        self.snap = None
        if getattr(prior, "snap_to", None) is not None:
            from ._snapped import _SnapStructure

            self.snap = _SnapStructure(self)

    @cached_property
    def templates(self) -> np.ndarray:
        # float32: the lattice only shapes the proposal and the starting points, and
        # the rounding of chi2 (~1e-7 relative) is far below the lattice's resolution
        return self.model.flux(self.centres, out_of_bounds="clip").astype(np.float32)

    @cached_property
    def templates_sq(self) -> np.ndarray:
        return self.templates**2

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("templates", None)
        state.pop("templates_sq", None)
        return state

    def logprior(self, theta: np.ndarray) -> np.ndarray:
        inside = np.all((theta >= self.lo) & (theta <= self.hi), axis=1)
        out = np.full(theta.shape[0], -np.inf)
        if inside.any():
            out[inside] = self.prior.logpdf(theta[inside][:, self.perm])
        return out

    def sample_prior(self, n: int, rng) -> np.ndarray:
        return self.prior.sample(n, rng)[:, self.to_model]

    def flux(self, theta: np.ndarray) -> np.ndarray:
        return self.model.flux(theta, out_of_bounds="clip")

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        return self.model.jacobian(theta, out_of_bounds="clip")

    def cell_index(self, theta: np.ndarray) -> np.ndarray:
        idx = np.floor((theta - self.lo) / self.h).astype(np.int64)
        idx = np.clip(idx, 0, np.array(self.sizes) - 1)
        return np.ravel_multi_index(idx.T, self.sizes)


def _chi2(x: np.ndarray, iw: np.ndarray, f: np.ndarray) -> np.ndarray:
    r = (x - f) * iw
    return np.einsum("ij,ij->i", r, r, dtype=np.float64)


class _NoiseLikelihood:
    """Gaussian log-likelihood of observed spectra, with the generator's noise.

    With ``noise_model=None`` the errors are the known per-pixel sigma (data
    from elsewhere). With a :class:`~specreg.spectra.PFSNoiseModel` the errors
    are its reported reference errors, which fix each spectrum's collected flux
    x; the variance at labels theta is then the physical one,
    ``obj * max(f(theta), 0) / x + bkg / x**2``, normalisation term included,
    exactly the process ``make_spectra`` draws the noise from.
    """

    def __init__(self, flux: np.ndarray, error: np.ndarray, noise_model=None):
        self.flux = flux
        self.noise_model = noise_model
        self.slope = self.floor = None
        if noise_model is None:
            self.iw = (1.0 / error).astype(np.float32)
        else:
            self.x = noise_model.collected_flux_from_error(error)
            affine = _affine_variance(noise_model, self.x)
            if affine is not None:
                self.slope, self.floor = affine

    def __call__(self, rows: np.ndarray, model_flux: np.ndarray) -> np.ndarray:
        """log p(flux[rows] | theta) up to a constant, for model spectra ``model_flux``.

        ``rows`` (m,) names the observed spectrum of each model spectrum (m, n_pix);
        the draws of one spectrum come in runs, each evaluated against its spectrum
        by broadcasting (no (m, n_pix) copies of the data).
        """
        out = np.empty(rows.shape[0])
        for row, sel in _runs(rows):
            out[sel] = self._one(row, model_flux[sel])
        return out

    def _one(self, row: int, f: np.ndarray) -> np.ndarray:
        """log p(flux[row] | theta) for model spectra ``f`` (m, n_pix), shape (m,)."""
        x = self.flux[row]
        if self.noise_model is None:
            return -0.5 * _chi2(x[None, :], self.iw[row][None, :], f)
        if self.slope is None:  # a noise model whose variance is not affine in the flux
            var = self.noise_model.sigma(f, self.x[[row]].repeat(f.shape[0])) ** 2
        else:
            # the noise model's variance obj * max(f, 0) / x + bkg / x**2, in the flux's
            # precision (float32: ~1e-7 relative, far below the Monte-Carlo error)
            var = np.maximum(f, 0)
            var *= self.slope[row]
            var += self.floor[row]
        r2 = np.subtract(x, f)
        r2 *= r2
        r2 /= var
        log_var = np.log(var, out=var)
        return -0.5 * (r2.sum(axis=1, dtype=np.float64) + log_var.sum(axis=1, dtype=np.float64))


def _runs(rows: np.ndarray):
    """``(value, slice)`` of each run of equal values in ``rows``."""
    cuts = np.flatnonzero(np.diff(rows)) + 1
    starts, stops = np.r_[0, cuts], np.r_[cuts, rows.shape[0]]
    return [(int(rows[a]), slice(int(a), int(b))) for a, b in zip(starts, stops)]


def _affine_variance(noise_model, x: np.ndarray):
    """The noise model's variance as ``slope * max(f, 0) + floor``, per spectrum and pixel.

    The generator's variance ``obj * max(f, 0) / x + bkg / x**2`` is affine in the
    clipped flux: its slope and floor, read off the model's own ``sigma`` at f = 0 and
    f = 1, make the likelihood one fused float32 pass per draw instead of a square
    root and its square. Checked at two other flux levels; None (use ``sigma``
    itself) for a noise model of another form.

    Returns
    -------
    (slope, floor) : ndarrays of shape (n, n_pix), float32, or None
    """
    shape = (x.shape[0], len(noise_model.wave))

    def var(level):
        return noise_model.sigma(np.full(shape, level, np.float32), x).astype(np.float64) ** 2

    floor = var(0.0)
    slope = var(1.0) - floor
    for level in (0.37, -0.5):
        expect = floor + max(level, 0.0) * slope
        if not np.allclose(var(level), expect, rtol=1e-5, atol=0):
            return None
    return slope.astype(np.float32), floor.astype(np.float32)


class _SubLikelihood:
    """The likelihood of a subset of a chunk's spectra (rows renumbered from 0)."""

    def __init__(self, loglik: _NoiseLikelihood, rows: np.ndarray):
        self.loglik, self.rows = loglik, rows

    def __call__(self, rows: np.ndarray, model_flux: np.ndarray) -> np.ndarray:
        return self.loglik(self.rows[rows], model_flux)


def _lattice_logpost(prob: _Problem, x: np.ndarray, iw: np.ndarray) -> np.ndarray:
    """Log posterior (unnormalised) of each spectrum at each lattice centre, (n, K)."""
    chi2 = _template_chi2(x, iw, prob.templates, prob.templates_sq)
    return -0.5 * chi2 + prob.centre_logprior[None, :]


def _template_chi2(x, iw, templates, templates_sq=None, block=None) -> np.ndarray:
    """chi^2 of each spectrum (n, n_pix) against each template (K, n_pix): (n, K).

    ``sum x^2 w - 2 x.(t w) + t^2.w``: two GEMMs instead of n*K*n_pix differences.
    ``templates_sq`` (the squares, if cached) or ``block`` (templates squared that
    many at a time, not as a second full copy) bound the memory.
    """
    w = (iw**2).astype(np.float32)
    xw = x * w
    a = np.einsum("ij,ij->i", x, xw, dtype=np.float64)
    n_templates = templates.shape[0]
    step = max(n_templates if block is None else int(block), 1)
    chi2 = np.empty((x.shape[0], n_templates))
    for s in range(0, n_templates, step):
        tb = templates[s : s + step]
        sq = tb * tb if templates_sq is None else templates_sq[s : s + step]
        cross = (xw @ tb.T).astype(np.float64)
        chi2[:, s : s + step] = a[:, None] - 2.0 * cross + (w @ sq.T).astype(np.float64)
    return chi2


def _log_t(z: np.ndarray, logdet: np.ndarray, df: float, d: int) -> np.ndarray:
    """Log density of a multivariate t from the squared Mahalanobis distance z."""
    return (
        gammaln((df + d) / 2)
        - gammaln(df / 2)
        - 0.5 * d * np.log(df * np.pi)
        - 0.5 * logdet
        - 0.5 * (df + d) * np.log1p(z / df)
    )


class _MixtureProposal:
    """The defensive mixture proposal around each spectrum's Laplace fit.

    Three components, in the shares ``mixture``: a multivariate Student-t
    (``df`` degrees of freedom) centred on the maximum-likelihood labels, whose
    scale matrix is the Laplace covariance (the inverse Fisher matrix, bounded
    by the prior box so a flat direction stays finite, inflated by ``scale``);
    the coarse lattice posterior, uniform within cells; the prior itself. Every
    draw is weighted by the density of the whole mixture (the balance heuristic),
    whichever component drew it, so multi-modal and prior-dominated posteriors
    are covered.

    Parameters
    ----------
    problem : _Problem
    theta_ml : ndarray of shape (n, d)
    fisher : ndarray of shape (n, d, d)
        Fisher matrices at ``theta_ml``.
    lattice_logpost : ndarray of shape (n, K)
        Unnormalised log posterior at the lattice centres.
    mixture : (float, float, float)
    df, scale : float
    """

    def __init__(self, problem, theta_ml, fisher, lattice_logpost, *, mixture, df, scale):
        self.problem = problem
        self.mixture = mixture
        self.df = df
        self.theta_ml = np.array(theta_ml, dtype=float)  # a copy: the caller may refit
        cov = np.linalg.inv(fisher + problem.box_precision[None]) * scale**2
        self.chol = np.linalg.cholesky(cov)
        # the whitening of the Student-t, once per spectrum (not per draw)
        self.chol_inv = np.linalg.inv(self.chol)
        self.logdet = 2.0 * np.log(np.einsum("nii->ni", self.chol)).sum(axis=1)
        self.cell_logp = lattice_logpost - logsumexp(lattice_logpost, axis=1, keepdims=True)

    def subset(self, rows: np.ndarray) -> _MixtureProposal:
        """The proposal of the spectra ``rows`` only (renumbered from 0)."""
        out = copy.copy(self)
        out.theta_ml, out.chol = self.theta_ml[rows], self.chol[rows]
        out.chol_inv = self.chol_inv[rows]
        out.logdet, out.cell_logp = self.logdet[rows], self.cell_logp[rows]
        return out

    def counts(self, n_draws: int) -> tuple[int, int, int]:
        """Draws per component (Student-t, lattice, prior) out of ``n_draws``."""
        n_t = int(round(n_draws * self.mixture[0]))
        n_c = int(round(n_draws * self.mixture[1]))
        return n_t, n_c, n_draws - n_t - n_c

    def sample(self, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """``n_draws`` labels per spectrum, shape (n, n_draws, d), components in order."""
        prob = self.problem
        n, d = self.theta_ml.shape
        n_t, n_c, n_p = self.counts(n_draws)
        z = rng.standard_normal((n, n_t, d))
        u = rng.chisquare(self.df, size=(n, n_t, 1)) / self.df
        th_t = self.theta_ml[:, None, :] + np.einsum("nij,nsj->nsi", self.chol, z) / np.sqrt(u)
        K = self.cell_logp.shape[1]
        cum = np.cumsum(np.exp(self.cell_logp), axis=1)
        cum /= cum[:, -1:]
        # inverse-CDF draws for all spectra at once: offset row i's CDF by i
        offset = np.arange(n)[:, None]
        query = (rng.random((n, n_c)) + offset).ravel()
        cells = np.searchsorted((cum + offset).ravel(), query).reshape(n, n_c) - offset * K
        cells = np.clip(cells, 0, K - 1)
        th_c = prob.centres[cells] + (rng.random((n, n_c, d)) - 0.5) * prob.h
        th_p = prob.sample_prior(n * n_p, rng).reshape(n, n_p, d)
        return np.concatenate([th_t, th_c, th_p], axis=1)

    def log_prob(self, theta: np.ndarray, log_prior: np.ndarray | None = None) -> np.ndarray:
        """Log density of the mixture at ``theta`` (n, S, d), shape (n, S).

        ``log_prior`` (n * S,), the prior's log density at the same labels, saves
        computing it again when the caller has it.
        """
        prob = self.problem
        n, S, d = theta.shape
        flat = theta.reshape(-1, d)
        owner = np.repeat(np.arange(n), S)
        if log_prior is None:
            log_prior = prob.logprior(flat)
        delta = theta - self.theta_ml[:, None, :]
        m = np.einsum("nij,nsj->nsi", self.chol_inv, delta).reshape(-1, d)
        log_qt = _log_t((m**2).sum(axis=1), self.logdet[owner], self.df, d)
        inside = np.isfinite(log_prior)
        log_qc = np.full(flat.shape[0], -np.inf)
        if inside.any():
            ci = prob.cell_index(flat[inside])
            log_qc[inside] = self.cell_logp[owner[inside], ci] - prob.log_cell_volume
        a_t, a_c, a_p = self.mixture
        with np.errstate(divide="ignore"):
            terms = np.stack(
                [np.log(a_t) + log_qt, np.log(a_c) + log_qc, np.log(a_p) + log_prior], axis=1
            )
        return logsumexp(terms, axis=1).reshape(n, S)


def _weighted_quantiles(theta, w, levels) -> np.ndarray:
    """Quantiles (n, L, d) of samples ``theta`` (n, S, d) with weights ``w`` (n, S).

    The inverse of the weighted empirical CDF at each level (the smallest sample
    whose cumulative weight reaches it).
    """
    order = np.argsort(theta, axis=1)
    sorted_theta = np.take_along_axis(theta, order, axis=1)
    cum = np.cumsum(np.take_along_axis(np.broadcast_to(w[:, :, None], theta.shape), order, 1), 1)
    out = np.empty((theta.shape[0], len(levels), theta.shape[2]))
    for i, q in enumerate(levels):
        k = np.minimum((cum < q - 1e-12).sum(axis=1), theta.shape[1] - 1)  # (n, d)
        out[:, i] = np.take_along_axis(sorted_theta, k[:, None, :], axis=1)[:, 0]
    return out


def _weighted_summary(theta, logw, levels, truth) -> tuple:
    """Moments, their Monte-Carlo errors, ESS, quantiles and PIT of weighted draws."""
    n, _, d = theta.shape
    logw = logw - logw.max(axis=1, keepdims=True)
    w = np.exp(logw)
    w /= w.sum(axis=1, keepdims=True)
    mean = np.einsum("ns,nsd->nd", w, theta)
    dev = theta - mean[:, None, :]
    var = np.einsum("ns,nsd->nd", w, dev**2)
    # delta-method variance of a self-normalised importance-sampling estimate
    mean_se = np.sqrt(np.einsum("ns,nsd->nd", w**2, dev**2))
    var_se = np.sqrt(np.einsum("ns,nsd->nd", w**2, (dev**2 - var[:, None, :]) ** 2))
    ess = 1.0 / (w**2).sum(axis=1)
    quant = _weighted_quantiles(theta, w, levels)
    if truth is None:
        pit = np.full((n, d), np.nan)
    else:
        below = (theta <= truth[:, None, :]).astype(float)
        # the weights sum to 1 up to rounding: keep the CDF inside [0, 1]
        pit = np.clip(np.einsum("ns,nsd->nd", w, below), 0.0, 1.0)
    return mean, var, mean_se, var_se, ess, quant, pit


def _importance_sample(proposal, loglik_fn, n_draws, rng, batch, levels=(), truth=None):
    """Draw from ``proposal``, weight by prior x likelihood / proposal, summarise."""
    prob = proposal.problem
    theta = proposal.sample(n_draws, rng)  # (n, S, d)
    n, S, d = theta.shape
    flat = theta.reshape(-1, d)
    owner = np.repeat(np.arange(n), S)
    logprior = prob.logprior(flat)
    log_q = proposal.log_prob(theta, log_prior=logprior).reshape(-1)
    loglik = np.full(flat.shape[0], -np.inf)
    rows = np.flatnonzero(np.isfinite(logprior))
    for start in range(0, rows.size, batch):
        sel = rows[start : start + batch]
        loglik[sel] = loglik_fn(owner[sel], prob.flux(flat[sel]))
    logpost = (logprior + loglik).reshape(n, S)
    logw = logpost - log_q.reshape(n, S)
    best = theta[np.arange(n), np.argmax(logpost, axis=1)]
    return _weighted_summary(theta, logw, levels, truth), best


def _lattice_starts(prob: _Problem, lattice_logpost, n_starts: int) -> np.ndarray:
    """The ``n_starts`` best lattice centres of each spectrum, shape (m, k, d)."""
    k = min(int(n_starts), lattice_logpost.shape[1])
    top = np.argsort(-lattice_logpost, axis=1)[:, :k]
    return prob.centres[top]


def _max_likelihood(prob: _Problem, x, iw, starts, max_iter: int):
    """Maximum-likelihood labels within the prior box from ``starts`` (m, k, d).

    Returns ``theta_ml`` (m, d), ``chi2_ml`` (m,) and the Fisher matrices there.
    """
    m, k, d = starts.shape
    ivar = np.square(iw, dtype=np.float64)
    starts = starts.reshape(-1, d)
    rep = np.repeat(np.arange(m), k)
    # no free amplitude (the model fixes the flux scale) and no step-size criterion:
    # the fit stops when the chi-square an undamped step would still gain is < 1e-3
    fit = levenberg_marquardt(
        prob.flux, prob.jacobian, x[rep], ivar[rep], starts, prob.lo, prob.hi,
        max_iter=max_iter, xtol=0.0, lam0=1e-2, covariance=False,
    )  # fmt: skip
    best = fit["chi2"].reshape(m, k).argmin(axis=1)
    pick = np.arange(m) * k + best
    theta_ml = fit["theta"][pick]
    fisher = fisher_information(np.asarray(prob.jacobian(theta_ml), dtype=np.float64), ivar)
    return theta_ml, fit["chi2"][pick], fisher


#: What _weighted_summary (and the snapped path's summary) return, in order.
_SUMMARY_KEYS = ("mean", "var", "mean_se", "var_se", "ess", "quantiles", "pit")


def _empty_summary(n: int, d: int, n_levels: int) -> dict:
    """The arrays of a `PosteriorSummary` of ``n`` spectra and ``d`` labels, unfilled."""
    out = {k: np.empty((n, d)) for k in ("mean", "var", "mean_se", "var_se", "theta_ml")}
    out["quantiles"] = np.empty((n, n_levels, d))
    out["pit"] = np.empty((n, d))
    out["ess"] = np.empty(n)
    out["chi2_ml"] = np.empty(n)
    out["fisher_ml"] = np.empty((n, d, d))
    out["n_draws"] = np.empty(n, dtype=np.int64)
    return out


def _model_batch(n_pix: int) -> int:
    """Model spectra evaluated at once: about 16 MB of float32 flux per batch."""
    return max(256, 4 * 4096 * 1024 // max(n_pix, 1) // 4)


@dataclass(frozen=True)
class _SamplerSettings:
    """The options of :func:`posterior_summary` that shape the sampler, validated.

    One home for their defaults: the scorer and the estimator override the few
    they expose and keep the others.
    """

    n_draws: int = 256
    mixture: tuple[float, float, float] = (0.5, 0.35, 0.15)
    df: float = 4.0
    scale: float = 1.5
    n_starts: int = 2
    max_iter: int = 12
    chunk_size: int = 64
    min_ess: float = 30.0
    max_resample: int = 2
    quantiles: tuple[float, ...] = QUANTILE_LEVELS

    def __post_init__(self):
        mixture = tuple(float(m) for m in self.mixture)
        if len(mixture) != 3 or min(mixture) < 0 or not np.isclose(sum(mixture), 1.0):
            raise ValueError(f"mixture must be 3 non-negative shares summing to 1, got {mixture}")
        if mixture[2] <= 0:
            raise ValueError("the prior share of the mixture must be > 0 (defensive sampling)")
        check_int(self.n_draws, "n_draws", low=8)
        check_real(self.df, "df", low=0.0, low_open=True)  # Student-t degrees of freedom
        check_real(self.scale, "scale", low=0.0, low_open=True)
        check_int(self.n_starts, "n_starts")
        check_int(self.max_iter, "max_iter")
        check_real(self.min_ess, "min_ess", low=1)
        check_int(self.max_resample, "max_resample", low=0)
        check_int(self.chunk_size, "chunk_size")
        levels = tuple(float(q) for q in np.atleast_1d(np.asarray(self.quantiles, dtype=float)))
        if not levels or not all(0.0 < q < 1.0 for q in levels):
            raise ValueError(f"quantiles must be one or more levels in (0, 1), got {levels}")
        if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            raise ValueError(f"quantiles must be increasing and distinct, got {levels}")
        # frozen: the normalised values replace the given ones once, here
        object.__setattr__(self, "mixture", mixture)
        object.__setattr__(self, "quantiles", levels)
        object.__setattr__(self, "n_draws", int(self.n_draws))


def _posterior(
    prob: _Problem,
    flux,
    error,
    settings: _SamplerSettings,
    *,
    noise_model=None,
    truth=None,
    random_state=None,
    progress: bool = False,
) -> PosteriorSummary:
    """:func:`posterior_summary` for a prepared problem (the functional core).

    The estimator and the scorer keep their problem (its lattice templates)
    between calls.
    """
    from tqdm.auto import tqdm

    flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
    error = np.atleast_2d(np.asarray(error, dtype=np.float32))
    _check_spectra(flux, error)
    model = prob.model
    progress = check_bool(progress, "progress")
    n_pix = getattr(model, "n_pix", None) or len(model.wave)
    if flux.shape[1] != n_pix:
        raise ValueError(f"spectra have {flux.shape[1]} pixels, the model {n_pix}")
    opt = settings
    levels, n_draws, min_ess = opt.quantiles, opt.n_draws, opt.min_ess
    proposal_options = {"mixture": opt.mixture, "df": opt.df, "scale": opt.scale}
    rng = as_generator(random_state)
    n, d = flux.shape[0], prob.d
    if truth is not None:
        truth = np.asarray(truth, dtype=float)
        if truth.shape != (n, d):
            raise ValueError(
                f"truth must have shape (n_spectra, n_labels) = {(n, d)} in the model's "
                f"label order {prob.names}; got {truth.shape}"
            )
        if np.isnan(truth).any():  # a PIT at NaN would read as 0, not as missing
            raise ValueError(f"truth contains {int(np.isnan(truth).sum())} NaN value(s)")
    if prob.snap is not None:
        from ._snapped import snapped_posterior

        return snapped_posterior(
            prob, flux, error, opt, noise_model=noise_model, truth=truth, progress=progress
        )
    out = _empty_summary(n, d, len(levels))
    iw_all = 1.0 / error
    batch = _model_batch(n_pix)
    with tqdm(total=n, disable=not progress, unit="spectra", desc="posterior") as bar:
        for start in range(0, n, opt.chunk_size):
            sl = slice(start, min(start + opt.chunk_size, n))
            x, iw = flux[sl], iw_all[sl]
            loglik = _NoiseLikelihood(x, error[sl], noise_model)
            m = x.shape[0]
            lp = _lattice_logpost(prob, x, iw)
            starts = _lattice_starts(prob, lp, opt.n_starts)
            theta_ml, chi2_ml, F = _max_likelihood(prob, x, iw, starts, opt.max_iter)
            proposal = _MixtureProposal(prob, theta_ml, F, lp, **proposal_options)
            true_sl = None if truth is None else truth[sl]
            res, best = _importance_sample(proposal, loglik, n_draws, rng, batch, levels, true_sl)
            res = [np.array(r) for r in res]
            draws = np.full(m, n_draws, dtype=np.int64)
            # a low ESS makes the posterior mean and its MC error unreliable: sample again
            for _ in range(opt.max_resample):
                low = np.flatnonzero(res[4] < min_ess)
                if low.size == 0:
                    break
                draws[low] *= 4
                # a very low ESS mostly means a Laplace fit in a secondary mode (the
                # lattice draws found more posterior elsewhere): fit again from the best
                # draw and centre the Student-t there where the chi-square is lower
                fit = _max_likelihood(prob, x[low], iw[low], best[low][:, None], opt.max_iter)
                keep = fit[1] < chi2_ml[low]
                better = low[keep]
                theta_ml[better], chi2_ml[better], F[better] = (v[keep] for v in fit)
                if better.size:
                    proposal = _MixtureProposal(prob, theta_ml, F, lp, **proposal_options)
                again, best_low = _importance_sample(
                    proposal.subset(low),
                    _SubLikelihood(loglik, low),
                    int(draws[low[0]]),
                    rng,
                    batch,
                    levels,
                    None if true_sl is None else true_sl[low],
                )
                for r, a in zip(res, again):
                    r[low] = a
                best[low] = best_low
            for key, val in zip(_SUMMARY_KEYS, res):
                out[key][sl] = val
            out["theta_ml"][sl], out["chi2_ml"][sl], out["fisher_ml"][sl] = theta_ml, chi2_ml, F
            out["n_draws"][sl] = draws
            bar.update(m)
    short = out["ess"] < min_ess
    if short.any():
        warnings.warn(
            f"{int(short.sum())} of {n} spectra have an effective sample size below "
            f"min_ess={min_ess:g} after {opt.max_resample} resampling round(s) (lowest "
            f"{out['ess'].min():.1f}, row {int(np.argmin(out['ess']))}); their Monte-Carlo "
            "errors are unreliable: raise n_draws or max_resample",
            UserWarning,
            stacklevel=3,
        )
    return PosteriorSummary(param_names=prob.names, quantile_levels=levels, **out)


def posterior_summary(
    model,
    flux,
    error,
    prior=None,
    *,
    n_draws: int = 256,
    lattice=None,
    mixture: tuple[float, float, float] = (0.5, 0.35, 0.15),
    df: float = 4.0,
    scale: float = 1.5,
    n_starts: int = 2,
    max_iter: int = 12,
    chunk_size: int = 64,
    noise_model=None,
    min_ess: float = 30.0,
    max_resample: int = 2,
    quantiles=QUANTILE_LEVELS,
    truth=None,
    random_state=None,
    progress: bool = False,
    n_samples: int | None = None,
) -> PosteriorSummary:
    """Posterior means and variances of the labels of many spectra.

    The likelihood is Gaussian with no free amplitude (the model fixes the
    flux scale, as ``make_spectra`` does). Its per-pixel sigma is either the
    error itself (``noise_model=None``: errors known from elsewhere) or, for
    simulated spectra, the generator's noise process: the reported errors fix
    the collected flux and the variance follows the model flux at each label
    (``noise_model``). The prior and the noise process must be those the
    spectra were drawn from for the result to be the Bayes-optimal estimator.

    Spectra whose effective sample size stays below ``min_ess`` are sampled
    again with four times as many draws, up to ``max_resample`` times (a
    :class:`UserWarning` names those that still fall short); before each round
    their maximum-likelihood fit is repeated from the best draw so far, and the
    Student-t moves there when that fit has the lower chi-square (a Laplace
    fit stuck in a secondary basin is the usual cause of a very low ESS).

    Parameters
    ----------
    model : SpectralModel
        Forward model with ``flux``, ``jacobian``, ``param_names``, ``bounds``
        (e.g. a :class:`~specreg.spectra.SpectralGrid`).
    flux : array-like of shape (n, n_pix)
        Observed (noisy) flux.
    error : array-like of shape (n, n_pix)
        1-sigma errors, > 0.
    prior : LabelPrior, optional
        Default: uniform on the model's box (``make_spectra``'s default). With
        ``snap_to`` (``LabelPrior.from_grid(model, snap=True)``: one label
        free, the others on their nodes) the posterior is not sampled but
        computed by enumeration and quadrature (see Notes).
    n_draws : int, default=256
        Importance draws per spectrum.
    lattice : int or sequence of int, optional
        Cells per label of the coarse lattice; default ``4096 ** (1/d)``.
    mixture : (float, float, float), default=(0.5, 0.35, 0.15)
        Shares of the proposal: Laplace Student-t, lattice posterior, prior.
    df : float, default=4.0
        Degrees of freedom of the Student-t component.
    scale : float, default=1.5
        Inflation of the Laplace covariance.
    n_starts : int, default=2
        Best lattice points used as maximum-likelihood starts.
    max_iter : int, default=12
        Levenberg-Marquardt iterations.
    chunk_size : int, default=64
        Spectra processed at once (memory ~ chunk_size * n_draws * n_pix * 4 bytes / 8).
    noise_model : PFSNoiseModel, optional
        The generator's noise model; ``error`` must then be its reference errors
        (``make_spectra``'s default). None: ``error`` is the true sigma.
    min_ess : float, default=30
        Floor on the effective sample size per spectrum (>= 1). Below it the
        self-normalised Monte-Carlo error is itself unreliable.
    max_resample : int, default=2
        Rounds of resampling (x4 draws each) for spectra below ``min_ess``.
    quantiles : sequence of float, default=QUANTILE_LEVELS
        Levels in (0, 1) of the weighted posterior quantiles kept per label
        (default: the median and the central 68 % and 95 % intervals).
    truth : array-like of shape (n, d), optional
        True labels in the model's order: the posterior CDF there is returned
        as ``pit`` (for calibration checks on simulated spectra).
    random_state : int, Generator or None
    progress : bool, default=False
        Show a tqdm progress bar.
    n_samples : int, optional
        Deprecated alias of ``n_draws`` (``n_samples`` means the number of
        spectra elsewhere in specreg).

    Returns
    -------
    PosteriorSummary

    Notes
    -----
    **Snapped prior.** Its posterior lives on lines: one label free, the
    others on a combination of nodes. The lines whose node likelihood (plus
    the most it can rise between two nodes) comes within e^-10 of the best
    line are kept, so are the lines through the nodes around the
    maximum-likelihood labels (a likelihood that peaks sharply between two
    nodes hides its line from the nodes), and the likelihood is integrated
    along each by adaptive Simpson quadrature (bisection until the log-likelihood is linear to 0.1
    within every cell that can hold mass). The result is deterministic: the
    sampler's options do not apply (``random_state`` is not used); ``mean_se``
    and ``var_se`` are the quadrature's error estimates (Simpson's rule
    against the trapezoid rule, an overestimate), ``ess`` the effective number
    of quadrature cells and ``n_draws`` the likelihood evaluations. The
    quantiles come from the mixed CDF (jumps at the nodes), so an interval
    can be a single node.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> x = np.linspace(0, 1, 30)
    >>> flux = np.array([[0.0] * 30, [1.0] * 30, [2.0] * 30]) * x
    >>> g = SpectralGrid({"a": [0.0, 1.0, 2.0]}, flux, x + 1)
    >>> err = np.full((1, 30), 0.05)
    >>> post = posterior_summary(g, g.flux([[1.3]]), err, random_state=0)
    >>> bool(abs(post.mean[0, 0] - 1.3) < 0.05), bool(post.ess[0] > 50)
    (True, True)
    """
    settings = _SamplerSettings(
        n_draws=renamed(n_draws, n_samples, old="n_samples", new="n_draws", default=256),
        mixture=mixture,
        df=df,
        scale=scale,
        n_starts=n_starts,
        max_iter=max_iter,
        chunk_size=chunk_size,
        min_ess=min_ess,
        max_resample=max_resample,
        quantiles=quantiles,
    )
    if noise_model is not None:
        check_noise_model(noise_model)
    return _posterior(
        _Problem(model, prior, lattice),
        flux,
        error,
        settings,
        noise_model=noise_model,
        truth=truth,
        random_state=random_state,
        progress=progress,
    )
