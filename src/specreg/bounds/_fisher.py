"""Fisher information, Cramer-Rao bounds and their aggregations.

All functions work on stacks of matrices: ``fisher`` has shape (n, d, d), one
Fisher matrix per spectrum. The linear algebra runs in float64 even when the
Jacobians are float32, because the Schur complement subtracts nearly equal
numbers when the labels are degenerate.
"""

from __future__ import annotations

import numpy as np

from .._numerics import fisher_information
from ..spectra._validation import check_bool, check_errors, check_int, check_real, is_integer

__all__ = [
    "fisher_matrix",
    "fisher_matrices",
    "marginal_crlb",
    "schur_decay",
    "condition_number",
    "crlb_dynamic_range",
    "r2_max",
    "aggregate_r2_max",
    "van_trees_bound",
]


def _check_error(error: np.ndarray, shape: tuple) -> np.ndarray:
    error = np.asarray(error)
    if error.shape != shape:
        raise ValueError(f"error must have shape {shape}, got {error.shape}")
    if error.ndim == 2:
        check_errors(error, error_rule="positive")
    elif not np.all(np.isfinite(error) & (error > 0)):
        raise ValueError("error must be finite and > 0 everywhere")
    return error


def fisher_matrix(
    jacobian, error, *, chunk_size: int = 1024, chunk_pixels: int | None = None
) -> np.ndarray:
    """Fisher matrices ``F = J^T diag(sigma^-2) J`` of many spectra at once.

    Parameters
    ----------
    jacobian : array-like of shape (n, n_pix, d)
        ``d flux / d theta`` per spectrum, in flux units per label unit.
    error : array-like of shape (n, n_pix)
        1-sigma errors per pixel, > 0. Independent Gaussian noise is assumed.
    chunk_size : int, default=1024
        Spectra processed at once (bounds the temporary ``J / sigma**2``).
    chunk_pixels : int, optional
        Also chunk over pixels (accumulating in float64); default all pixels.

    Returns
    -------
    fisher : ndarray of shape (n, d, d), float64

    Examples
    --------
    >>> import numpy as np
    >>> J = np.ones((1, 4, 2))
    >>> fisher_matrix(J, np.full((1, 4), 0.5))[0]
    array([[16., 16.],
           [16., 16.]])
    """
    J = np.asarray(jacobian)
    if J.ndim != 3:
        raise ValueError(f"jacobian must have shape (n, n_pix, d), got {J.shape}")
    if not np.all(np.isfinite(J)):
        raise ValueError("jacobian contains NaN or infinite values")
    n, n_pix, d = J.shape
    error = _check_error(error, (n, n_pix))
    dtype = np.float32 if J.dtype == np.float32 else np.float64
    chunk_size = check_int(chunk_size, "chunk_size")
    step = n_pix if chunk_pixels is None else check_int(chunk_pixels, "chunk_pixels")
    out = np.zeros((n, d, d))
    for start in range(0, n, chunk_size):
        rows = slice(start, start + chunk_size)
        for p0 in range(0, n_pix, step):
            cols = slice(p0, p0 + step)
            Jc = J[rows, cols].astype(dtype, copy=False)
            w = error[rows, cols].astype(dtype, copy=False) ** -2
            out[rows] += fisher_information(Jc, w)
    return out


def fisher_matrices(model, theta, error, *, chunk_size: int = 512) -> np.ndarray:
    """Fisher matrices from a spectral model's Jacobian, chunked over labels.

    Parameters
    ----------
    model : SpectralModel
        Anything with ``jacobian(theta) -> (n, n_pix, d)``, e.g. a
        :class:`~specreg.spectra.SpectralGrid`.
    theta : array-like of shape (n, d) or DataFrame
        Labels at which the Fisher information is evaluated.
    error : array-like of shape (n, n_pix)
        1-sigma errors of the spectra at those labels.
    chunk_size : int, default=512
        Labels whose Jacobian is held in memory at once.

    Returns
    -------
    fisher : ndarray of shape (n, d, d)

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> flux = np.outer([0.0, 1.0, 2.0], [1.0, 2.0])  # slopes 1 and 2 per unit x
    >>> g = SpectralGrid({"x": [0.0, 1.0, 2.0]}, flux, [1.0, 2.0])
    >>> fisher_matrices(g, [[0.5]], np.ones((1, 2)))[0].round(6).tolist()
    [[5.0]]
    """
    chunk_size = check_int(chunk_size, "chunk_size")
    theta_arr = np.asarray(theta) if not hasattr(theta, "iloc") else theta
    n = len(theta_arr)
    error = np.asarray(error)
    if error.ndim != 2 or error.shape[0] != n:
        raise ValueError(f"error must have shape ({n}, n_pix), got {error.shape}")
    out = None
    for start in range(0, n, chunk_size):
        sl = slice(start, start + chunk_size)
        part = theta_arr.iloc[sl] if hasattr(theta_arr, "iloc") else theta_arr[sl]
        F = fisher_matrix(model.jacobian(part, out_of_bounds="clip"), error[sl])
        if out is None:
            out = np.empty((n, *F.shape[1:]))
        out[sl] = F
    if out is None:
        raise ValueError("theta is empty")
    return out


def _check_fisher(fisher) -> np.ndarray:
    F = np.asarray(fisher, dtype=np.float64)
    if F.ndim == 2:
        F = F[None]
    if F.ndim != 3 or F.shape[1] != F.shape[2]:
        raise ValueError(f"fisher must have shape (n, d, d), got {F.shape}")
    if not np.all(np.isfinite(F)):
        raise ValueError("fisher contains NaN or infinite values")
    return F


def _equilibrate(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``D^-1/2 F D^-1/2`` with D = diag(F): unit diagonal, same conditioning of the labels.

    Labels in K and in dex differ by 10^6 in Fisher units; scaling removes that
    artificial part of the condition number before any inversion.
    """
    diag = np.einsum("nii->ni", F)
    s = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))
    return F * s[:, :, None] * s[:, None, :], s


def marginal_crlb(
    fisher, index: int = 1, *, method: str = "schur", floor: float = 0.0
) -> np.ndarray:
    """Cramer-Rao bound on one label with the others as nuisance parameters.

    ``CRLB = 1 / (F_gg - F_gn F_nn^-1 F_ng)`` (the Schur complement, the
    reference's method) or ``(F^-1)_gg`` (the full inverse). Both are computed
    on the equilibrated matrix and agree to rounding for a well-posed ``F``.

    Parameters
    ----------
    fisher : array-like of shape (n, d, d)
    index : int, default=1
        Position of the label of interest (1 = ``log_g`` in ``(T_eff, log_g, M_H)``).
    method : {"schur", "inverse"}, default="schur"
    floor : float, default=0.0
        Lower limit on the effective information (the reference's
        ``REGULARIZATION``); a singular direction then gives ``1/floor`` (or inf).

    Returns
    -------
    crlb : ndarray of shape (n,)
        Lower bound on the variance of an unbiased estimator, label units squared.

    Examples
    --------
    >>> import numpy as np
    >>> F = np.array([[[4.0, 2.0], [2.0, 2.0]]])
    >>> marginal_crlb(F, 1), marginal_crlb(F, 1, method="inverse")
    (array([1.]), array([1.]))
    """
    F = _check_fisher(fisher)
    index = _check_index(index, F.shape[1])
    check_real(floor, "floor", low=0.0)
    Fs, s = _equilibrate(F)
    if method == "schur":
        info = _schur_info(Fs, index)
    elif method == "inverse":
        with np.errstate(all="ignore"):
            try:
                inv = np.linalg.inv(Fs)
                info = 1.0 / inv[:, index, index]
            except np.linalg.LinAlgError:
                info = np.array([_safe_inverse_info(f, index) for f in Fs])
    else:
        raise ValueError(f"method must be 'schur' or 'inverse', got {method!r}")
    info = np.where(np.isfinite(info), info, 0.0)
    info = np.maximum(info, 0.0)  # rounding can give tiny negatives for singular F
    # undo the equilibration: F_gg,eff = info / s_g**2
    info = info / s[:, index] ** 2
    info = np.maximum(info, floor)
    with np.errstate(divide="ignore"):
        return 1.0 / info


def _check_index(index, d: int) -> int:
    """The position of the label of interest among ``d`` labels (negative counts back)."""
    if not is_integer(index) or not -d <= index < d:
        raise ValueError(
            f"index must be an integer in [{-d}, {d - 1}] for {d} labels; got {index!r}"
        )
    return int(index) % d


def _check_crlb(crlb) -> np.ndarray:
    """CRLB values as floats: variances, so >= 0 (inf for a direction the data do not fix)."""
    c = np.asarray(crlb, dtype=float)
    if np.isnan(c).any() or (c < 0).any():
        raise ValueError(
            f"crlb holds variances: every value must be >= 0 (inf allowed), "
            f"got {int(np.isnan(c).sum())} NaN and {int((c < 0).sum())} negative"
        )
    return c


def _safe_inverse_info(f: np.ndarray, index: int) -> float:
    try:
        return 1.0 / np.linalg.inv(f)[index, index]
    except np.linalg.LinAlgError:
        return 0.0


def _schur_info(F: np.ndarray, index: int) -> np.ndarray:
    """Effective information ``F_gg - F_gn F_nn^-1 F_ng`` for a stack of matrices."""
    d = F.shape[1]
    rest = [k for k in range(d) if k != index]
    Fgg = F[:, index, index]
    if not rest:
        return Fgg.copy()
    Fgn = F[:, index, rest]
    Fnn = F[:, rest][:, :, rest]
    # lstsq-like pseudo-solve so a singular nuisance block does not raise
    sol = np.einsum("nij,nj->ni", np.linalg.pinv(Fnn, hermitian=True), Fgn)
    return Fgg - np.einsum("ni,ni->n", Fgn, sol)


def schur_decay(fisher, index: int = 1) -> np.ndarray:
    """Fraction of the information on one label left after marginalising the others.

    ``rho = (F_gg - F_gn F_nn^-1 F_ng) / F_gg`` in [0, 1]; 1 means no degeneracy.

    Parameters
    ----------
    fisher : array-like of shape (n, d, d)
    index : int, default=1

    Returns
    -------
    rho : ndarray of shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> schur_decay(np.array([[[4.0, 2.0], [2.0, 2.0]]]), 1)
    array([0.5])
    """
    F = _check_fisher(fisher)
    index = _check_index(index, F.shape[1])
    Fs, _ = _equilibrate(F)
    return np.clip(_schur_info(Fs, index), 0.0, 1.0)


def condition_number(fisher, *, scaled: bool = True) -> np.ndarray:
    """2-norm condition number of each Fisher matrix.

    Parameters
    ----------
    fisher : array-like of shape (n, d, d)
    scaled : bool, default=True
        Equilibrate first (unit diagonal), so the number measures label
        degeneracy rather than the choice of units (K vs dex). ``False`` gives
        the raw number, as the reference reported.

    Returns
    -------
    cond : ndarray of shape (n,)
        ``inf`` for a singular matrix.

    Examples
    --------
    >>> import numpy as np
    >>> condition_number(np.array([[[4.0, 0.0], [0.0, 1.0]]]), scaled=False)
    array([4.])
    """
    F = _check_fisher(fisher)
    if check_bool(scaled, "scaled"):
        F, _ = _equilibrate(F)
    ev = np.linalg.eigvalsh(F)
    with np.errstate(divide="ignore"):
        return np.where(ev[:, 0] > 0, ev[:, -1] / np.where(ev[:, 0] > 0, ev[:, 0], 1.0), np.inf)


def crlb_dynamic_range(crlb) -> float:
    """Orders of magnitude spanned by the finite CRLBs (the reference's sanity check, < 3-4).

    Examples
    --------
    >>> crlb_dynamic_range([0.01, 1.0, 10.0])
    3.0
    """
    c = _check_crlb(crlb)
    if c.size == 0:
        raise ValueError("crlb is empty")
    c = c[np.isfinite(c) & (c > 0)]
    if c.size == 0:
        return float("nan")  # no finite, non-zero bound: no range to speak of
    return float(np.log10(c.max() / c.min()))


def r2_max(crlb, var_y: float, *, clip: bool = True) -> np.ndarray:
    """Pointwise Fisher ceiling ``R2_max = 1 - CRLB / Var(y)``.

    Parameters
    ----------
    crlb : array-like of shape (n,)
    var_y : float
        Variance of the labels of the evaluated spectra (ddof=0), the same
        denominator the models' R2 uses - not the variance of the grid nodes.
    clip : bool, default=True
        Clip to [0, 1] as the reference did.

    Returns
    -------
    r2 : ndarray of shape (n,)

    Examples
    --------
    >>> r2_max([0.1, 2.0], 1.0)
    array([0.9, 0. ])
    """
    check_real(var_y, "var_y", low=0.0, low_open=True)
    r2 = 1.0 - _check_crlb(crlb) / float(var_y)
    return np.clip(r2, 0.0, 1.0) if check_bool(clip, "clip") else r2


def aggregate_r2_max(crlb, var_y: float) -> dict:
    """Aggregations of pointwise CRLBs into one ceiling.

    Returns
    -------
    dict with keys
        ``median``, ``p10``, ``p90``, ``mean``: of the clipped pointwise R2_max
        (``median`` is the reference's headline); ``population``:
        ``1 - mean(CRLB) / Var(y)``, the R2 of an efficient unbiased estimator
        over these spectra (can be negative); ``sigma_min``: median sqrt(CRLB);
        ``dynamic_range``: orders of magnitude spanned by the CRLBs.

    Examples
    --------
    >>> agg = aggregate_r2_max([0.1, 0.2, 0.3], 1.0)
    >>> round(agg["median"], 3), round(agg["population"], 3)
    (0.8, 0.8)
    """
    c = _check_crlb(crlb)
    if c.size == 0:
        raise ValueError("crlb is empty")
    r2 = r2_max(c, var_y)
    return {
        "median": float(np.median(r2)),
        "p10": float(np.percentile(r2, 10)),
        "p90": float(np.percentile(r2, 90)),
        "mean": float(np.mean(r2)),
        "population": float(1.0 - np.mean(c) / var_y),
        "sigma_min": float(np.median(np.sqrt(c))),
        "dynamic_range": crlb_dynamic_range(c),
    }


def van_trees_bound(fisher, prior, index: int = 1) -> float:
    """Bayesian Cramer-Rao (van Trees) bound on the mean squared error of one label.

    ``MSE >= [(E_theta[F(theta)] + J_prior)^-1]_gg`` for every estimator,
    biased or not. ``fisher`` must be evaluated at labels drawn from ``prior``
    (the expectation is their mean). The bound is loose when the Fisher
    information varies strongly over the prior: the most informative stars
    dominate the average, so it says little about the typical star's error.

    Parameters
    ----------
    fisher : array-like of shape (n, d, d)
        Fisher matrices at prior draws, labels in ``prior.param_names`` order.
    prior : LabelPrior
        Must have ``taper > 0`` (a flat box has infinite prior information).
    index : int, default=1

    Returns
    -------
    mse_bound : float
        Lower bound on the prior-averaged squared error of label ``index``.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import LabelPrior
    >>> prior = LabelPrior({"x": (0, 1)}, taper=0.25)
    >>> no_data = np.zeros((3, 1, 1))  # the prior's information only
    >>> round(van_trees_bound(no_data, prior, 0), 5)
    0.019
    """
    F = _check_fisher(fisher)
    index = _check_index(index, F.shape[1])
    taper = getattr(prior, "taper", 0.0)
    if not taper > 0:
        raise ValueError(
            "the van Trees bound needs a prior density vanishing at the edges with finite "
            "Fisher information (LabelPrior(..., taper>0)); a flat box does not qualify"
        )
    Jp = np.asarray(prior.fisher_information(), dtype=float)
    if Jp.shape != F.shape[1:]:
        raise ValueError(f"prior has {Jp.shape[0]} labels, fisher has {F.shape[1]}")
    total = F.mean(axis=0) + Jp
    return float(np.linalg.inv(total)[index, index])
