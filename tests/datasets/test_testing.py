"""The small analytic test grid lives in the package (tests, benchmarks, doctests share it)."""

from pathlib import Path

import numpy as np

from specreg.datasets import _testing

from .. import conftest


def test_the_test_grid_builder_has_one_home():
    assert conftest.make_toy_grid is _testing.make_toy_grid
    assert conftest.TOY_AXES is _testing.TOY_AXES
    bench = Path(__file__).parents[2] / "benchmarks" / "_grids.py"
    if bench.exists():  # benchmarks build theirs from the package, not from tests/
        text = bench.read_text()
        assert "from tests" not in text and "specreg.datasets._testing" in text


def test_toy_grid_nodes_are_the_line_model_and_holes_are_kept():
    valid = np.ones((5, 5, 6), bool)
    valid[2, 2, 2] = False
    grid = _testing.make_toy_grid(128, valid=valid)
    np.testing.assert_allclose(
        grid.node_flux[valid.ravel()],
        _testing.line_model(grid.nodes[valid.ravel()], grid.wave),
        rtol=1e-6,
    )
    assert not grid.stencil_valid([[5000.0, 3.0, -1.2]])[0]
    assert 0.4 < float(np.median(grid.node_flux)) < 0.6
