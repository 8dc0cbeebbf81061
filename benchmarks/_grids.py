"""Grids for the benchmarks: the embedded grid when installed, else a same-sized test grid."""

from __future__ import annotations

import numpy as np


def benchmark_grid():
    """(grid, description): the embedded grid, or a 9 x 9 x 14 analytic line grid."""
    from specreg.datasets import load_grid

    try:
        return load_grid(), "embedded Turbospectrum + MARCS grid"
    except FileNotFoundError:
        pass
    from specreg.datasets._testing import make_toy_grid

    axes = {
        "T_eff": np.arange(4000.0, 6001.0, 250.0),
        "log_g": np.arange(1.0, 5.01, 0.5),
        "M_H": np.arange(-2.5, 0.76, 0.25),
    }
    grid = make_toy_grid(4096, axes=axes)
    return grid, "analytic line grid, 9x9x14 nodes (embedded grid absent)"
