"""The grid shipped with specreg: complete, physical, and smooth enough to interpolate.

These tests read the real Turbospectrum + MARCS grid (package data), not a test double.
The line-strength checks are the textbook gravity and metallicity indicators of the
PFS MR window; the leave-one-out tolerances are the measured errors (see the user
guide, "Spectra and grids") with a margin, so a rebuilt grid that is much rougher fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from specreg.datasets import load_grid
from specreg.datasets._grid_io import embedded_grid_path
from specreg.grids import CAT_LINES, NA_LINES, equivalent_width, leave_one_out_errors, line_depth
from specreg.spectra import REFERENCE_SNR_TABLE, PFSNoiseModel, snr_median

REFERENCE_NODES = Path(__file__).parents[1] / "data" / "reference_nodes.npz"
AXES = {
    "T_eff": np.arange(4000.0, 6001.0, 250.0),
    "log_g": np.arange(1.0, 5.01, 0.5),
    "M_H": np.arange(-2.5, 0.751, 0.25),
}


@pytest.fixture(scope="module")
def grid():
    return load_grid()


def _node(grid, **labels):
    idx = tuple(int(np.flatnonzero(np.isclose(grid.axes[n], labels[n]))[0]) for n in AXES)
    flat = np.ravel_multi_index(idx, grid.shape)
    return grid.node_flux[flat], grid.node_continuum[flat]


def test_shipped_grid_is_complete_finite_and_positive(grid):
    assert embedded_grid_path().stat().st_size < 60e6  # "a few tens of MB at most"
    assert grid.param_names == tuple(AXES)
    for name, nodes in AXES.items():
        np.testing.assert_allclose(grid.axes[name], nodes)
    assert grid.valid.all(), f"{(~grid.valid).sum()} missing nodes"
    assert grid.n_pix == 4096 and grid.wave[0] == pytest.approx(7100.2)
    assert grid.wave[-1] == pytest.approx(8849.8)
    for cube in (grid.node_flux, grid.node_continuum):
        assert np.isfinite(cube).all() and (cube > 0).all()
    ratio = grid.node_flux / grid.node_continuum
    assert ratio.max() < 1.02  # absorption spectra: flux never far above the continuum
    np.testing.assert_allclose(np.median(grid.node_flux, axis=1), 0.5, rtol=1e-5)


def test_nodes_reproduce_the_reference_turbospectrum_spectra(grid):
    """24 node spectra computed independently with the same recipe (see the grids guide)."""
    ref = np.load(REFERENCE_NODES)
    np.testing.assert_allclose(ref["wave"], grid.wave)
    for labels, flux in zip(ref["params"], ref["flux"]):
        ours, _ = _node(grid, **dict(zip(AXES, labels[:3])))
        rel = ours / np.median(ours) / (flux / np.median(flux)) - 1.0
        # measured: RMS 0.02-0.08 %, max 0.5 %
        assert np.sqrt(np.mean(rel**2)) < 0.003, labels
        assert np.abs(rel).max() < 0.02, labels


def test_metadata_records_the_recipe_and_citations(grid):
    meta = grid.metadata
    for key in ("synthesis", "line_lists", "lsf", "packages", "citations", "wave"):
        assert key in meta, key
    assert meta["lsf"]["R"] == 5000.0
    assert meta["n_valid"] == meta["n_nodes"] == 1134
    assert any("MARCS" in c for c in meta["citations"])


def _ews(grid, lines, half_width, **labels):
    flux, cont = _node(grid, **labels)
    return np.array([equivalent_width(grid.wave, flux, cont, c, half_width)[0] for c in lines])


def test_calcium_triplet_stronger_in_giants_sodium_doublet_stronger_in_dwarfs(grid):
    cat_giant = _ews(grid, CAT_LINES, 6.0, T_eff=4500, log_g=2.0, M_H=0.0)
    cat_dwarf = _ews(grid, CAT_LINES, 6.0, T_eff=4500, log_g=4.5, M_H=0.0)
    assert (cat_giant > cat_dwarf).all(), (cat_giant, cat_dwarf)
    na_giant = _ews(grid, NA_LINES, 3.0, T_eff=4500, log_g=2.0, M_H=0.0)
    na_dwarf = _ews(grid, NA_LINES, 3.0, T_eff=4500, log_g=4.5, M_H=0.0)
    assert (na_dwarf > na_giant).all(), (na_giant, na_dwarf)


@pytest.mark.parametrize(("t_eff", "log_g"), [(4500.0, 2.0), (5000.0, 4.5), (6000.0, 3.0)])
def test_calcium_triplet_depth_grows_with_metallicity(grid, t_eff, log_g):
    depth = []
    for m_h in AXES["M_H"]:
        flux, cont = _node(grid, T_eff=t_eff, log_g=log_g, M_H=m_h)
        depth.append(line_depth(grid.wave, flux, cont, CAT_LINES[1], 1.5)[0])
    assert np.all(np.diff(depth) > 0), np.round(depth, 3)


@pytest.mark.parametrize(
    "labels",
    [dict(T_eff=5000.0, log_g=4.5, M_H=0.0), dict(T_eff=4500.0, log_g=2.0, M_H=-1.0)],
)
def test_noise_model_reproduces_the_reference_snr_table_on_real_spectra(grid, labels):
    flux, _ = _node(grid, **labels)
    noise = PFSNoiseModel()
    for mag, target in REFERENCE_SNR_TABLE:
        snr = snr_median(flux[None], noise.error(flux, mag))[0]
        assert abs(snr / target - 1) < 0.05, (mag, snr, target)


def test_cubic_interpolation_reproduces_left_out_nodes(grid):
    loo = leave_one_out_errors(grid)
    pooled = loo[loo["value"].isna()].set_index("axis")
    everything = loo[loo["value"].notna()]
    assert set(pooled.index) == set(AXES)
    assert (everything["n_spectra"] > 0).all()
    # measured on the shipped grid, |interpolated / true - 1| pooled per axis:
    # median 0.042 % / 0.016 % / 0.022 % and p99 0.41 % / 0.17 % / 0.13 % (T_eff / log g /
    # M_H); the worst single pixel is 5.2 % (T_eff 4250 K, left out between 4000 K with TiO
    # lines and 4500 K without). The limits leave a margin of about 2x on the worst axis.
    assert pooled["median"].max() < 0.001
    assert pooled["p99"].max() < 0.008


def test_simulated_sets_keep_the_snr_calibration_within_3_percent(grid):
    from specreg.datasets import make_spectra

    # measured: -1.1, -1.2, -0.9, -1.0, -2.7, -2.0 % for the six magnitudes (1,000 spectra);
    # the SNR over the reported errors agrees with the true SNR to 0.4 %
    for mag, target in REFERENCE_SNR_TABLE:
        s = make_spectra(1000, model=grid, mag=mag, random_state=0)
        snr = float(np.median(s.params["snr"]))
        reported = float(np.median(np.median(s.flux / s.error, axis=1)))
        assert abs(snr / target - 1) < 0.03, (mag, snr, target)
        assert abs(reported / snr - 1) < 0.01, (mag, reported, snr)
