import numpy as np
import pandas as pd
import pytest

from specreg.spectra import SpectralGrid, SpectralModel
from specreg.spectra._interp import axis_weights, slope_matrix

from ..conftest import TOY_AXES, line_model, make_toy_grid


def test_grid_implements_spectral_model_protocol(toy_grid):
    assert isinstance(toy_grid, SpectralModel)
    assert toy_grid.param_names == ("T_eff", "log_g", "M_H")
    assert toy_grid.bounds["log_g"] == (1.0, 5.0)


@pytest.mark.parametrize("method", ["cubic", "linear"])
def test_interpolation_reproduces_nodes(toy_grid, method):
    nodes = toy_grid.nodes[::7]
    expected = toy_grid.node_flux[::7]
    np.testing.assert_allclose(toy_grid.flux(nodes, method=method), expected, atol=1e-6)


def test_cubic_beats_linear_off_node(toy_grid):
    rng = np.random.default_rng(1)
    theta = np.column_stack(
        [rng.uniform(4000, 6000, 200), rng.uniform(1, 5, 200), rng.uniform(-2.5, 0.75, 200)]
    )
    truth = line_model(theta, toy_grid.wave)
    err_cubic = np.abs(toy_grid.flux(theta) - truth).mean()
    err_linear = np.abs(toy_grid.flux(theta, method="linear") - truth).mean()
    assert err_cubic < 0.6 * err_linear
    assert err_cubic < 2e-3


def test_cubic_is_exact_for_quadratics_on_nonuniform_axis():
    x = np.array([0.0, 0.5, 1.5, 3.0, 3.2])
    grid = SpectralGrid({"x": x}, (x**2)[:, None], [7000.0])
    q = np.linspace(0, 3.2, 41)
    np.testing.assert_allclose(grid.flux(q[:, None])[:, 0], q**2, atol=1e-4)
    np.testing.assert_allclose(grid.jacobian(q[:, None])[:, 0, 0], 2 * q, atol=1e-3)


def test_slope_matrix_differentiates_parabola():
    x = np.array([0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(slope_matrix(x) @ x**2, 2 * x, atol=1e-12)


def test_axis_weights_sum_to_one_and_derivative_weights_to_zero():
    nodes = np.array([1.0, 2.0, 2.5, 4.0, 7.0, 8.0])
    x = np.linspace(1, 8, 57)
    for method in ("cubic", "linear"):
        idx, w, dw = axis_weights(nodes, x, method)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(dw.sum(axis=1), 0.0, atol=1e-12)
        assert all(len(set(row)) == len(row) for row in idx)


@pytest.mark.parametrize("method", ["cubic", "linear"])
def test_jacobian_matches_finite_differences(toy_grid, method):
    theta = np.array([[4730.0, 2.31, -1.13], [5520.0, 4.12, 0.31]])
    jac = toy_grid.jacobian(theta, method=method).astype(float)
    # steps large enough for float32 flux, small enough to stay inside one cell
    steps = np.array([20.0, 0.01, 0.01])
    for a, h in enumerate(steps):
        up, down = theta.copy(), theta.copy()
        up[:, a] += h
        down[:, a] -= h
        fd = (
            toy_grid.flux(up, method=method).astype(float) - toy_grid.flux(down, method=method)
        ) / (2 * h)
        scale = np.abs(jac[:, :, a]).max()
        np.testing.assert_allclose(jac[:, :, a], fd, atol=2e-3 * scale)


def test_cubic_jacobian_is_continuous_across_nodes(toy_grid):
    eps = 1e-6
    below = toy_grid.jacobian([[4500.0, 3.0 - eps, 0.0]])
    above = toy_grid.jacobian([[4500.0, 3.0 + eps, 0.0]])
    np.testing.assert_allclose(below, above, atol=1e-3 * np.abs(below).max())


def test_node_jacobian_central_and_one_sided_differences(toy_grid):
    nj = toy_grid.node_jacobian()
    cube = toy_grid.node_flux.reshape(*toy_grid.shape, -1).astype(float)
    # central difference along log g at an interior node, one-sided at the edges
    central = (cube[2, 3, 1] - cube[2, 1, 1]) / 2.0
    np.testing.assert_allclose(nj[2, 2, 1, :, 1], central, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(nj[2, 0, 1, :, 1], cube[2, 1, 1] - cube[2, 0, 1], atol=1e-6)
    np.testing.assert_allclose(nj[2, 4, 1, :, 1], cube[2, 4, 1] - cube[2, 3, 1], atol=1e-6)
    assert nj.shape == (*toy_grid.shape, toy_grid.n_pix, 3)


def test_dataframe_labels_are_matched_by_name(toy_grid):
    frame = pd.DataFrame({"M_H": [0.1], "extra": [9.0], "log_g": [2.2], "T_eff": [5100.0]})
    np.testing.assert_array_equal(toy_grid.flux(frame), toy_grid.flux([[5100.0, 2.2, 0.1]]))


def test_labels_outside_box_raise_unless_clipped(toy_grid):
    with pytest.raises(ValueError, match="log_g=5.5 not in"):
        toy_grid.flux([[5000.0, 5.5, 0.0]])
    clipped = toy_grid.flux([[5000.0, 5.5, 0.0]], out_of_bounds="clip")
    np.testing.assert_array_equal(clipped, toy_grid.flux([[5000.0, 5.0, 0.0]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_labels_raise(toy_grid, bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        toy_grid.flux([[5000.0, bad, 0.0]])


def test_wrong_label_width_raises(toy_grid):
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        toy_grid.flux([[5000.0, 2.0]])


def test_holes_are_never_interpolated_through():
    valid = np.ones([len(a) for a in TOY_AXES.values()], dtype=bool)
    valid[4, 0, 0] = False  # hot, low gravity, metal-poor corner (as in MARCS)
    grid = make_toy_grid(256, valid=valid)
    near = [[5900.0, 1.2, -2.4]]
    far = [[4200.0, 4.5, 0.5]]
    with pytest.raises(ValueError, match="hole"):
        grid.flux(near)
    assert np.isnan(grid.flux(near, on_hole="nan")).all()
    assert np.isfinite(grid.flux(far)).all()
    assert grid.stencil_valid(np.array(near + far)).tolist() == [False, True]
    nj = grid.node_jacobian()
    assert np.isnan(nj[4, 0, 0]).all()
    assert np.isfinite(nj[3, 0, 0]).all()  # one-sided next to the hole


def test_hole_flux_may_be_nan_but_valid_nodes_may_not():
    flux = np.ones((3, 4))
    flux[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SpectralGrid({"x": [0.0, 1.0, 2.0]}, flux, np.arange(4.0))
    SpectralGrid({"x": [0.0, 1.0, 2.0]}, flux, np.arange(4.0), valid=[True, False, True])


@pytest.mark.parametrize(
    "axes, flux, wave, match",
    [
        ({"x": [0.0, 0.0, 1.0]}, np.ones((3, 2)), [1.0, 2.0], "strictly increasing"),
        ({"x": [1.0, 0.0]}, np.ones((2, 2)), [1.0, 2.0], "strictly increasing"),
        ({"x": [0.0, 1.0]}, np.ones((2, 3)), [1.0, 2.0], "shape"),
        ({"x": [0.0, 1.0]}, np.ones((2, 2)), [2.0, 1.0], "wave must be strictly"),
        ({"x": [0.0, np.nan]}, np.ones((2, 2)), [1.0, 2.0], "NaN"),
        ({}, np.ones((2, 2)), [1.0, 2.0], "non-empty"),
    ],
)
def test_invalid_grids_raise(axes, flux, wave, match):
    with pytest.raises(ValueError, match=match):
        SpectralGrid(axes, flux, wave)


def test_user_arrays_are_not_modified_or_aliased():
    flux = np.ones((2, 3))
    flux_copy = flux.copy()
    grid = SpectralGrid({"x": [0.0, 1.0]}, flux, [1.0, 2.0, 3.0])
    theta = np.array([[0.5]])
    grid.flux(theta)
    grid.normalized()
    flux[:] = 7.0
    assert grid.flux(theta)[0, 0] == 1.0
    np.testing.assert_array_equal(theta, [[0.5]])
    assert not grid.node_flux.flags.writeable
    assert flux_copy.sum() == 6


def test_normalized_sets_median(toy_grid):
    grid = toy_grid.normalized(0.5)
    np.testing.assert_allclose(np.median(grid.node_flux, axis=1), 0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="no pixel"):
        toy_grid.normalized(window=(1.0, 2.0))


@pytest.mark.parametrize("method", ["flux", "jacobian"])
@pytest.mark.parametrize("chunk_size", [0, 2.5, None])
def test_chunk_size_is_a_positive_integer(toy_grid, method, chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        getattr(toy_grid, method)(toy_grid.nodes[:2], chunk_size=chunk_size)


def test_flux_is_chunked_consistently(toy_grid):
    theta = toy_grid.nodes[:50] * 0.999 + toy_grid.nodes[1:51] * 0.001
    np.testing.assert_array_equal(toy_grid.flux(theta), toy_grid.flux(theta, chunk_size=7))
