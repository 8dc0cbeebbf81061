"""Physics of the [alpha/M] and [C/M] response, on the synthesised node spectra.

The response spectra come from Turbospectrum + MARCS (``specreg.grids._response``);
these checks read the node files of the build kept in the repository, so they run
wherever the build is (a source checkout) and skip elsewhere.
"""

from pathlib import Path

import numpy as np
import pytest

from specreg.grids import CAT_LINES, equivalent_width
from specreg.grids._builder import node_filename
from specreg.grids._response import LOG_RATIO_SCALE

BUILD = Path(__file__).resolve().parents[2] / "gridbuild" / "5d"


def _spectrum(base, t, g, m, a, c):
    """Absolute flux and continuum of one response node (base node times the ratio)."""
    theta = np.array([[t, g, m]])
    flux, cont = base.flux(theta)[0].astype(float), base.continuum(theta)[0].astype(float)
    if a == 0 and c == 0:
        return flux, cont
    path = BUILD / "nodes" / f"{node_filename(t, g, m, a, c)}.npz"
    if not path.exists():
        pytest.skip(f"response node {path.name} is not built in this checkout")
    ratio = np.exp(np.load(path)["log_ratio"].astype(float) * LOG_RATIO_SCALE)
    return flux * ratio[0], cont * ratio[1]


@pytest.fixture(scope="module")
def base():
    from specreg.datasets import load_grid

    return load_grid(normalize=False)


def _ew(base, node, centre, half_width):
    flux, cont = _spectrum(base, *node)
    return float(equivalent_width(base.wave, flux, cont, centre, half_width)[0])


@pytest.mark.parametrize("star", [(5000.0, 3.0, -0.75), (4000.0, 1.0, -0.75), (5500.0, 4.0, 0.0)])
def test_alpha_deepens_mg_8807_and_the_calcium_triplet(base, star):
    for centre, half in [(8806.76, 1.5), *[(c, 6.0) for c in CAT_LINES]]:
        ews = [_ew(base, (*star, a, 0.0), centre, half) for a in (-0.2, 0.0, 0.2, 0.4)]
        assert np.all(np.diff(ews) > 0), (centre, ews)


def test_carbon_deepens_the_cn_bands_in_cool_giants(base):
    # CN red-system band heads near 7875-7900 A: a window of many CN lines
    cool_giant = (4000.0, 1.0, -0.75)
    ews = [_ew(base, (*cool_giant, 0.0, c), 7887.5, 12.5) for c in (-0.5, -0.25, 0.0, 0.25, 0.5)]
    assert np.all(np.diff(ews) > 0), ews
    # and much more than in a warm dwarf, where CN is weak
    warm = (5500.0, 4.0, 0.0)
    gain_cool = ews[-1] - ews[0]
    gain_warm = _ew(base, (*warm, 0.0, 0.5), 7887.5, 12.5) - _ew(
        base, (*warm, 0.0, -0.5), 7887.5, 12.5
    )
    assert gain_cool > 3 * max(gain_warm, 0.0)
