"""Numerical core shared by the template fit and the bounds.

One Fisher-information kernel and one batched Levenberg-Marquardt serve both
:mod:`specreg.estimators` (the template fit) and :mod:`specreg.bounds` (the
maximum-likelihood start of the Bayes ceiling). They are siblings that must not
import each other, so the shared pieces live here and depend on numpy only.

The model of a spectrum ``f`` (pixels p, weights ``w = 1 / sigma**2``) is either
``T(theta)`` itself (the model fixes the flux scale, as in the bounds) or
``A(lambda) * T(theta)`` with a multiplicative ``A = sum_k c_k B_k(lambda)``
(``basis``; degree 0: a free amplitude, as in the template fit). The
coefficients ``c`` enter linearly, so for any ``theta`` they are solved exactly
and profiled out (variable projection); only the labels are searched, and their
information is the Schur complement of the linear block.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "fisher_information",
    "levenberg_marquardt",
    "profile_linear",
    "profiled_information",
]

# relative ridge on the small linear systems: keeps them solvable when a template is
# (numerically) zero over the weighted pixels instead of dividing by zero
_RIDGE = 1e-12


def fisher_information(jacobian: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """Fisher matrices ``F = J^T diag(ivar) J`` of a stack of spectra.

    The arithmetic runs in the inputs' precision (float32 inputs stay float32,
    the fast BLAS path); callers that need float64 cast first. No checks: this
    is the kernel behind :func:`specreg.bounds.fisher_matrix` and the
    Levenberg-Marquardt iteration.

    Parameters
    ----------
    jacobian : ndarray of shape (n, n_pix, d)
        Derivatives of the model flux.
    ivar : ndarray of shape (n, n_pix)
        Inverse variances ``1 / sigma**2``.

    Returns
    -------
    ndarray of shape (n, d, d)

    Examples
    --------
    >>> J = np.ones((1, 4, 2))
    >>> fisher_information(J, np.full((1, 4), 4.0))[0].tolist()
    [[16.0, 16.0], [16.0, 16.0]]
    """
    # batched (d x p) @ (p x d): one small GEMM per spectrum, fast BLAS path
    return np.matmul((jacobian * ivar[:, :, None]).swapaxes(1, 2), jacobian)


def _solve_small(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve of small SPD systems ``a x = b`` with a relative ridge."""
    q = a.shape[-1]
    scale = np.maximum(np.einsum("...ii->...", a) / q, np.finfo(float).tiny)
    a = a + (_RIDGE * scale)[..., None, None] * np.eye(q)
    return np.linalg.solve(a, b[..., None])[..., 0]


def profile_linear(
    flux: np.ndarray, ivar: np.ndarray, model: np.ndarray, basis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best multiplicative polynomial for given model spectra, and the resulting chi-square.

    Parameters
    ----------
    flux, ivar, model : ndarray of shape (n, n_pix)
    basis : ndarray of shape (n_pix, q)

    Returns
    -------
    coef : ndarray of shape (n, q)
    chi2 : ndarray of shape (n,)

    Examples
    --------
    >>> c, chi2 = profile_linear(np.array([[2.0, 4.0]]), np.ones((1, 2)),
    ...                          np.array([[1.0, 2.0]]), np.ones((2, 1)))
    >>> c.round(9).tolist(), chi2.round(9).tolist()
    ([[2.0]], [0.0])
    """
    g = model[:, :, None] * basis[None]  # (n, P, q)
    wg = ivar[:, :, None] * g
    chi = np.einsum("npk,npm->nkm", wg, g)
    phi = np.einsum("npk,np->nk", wg, flux)
    coef = _solve_small(chi, phi)
    resid = flux - np.einsum("npk,nk->np", g, coef)
    return coef, np.einsum("np,np->n", ivar * resid, resid)


def profiled_information(
    model: np.ndarray, jacobian: np.ndarray, ivar: np.ndarray, basis: np.ndarray, coef
) -> np.ndarray:
    """Information on the labels of ``A * T(theta)`` with the polynomial ``A`` profiled.

    The Fisher matrix over (labels, coefficients) has the derivative columns
    ``A * dT/dtheta`` and ``B_k * T``; the labels' information is its Schur
    complement of the coefficient block (their covariance is its inverse).

    Parameters
    ----------
    model : ndarray of shape (n, n_pix)
        ``T(theta)``.
    jacobian : ndarray of shape (n, n_pix, d)
        ``dT/dtheta``.
    ivar : ndarray of shape (n, n_pix)
    basis : ndarray of shape (n_pix, q)
    coef : ndarray of shape (n, q)

    Returns
    -------
    ndarray of shape (n, d, d)

    Examples
    --------
    >>> J = np.array([[[0.0], [1.0], [2.0]]])
    >>> ones = np.ones((1, 3))
    >>> F = profiled_information(ones, J, ones, ones.T, np.ones((1, 1)))
    >>> F.round(9).tolist()  # 5 - 3 * 3 / 3: the amplitude absorbs the mean
    [[[2.0]]]
    """
    d = jacobian.shape[2]
    amp = np.asarray(coef, dtype=np.float64) @ basis.T  # (n, P)
    cols = np.concatenate([amp[:, :, None] * jacobian, model[:, :, None] * basis[None]], axis=2)
    full = fisher_information(cols.astype(np.float64, copy=False), ivar)
    h_ll, h_lc, h_cc = full[:, :d, :d], full[:, :d, d:], full[:, d:, d:]
    sol = np.linalg.solve(
        h_cc + _RIDGE * np.eye(h_cc.shape[-1]) * np.einsum("nii->n", h_cc)[:, None, None],
        np.swapaxes(h_lc, 1, 2),
    )
    return h_ll - h_lc @ sol


def _fit_linear(flux, ivar, model, basis):
    """Chi-square of ``model`` (and the profiled coefficients, or None without a basis)."""
    if basis is None:
        resid = flux - model
        return None, np.einsum("np,np->n", ivar * resid, resid)
    return profile_linear(flux, ivar, model, basis)


def _information_and_gradient(model, jac, flux, ivar, basis, coef):
    """Labels' information ``H`` and the gradient ``g = J^T W r`` (half of -dchi2/dtheta)."""
    if basis is None:
        return fisher_information(jac, ivar), np.einsum("npa,np->na", jac, ivar * (flux - model))
    h = profiled_information(model, jac, ivar, basis, coef)
    amp = coef @ basis.T
    resid = flux - amp * model
    return h, np.einsum("npa,np->na", amp[:, :, None] * jac, ivar * resid)


def levenberg_marquardt(
    model_flux: Callable[[np.ndarray], np.ndarray],
    model_jacobian: Callable[[np.ndarray], np.ndarray],
    flux: np.ndarray,
    ivar: np.ndarray,
    theta0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    basis: np.ndarray | None = None,
    max_iter: int = 30,
    xtol: np.ndarray | float = 1e-6,
    ftol: float = 1e-3,
    lam0: float = 1e-3,
    cell_index: Callable[[np.ndarray], np.ndarray] | None = None,
    covariance: bool = True,
) -> dict:
    """Levenberg-Marquardt on chi-square for many spectra at once, inside a box.

    Steps solve ``(H + lam diag(H)) step = g`` (Marquardt's diagonal scaling,
    which makes K and dex commensurable); a label pinned at a wall whose step
    points outward is frozen so the others still move; trial labels are
    clipped into the box; a step is kept when it does not raise the chi-square,
    and ``lam`` falls tenfold on success and rises tenfold on failure.

    Parameters
    ----------
    model_flux : callable
        ``theta (m, d) -> (m, n_pix)``; may return NaN rows for labels it cannot
        evaluate (e.g. next to a grid hole): such steps are rejected.
    model_jacobian : callable
        ``theta (m, d) -> (m, n_pix, d)``.
    flux, ivar : ndarray of shape (n, n_pix)
        Observed flux and inverse variances ``1 / sigma**2``.
    theta0 : ndarray of shape (n, d)
        Starting labels (clipped into ``[lo, hi]``).
    lo, hi : ndarray of shape (d,)
        The box.
    basis : ndarray of shape (n_pix, q), optional
        Multiplicative polynomial basis whose coefficients are profiled out
        (see :func:`profile_linear`); None fits ``T(theta)`` itself.
    max_iter : int, default=30
        Maximum number of iterations (accepted or rejected steps).
    xtol : float or ndarray of shape (d,), default=1e-6
        Convergence when an accepted step moves every label by at most this
        (label units, e.g. a fraction of the node spacing per axis).
    ftol : float, default=1e-3
        Convergence when the Gauss-Newton decrement ``g^T H^-1 g`` (the
        chi-square an undamped step would still gain) drops below this. It is
        the squared distance to the minimum in formal standard deviations, so
        the default leaves a bias of about 3 % of the statistical error at
        most, whatever the noise level.
    lam0 : float, default=1e-3
        Initial Marquardt damping.
    cell_index : callable, optional
        ``theta (m, d) -> (m, d)`` int: the grid cell of each label. When a
        trial step cannot be evaluated (a grid hole), the labels that changed
        cell are held back and the step is retried once with the others, so a
        fit can slide along the edge of a hole instead of stalling there.
    covariance : bool, default=True
        Also return the formal covariance at the optimum (one more Jacobian
        of every spectrum).

    Returns
    -------
    dict
        ``theta (n, d)``, ``chi2 (n,)``, ``template (n, n_pix)`` (``T`` at
        ``theta``), ``coef (n, q)`` (None without a basis), ``n_iter (n,)``,
        ``converged (n,)`` and, with ``covariance``, ``cov (n, d, d)`` (formal,
        polynomial marginalised).

    Examples
    --------
    >>> wave = np.linspace(0.0, 1.0, 50)
    >>> f_model = lambda th: np.exp(-((wave - th[:, :1]) ** 2) / 0.02)
    >>> jac = lambda th: (f_model(th) * 2 * (wave - th[:, :1]) / 0.02)[:, :, None]
    >>> obs = 3.0 * f_model(np.array([[0.4]]))
    >>> lo, hi = np.array([0.0]), np.array([1.0])
    >>> w = np.ones_like(obs)
    >>> res = levenberg_marquardt(f_model, jac, obs, w, [[0.5]], lo, hi,
    ...                           basis=np.ones((50, 1)))
    >>> res["theta"].round(6).tolist(), res["coef"].round(6).tolist()
    ([[0.4]], [[3.0]])
    >>> res = levenberg_marquardt(f_model, jac, obs / 3, w, [[0.5]], lo, hi)
    >>> res["theta"].round(6).tolist(), res["coef"] is None
    ([[0.4]], True)
    """
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    theta = np.clip(np.array(theta0, dtype=np.float64), lo, hi)
    n, d = theta.shape
    xtol = np.broadcast_to(np.asarray(xtol, dtype=float), (d,))
    lam = np.full(n, float(lam0))
    n_iter = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)

    model = np.asarray(model_flux(theta), dtype=np.float64)
    coef, chi2 = _fit_linear(flux, ivar, model, basis)
    active = np.arange(n)
    jac = None  # Jacobian of the active rows at their current theta
    for _ in range(max_iter):
        if active.size == 0:
            break
        th, f, w = theta[active], flux[active], ivar[active]
        if jac is None:
            jac = np.asarray(model_jacobian(th), dtype=np.float64)
        c_act = None if coef is None else coef[active]
        h, grad = _information_and_gradient(model[active], jac, f, w, basis, c_act)
        diag = np.einsum("nii->ni", h).copy()
        # labels the model does not depend on (e.g. at a flat spot) get a unit diagonal
        # so the damped system stays regular; their step is then zero
        diag = np.where(diag > 0, diag, 1.0)
        a = h + lam[active, None, None] * diag[:, :, None] * np.eye(d)
        step = np.linalg.solve(a, grad[..., None])[..., 0]
        # a label pinned at a wall whose step points outward is frozen (active set), so
        # the other labels still move instead of the projected step collapsing
        frozen = ((th <= lo) & (step < 0)) | ((th >= hi) & (step > 0))
        keep = ~frozen
        if frozen.any():
            a = a * (keep[:, :, None] & keep[:, None, :]) + frozen[:, :, None] * np.eye(d)
            step = np.linalg.solve(a, (grad * keep)[..., None])[..., 0]
        # Newton decrement of the free labels (undamped; tiny ridge for flat directions)
        h0 = h * (keep[:, :, None] & keep[:, None, :]) + (1e-10 * diag + frozen)[
            :, :, None
        ] * np.eye(d)
        g0 = grad * keep
        decrement = np.einsum("na,na->n", g0, np.linalg.solve(h0, g0[..., None])[..., 0])
        # a degenerate system (e.g. a Jacobian zeroed next to a grid hole) gives no step
        step = np.where(np.isfinite(step), step, 0.0)
        trial = np.clip(th + step, lo, hi)
        m_trial = np.asarray(model_flux(trial), dtype=np.float64)
        ok_model = np.isfinite(m_trial).all(axis=1)
        if cell_index is not None and not ok_model.all():
            bad = np.flatnonzero(~ok_model)
            crossed = cell_index(trial[bad]) != cell_index(th[bad])
            trial[bad] = np.where(crossed, th[bad], trial[bad])
            m_trial[bad] = model_flux(trial[bad])
            ok_model = np.isfinite(m_trial).all(axis=1)
        m_trial[~ok_model] = 0.0
        c_trial, chi2_trial = _fit_linear(f, w, m_trial, basis)
        chi2_old = chi2[active]
        accept = ok_model & (chi2_trial <= chi2_old)
        n_iter[active] += 1

        rows = active[accept]
        moved = np.abs(trial - th)
        theta[rows], model[rows] = trial[accept], m_trial[accept]
        chi2[rows] = chi2_trial[accept]
        if coef is not None:
            coef[rows] = c_trial[accept]
        lam[rows] = np.maximum(lam[rows] / 10.0, 1e-9)
        lam[active[~accept]] *= 10.0
        # done: an accepted step that barely moved, or damping so large that no
        # downhill step exists at this precision (a minimum, possibly on a wall)
        done = (accept & (moved <= xtol).all(axis=1)) | (decrement <= ftol) | (lam[active] > 1e12)
        converged[active[done]] = True
        # the Jacobian stays valid for rejected rows (theta unchanged); only the
        # accepted ones that go on need a new one
        keep_rows = ~done
        active, jac = active[keep_rows], jac[keep_rows]
        renew = accept[keep_rows]
        if renew.any():
            jac[renew] = model_jacobian(theta[active[renew]])

    out = {
        "theta": theta,
        "template": model,
        "chi2": chi2,
        "coef": coef,
        "n_iter": n_iter,
        "converged": converged,
    }
    if covariance:
        jac = np.asarray(model_jacobian(theta), dtype=np.float64)
        if basis is None:
            h = fisher_information(jac, ivar)
        else:
            h = profiled_information(model, jac, ivar, basis, coef)
        out["cov"] = np.linalg.pinv(h, hermitian=True)
    return out
