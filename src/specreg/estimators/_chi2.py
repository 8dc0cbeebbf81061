"""Functional core of the template fit: weighted chi-square with profiled linear terms.

The observed spectrum ``f`` (pixels p, weights ``w = 1/sigma**2``) is modelled as
``A(lambda) * T(theta)`` where ``T`` is the spectral model and the multiplicative
``A = sum_k c_k B_k(lambda)`` is a low-order Legendre polynomial (degree 0: a single
amplitude). The coefficients ``c`` enter linearly, so for any ``theta`` they are solved
exactly (``chi(theta) c = phi(theta)`` with ``phi_k = sum w f B_k T`` and
``chi_kl = sum w B_k B_l T**2``) and profiled out; only the labels are searched:

1. a coarse start: the profiled chi-square against every grid node, computed for a
   whole batch of spectra as a handful of matrix products;
2. a Levenberg-Marquardt refinement of all spectra at once, using the model
   Jacobian: the reduced normal matrix is the Schur complement of the linear block
   (variable projection), steps are damped with Marquardt's diagonal scaling (which
   makes K and dex commensurable) and projected into the grid box.

The inverse of the reduced normal matrix at the optimum is the formal covariance of
the labels (amplitude marginalised), i.e. the Cramer-Rao bound evaluated at the fit.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "legendre_basis",
    "coarse_chi2",
    "profile_linear",
    "fisher_matrix",
    "lm_refine",
]

# relative ridge on the small linear systems: keeps them solvable when a template is
# (numerically) zero over the weighted pixels instead of dividing by zero
_RIDGE = 1e-12


def legendre_basis(wave: np.ndarray, degree: int) -> np.ndarray:
    """Legendre polynomials P_0..P_degree on the wavelength range mapped to [-1, 1].

    Parameters
    ----------
    wave : ndarray of shape (n_pix,)
    degree : int
        0 gives a single constant column (a pure amplitude).

    Returns
    -------
    basis : ndarray of shape (n_pix, degree + 1)

    Examples
    --------
    >>> legendre_basis(np.array([1.0, 2.0, 3.0]), 1)
    array([[ 1., -1.],
           [ 1.,  0.],
           [ 1.,  1.]])
    """
    wave = np.asarray(wave, dtype=float)
    span = wave[-1] - wave[0]
    x = np.zeros_like(wave) if span == 0 else 2.0 * (wave - wave[0]) / span - 1.0
    return np.polynomial.legendre.legvander(x, int(degree))


def _solve_small(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve of small SPD systems ``a x = b`` with a relative ridge."""
    q = a.shape[-1]
    scale = np.maximum(np.einsum("...ii->...", a) / q, np.finfo(float).tiny)
    a = a + (_RIDGE * scale)[..., None, None] * np.eye(q)
    return np.linalg.solve(a, b[..., None])[..., 0]


def coarse_chi2(
    flux: np.ndarray, ivar: np.ndarray, templates: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    """Profiled chi-square of every spectrum against every template, by matrix products.

    For a single amplitude this is ``sum w f**2 - (sum w f t)**2 / sum w t**2``; with a
    polynomial the amplitude generalises to ``phi^T chi^-1 phi``.

    Parameters
    ----------
    flux, ivar : ndarray of shape (n, n_pix)
        Observed flux and inverse variances ``1 / error**2``.
    templates : ndarray of shape (n_templates, n_pix)
    basis : ndarray of shape (n_pix, q)
        Multiplicative basis (:func:`legendre_basis`).

    Returns
    -------
    chi2 : ndarray of shape (n, n_templates), float64

    Examples
    --------
    >>> t = np.array([[1.0, 2.0], [2.0, 1.0]])
    >>> coarse_chi2(np.array([[2.0, 4.0]]), np.ones((1, 2)), t, np.ones((2, 1))).round(6)
    array([[0. , 7.2]])
    """
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    tmpl = np.asarray(templates, dtype=np.float64)
    q = basis.shape[1]
    wf = ivar * flux
    total = np.einsum("np,np->n", wf, flux)
    t2 = tmpl * tmpl
    phi = np.stack([(wf * basis[:, k]) @ tmpl.T for k in range(q)], axis=-1)  # (n, K, q)
    if q == 1:
        chi = ivar @ t2.T
        explained = phi[..., 0] ** 2 / np.maximum(chi, np.finfo(float).tiny)
    else:
        chi = np.empty((*phi.shape[:2], q, q))
        for k in range(q):
            for m in range(k, q):
                block = (ivar * (basis[:, k] * basis[:, m])) @ t2.T
                chi[..., k, m] = chi[..., m, k] = block
        explained = np.einsum("nkq,nkq->nk", phi, _solve_small(chi, phi))
    return total[:, None] - explained


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


def fisher_matrix(
    model: np.ndarray, jacobian: np.ndarray, ivar: np.ndarray, basis: np.ndarray, coef
) -> np.ndarray:
    """Fisher matrix of (labels, polynomial coefficients) for Gaussian noise.

    The model is ``A * T(theta)`` with ``A = basis @ coef``, so the derivative columns
    are ``A * dT/dtheta`` for the labels and ``B_k * T`` for the coefficients (for a
    pure amplitude: the model flux itself).

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
    fisher : ndarray of shape (n, d + q, d + q), labels first

    Examples
    --------
    >>> F = fisher_matrix(np.ones((1, 3)), np.ones((1, 3, 1)) * [[[0.0], [1.0], [2.0]]],
    ...                   np.ones((1, 3)), np.ones((3, 1)), np.ones((1, 1)))
    >>> F[0].tolist()
    [[5.0, 3.0], [3.0, 3.0]]
    """
    amp = np.asarray(coef, dtype=np.float64) @ basis.T  # (n, P)
    cols = np.concatenate([amp[:, :, None] * jacobian, model[:, :, None] * basis[None]], axis=2)
    cols = cols.astype(np.float64, copy=False)
    # batched matrix product (BLAS) rather than a three-operand einsum (a slow loop)
    return np.swapaxes(cols, 1, 2) @ (ivar[:, :, None] * cols)


def _reduced(fisher: np.ndarray, d: int) -> np.ndarray:
    """Schur complement of the linear block: the labels' information, amplitude profiled."""
    h_ll, h_lc, h_cc = fisher[:, :d, :d], fisher[:, :d, d:], fisher[:, d:, d:]
    sol = np.linalg.solve(
        h_cc + _RIDGE * np.eye(h_cc.shape[-1]) * np.einsum("nii->n", h_cc)[:, None, None],
        np.swapaxes(h_lc, 1, 2),
    )
    return h_ll - h_lc @ sol


def lm_refine(
    model_flux,
    model_jacobian,
    flux: np.ndarray,
    ivar: np.ndarray,
    theta0: np.ndarray,
    basis: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    max_iter: int = 30,
    xtol: np.ndarray | float = 1e-6,
    ftol: float = 1e-3,
    lam0: float = 1e-3,
    cell_index=None,
) -> dict:
    """Levenberg-Marquardt refinement of many spectra at once, inside a box.

    Parameters
    ----------
    model_flux : callable
        ``theta (m, d) -> (m, n_pix)``; may return NaN rows for labels it cannot
        evaluate (e.g. next to a grid hole): such steps are rejected.
    model_jacobian : callable
        ``theta (m, d) -> (m, n_pix, d)``.
    flux, ivar : ndarray of shape (n, n_pix)
    theta0 : ndarray of shape (n, d)
        Starting labels, inside ``[lo, hi]``.
    basis : ndarray of shape (n_pix, q)
    lo, hi : ndarray of shape (d,)
        The box.
    max_iter : int, default=30
        Maximum number of LM iterations (accepted or rejected steps).
    xtol : float or ndarray of shape (d,), default=1e-6
        Convergence when an accepted step moves every label by less than this (in
        label units, e.g. a fraction of the node spacing per axis).
    ftol : float, default=1e-3
        Convergence when the Gauss-Newton decrement ``g^T H^-1 g`` (the chi-square
        an undamped step would still gain) drops below this. It is the squared
        distance to the minimum in formal standard deviations, so the default
        leaves a bias of about 3 % of the statistical error at most, whatever the
        noise level.
    lam0 : float, default=1e-3
        Initial Marquardt damping.
    cell_index : callable, optional
        ``theta (m, d) -> (m, d)`` int: the grid cell of each label. When a trial
        step cannot be evaluated (a grid hole), the labels that changed cell are
        held back and the step is retried once with the others, so a fit can slide
        along the edge of a hole instead of stalling there.

    Returns
    -------
    dict
        ``theta (n, d)``, ``cov (n, d, d)`` (formal, amplitude marginalised),
        ``chi2 (n,)``, ``coef (n, q)``, ``n_iter (n,)``, ``converged (n,)``.

    Examples
    --------
    >>> wave = np.linspace(0.0, 1.0, 50)
    >>> f_model = lambda th: np.exp(-((wave - th[:, :1]) ** 2) / 0.02)
    >>> jac = lambda th: (f_model(th) * 2 * (wave - th[:, :1]) / 0.02)[:, :, None]
    >>> obs = 3.0 * f_model(np.array([[0.4]]))
    >>> res = lm_refine(f_model, jac, obs, np.ones_like(obs), np.array([[0.5]]),
    ...                 np.ones((50, 1)), np.array([0.0]), np.array([1.0]))
    >>> round(float(res["theta"][0, 0]), 6), round(float(res["coef"][0, 0]), 6)
    (0.4, 3.0)
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
    coef, chi2 = profile_linear(flux, ivar, model, basis)
    active = np.arange(n)
    jac = None  # Jacobian of the active rows at their current theta
    for _ in range(max_iter):
        if active.size == 0:
            break
        th, f, w = theta[active], flux[active], ivar[active]
        if jac is None:
            jac = np.asarray(model_jacobian(th), dtype=np.float64)
        fisher = fisher_matrix(model[active], jac, w, basis, coef[active])
        h = _reduced(fisher, d)
        amp = coef[active] @ basis.T
        resid = f - amp * model[active]
        grad = np.einsum("npa,np->na", amp[:, :, None] * jac, w * resid)
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
        c_trial, chi2_trial = profile_linear(f, w, m_trial, basis)
        chi2_old = chi2[active]
        accept = ok_model & (chi2_trial <= chi2_old)
        n_iter[active] += 1

        rows = active[accept]
        moved = np.abs(trial - th)
        theta[rows], model[rows] = trial[accept], m_trial[accept]
        coef[rows], chi2[rows] = c_trial[accept], chi2_trial[accept]
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

    jac = np.asarray(model_jacobian(theta), dtype=np.float64)
    h = _reduced(fisher_matrix(model, jac, ivar, basis, coef), d)
    cov = np.linalg.pinv(h, hermitian=True)
    return {
        "theta": theta,
        "cov": cov,
        "template": model,
        "chi2": chi2,
        "coef": coef,
        "n_iter": n_iter,
        "converged": converged,
    }
