"""Checks of a built grid: line strengths and leave-one-out interpolation errors.

Used by the tests of the shipped grid and useful for any user grid: a grid whose
cubic interpolation cannot reproduce a left-out node within a few per cent is too
coarse for template fitting or Fisher analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spectra import SpectralGrid

__all__ = ["CAT_LINES", "NA_LINES", "equivalent_width", "line_depth", "leave_one_out_errors"]

#: Ca II triplet, air wavelengths (Å).
CAT_LINES = (8498.02, 8542.09, 8662.14)
#: Na I 8183/8195 doublet, air wavelengths (Å).
NA_LINES = (8183.26, 8194.82)


def _normalised(wave, flux, continuum) -> tuple[np.ndarray, np.ndarray]:
    wave = np.asarray(wave, dtype=float)
    norm = np.atleast_2d(np.asarray(flux, dtype=float) / np.asarray(continuum, dtype=float))
    if norm.shape[-1] != wave.size:
        raise ValueError(f"flux has {norm.shape[-1]} pixels but wave has {wave.size}")
    return wave, norm


def equivalent_width(wave, flux, continuum, centre: float, half_width: float) -> np.ndarray:
    """Equivalent width of a line, integral of ``1 - flux / continuum`` over a window.

    Parameters
    ----------
    wave : array-like of shape (n_pix,)
        Wavelengths (Å).
    flux, continuum : array-like of shape (n, n_pix) or (n_pix,)
        Spectra and their continua.
    centre, half_width : float
        Window ``centre +- half_width`` (Å).

    Returns
    -------
    ndarray of shape (n,)
        Equivalent widths in Å (trapezoidal rule over the pixels in the window).

    Examples
    --------
    >>> wave = np.linspace(8500.0, 8600.0, 1001)
    >>> flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 8542.0) / 1.0) ** 2)
    >>> ew = equivalent_width(wave, flux, np.ones_like(flux), 8542.0, 8.0)
    >>> round(float(ew[0]), 3)  # 0.5 * sqrt(2 pi) * 1 A
    1.253
    """
    wave, norm = _normalised(wave, flux, continuum)
    sel = np.abs(wave - centre) <= half_width
    if sel.sum() < 2:
        raise ValueError(f"window {centre} +- {half_width} A holds fewer than 2 pixels")
    depth = 1.0 - norm[:, sel]
    w = wave[sel]
    return np.sum(0.5 * (depth[:, 1:] + depth[:, :-1]) * np.diff(w), axis=1)


def line_depth(wave, flux, continuum, centre: float, half_width: float = 1.0) -> np.ndarray:
    """Central depth of a line, ``1 - min(flux / continuum)`` within ``centre +- half_width``.

    Parameters
    ----------
    wave : array-like of shape (n_pix,)
    flux, continuum : array-like of shape (n, n_pix) or (n_pix,)
    centre : float
        Line centre (Å).
    half_width : float, default=1.0
        Half-width of the search window (Å).

    Returns
    -------
    ndarray of shape (n,)

    Examples
    --------
    >>> wave = np.linspace(8500.0, 8600.0, 1001)
    >>> flux = 1 - 0.5 * np.exp(-0.5 * ((wave - 8542.0) / 1.0) ** 2)
    >>> float(line_depth(wave, flux, np.ones_like(flux), 8542.0)[0])
    0.5
    """
    wave, norm = _normalised(wave, flux, continuum)
    sel = np.abs(wave - centre) <= half_width
    if not sel.any():
        raise ValueError(f"window {centre} +- {half_width} A holds no pixel")
    return 1.0 - norm[:, sel].min(axis=1)


def leave_one_out_errors(grid: SpectralGrid, method: str = "cubic") -> pd.DataFrame:
    """Interpolation errors at nodes left out of the grid, one axis slice at a time.

    For every axis and every interior node coordinate along it, the slice of nodes at
    that coordinate is removed, the remaining grid (twice the spacing there)
    interpolates the removed spectra, and the relative error
    ``interpolated / true - 1`` is taken over all their pixels. Holes (and spectra
    whose stencil in the reduced grid touches a hole) are skipped. Because the
    spacing is doubled, the errors bound those of the full grid between nodes from
    above.

    Parameters
    ----------
    grid : SpectralGrid
    method : {"cubic", "linear"}, default="cubic"

    Returns
    -------
    DataFrame
        One row per left-out slice: ``axis``, ``value``, ``n_spectra``, and the
        ``median``, ``p99`` and ``max`` of the absolute relative error over its
        pixels, plus one row per axis with ``value`` NaN pooling its slices (the
        pooled median and p99 over every left-out pixel of that axis).

    Examples
    --------
    >>> wave = np.linspace(7100.0, 8850.0, 20)
    >>> g = np.linspace(1.0, 5.0, 5)
    >>> flux = (1.0 + 0.01 * g[:, None] ** 2) * np.ones(20)
    >>> loo = leave_one_out_errors(SpectralGrid({"log_g": g}, flux, wave))
    >>> float(loo["max"].max()) < 1e-6  # cubic is exact on a parabola
    True
    """
    if not isinstance(grid, SpectralGrid):
        raise TypeError(f"grid must be a SpectralGrid, got {type(grid).__name__}")
    cube = grid.node_flux.reshape(*grid.shape, grid.n_pix)
    valid = grid.valid
    rows, pooled = [], {}
    for k, name in enumerate(grid.param_names):
        nodes = grid.axes[name]
        for i in range(1, nodes.size - 1):
            keep = np.delete(np.arange(nodes.size), i)
            axes = dict(grid.axes)
            axes[name] = nodes[keep]
            reduced = SpectralGrid(
                axes,
                np.take(cube, keep, axis=k),
                grid.wave,
                valid=np.take(valid, keep, axis=k),
                method=method,
            )
            left_out = np.take(cube, i, axis=k).reshape(-1, grid.n_pix)
            ok = np.take(valid, i, axis=k).reshape(-1)
            mesh = np.meshgrid(
                *[nodes[i : i + 1] if j == k else a for j, a in enumerate(grid.axes.values())],
                indexing="ij",
            )
            theta = np.stack([m.reshape(-1) for m in mesh], axis=1)
            ok &= reduced.stencil_valid(theta)
            if not ok.any():
                continue
            pred = reduced.flux(theta[ok])
            rel = np.abs(pred / left_out[ok] - 1.0).ravel()
            pooled.setdefault(name, []).append(rel)
            rows.append(
                {
                    "axis": name,
                    "value": float(nodes[i]),
                    "n_spectra": int(ok.sum()),
                    "median": float(np.median(rel)),
                    "p99": float(np.percentile(rel, 99)),
                    "max": float(rel.max()),
                }
            )
    for name, parts in pooled.items():
        rel = np.concatenate(parts)
        rows.append(
            {
                "axis": name,
                "value": np.nan,
                "n_spectra": int(sum(r["n_spectra"] for r in rows if r["axis"] == name)),
                "median": float(np.median(rel)),
                "p99": float(np.percentile(rel, 99)),
                "max": float(rel.max()),
            }
        )
    return pd.DataFrame(rows, columns=["axis", "value", "n_spectra", "median", "p99", "max"])
