"""Shared fixtures: small analytic spectral grids built inside the tests.

The grids here are test doubles, not physics: a few Voigt-like absorption lines
whose depths and widths depend smoothly on (T_eff, log_g, M_H), on a sloped
continuum. They exist so the foundation can be tested before (and independently
of) the embedded Turbospectrum grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from specreg.spectra import SpectralGrid, pfs_mr_wave

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

TOY_AXES = {
    "T_eff": np.arange(4000.0, 6001.0, 500.0),
    "log_g": np.arange(1.0, 5.01, 1.0),
    "M_H": np.arange(-2.5, 0.76, 0.65),
}


def line_model(theta: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Analytic toy spectra, shape (n, n_pix), median about 0.5."""
    theta = np.atleast_2d(theta)
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
    """A SpectralGrid of :func:`line_model` at the nodes of ``axes``."""
    axes = TOY_AXES if axes is None else axes
    wave = pfs_mr_wave(n_pix)
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    nodes = np.stack([a.ravel() for a in mesh], axis=1)
    flux = line_model(nodes, wave).reshape(*[len(a) for a in axes.values()], n_pix)
    return SpectralGrid(axes, flux, wave, valid=valid, metadata={"name": "toy line grid"})


@pytest.fixture(scope="session")
def toy_grid() -> SpectralGrid:
    """5 x 5 x 6 toy grid on the 4096-pixel PFS MR-like wavelength grid."""
    return make_toy_grid()


@pytest.fixture(scope="session")
def small_grid() -> SpectralGrid:
    """The toy grid on 512 pixels, for fast estimator tests."""
    return make_toy_grid(512)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed numpy's legacy global RNG (and torch's, when imported) for every test."""
    np.random.seed(0)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
    yield
