"""Does the error half of ``X = [flux | error]`` give the labels away?

Errors computed from the noiseless flux (``sigma**2 = A a f / x + B b / x**2``, the
reference study's files, ``make_spectra(errors="true")``) are a deterministic
function of the spectrum, so a model fed ``[flux | error]`` can read the labels off
the errors instead of the noisy flux and beat every noise-limited ceiling.
:func:`error_leakage` measures it: the cross-validated R^2 of one linear model on
the error half alone, next to the same model on the flux half alone (noisy, as an
observation allows) and on all of ``X``. Honest errors (magnitude and observing
conditions only, :meth:`~specreg.datasets.Spectra.with_reference_errors`) predict
the labels no better than chance.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..spectra import split_stacked
from ..spectra._validation import check_bool, check_int, check_real

__all__ = [
    "DEFAULT_LEAKAGE_ALPHAS",
    "LEAKAGE_MARGIN",
    "LEAKAGE_MIN_R2",
    "ErrorLeakageReport",
    "ErrorLeakageWarning",
    "error_leakage",
]

#: How much better (in R^2) the error half must predict y than the flux half to leak.
LEAKAGE_MARGIN = 0.05
#: The least R^2 of the error half that counts as a leak (below it: no usable signal).
LEAKAGE_MIN_R2 = 0.2
#: Ridge penalties searched (on standardised pixels) by leave-one-out in each fold.
DEFAULT_LEAKAGE_ALPHAS = np.logspace(-6, 8, 29)


class ErrorLeakageWarning(UserWarning):
    """The error half of a labelled spectra set predicts the labels (see :func:`error_leakage`).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", ErrorLeakageWarning)
    ...     warnings.warn("the errors leak log g", ErrorLeakageWarning)
    >>> issubclass(ErrorLeakageWarning, UserWarning)
    True
    """


@dataclass(frozen=True)
class ErrorLeakageReport:
    """The result of :func:`error_leakage`.

    Attributes
    ----------
    r2_error : float
        Cross-validated R^2 of the linear model on the error half alone.
    r2_flux : float
        The same on the (noisy) flux half alone.
    r2_all : float
        The same on all of ``X`` (noisy flux and errors).
    n : int
        Spectra used (after ``max_samples``).
    n_pix : int
        Pixels per half.
    cv : int
        Folds.
    noisy : bool
        Whether the flux half was already noisy (else one noise draw was added).
    margin, min_r2 : float
        The thresholds of :attr:`leaks`.
    alphas : dict
        Median over folds of the chosen ridge penalty, per feature set
        (``"error"``, ``"flux"``, ``"all"``).
    leaks : bool
        ``r2_error > r2_flux + margin`` and ``r2_error > min_r2``: the errors
        predict y clearly better than what a noisy observation allows.

    Examples
    --------
    >>> r = ErrorLeakageReport(0.99, 0.38, 0.99, 300, 4096, 3, True, 0.05, 0.2, {})
    >>> r.leaks
    True
    >>> print(r)  # doctest: +NORMALIZE_WHITESPACE
    error leakage: the error half predicts y with cross-validated R^2 = 0.99, the flux
    half alone with 0.38 (all of X: 0.99; 300 spectra, 3-fold): the errors LEAK the labels
    """

    r2_error: float
    r2_flux: float
    r2_all: float
    n: int
    n_pix: int
    cv: int
    noisy: bool
    margin: float = LEAKAGE_MARGIN
    min_r2: float = LEAKAGE_MIN_R2
    alphas: dict | None = None

    @property
    def leaks(self) -> bool:
        """The error half predicts y clearly better than the flux half."""
        return bool(self.r2_error > self.r2_flux + self.margin and self.r2_error > self.min_r2)

    def as_dict(self) -> dict:
        """The fields and :attr:`leaks` as a plain dict."""
        out = asdict(self)
        out["leaks"] = self.leaks
        return out

    def __str__(self) -> str:
        flux = "the flux half alone" if self.noisy else "the flux half with one noise draw"
        verdict = (
            "the errors LEAK the labels"
            if self.leaks
            else "no leak (the errors do not predict y better than the flux)"
        )
        return (
            f"error leakage: the error half predicts y with cross-validated R^2 = "
            f"{self.r2_error:.2f}, {flux} with {self.r2_flux:.2f} (all of X: "
            f"{self.r2_all:.2f}; {self.n} spectra, {self.cv}-fold): {verdict}"
        )


def _as_targets(y, n: int) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"y must have shape (n,) or (n, n_targets), got {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"y has {arr.shape[0]} values but X has {n} rows")
    if not np.all(np.isfinite(arr)):
        raise ValueError("y contains NaN or infinite values")
    arr = arr.reshape(n, -1)
    if np.any(np.ptp(arr, axis=0) == 0):
        raise ValueError("y is constant (in some target): R^2 is undefined")
    return arr


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler fitted on ``train`` (zero-variance pixels get scale 1), float64."""
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    scale = train.std(axis=0)
    scale[scale < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    return (train - mean) / scale, (np.asarray(test, dtype=np.float64) - mean) / scale


def _ridge_gcv_predict(
    K: np.ndarray, C: np.ndarray, y: np.ndarray, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-form ridge with an unpenalised intercept, alpha by leave-one-out per target.

    ``K`` (m, m) is the Gram matrix of the standardised (centred) training rows,
    ``C`` (k, m) that of the test rows against them; as ``RidgeCV`` (GCV mode).
    Returns the test predictions (k, t) and the chosen alpha per target (t,).
    """
    m = K.shape[0]
    lam, Q = np.linalg.eigh(K)
    lam = np.clip(lam, 0.0, None)
    mean = y.mean(axis=0)
    Qy = Q.T @ (y - mean)  # (m, t)
    Q2 = Q * Q
    best = np.full(y.shape[1], np.inf)
    best_alpha = np.zeros(y.shape[1])
    best_coef = np.zeros_like(Qy)
    for alpha in alphas:
        shrink = lam / (lam + alpha)
        resid = (y - mean) - Q @ (shrink[:, None] * Qy)
        h = Q2 @ shrink + 1.0 / m  # hat diagonal, intercept included
        loo = np.mean((resid / np.clip(1.0 - h, 1e-12, None)[:, None]) ** 2, axis=0)
        better = loo < best
        if better.any():
            best[better] = loo[better]
            best_alpha[better] = alpha
            best_coef[:, better] = (Qy / (lam + alpha)[:, None])[:, better]
    dual = Q @ best_coef  # (m, t): training-row weights
    return mean + C @ dual, best_alpha


def error_leakage(
    X,
    y,
    *,
    cv: int = 5,
    noisy: bool = True,
    random_state=None,
    max_samples: int | None = 2000,
    alphas=None,
    margin: float = LEAKAGE_MARGIN,
    min_r2: float = LEAKAGE_MIN_R2,
    n_threads: int | None = 1,
) -> ErrorLeakageReport:
    """Cross-validated R^2 of a linear model on the error half of ``X`` vs the flux half.

    The model is ``make_pipeline(StandardScaler(), RidgeCV(alphas))``: pixels
    standardised on each training fold, the ridge penalty chosen per fold by
    leave-one-out, in the dual (kernel) form so that it is fast for fewer spectra
    than pixels (about 2 s for 1,000 spectra of 4096 pixels, 5-fold). It is
    fitted on the error half alone, on the flux half alone and on all of ``X``,
    with the same folds, and scored by R^2 of the pooled out-of-fold predictions.
    Errors that carry no label information score about 0; errors computed from
    the noiseless flux score near 1, far above the noisy flux.

    Parameters
    ----------
    X : array-like of shape (n, 2 * n_pix)
        ``[flux | error]``: flux in the first half, 1-sigma errors (> 0) in the second.
    y : array-like of shape (n,) or (n, n_targets)
        Labels (e.g. log g); several targets are scored by their mean R^2, each
        with its own penalty.
    cv : int, default=5
        Folds (shuffled ``KFold``), >= 2 and <= the number of spectra used.
    noisy : bool, default=True
        Whether the flux half is already noisy (a test set). ``False`` (a
        noiseless training set) scores the flux on ``flux + error * N(0, 1)``
        (one seeded draw; also used for ``r2_all``): leakage is judged against
        what a noisy observation allows.
    random_state : int, Generator or None, default=None
        Seeds the subsample, the noise draw and the folds.
    max_samples : int or None, default=2000
        Use at most this many rows (a seeded random subsample); ``None`` uses all.
        The cost grows as ``n**2 * n_pix`` (Gram matrices) and ``n**3`` (their
        eigendecompositions).
    alphas : array-like of float, optional
        Ridge penalties (on standardised pixels); default
        :data:`DEFAULT_LEAKAGE_ALPHAS`, ``logspace(-6, 8, 29)`` (errors computed
        from the noiseless flux need little penalty: they are exact functions of it).
    margin : float, default=0.05
        :data:`LEAKAGE_MARGIN`: the report ``leaks`` when
        ``r2_error > r2_flux + margin`` ...
    min_r2 : float, default=0.2
        ... and ``r2_error > min_r2`` (:data:`LEAKAGE_MIN_R2`).
    n_threads : int or None, default=1
        BLAS threads during the call (``threadpoolctl``); ``None`` leaves them as
        configured. One thread is fastest for a few hundred spectra and on a
        machine shared with other work (1,000 spectra of 4096 pixels, 5-fold:
        about 2 s on one core).

    Returns
    -------
    ErrorLeakageReport
        ``r2_error``, ``r2_flux``, ``r2_all``, ``n``, ``leaks`` and a readable
        ``str()``.

    Raises
    ------
    ValueError
        ``X`` not 2-D or of odd width, NaN or infinite values, errors <= 0 (from
        :func:`~specreg.spectra.split_stacked`); ``y`` of the wrong length,
        non-finite or constant; fewer spectra than folds; bad ``cv``,
        ``max_samples`` or ``alphas``.

    See Also
    --------
    specreg.datasets.Spectra.with_reference_errors : honest errors for a leaky set.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.datasets import make_spectra
    >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
    >>> wave = pfs_mr_wave()
    >>> dip = np.exp(-0.5 * ((wave - 8542.0) / 3.0) ** 2)
    >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, 0.5 - np.outer([0.3, 0.1], dip), wave)
    >>> leaky = make_spectra(200, model=g, noisy=True, errors="true",
    ...                      random_state=0)
    >>> report = error_leakage(leaky.X, leaky.y, random_state=0)
    >>> report.leaks, report.r2_error > 0.9 > report.r2_flux
    (True, True)
    >>> # reference errors: no leak
    >>> honest = make_spectra(200, model=g, noisy=True, random_state=0)
    >>> report = error_leakage(honest.X, honest.y, random_state=0)
    >>> report.leaks, abs(report.r2_error) < 0.05
    (False, True)
    """
    flux, error = split_stacked(X, error_rule="positive")
    n, n_pix = flux.shape
    Y = _as_targets(y, n)
    cv = check_int(cv, "cv (the number of folds)", low=2)
    noisy = check_bool(noisy, "noisy")
    check_real(margin, "margin", low=0.0)
    check_real(min_r2, "min_r2", high=1.0)
    if max_samples is not None:
        max_samples = check_int(max_samples, "max_samples")
        if max_samples < cv:
            raise ValueError(f"max_samples={max_samples} leaves fewer spectra than cv={cv} folds")
    alphas = DEFAULT_LEAKAGE_ALPHAS if alphas is None else np.asarray(alphas, dtype=float)
    alphas = np.atleast_1d(alphas)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas > 0)):
        raise ValueError("alphas must be a non-empty 1-D array of finite values > 0")
    if n < cv:
        raise ValueError(f"X has {n} spectra, fewer than the cv={cv} folds")

    if n_threads is not None:
        n_threads = check_int(n_threads, "n_threads")
    limits = threadpool_limits(n_threads, "blas") if n_threads is not None else nullcontext()
    with limits:
        return _error_leakage(
            flux, error, Y, cv, noisy, random_state, max_samples, alphas, margin, min_r2
        )


def _error_leakage(flux, error, Y, cv, noisy, random_state, max_samples, alphas, margin, min_r2):
    n, n_pix = flux.shape
    rng = np.random.default_rng(random_state)
    rows = np.arange(n)
    if max_samples is not None and n > max_samples:
        rows = np.sort(rng.choice(n, size=int(max_samples), replace=False))
    flux, error, Y = flux[rows], error[rows], Y[rows]
    if np.any(np.ptp(Y, axis=0) == 0):
        raise ValueError("y is constant (in some target) on the subsample: R^2 is undefined")
    if not noisy:
        flux = flux + error * rng.standard_normal(flux.shape).astype(flux.dtype, copy=False)
    m = rows.size

    folds = np.array_split(rng.permutation(m), cv)
    pred = {name: np.empty_like(Y) for name in ("error", "flux", "all")}
    chosen = {name: [] for name in pred}
    for test in folds:
        train = np.setdiff1d(np.arange(m), test, assume_unique=True)
        grams = {}
        for name, half in (("flux", flux), ("error", error)):
            z_train, z_test = _standardise(half[train], half[test])
            grams[name] = (z_train @ z_train.T, z_test @ z_train.T)
        grams["all"] = (
            grams["flux"][0] + grams["error"][0],
            grams["flux"][1] + grams["error"][1],
        )
        for name, (K, C) in grams.items():
            pred[name][test], alpha = _ridge_gcv_predict(K, C, Y[train], alphas)
            chosen[name].append(alpha)

    def r2(p: np.ndarray) -> float:
        ss_res = ((Y - p) ** 2).sum(axis=0)
        ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        return float(np.mean(1.0 - ss_res / ss_tot))

    return ErrorLeakageReport(
        r2_error=r2(pred["error"]),
        r2_flux=r2(pred["flux"]),
        r2_all=r2(pred["all"]),
        n=int(m),
        n_pix=int(n_pix),
        cv=cv,
        noisy=bool(noisy),
        margin=float(margin),
        min_r2=float(min_r2),
        alphas={k: float(np.median(np.concatenate(v))) for k, v in chosen.items()},
    )
