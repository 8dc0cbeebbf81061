"""LabelPrior.from_grid with a sub-box and snapping: the command line's --teff/--snap."""

import numpy as np
import pytest

from specreg.spectra import LabelPrior, SpectralGrid


@pytest.fixture
def grid():
    axes = {"T_eff": [4000.0, 4250.0, 4500.0, 4750.0], "log_g": [1.0, 2.0, 3.0]}
    return SpectralGrid(axes, np.ones((4, 3, 2)), [7100.0, 7200.0])


def test_box_narrows_the_prior_and_keeps_the_label_order(grid):
    prior = LabelPrior.from_grid(grid, box={"log_g": (1.5, 2.5)})
    assert prior.param_names == ("T_eff", "log_g")
    theta = prior.sample(2000, random_state=0)
    assert theta[:, 1].min() >= 1.5 and theta[:, 1].max() <= 2.5
    assert theta[:, 0].min() < 4100 and theta[:, 0].max() > 4650


def test_snapped_draws_stay_on_nodes_inside_the_box(grid):
    prior = LabelPrior.from_grid(grid, box={"T_eff": (4100.0, 4600.0)}, snap=True)
    theta = prior.sample(3000, random_state=1)
    on_node = np.isin(theta[:, 0], [4250.0, 4500.0])
    # one label per draw stays free: T_eff is free in about half of them
    assert 0.4 < on_node.mean() < 0.6
    assert theta[:, 0].min() >= 4100 and theta[:, 0].max() <= 4600
    assert np.isin(theta[~on_node, 1], [1.0, 2.0, 3.0]).all()


@pytest.mark.parametrize(
    "box, match",
    [
        ({"M_H": (-1.0, 0.0)}, r"no label 'M_H' \(its labels are \('T_eff', 'log_g'\)\)"),
        ({"T_eff": (3500.0, 4500.0)}, r"T_eff = \[3500, 4500\] must lie inside .* \[4000, 4750\]"),
        ({"log_g": (2.0, 2.0)}, "LO < HI"),
    ],
)
def test_bad_box_names_the_label_and_the_box(grid, box, match):
    with pytest.raises(ValueError, match=match):
        LabelPrior.from_grid(grid, box=box)


def test_snapping_needs_a_node_in_the_range(grid):
    with pytest.raises(ValueError, match=r"no grid node of T_eff lies in \[4300, 4400\]"):
        LabelPrior.from_grid(grid, box={"T_eff": (4300.0, 4400.0)}, snap=True)
