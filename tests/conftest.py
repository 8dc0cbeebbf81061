"""Shared fixtures: small analytic spectral grids (``specreg.datasets._testing``).

The grids are test doubles, not physics: a few absorption lines whose depths and
widths depend smoothly on (T_eff, log_g, M_H), on a sloped continuum. They exist
so the foundation can be tested before (and independently of) the embedded
Turbospectrum grid. Their builder lives in the package, so the benchmarks and the
docstring examples use the same grids; the names stay importable from here.
"""

from __future__ import annotations

import numpy as np
import pytest

from specreg.datasets._testing import TOY_AXES, line_model, make_toy_grid
from specreg.spectra import SpectralGrid

__all__ = ["TOY_AXES", "line_model", "make_toy_grid"]


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
