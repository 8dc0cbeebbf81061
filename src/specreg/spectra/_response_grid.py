"""ResponseGrid: a fine grid times a coarser grid of responses to extra labels."""

from __future__ import annotations

import numpy as np

from ._grid import SpectralGrid
from ._interp import axis_weights, stencil_product, weight_matrix
from ._validation import check_int

__all__ = ["ResponseGrid"]

# pixels per block of the blocked node cubes: the sparse products then stream 4 kB
# rows of a few MB (cache-resident) instead of 16 kB rows of the whole 18 MB cube,
# about twice as fast on the 4,096-pixel models (and bit-identical)
_PIXEL_BLOCK = 1024


def _pixel_blocks(base: np.ndarray, ratio: np.ndarray, block: int = _PIXEL_BLOCK) -> tuple:
    """Two node cubes (n_nodes, n_pix) cut into contiguous pixel blocks.

    Returns
    -------
    tuple of (slice, ndarray, ndarray)
        The pixels of each block and the two cubes' columns there, C-contiguous.
    """
    return tuple(
        (
            slice(s, s + block),
            np.ascontiguousarray(base[:, s : s + block]),
            np.ascontiguousarray(ratio[:, s : s + block]),
        )
        for s in range(0, base.shape[1], block)
    )


def _distinct_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The distinct rows of ``labels`` and the inverse index, when they repeat a lot.

    Returns ``(labels, None)`` unless at most half the rows are distinct (a lattice
    or a node set: 125 base points for the 3,125 cells of a 5-D lattice).
    """
    if labels.shape[0] < 4:
        return labels, None
    uniq, inverse = np.unique(labels, axis=0, return_inverse=True)
    if 2 * uniq.shape[0] > labels.shape[0]:
        return labels, None
    return uniq, inverse.reshape(-1)


class ResponseGrid(SpectralGrid):
    """A spectral model ``base(theta[:k]) * response(theta)``: extra labels on a coarse grid.

    The 5-D embedded model (``load_grid("5d")``) is one: the 3-D Turbospectrum grid
    in (T_eff, log g, [M/H]) times the response ``F(T, g, M, a, c) / F(T, g, M, 0, 0)``
    to [alpha/M] and [C/M], computed on a coarser sub-grid of the 3-D nodes. Each
    factor is interpolated with its own scheme (``method`` for the base,
    ``ratio_method`` for the response), and the Jacobian is the exact derivative of
    the product.

    As a `SpectralGrid`, its nodes are the base's nodes times the response nodes of
    the extra labels: ``axes``, ``shape``, ``node_flux`` (computed on first use),
    ``node_jacobian`` and ``valid`` describe that grid, which is what a template fit
    searches and what a snapped prior snaps to. ``flux``, ``continuum`` and
    ``jacobian`` evaluate the product directly.

    Parameters
    ----------
    base : SpectralGrid
        The fine grid; its labels are the first ``base.n_params`` labels.
    ratio_axes : dict of str -> array-like
        Axes of the response: the base's labels (with node values that are base
        nodes) followed by the extra labels.
    ratio : array-like of shape ``(*axis_lengths, n_pix)``
        Flux ratio to the base at every response node (1 where the extra labels
        are at their reference values).
    continuum_ratio : array-like of shape ``(*axis_lengths, n_pix)``, optional
        Continuum ratio (required if ``base`` has a continuum).
    ratio_method : {"linear", "cubic"}, default="linear"
        Interpolation of the response (the base keeps its own ``method``). Linear
        needs 2**d response nodes per spectrum instead of 4**d (in 5-D, 32 instead of
        1,024: 18x faster) and is as accurate for the [alpha/M] / [C/M] response,
        which is smooth on its sub-grid; its derivative jumps at the response nodes.
    metadata : dict, optional
        Provenance of the response.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid, ResponseGrid
    >>> wave = np.linspace(7100.0, 8850.0, 5)
    >>> t = np.array([4000.0, 5000.0, 6000.0])
    >>> base = SpectralGrid({"T_eff": t}, 1 + t[:, None] / 1e4 * np.ones(5), wave)
    >>> a = np.array([0.0, 0.2, 0.4])
    >>> ratio = 1 - 0.1 * a[None, :, None] * np.ones((3, 3, 5))
    >>> model = ResponseGrid(base, {"T_eff": t, "a_M": a}, ratio)
    >>> model.param_names
    ('T_eff', 'a_M')
    >>> model.flux([[4500.0, 0.1]], method="linear").round(4)
    array([[1.4355, 1.4355, 1.4355, 1.4355, 1.4355]], dtype=float32)
    """

    def __init__(
        self,
        base: SpectralGrid,
        ratio_axes: dict,
        ratio,
        *,
        continuum_ratio=None,
        ratio_method: str = "linear",
        metadata: dict | None = None,
    ) -> None:
        if ratio_method not in ("linear", "cubic"):
            raise ValueError(f"ratio_method must be 'linear' or 'cubic', got {ratio_method!r}")
        if not isinstance(base, SpectralGrid):
            raise TypeError(f"base must be a SpectralGrid, got {type(base).__name__}")
        names = tuple(ratio_axes)
        k = base.n_params
        if names[:k] != base.param_names or len(names) <= k:
            raise ValueError(
                f"the response axes {names} must start with the base grid's labels "
                f"{base.param_names} and add at least one label"
            )
        if (base.node_continuum is None) != (continuum_ratio is None):
            raise ValueError("give continuum_ratio exactly when the base grid has a continuum")
        self._ratio = SpectralGrid(
            ratio_axes, ratio, base.wave, continuum=continuum_ratio, method=ratio_method
        )
        self.ratio_method = ratio_method
        for name in names[:k]:
            lo, hi = base.bounds[name]
            nodes = self._ratio.axes[name]
            if nodes[0] > lo or nodes[-1] < hi:
                raise ValueError(
                    f"the response axis {name} spans [{nodes[0]:g}, {nodes[-1]:g}] but the "
                    f"base grid spans [{lo:g}, {hi:g}]; the response must cover the base box"
                )
        self.base = base
        # the nodes: the base's nodes times the response nodes of the extra labels
        # (node spectra are computed on first use: 9 x 9 x 14 x 3 x 3 of them are 170 MB)
        self.param_names = names
        self.axes = {**base.axes, **{n: self._ratio.axes[n] for n in names[k:]}}
        self.shape = tuple(a.size for a in self.axes.values())
        self.wave, self.n_pix, self.method = base.wave, base.n_pix, base.method
        self.metadata = {**base.metadata, **(metadata or {})}
        extra = (1,) * (len(names) - k)
        self.valid = np.broadcast_to(base.valid.reshape(base.shape + extra), self.shape).copy()
        self.bounds = {n: (float(a[0]), float(a[-1])) for n, a in self.axes.items()}
        self._nodes_cache: dict[str, np.ndarray] = {}

    def _ratio_at_nodes(self, cube: np.ndarray) -> np.ndarray:
        """A response cube interpolated (along the base's labels) to the base's nodes."""
        out = cube.reshape(*self._ratio.shape, self.n_pix)
        for a, name in enumerate(self.base.param_names):
            coarse, fine = self._ratio.axes[name], self.base.axes[name]
            idx, w, _ = axis_weights(coarse, fine, self.ratio_method)
            matrix = np.zeros((fine.size, coarse.size))
            np.put_along_axis(matrix, idx, w, axis=1)
            out = np.moveaxis(np.tensordot(matrix, np.moveaxis(out, a, 0), axes=1), 0, a)
        return out.reshape(-1, self.n_pix)

    def _product_at_nodes(self, which: str) -> np.ndarray | None:
        if which not in self._nodes_cache:
            if which == "flux":
                base, ratio = self.base.node_flux, self._ratio.node_flux
            else:
                base, ratio = self.base.node_continuum, self._ratio.node_continuum
                if base is None:
                    return None
            k = self.base.n_params
            n_extra = int(np.prod(self.shape[k:]))
            fine = self._ratio_at_nodes(ratio).reshape(-1, n_extra, self.n_pix)
            product = base.reshape(-1, 1, self.n_pix) * fine
            product = product.reshape(-1, self.n_pix).astype(np.float32)
            product[~self.valid.reshape(-1)] = 0.0  # holes carry no flux, as in SpectralGrid
            product.setflags(write=False)
            self._nodes_cache[which] = product
        return self._nodes_cache[which]

    @property
    def _node_flux(self) -> np.ndarray:
        return self._product_at_nodes("flux")

    @property
    def _node_continuum(self) -> np.ndarray | None:
        return self._product_at_nodes("continuum")

    def __repr__(self) -> str:
        axes = ", ".join(f"{n}[{a[0]:g}..{a[-1]:g}]x{a.size}" for n, a in self._ratio.axes.items())
        return f"ResponseGrid(base={self.base!r}, response: {axes})"

    def __getstate__(self):
        # the node products and the blocked cubes are caches, rebuilt on first use
        state = dict(self.__dict__)
        state["_nodes_cache"], state["_block_cache"] = {}, None
        return state

    # ------------------------------------------------------ blocked evaluation
    # flux and jacobian evaluate both factors pixel block by pixel block from blocked
    # copies of the node cubes (~37 MB for the 5-D model, made on first use), the base
    # once per distinct (T_eff, log g, [M/H]) when labels repeat (lattices, node sets).
    # Each pixel sees the same float32 operations in the same order as the factors' own
    # flux and jacobian, so the results are bit-identical to their product.
    def _blocked_ok(self) -> bool:
        # next to a hole the factors' own paths raise or give NaN rows: keep them there
        return bool(self.base.valid.all())

    def _blocks(self) -> tuple:
        """The base's and the response's node flux in pixel blocks (cached)."""
        if getattr(self, "_block_cache", None) is None:
            self._block_cache = _pixel_blocks(self.base.node_flux, self._ratio.node_flux)
        return self._block_cache

    @staticmethod
    def _stencils(grid: SpectralGrid, labels, method, derivatives=(None,)) -> list:
        """Sparse (n, n_nodes) weights of ``grid`` at ``labels``: the interpolant (None)
        or its derivative along an axis, for each of ``derivatives``.

        The tensor product of `tensor_weights`, with each axis's weights computed once
        for all the derivatives, and without its exact zeros (the sums are unchanged).
        """
        per_axis = [
            axis_weights(x, labels[:, a], method) for a, x in enumerate(grid.axes.values())
        ]
        out = []
        for derivative in derivatives:
            flat, weight = stencil_product(per_axis, grid.shape, derivative)
            matrix = weight_matrix(flat, weight, grid.n_nodes)
            # labels on nodes (lines through the grid, node sets) have stencils that are
            # mostly exact zeros: 4 of the 64 base weights, 2 of the 32 response weights
            matrix.eliminate_zeros()
            out.append(matrix)
        return out

    def _flux_into(self, arr, sub, method, out) -> None:
        """``out[:] = base(sub) * response(arr)``, shape (n, n_pix)."""
        uniq, inverse = _distinct_rows(sub)
        (w_base,) = self._stencils(self.base, uniq, method)
        (w_ratio,) = self._stencils(self._ratio, arr, self.ratio_method)
        for cols, b_cube, r_cube in self._blocks():
            base = w_base @ b_cube
            if inverse is not None:
                base = base[inverse]
            np.multiply(base, w_ratio @ r_cube, out=out[:, cols])

    def _jacobian_into(self, arr, sub, method, out) -> None:
        """``out[:] = d(base * response) / d theta``, shape (n, n_pix, n_params)."""
        k = self.base.n_params
        uniq, inverse = _distinct_rows(sub)
        w_base = self._stencils(self.base, uniq, method, (None, *range(k)))
        w_ratio = self._stencils(
            self._ratio, arr, self.ratio_method, (None, *range(self.n_params))
        )

        def base_at(weights, cube):
            value = weights @ cube
            return value if inverse is None else value[inverse]

        for cols, b_cube, r_cube in self._blocks():
            b, r = base_at(w_base[0], b_cube), w_ratio[0] @ r_cube
            for a in range(self.n_params):
                value = (w_ratio[a + 1] @ r_cube) * b  # r' b, then + b' r as in jacobian
                if a < k:
                    value += base_at(w_base[a + 1], b_cube) * r
                out[:, cols, a] = value

    def _split(self, theta, out_of_bounds):
        arr = self._labels(theta, out_of_bounds)
        return arr, arr[:, : self.base.n_params]

    def flux(self, theta, *, method=None, out_of_bounds="raise", on_hole="raise", chunk_size=4096):
        """Interpolated noiseless spectra: base flux times the interpolated response.

        Parameters are those of `SpectralGrid.flux`.

        Returns
        -------
        flux : ndarray of shape (n, n_pix), float32

        Examples
        --------
        >>> from specreg.datasets import load_grid
        >>> model = load_grid("5d")
        >>> model.flux([[4500, 2.0, -1.0, 0.3, 0.1]]).shape
        (1, 4096)
        """
        method = self._check_options(method, on_hole)
        chunk_size = check_int(chunk_size, "chunk_size")
        arr, sub = self._split(theta, out_of_bounds)
        if not self._blocked_ok():
            kw = {"on_hole": on_hole, "chunk_size": chunk_size}
            return self.base.flux(sub, method=method, **kw) * self._ratio.flux(arr, **kw)
        out = np.empty((arr.shape[0], self.n_pix), dtype=np.float32)
        for start in range(0, arr.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            self._flux_into(arr[rows], sub[rows], method, out[rows])
        return out

    def continuum(self, theta, *, method=None, out_of_bounds="raise"):
        """Interpolated continua: base continuum times the continuum response.

        Examples
        --------
        >>> from specreg.datasets import load_grid
        >>> load_grid("5d").continuum([[5000, 3, 0, 0, 0]]).shape
        (1, 4096)
        """
        method = self._check_options(method, "raise")
        arr, sub = self._split(theta, out_of_bounds)
        return self.base.continuum(sub, method=method) * self._ratio.continuum(arr)

    def jacobian(
        self, theta, *, method=None, out_of_bounds="raise", on_hole="raise", chunk_size=1024
    ):
        """Exact derivative of the product interpolant, shape (n, n_pix, n_params).

        ``d(b r)/d theta = r db/d theta + b dr/d theta``, where the base depends on its
        own labels only.

        Examples
        --------
        >>> from specreg.datasets import load_grid
        >>> load_grid("5d").jacobian([[5000, 3, 0, 0.1, 0.1]]).shape
        (1, 4096, 5)
        """
        method = self._check_options(method, on_hole)
        chunk_size = check_int(chunk_size, "chunk_size")
        arr, sub = self._split(theta, out_of_bounds)
        if self._blocked_ok():
            out = np.empty((arr.shape[0], self.n_pix, self.n_params), dtype=np.float32)
            for start in range(0, arr.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                self._jacobian_into(arr[rows], sub[rows], method, out[rows])
            return out
        kw = {"on_hole": on_hole, "chunk_size": chunk_size}
        b = self.base.flux(sub, method=method, **kw)
        r = self._ratio.flux(arr, **kw)
        out = self._ratio.jacobian(arr, **kw) * b[:, :, None]
        jac_base = self.base.jacobian(sub, method=method, **kw)
        out[:, :, : self.base.n_params] += jac_base * r[:, :, None]
        return out

    def stencil_valid(self, theta, method=None) -> np.ndarray:
        """Whether both factors can be interpolated without a hole.

        Examples
        --------
        >>> from specreg.datasets import load_grid
        >>> load_grid("5d").stencil_valid([[5000, 3, 0, 0, 0]])
        array([ True])
        """
        arr, sub = self._split(theta, "clip")
        return self.base.stencil_valid(sub, method) & self._ratio.stencil_valid(arr)

    def normalized(self, value: float = 0.5, window=None) -> ResponseGrid:
        """A copy normalised like `SpectralGrid.normalized`, at both grids' nodes.

        The base nodes get median ``value``; each response node is rescaled so that
        the product has median ``value`` there too. In between, the median is that of
        an interpolation of normalised spectra (within about 0.1 % of ``value``).

        Examples
        --------
        >>> from specreg.datasets import load_grid
        >>> model = load_grid("5d", normalize=False)
        >>> norm = model.normalized()
        """
        base = self.base.normalized(value, window)
        mask = np.ones(self.n_pix, dtype=bool)
        if window is not None:
            mask = (self.wave >= window[0]) & (self.wave <= window[1])
        nodes = self._ratio.nodes[:, : base.n_params]
        product = base.flux(nodes) * self._ratio.node_flux
        scale = (value / np.median(product[:, mask], axis=1))[:, None]
        shape = (*self._ratio.shape, self.n_pix)
        cont = self._ratio.node_continuum
        return ResponseGrid(
            base,
            self._ratio.axes,
            (self._ratio.node_flux * scale).reshape(shape),
            continuum_ratio=None if cont is None else (cont * scale).reshape(shape),
            ratio_method=self.ratio_method,
            metadata=self.metadata,
        )

    @property
    def ratio(self) -> SpectralGrid:
        """The response grid itself (flux ratios to the base at its nodes).

        Examples
        --------
        >>> from specreg.datasets import load_grid
        >>> load_grid("5d").ratio.shape
        (5, 5, 5, 3, 3)
        """
        return self._ratio
