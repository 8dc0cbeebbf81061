"""Physics of the embedded 5-D model: the [alpha/M] and [C/M] response of Turbospectrum.

The response was synthesised with Turbospectrum + MARCS (``specreg grid build
--response``); these checks read the shipped model through ``load_grid("5d")``.
"""

import numpy as np
import pytest

from specreg.datasets import load_grid
from specreg.grids import CAT_LINES, equivalent_width


@pytest.fixture(scope="module")
def model():
    return load_grid("5d", normalize=False)


def _ew(model, label, centre, half_width):
    theta = np.atleast_2d(label)
    flux, cont = model.flux(theta)[0], model.continuum(theta)[0]
    return float(equivalent_width(model.wave, flux, cont, centre, half_width)[0])


@pytest.mark.parametrize("star", [(5000.0, 3.0, -0.75), (4000.0, 1.0, -0.75), (5500.0, 4.0, 0.0)])
def test_alpha_deepens_mg_8807_and_the_calcium_triplet(model, star):
    for centre, half in [(8806.76, 1.5), *[(c, 6.0) for c in CAT_LINES]]:
        ews = [_ew(model, (*star, a, 0.0), centre, half) for a in (-0.2, 0.0, 0.2, 0.4)]
        assert np.all(np.diff(ews) > 0), (centre, ews)


def test_carbon_deepens_the_cn_bands_in_cool_giants(model):
    # CN red-system band heads near 7875-7900 A: a window of many CN lines
    cool_giant = (4000.0, 1.0, -0.75)
    ews = [_ew(model, (*cool_giant, 0.0, c), 7887.5, 12.5) for c in (-0.5, -0.25, 0.0, 0.25, 0.5)]
    assert np.all(np.diff(ews) > 0), ews
    # and much more than in a warm dwarf, where CN is weak
    warm = (5500.0, 4.0, 0.0)
    gain_warm = _ew(model, (*warm, 0.0, 0.5), 7887.5, 12.5) - _ew(
        model, (*warm, 0.0, -0.5), 7887.5, 12.5
    )
    assert ews[-1] - ews[0] > 3 * max(gain_warm, 0.0)


def test_the_3d_grid_is_reproduced_at_solar_alpha_and_carbon(model):
    rng = np.random.default_rng(3)
    grid3 = load_grid(normalize=False)
    lo = np.array([b[0] for b in grid3.bounds.values()])
    hi = np.array([b[1] for b in grid3.bounds.values()])
    theta3 = lo + (hi - lo) * rng.random((50, 3))
    theta5 = np.column_stack([theta3, np.zeros((50, 2))])
    np.testing.assert_allclose(model.flux(theta5), grid3.flux(theta3), rtol=2e-5)
    # and so is the normalised grid the estimators use
    np.testing.assert_allclose(load_grid("5d").flux(theta5), load_grid().flux(theta3), rtol=2e-3)


def test_the_response_is_what_the_box_says(model):
    assert model.param_names == ("T_eff", "log_g", "M_H", "a_M", "C_M")
    assert model.bounds["a_M"] == (-0.2, 0.4) and model.bounds["C_M"] == (-0.5, 0.5)
    with pytest.raises(ValueError, match=r"a_M=0.6 not in \[-0.2, 0.4\]"):
        model.flux([[5000.0, 3.0, 0.0, 0.6, 0.0]])
