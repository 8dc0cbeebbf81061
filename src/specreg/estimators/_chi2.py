"""Functional core of the template fit: weighted chi-square with profiled linear terms.

The observed spectrum ``f`` (pixels p, weights ``w = 1/sigma**2``) is modelled as
``A(lambda) * T(theta)`` where ``T`` is the spectral model and the multiplicative
``A = sum_k c_k B_k(lambda)`` is a low-order Legendre polynomial (degree 0: a single
amplitude). The coefficients ``c`` enter linearly, so for any ``theta`` they are solved
exactly (``chi(theta) c = phi(theta)`` with ``phi_k = sum w f B_k T`` and
``chi_kl = sum w B_k B_l T**2``) and profiled out; only the labels are searched:

1. a coarse start (this module): the profiled chi-square against every grid node,
   computed for a whole batch of spectra as a handful of matrix products;
2. a Levenberg-Marquardt refinement of all spectra at once
   (``specreg._numerics.levenberg_marquardt``, shared with the bounds), using
   the model Jacobian: the reduced normal matrix is the Schur complement of the
   linear block (variable projection), steps are damped with Marquardt's diagonal
   scaling (which makes K and dex commensurable) and projected into the grid box.

The inverse of the reduced normal matrix at the optimum is the formal covariance of
the labels (amplitude marginalised), i.e. the Cramer-Rao bound evaluated at the fit.
"""

from __future__ import annotations

import numpy as np

from .._numerics import _solve_small

__all__ = ["legendre_basis", "coarse_chi2"]


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
    >>> flux, ivar = np.array([[2.0, 4.0]]), np.ones((1, 2))
    >>> coarse_chi2(flux, ivar, t, np.ones((2, 1))).round(6)
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
