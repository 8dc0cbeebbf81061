"""SpectralGrid: a regular grid of spectra with interpolation and its Jacobian."""

from __future__ import annotations

import numpy as np

from ._interp import tensor_weights, weight_matrix
from ._validation import as_label_array, check_finite, check_int

__all__ = ["SpectralGrid"]

_METHODS = ("cubic", "linear")
_OUT_OF_BOUNDS = ("raise", "clip")
_ON_HOLE = ("raise", "nan")


class SpectralGrid:
    """A regular grid of spectra, interpolated in the labels.

    Implements the :class:`~specreg.spectra.SpectralModel` protocol: ``flux(theta)``
    interpolates the node spectra (cubic by default, C1-continuous, so the
    Jacobian is continuous), ``jacobian(theta)`` is the exact derivative of that
    interpolant, and :meth:`node_jacobian` gives the reference study's central
    differences along the axes at the nodes.

    Parameters
    ----------
    axes : dict of str -> array-like
        Node coordinates per label, each strictly increasing. The order of the
        dict is the order of the flux cube's leading axes, e.g.
        ``{"T_eff": [...], "log_g": [...], "M_H": [...]}``.
    flux : array-like of shape ``(*axis_lengths, n_pix)``
        Node spectra. Stored as float32.
    wave : array-like of shape (n_pix,)
        Wavelengths in Å, strictly increasing.
    continuum : array-like of shape ``(*axis_lengths, n_pix)``, optional
        Continuum of each node spectrum.
    valid : array-like of bool of shape ``(*axis_lengths,)``, optional
        False marks a missing node (a *hole*). Its flux is ignored (may be NaN).
        Labels whose interpolation stencil touches a hole raise an error (or
        give NaN with ``on_hole="nan"``): the grid is never silently
        interpolated through a hole.
    method : {"cubic", "linear"}, default="cubic"
        Default interpolation scheme.
    metadata : dict, optional
        Free-form provenance (how the grid was made, citations).

    Attributes
    ----------
    param_names : tuple of str
    shape : tuple of int
        Number of nodes per axis.
    n_pix : int
    bounds : dict of str -> (float, float)

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid
    >>> teff, logg = np.array([4000.0, 5000.0, 6000.0]), np.array([1.0, 3.0, 5.0])
    >>> wave = np.linspace(7100, 8850, 50)
    >>> flux = 1 - 1e-5 * teff[:, None, None] * logg[None, :, None] * np.ones(50)
    >>> grid = SpectralGrid({"T_eff": teff, "log_g": logg}, flux, wave)
    >>> grid.flux([[4500.0, 2.0]]).shape
    (1, 50)
    >>> grid.jacobian([[4500.0, 2.0]]).shape
    (1, 50, 2)
    """

    def __init__(
        self,
        axes: dict,
        flux,
        wave,
        *,
        continuum=None,
        valid=None,
        method: str = "cubic",
        metadata: dict | None = None,
    ) -> None:
        if not isinstance(axes, dict) or not axes:
            raise ValueError("axes must be a non-empty dict of name -> node coordinates")
        self.param_names = tuple(axes)
        self.axes = {}
        for name, nodes in axes.items():
            arr = np.array(nodes, dtype=float).reshape(-1)
            check_finite(arr, f"axis {name!r}")
            if arr.size > 1 and np.any(np.diff(arr) <= 0):
                raise ValueError(f"axis {name!r} must be strictly increasing, got {arr}")
            self.axes[name] = arr
        self.shape = tuple(a.size for a in self.axes.values())
        self.wave = np.array(wave, dtype=float).reshape(-1)
        check_finite(self.wave, "wave")
        if self.wave.size > 1 and np.any(np.diff(self.wave) <= 0):
            raise ValueError("wave must be strictly increasing")
        self.n_pix = self.wave.size
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        self.method = method
        self.metadata = dict(metadata or {})

        expected = (*self.shape, self.n_pix)
        if valid is None:
            self.valid = np.ones(self.shape, dtype=bool)
        else:
            self.valid = np.array(valid, dtype=bool)
            if self.valid.shape != self.shape:
                raise ValueError(f"valid must have shape {self.shape}, got {self.valid.shape}")
        self._node_flux = self._check_cube(flux, "flux", expected)
        self._node_continuum = (
            None if continuum is None else self._check_cube(continuum, "continuum", expected)
        )
        self.bounds = {n: (float(a[0]), float(a[-1])) for n, a in self.axes.items()}

    def _check_cube(self, cube, name: str, expected: tuple) -> np.ndarray:
        arr = np.array(cube, dtype=np.float32)  # a copy: the user's array is never aliased
        if arr.shape != expected:
            raise ValueError(
                f"{name} must have shape (*axis_lengths, n_pix) = {expected}, got {arr.shape}"
            )
        arr = arr.reshape(-1, self.n_pix)
        valid = self.valid.reshape(-1)
        check_finite(arr[valid], f"{name} at valid nodes")
        arr[~valid] = 0.0  # holes carry no flux; the stencil check keeps them out
        return arr

    # ------------------------------------------------------------------ helpers
    @property
    def n_params(self) -> int:
        """Number of labels (grid dimensions)."""
        return len(self.param_names)

    @property
    def n_nodes(self) -> int:
        """Total number of nodes, holes included."""
        return int(np.prod(self.shape))

    @property
    def nodes(self) -> np.ndarray:
        """Labels of all nodes, shape (n_nodes, n_params), C order, holes included."""
        mesh = np.meshgrid(*self.axes.values(), indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)

    @property
    def node_flux(self) -> np.ndarray:
        """Node spectra, shape (n_nodes, n_pix) (a read-only view)."""
        view = self._node_flux.view()
        view.flags.writeable = False
        return view

    @property
    def node_continuum(self) -> np.ndarray | None:
        """Node continua, shape (n_nodes, n_pix), or None."""
        if self._node_continuum is None:
            return None
        view = self._node_continuum.view()
        view.flags.writeable = False
        return view

    def __repr__(self) -> str:
        axes = ", ".join(f"{n}[{a[0]:g}..{a[-1]:g}]x{a.size}" for n, a in self.axes.items())
        holes = int((~self.valid).sum())
        return f"SpectralGrid({axes}, n_pix={self.n_pix}, holes={holes}, method={self.method!r})"

    def _labels(self, theta, out_of_bounds: str) -> np.ndarray:
        arr = as_label_array(theta, self.param_names)
        if out_of_bounds not in _OUT_OF_BOUNDS:
            raise ValueError(f"out_of_bounds must be one of {_OUT_OF_BOUNDS}")
        lo = np.array([b[0] for b in self.bounds.values()])
        hi = np.array([b[1] for b in self.bounds.values()])
        outside = (arr < lo) | (arr > hi)
        if outside.any():
            if out_of_bounds == "clip":
                return np.clip(arr, lo, hi)
            row, col = np.argwhere(outside)[0]
            name = self.param_names[col]
            raise ValueError(
                f"{int(outside.any(axis=1).sum())} label vector(s) lie outside the grid, "
                f"e.g. row {row}: {name}={arr[row, col]:g} not in [{lo[col]:g}, {hi[col]:g}]; "
                "pass out_of_bounds='clip' to clip them to the grid box"
            )
        return arr

    def _hole_rows(self, flat: np.ndarray, weight: np.ndarray) -> np.ndarray:
        if self.valid.all():
            return np.zeros(flat.shape[0], dtype=bool)
        touches = ~self.valid.reshape(-1)[flat] & (weight != 0)
        return touches.any(axis=1)

    def _apply(self, theta, cube, method, derivative, on_hole):
        flat, weight = tensor_weights(list(self.axes.values()), theta, method, derivative)
        holes = self._hole_rows(flat, weight)
        if holes.any() and on_hole == "raise":
            row = int(np.argmax(holes))
            raise ValueError(
                f"{int(holes.sum())} label vector(s) need a missing grid node (a hole) to be "
                f"interpolated, e.g. {dict(zip(self.param_names, theta[row]))}; "
                "pass on_hole='nan' to get NaN spectra for them"
            )
        out = weight_matrix(flat, weight, self.n_nodes) @ cube
        out = np.asarray(out, dtype=np.float32)
        if holes.any():
            out[holes] = np.nan
        return out

    def _interpolate(
        self, theta, cube, method, out_of_bounds, on_hole, chunk_size, *, jacobian: bool
    ) -> np.ndarray:
        """``cube`` interpolated at ``theta`` (or its derivatives), ``chunk_size`` rows at once.

        The one evaluation path of `flux`, `continuum` and `jacobian`: options
        and labels checked, then (n, n_pix) values or (n, n_pix, n_params)
        derivatives, in blocks that bound the temporary memory.
        """
        method = self._check_options(method, on_hole)
        chunk_size = check_int(chunk_size, "chunk_size")
        arr = self._labels(theta, out_of_bounds)
        derivatives = range(self.n_params) if jacobian else [None]
        shape = (
            (arr.shape[0], self.n_pix, self.n_params) if jacobian else (arr.shape[0], self.n_pix)
        )
        out = np.empty(shape, dtype=np.float32)
        for start in range(0, arr.shape[0], chunk_size):
            sl = slice(start, start + chunk_size)
            for a in derivatives:
                value = self._apply(arr[sl], cube, method, a, on_hole)
                if a is None:
                    out[sl] = value
                else:
                    out[sl, :, a] = value
        return out

    def _check_options(self, method, on_hole):
        method = self.method if method is None else method
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if on_hole not in _ON_HOLE:
            raise ValueError(f"on_hole must be one of {_ON_HOLE}, got {on_hole!r}")
        return method

    # --------------------------------------------------------------- protocol
    def flux(
        self,
        theta,
        *,
        method: str | None = None,
        out_of_bounds: str = "raise",
        on_hole: str = "raise",
        chunk_size: int = 4096,
    ) -> np.ndarray:
        """Interpolated noiseless spectra.

        Parameters
        ----------
        theta : array-like of shape (n, n_params) or DataFrame
            Labels, columns in ``param_names`` order (a DataFrame is matched by
            column name). A 1-D array is one label vector.
        method : {"cubic", "linear"}, optional
            Defaults to the grid's ``method``.
        out_of_bounds : {"raise", "clip"}, default="raise"
            Labels outside the grid box raise ``ValueError`` unless clipped.
        on_hole : {"raise", "nan"}, default="raise"
            What to do when the interpolation needs a missing node.
        chunk_size : int, default=4096
            Spectra computed at once (bounds the temporary memory).

        Returns
        -------
        flux : ndarray of shape (n, n_pix), float32
            One model spectrum per label vector (NaN rows where ``on_hole="nan"``
            met a missing node).

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[1.0], [2.0], [5.0]]
        >>> grid = SpectralGrid({"x": [0.0, 1.0, 2.0]}, flux, [7000.0])
        >>> grid.flux([[1.0]], method="linear")
        array([[2.]], dtype=float32)
        """
        return self._interpolate(
            theta, self._node_flux, method, out_of_bounds, on_hole, chunk_size, jacobian=False
        )

    def continuum(
        self, theta, *, method: str | None = None, out_of_bounds: str = "raise"
    ) -> np.ndarray:
        """Interpolated continua, shape (n, n_pix).

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> ones = np.ones((2, 2))
        >>> g = SpectralGrid({"x": [0.0, 1.0]}, ones, [1.0, 2.0], continuum=ones)
        >>> g.continuum([[0.5]]).tolist()
        [[1.0, 1.0]]
        """
        if self._node_continuum is None:
            raise ValueError("this grid has no continuum")
        return self._interpolate(
            theta, self._node_continuum, method, out_of_bounds, "raise", 4096, jacobian=False
        )

    def jacobian(
        self,
        theta,
        *,
        method: str | None = None,
        out_of_bounds: str = "raise",
        on_hole: str = "raise",
        chunk_size: int = 1024,
    ) -> np.ndarray:
        """Exact derivative of the interpolant with respect to the labels.

        Parameters
        ----------
        theta : array-like of shape (n, n_params) or DataFrame
        method, out_of_bounds, on_hole, chunk_size
            As in :meth:`flux`. With ``out_of_bounds="clip"`` the derivative is
            that at the clipped label.

        Returns
        -------
        jacobian : ndarray of shape (n, n_pix, n_params), float32
            ``d flux / d theta`` in flux units per label unit (per K, per dex).

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[0.0], [1.0], [2.0]]
        >>> grid = SpectralGrid({"x": [0.0, 1.0, 2.0]}, flux, [7000.0])
        >>> grid.jacobian([[0.5]])
        array([[[1.]]], dtype=float32)
        """
        return self._interpolate(
            theta, self._node_flux, method, out_of_bounds, on_hole, chunk_size, jacobian=True
        )

    def node_jacobian(self) -> np.ndarray:
        """Central differences along the axes at the nodes (the reference's method).

        ``d flux / d theta_a`` at node i is ``(f[i+1] - f[i-1]) / (x[i+1] - x[i-1])``;
        one-sided differences at the axis ends. A difference that would need a
        hole falls back to the one-sided difference on the other side, and is
        NaN when both neighbours are missing (and at the holes themselves).

        Returns
        -------
        jacobian : ndarray of shape ``(*shape, n_pix, n_params)``, float32

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[0.0], [1.0], [4.0]]
        >>> grid = SpectralGrid({"x": [0.0, 1.0, 2.0]}, flux, [7000.0])
        >>> grid.node_jacobian()[:, 0, 0].tolist()  # one-sided, central, one-sided
        [1.0, 2.0, 3.0]
        """
        cube = self._node_flux.reshape(*self.shape, self.n_pix).astype(np.float64)
        valid = self.valid
        out = np.full((*self.shape, self.n_pix, self.n_params), np.nan, dtype=np.float32)
        for a, x in enumerate(self.axes.values()):
            m = x.size
            if m == 1:
                out[..., a] = 0.0
                continue
            f = np.moveaxis(cube, a, 0)
            v = np.moveaxis(valid, a, 0)
            res = np.full(f.shape, np.nan)
            for i in range(m):
                lo, hi = max(i - 1, 0), min(i + 1, m - 1)
                central = (f[hi] - f[lo]) / (x[hi] - x[lo])
                ok = v[i] & v[lo] & v[hi]
                res[i][ok] = central[ok]
                # one-sided fall-backs next to holes
                if i + 1 < m and lo != i:
                    right = (f[i + 1] - f[i]) / (x[i + 1] - x[i])
                    use = v[i] & ~v[lo] & v[i + 1]
                    res[i][use] = right[use]
                if i - 1 >= 0 and hi != i:
                    left = (f[i] - f[i - 1]) / (x[i] - x[i - 1])
                    use = v[i] & v[i - 1] & ~v[hi]
                    res[i][use] = left[use]
            out[..., a] = np.moveaxis(res, 0, a)
        return out

    # ----------------------------------------------------------- derived grids
    def normalized(self, value: float = 0.5, window: tuple[float, float] | None = None):
        """A copy whose node spectra have median ``value`` over a wavelength window.

        The reference study (pfsspec ``norm: median``) scales each spectrum so its
        median over 6500-9500 Å, the whole PFS MR arm, is 0.5. Normalising the
        nodes (rather than each interpolated spectrum) keeps the forward model
        smooth in the labels, so its Jacobian exists everywhere.

        Parameters
        ----------
        value : float, default=0.5
        window : (float, float), optional
            Wavelength range in Å used for the median; default the whole grid.

        Returns
        -------
        SpectralGrid

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> flux = [[2.0, 4.0, 6.0], [1.0, 1.0, 1.0]]
        >>> g = SpectralGrid({"x": [0.0, 1.0]}, flux, [1.0, 2.0, 3.0])
        >>> g.normalized().node_flux.tolist()
        [[0.25, 0.5, 0.75], [0.5, 0.5, 0.5]]
        """
        mask = np.ones(self.n_pix, dtype=bool)
        if window is not None:
            mask = (self.wave >= window[0]) & (self.wave <= window[1])
            if not mask.any():
                raise ValueError(f"window {window} contains no pixel of the grid")
        med = np.median(self._node_flux[:, mask], axis=1)
        vflat = self.valid.reshape(-1)
        if np.any(med[vflat] <= 0):
            raise ValueError("cannot median-normalise spectra with a non-positive median")
        scale = np.where(vflat, value / np.where(med > 0, med, 1.0), 0.0)[:, None]
        cont = None if self._node_continuum is None else self._node_continuum * scale
        meta = dict(self.metadata, normalization={"median": value, "window": window})
        return SpectralGrid(
            self.axes,
            (self._node_flux * scale).reshape(*self.shape, self.n_pix),
            self.wave,
            continuum=None if cont is None else cont.reshape(*self.shape, self.n_pix),
            valid=self.valid,
            method=self.method,
            metadata=meta,
        )

    def stencil_valid(self, theta, method: str | None = None) -> np.ndarray:
        """Whether each label vector can be interpolated without touching a hole.

        Parameters
        ----------
        theta : array-like of shape (n, n_params)

        Returns
        -------
        ok : ndarray of bool of shape (n,)

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> valid = [True, True, False]
        >>> x = {"x": [0.0, 1.0, 2.0]}
        >>> g = SpectralGrid(x, np.ones((3, 1)), [1.0], valid=valid)
        >>> g.stencil_valid([[0.5], [1.5]], method="linear").tolist()
        [True, False]
        """
        method = self._check_options(method, "raise")
        arr = self._labels(theta, "clip")
        flat, weight = tensor_weights(list(self.axes.values()), arr, method)
        return ~self._hole_rows(flat, weight)
