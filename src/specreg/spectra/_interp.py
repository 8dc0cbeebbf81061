"""Interpolation weights on rectilinear grids.

Interpolation on a grid is linear in the node values, so a batch of interpolated
spectra is a sparse matrix of weights times the node-flux matrix. This module
builds those weights (and the weights of the derivatives) axis by axis; the
tensor product gives at most ``4**d`` non-zeros per label vector for the cubic
scheme, ``2**d`` for the linear one.

The cubic scheme is a local piecewise cubic Hermite interpolant whose node
slopes are the three-point (quadratic) derivatives of the node values, i.e. a
Catmull-Rom spline generalised to non-uniform spacing. It reproduces the node
values exactly, is C1 (so the Jacobian is continuous) and needs only the four
nodes around a label, so a hole in the grid affects only its neighbourhood.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["axis_weights", "slope_matrix", "stencil_product", "tensor_weights"]


def slope_matrix(nodes: np.ndarray) -> np.ndarray:
    """Matrix ``D`` such that the node slopes are ``D @ f``.

    Interior slopes are derivatives of the parabola through three neighbouring
    nodes; the edge slopes use the one-sided parabola through the first (last)
    three nodes. Two-node axes get the secant slope.

    Parameters
    ----------
    nodes : ndarray of shape (m,)
        Strictly increasing node coordinates.

    Returns
    -------
    D : ndarray of shape (m, m)

    Examples
    --------
    >>> D = slope_matrix(np.array([0.0, 1.0, 2.0]))
    >>> D @ np.array([0.0, 1.0, 4.0])  # f = x**2 -> f' = 2x exactly
    array([0., 2., 4.])
    """
    x = np.asarray(nodes, dtype=float)
    m = x.size
    D = np.zeros((m, m))
    if m == 1:
        return D
    if m == 2:
        h = x[1] - x[0]
        D[:, 0], D[:, 1] = -1.0 / h, 1.0 / h
        return D
    for j in range(m):
        # three consecutive nodes containing j; derivative of their parabola at x_j
        k = min(max(j - 1, 0), m - 3)
        xs = x[k : k + 3]
        for a in range(3):
            others = [xs[b] for b in range(3) if b != a]
            denom = np.prod([xs[a] - o for o in others])
            # d/dx of Lagrange basis L_a at x_j
            D[j, k + a] = sum(x[j] - o for o in others) / denom
    return D


def axis_weights(
    nodes: np.ndarray, x: np.ndarray, method: str = "cubic"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolation weights along one axis.

    Parameters
    ----------
    nodes : ndarray of shape (m,)
        Strictly increasing node coordinates.
    x : ndarray of shape (n,)
        Query coordinates, inside ``[nodes[0], nodes[-1]]``.
    method : {"cubic", "linear"}
        Interpolation scheme.

    Returns
    -------
    index : ndarray of shape (n, k) of int
        Node indices of the stencil (``k = min(4, m)`` for cubic, ``min(2, m)``
        for linear); distinct within a row.
    weight : ndarray of shape (n, k)
        Value weights: ``f(x) = sum(weight * f[index], axis=1)``.
    dweight : ndarray of shape (n, k)
        Weights of the derivative ``df/dx``.

    Examples
    --------
    >>> idx, w, dw = axis_weights(np.arange(5.0), np.array([1.5]), "linear")
    >>> idx.tolist(), w.tolist(), dw.tolist()
    ([[1, 2]], [[0.5, 0.5]], [[-1.0, 1.0]])
    """
    nodes = np.asarray(nodes, dtype=float)
    x = np.asarray(x, dtype=float)
    m, n = nodes.size, x.size
    if m == 1:
        return np.zeros((n, 1), int), np.ones((n, 1)), np.zeros((n, 1))
    i = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, m - 2)
    h = nodes[i + 1] - nodes[i]
    t = (x - nodes[i]) / h
    rows = np.arange(n)
    if method == "linear" or m == 2:
        index = np.stack([i, i + 1], axis=1)
        weight = np.stack([1.0 - t, t], axis=1)
        dweight = np.stack([-1.0 / h, 1.0 / h], axis=1)
        return index, weight, dweight
    if method != "cubic":
        raise ValueError(f"method must be 'cubic' or 'linear', got {method!r}")
    D = slope_matrix(nodes)
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    d00, d10, d01, d11 = 6 * t2 - 6 * t, 3 * t2 - 4 * t + 1, -6 * t2 + 6 * t, 3 * t2 - 2 * t
    # dense weights over the m nodes of this (short) axis, then cut to the stencil
    W = (h10 * h)[:, None] * D[i] + (h11 * h)[:, None] * D[i + 1]
    W[rows, i] += h00
    W[rows, i + 1] += h01
    dW = d10[:, None] * D[i] + d11[:, None] * D[i + 1]
    dW[rows, i] += d00 / h
    dW[rows, i + 1] += d01 / h
    k = min(4, m)
    start = np.clip(i - 1, 0, m - k)
    index = start[:, None] + np.arange(k)[None, :]
    return index, W[rows[:, None], index], dW[rows[:, None], index]


def tensor_weights(
    axis_nodes: list[np.ndarray],
    theta: np.ndarray,
    method: str = "cubic",
    derivative: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product stencil over all axes.

    Parameters
    ----------
    axis_nodes : list of d ndarrays
        Node coordinates of each axis.
    theta : ndarray of shape (n, d)
        Query labels.
    method : {"cubic", "linear"}
    derivative : int or None
        If given, the weights of the partial derivative along that axis.

    Returns
    -------
    flat_index : ndarray of shape (n, K) of int
        Indices into the C-ordered flattened node array.
    weight : ndarray of shape (n, K)

    Examples
    --------
    >>> axes = [np.arange(3.0), np.arange(4.0)]
    >>> idx, w = tensor_weights(axes, np.array([[0.5, 1.0]]), "linear")
    >>> float(w.sum())
    1.0
    """
    per_axis = [axis_weights(nodes, theta[:, a], method) for a, nodes in enumerate(axis_nodes)]
    return stencil_product(per_axis, tuple(len(a) for a in axis_nodes), derivative)


def stencil_product(
    per_axis: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    shape: tuple[int, ...],
    derivative: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tensor product of per-axis stencils, as `tensor_weights` forms it.

    Computing the per-axis weights once serves the interpolant and every partial
    derivative (a Jacobian needs d + 1 products of the same axis weights).

    Parameters
    ----------
    per_axis : list of d tuples ``(idx, w, dw)``
        What `axis_weights` returns for each axis.
    shape : tuple of int
        Node count of each axis.
    derivative : int or None
        If given, the weights of the partial derivative along that axis.

    Returns
    -------
    flat_index, weight : ndarrays of shape (n, K)
        As in `tensor_weights`.

    Examples
    --------
    >>> nodes = np.arange(3.0)
    >>> per_axis = [axis_weights(nodes, np.array([0.5]), "linear")]
    >>> idx, w = stencil_product(per_axis, (3,), derivative=0)
    >>> float(w.sum())
    0.0
    """
    n = per_axis[0][0].shape[0]
    flat = np.zeros((n, 1), dtype=np.int64)
    weight = np.ones((n, 1))
    for a, (idx, w, dw) in enumerate(per_axis):
        w_a = dw if derivative == a else w
        stride = int(np.prod(shape[a + 1 :], dtype=np.int64))
        flat = (flat[:, :, None] + idx[:, None, :] * stride).reshape(n, -1)
        weight = (weight[:, :, None] * w_a[:, None, :]).reshape(n, -1)
    return flat, weight


def weight_matrix(flat: np.ndarray, weight: np.ndarray, n_nodes: int) -> sp.csr_matrix:
    """CSR matrix of shape (n, n_nodes) from a stencil (float32 data).

    Examples
    --------
    >>> weight_matrix(np.array([[0, 2]]), np.array([[0.25, 0.75]]), 3).toarray()
    array([[0.25, 0.  , 0.75]], dtype=float32)
    """
    n, k = flat.shape
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    mat = sp.csr_matrix(
        (weight.ravel().astype(np.float32), flat.ravel(), indptr), shape=(n, n_nodes)
    )
    return mat
