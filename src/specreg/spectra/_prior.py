"""Label priors: uniform boxes, optional cos^2 edge tapers, optional node snapping."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._validation import as_generator, check_bool, check_int, check_model, check_real, renamed

if TYPE_CHECKING:
    from ._protocol import SpectralModel

__all__ = ["LabelPrior"]


class LabelPrior:
    """A prior over stellar labels, independent per label.

    Each label is uniform on ``bounds[name]``, optionally with cos^2 tapers over a
    fraction ``taper`` of the range at both ends (a density that vanishes at the
    edges with finite Fisher information, as the van Trees bound needs).

    With ``snap_to`` (a dict of node coordinates, e.g. ``grid.axes``) each draw
    mimics the reference study's pfsspec sampling: one randomly chosen label
    stays continuous and the others are snapped to their nearest grid node
    (see the reference-study page of the user guide).

    Parameters
    ----------
    bounds : dict of str -> (float, float)
    taper : float, default=0.0
        Fraction of each range (per side) covered by the cos^2 taper, in [0, 0.5].
    snap_to : dict of str -> array-like, optional
        Node coordinates for snapping.

    Examples
    --------
    >>> prior = LabelPrior({"T_eff": (4000, 6000), "log_g": (1, 5)})
    >>> prior.sample(3, random_state=0).shape
    (3, 2)
    """

    def __init__(self, bounds: dict, *, taper: float = 0.0, snap_to: dict | None = None):
        if not bounds:
            raise ValueError("bounds must name at least one label")
        self.bounds = {}
        for name, (lo, hi) in bounds.items():
            lo, hi = float(lo), float(hi)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(f"bounds of {name!r} must be finite with hi > lo, got {lo, hi}")
            self.bounds[name] = (lo, hi)
        check_real(taper, "taper", low=0.0, high=0.5)
        self.taper = float(taper)
        self.snap_to = None
        if snap_to is not None:
            missing = [n for n in self.bounds if n not in snap_to]
            if missing:
                raise ValueError(f"snap_to lacks node coordinates for {missing}")
            self.snap_to = {n: self._nodes(n, snap_to[n]) for n in self.bounds}
        self.param_names = tuple(self.bounds)

    @classmethod
    def from_grid(
        cls,
        model: SpectralModel | None = None,
        *,
        box: dict | None = None,
        snap: bool = False,
        grid: SpectralModel | None = None,
        **kwargs,
    ) -> LabelPrior:
        """The uniform prior over a model's box, or a sub-box of it.

        Parameters
        ----------
        model : SpectralModel
            Gives the labels, their box and (with ``snap``) the node coordinates
            (its ``axes``, e.g. those of a `SpectralGrid`).
        box : dict of str -> (float, float), optional
            Narrower ranges for some labels; each must lie inside the model's box.
        snap : bool, default=False
            Snap all but one label per draw to the grid's nodes inside the box.
        grid : SpectralModel, optional
            Deprecated old name of ``model``.

            .. deprecated:: 0.1
               ``grid`` was renamed ``model``; it will be removed in 0.3.
        **kwargs
            Passed to `LabelPrior` (``taper``).

        Raises
        ------
        ValueError
            A label of ``box`` that the grid lacks, a range outside the grid's box,
            or (with ``snap``) a range holding no grid node.

        Examples
        --------
        >>> import numpy as np
        >>> from specreg.spectra import SpectralGrid
        >>> g = SpectralGrid({"x": [0.0, 1.0, 2.0]}, np.ones((3, 1)), [1.0])
        >>> LabelPrior.from_grid(g).bounds
        {'x': (0.0, 2.0)}
        >>> LabelPrior.from_grid(g, box={"x": (0.5, 2.0)}, snap=True).snap_to
        {'x': array([1., 2.])}
        """
        model = renamed(model, grid, old="grid", new="model")
        if model is None:
            raise TypeError("LabelPrior.from_grid() needs the spectral model (model=)")
        check_model(model, ("param_names", "bounds"))
        bounds = dict(model.bounds)
        for name, (lo, hi) in (box or {}).items():
            if name not in bounds:
                raise ValueError(
                    f"the grid has no label {name!r} (its labels are {tuple(model.param_names)})"
                )
            glo, ghi = bounds[name]
            if not (glo <= lo < hi <= ghi):
                raise ValueError(
                    f"the range {name} = [{lo:g}, {hi:g}] must lie inside the grid's box "
                    f"[{glo:g}, {ghi:g}] with LO < HI"
                )
            bounds[name] = (float(lo), float(hi))
        if check_bool(snap, "snap"):
            if getattr(model, "axes", None) is None:
                raise ValueError("snap=True needs a model with node coordinates (axes)")
            snap_to = {}
            for name, (lo, hi) in bounds.items():
                nodes = np.asarray(model.axes[name], float)
                inside = nodes[(nodes >= lo) & (nodes <= hi)]
                if inside.size == 0:
                    raise ValueError(
                        f"no grid node of {name} lies in [{lo:g}, {hi:g}] (nodes: "
                        f"{', '.join(f'{v:g}' for v in nodes)}); widen the range or do not snap"
                    )
                snap_to[name] = inside
            kwargs["snap_to"] = snap_to
        return cls(bounds, **kwargs)

    def __repr__(self) -> str:
        return f"LabelPrior({self.bounds}, taper={self.taper}, snap={self.snap_to is not None})"

    def _nodes(self, name: str, values) -> np.ndarray:
        """Sorted snap nodes of one label: finite, at least one, none drawn outside its bounds.

        A draw snaps to its nearest node, so the extreme nodes drawn are those nearest
        to the bounds; a node beyond the bounds is allowed only if no draw snaps to it.
        """
        nodes = np.sort(np.asarray(values, dtype=float).reshape(-1))
        lo, hi = self.bounds[name]
        if nodes.size == 0 or not np.all(np.isfinite(nodes)):
            raise ValueError(f"snap_to[{name!r}] must be one or more finite node values")
        first, last = (nodes[np.abs(nodes - edge).argmin()] for edge in (lo, hi))
        if first < lo or last > hi:
            raise ValueError(
                f"snap_to[{name!r}] has a node outside the bounds [{lo:g}, {hi:g}] that "
                f"draws snap to ({first:g} ... {last:g}): a snapped draw would leave the box"
            )
        return nodes

    def _shape(self, u: np.ndarray) -> np.ndarray:
        """Unnormalised density in unit coordinates u in [0, 1]."""
        if self.taper == 0:
            return np.ones_like(u)
        edge = np.minimum(u, 1 - u) / self.taper
        return np.where(edge >= 1, 1.0, np.sin(0.5 * np.pi * np.clip(edge, 0, 1)) ** 2)

    def sample(self, n_samples: int, random_state=None) -> np.ndarray:
        """Draw labels.

        Parameters
        ----------
        n_samples : int
        random_state : int, Generator or None

        Returns
        -------
        theta : ndarray of shape (n_samples, n_params)

        Examples
        --------
        >>> LabelPrior({"x": (0, 1)}).sample(2, random_state=1).round(3).tolist()
        [[0.512], [0.95]]
        """
        rng = as_generator(random_state)
        n, d = check_int(n_samples, "n_samples", low=0), len(self.bounds)
        u = rng.random((n, d))
        if self.taper > 0:  # rejection sampling from the tapered box, per label
            for j in range(d):
                todo = rng.random(n) > self._shape(u[:, j])
                while todo.any():
                    u[todo, j] = rng.random(todo.sum())
                    todo[todo] = rng.random(todo.sum()) > self._shape(u[todo, j])
        lo = np.array([b[0] for b in self.bounds.values()])
        hi = np.array([b[1] for b in self.bounds.values()])
        theta = lo + u * (hi - lo)
        if self.snap_to is not None and n > 0:
            free = rng.integers(0, d, size=n)
            for j, name in enumerate(self.param_names):
                nodes = self.snap_to[name]
                idx = np.abs(theta[:, j, None] - nodes[None, :]).argmin(axis=1)
                snap = free != j
                theta[snap, j] = nodes[idx[snap]]
        return theta

    def sample_frame(self, n_samples: int, random_state=None) -> pd.DataFrame:
        """:meth:`sample` as a DataFrame with the label names as columns.

        Examples
        --------
        >>> list(LabelPrior({"log_g": (1, 5)}).sample_frame(1, 0).columns)
        ['log_g']
        """
        return pd.DataFrame(self.sample(n_samples, random_state), columns=self.param_names)

    def logpdf(self, theta) -> np.ndarray:
        """Log density (of the continuous, unsnapped prior); -inf outside the box.

        Examples
        --------
        >>> float(LabelPrior({"x": (0, 2)}).logpdf([[1.0]])[0]) == float(np.log(0.5))
        True
        """
        theta = np.atleast_2d(np.asarray(theta, float))
        if theta.ndim != 2 or theta.shape[1] != len(self.bounds):
            raise ValueError(
                f"theta must have shape (n, {len(self.bounds)}) for the labels "
                f"{self.param_names}, got {theta.shape}"
            )
        out = np.zeros(theta.shape[0])
        for j, (lo, hi) in enumerate(self.bounds.values()):
            u = (theta[:, j] - lo) / (hi - lo)
            inside = (u >= 0) & (u <= 1)
            norm = (1.0 - self.taper) * (hi - lo)  # integral of the tapered shape
            with np.errstate(divide="ignore"):
                val = np.log(self._shape(np.clip(u, 0, 1))) - np.log(norm)
            out += np.where(inside, val, -np.inf)
        return out

    def fisher_information(self) -> np.ndarray:
        """Prior Fisher information J_prior = E[(d log p / d theta)^2] (diagonal).

        Finite only with a taper (``taper > 0``); the van Trees bound needs it.
        For a cos^2 taper of width w (in label units) at both ends and the
        normalisation N = (1 - taper) * range, each end contributes pi^2 / (2 w N).

        Examples
        --------
        >>> J = LabelPrior({"x": (0, 1)}, taper=0.1).fisher_information()
        >>> bool(np.isclose(J[0, 0], np.pi**2 / (0.1 * 0.9)))
        True
        """
        if self.taper == 0:
            raise ValueError(
                "a flat box prior has infinite Fisher information at its edges; "
                "use taper > 0 for the van Trees bound"
            )
        diag = []
        for lo, hi in self.bounds.values():
            w = self.taper * (hi - lo)
            norm = (1.0 - self.taper) * (hi - lo)
            # int over one taper of (p')^2/p with p = sin^2(pi x / 2w)/N is pi^2/(2 w N)
            diag.append(np.pi**2 / (w * norm))
        return np.diag(diag)
