"""Small analytic spectral grids for tests, doctests and benchmarks (not physics).

The grids are test doubles: a few Lorentzian absorption lines whose depths and
widths depend smoothly on (T_eff, log g, [M/H]), on a sloped continuum. They
are cheap to build at any size and need no embedded grid, so the test suite,
the benchmarks and the examples of the docstrings can use them everywhere.
Private to specreg: importable, but not part of the public API.
"""

from __future__ import annotations

import numpy as np

from ..spectra import SpectralGrid, pfs_mr_wave

__all__ = ["TOY_AXES", "line_model", "make_toy_grid", "write_toy_response"]

# (centre Å, base depth, gravity sensitivity, metal sensitivity, temperature sensitivity)
_LINES = np.array(
    [
        [8498.0, 0.35, -0.08, 0.10, -0.05],  # CaT-like: stronger in giants
        [8542.0, 0.50, -0.10, 0.12, -0.05],
        [8662.0, 0.45, -0.09, 0.11, -0.05],
        [8183.0, 0.20, 0.06, 0.06, -0.10],  # Na-like: stronger in dwarfs
        [8195.0, 0.25, 0.07, 0.06, -0.10],
        [7700.0, 0.15, 0.02, 0.08, -0.12],
        [8807.0, 0.18, -0.02, 0.09, -0.06],
        [7400.0, 0.12, 0.01, 0.07, -0.09],
    ]
)

#: Nodes of the default toy grid: 5 x 5 x 6 in (T_eff, log g, [M/H]).
TOY_AXES = {
    "T_eff": np.arange(4000.0, 6001.0, 500.0),
    "log_g": np.arange(1.0, 5.01, 1.0),
    "M_H": np.arange(-2.5, 0.76, 0.65),
}


def line_model(theta: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Analytic toy spectra at labels ``(T_eff, log_g, M_H)``, median about 0.5.

    Parameters
    ----------
    theta : array-like of shape (n, 3) or (3,)
        Labels ``(T_eff, log_g, M_H)``.
    wave : ndarray of shape (n_pix,)
        Wavelengths in Å.

    Returns
    -------
    flux : ndarray of shape (n, n_pix)

    Examples
    --------
    >>> wave = np.linspace(7100.0, 8850.0, 100)
    >>> line_model([5000.0, 3.0, -1.0], wave).shape
    (1, 100)
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    wave = np.asarray(wave, dtype=float)
    t = (theta[:, 0:1] - 5000.0) / 1000.0
    g = (theta[:, 1:2] - 3.0) / 2.0
    m = (theta[:, 2:3] + 1.0) / 1.75
    x = (wave[None, :] - wave[0]) / (wave[-1] - wave[0])
    flux = 0.5 * (1.0 + 0.15 * t * (x - 0.5))
    for centre, depth, dg, dm, dt in _LINES:
        d = np.clip(depth + dg * g + dm * m + dt * t, 0.02, 0.9)
        width = 1.2 + 0.3 * g  # pressure broadening grows with gravity
        flux = flux * (1.0 - d / (1.0 + ((wave[None, :] - centre) / width) ** 2))
    return flux


def make_toy_grid(n_pix: int = 4096, axes: dict | None = None, valid=None) -> SpectralGrid:
    """A `SpectralGrid` of :func:`line_model` at the nodes of ``axes``.

    Parameters
    ----------
    n_pix : int, default=4096
        Pixels of the PFS MR-like wavelength grid
        (:func:`~specreg.spectra.pfs_mr_wave`).
    axes : dict of str -> ndarray, optional
        Node coordinates of ``T_eff``, ``log_g`` and ``M_H``, in that order;
        default `TOY_AXES`.
    valid : array-like of bool, optional
        Missing nodes (holes), as in `SpectralGrid`.

    Returns
    -------
    SpectralGrid

    Examples
    --------
    >>> grid = make_toy_grid(256)
    >>> grid.shape, grid.n_pix
    ((5, 5, 6), 256)
    """
    axes = TOY_AXES if axes is None else axes
    wave = pfs_mr_wave(n_pix)
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    nodes = np.stack([a.ravel() for a in mesh], axis=1)
    flux = line_model(nodes, wave).reshape(*[len(a) for a in axes.values()], n_pix)
    return SpectralGrid(axes, flux, wave, valid=valid, metadata={"name": "toy line grid"})


def _toy_log_ratio(p: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Smooth in every label, zero at [alpha/M] = [C/M] = 0, interacting at low T_eff."""
    t, _, m, a, c = p
    cool = 1.0 + 1e-3 * (5000.0 - t)
    strength = 0.06 * a * cool * (1 + 0.3 * m) - 0.04 * c * cool**2 + 0.02 * a * c
    return strength * pattern


def write_toy_response(
    path, base: SpectralGrid, a_nodes=(-0.2, 0.0, 0.4), c_nodes=(-0.5, 0.0, 0.5)
):
    """A 5-D response file around ``base`` with an analytic response (a test double).

    It is what ``specreg grid assemble`` writes, so ``load_grid(path)`` reads it
    as a :class:`~specreg.spectra.ResponseGrid` over the embedded 3-D grid when
    ``base`` is that grid (not normalised). The response spans the base box with
    its corner nodes only and deepens a fixed set of pixels with [alpha/M] and
    [C/M], so that the extra labels are measurable but not physics.

    Parameters
    ----------
    path : path-like
        Output HDF5 file.
    base : SpectralGrid
        The 3-D grid the response multiplies (with a continuum).
    a_nodes, c_nodes : sequence of float
        Nodes of [alpha/M] and [C/M]; each must hold 0.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from specreg.datasets import load_grid
    >>> base = load_grid(normalize=False)
    >>> tmp = pathlib.Path(tempfile.mkdtemp()) / "toy5d.h5"
    >>> load_grid(write_toy_response(tmp, base)).param_names
    ('T_eff', 'log_g', 'M_H', 'a_M', 'C_M')
    """
    import json
    import tempfile
    from pathlib import Path

    from ..grids._builder import _save_npz, node_filename
    from ..grids._response import LOG_RATIO_SCALE, assemble_response

    if 0.0 not in a_nodes or 0.0 not in c_nodes:
        raise ValueError("a_nodes and c_nodes must each hold 0 (the base grid's own value)")
    axes = {n: [float(v[0]), float(v[-1])] for n, v in base.axes.items()}
    axes |= {"a_M": sorted(map(float, a_nodes)), "C_M": sorted(map(float, c_nodes))}
    # a fixed set of "lines": a smooth random pixel pattern in [0, 1]
    rng = np.random.default_rng(5)
    pattern = np.convolve(rng.random(base.n_pix) ** 8, np.ones(5) / 5, mode="same")
    pattern /= pattern.max()
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        (build / "nodes").mkdir()
        record = {"axes": axes, "log_ratio_scale": LOG_RATIO_SCALE, "base_grid": "toy"}
        (build / "build.json").write_text(json.dumps(record))
        for p in np.array(np.meshgrid(*axes.values(), indexing="ij")).reshape(5, -1).T:
            if p[3] == 0.0 and p[4] == 0.0:
                continue
            log_ratio = _toy_log_ratio(p, pattern)
            stored = np.round(np.stack([log_ratio, 0 * log_ratio]) / LOG_RATIO_SCALE)
            name = f"{node_filename(*p)}.npz"
            _save_npz(build / "nodes" / name, log_ratio=stored.astype(np.int16))
        return assemble_response(build, path)
