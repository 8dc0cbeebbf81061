"""ResponseGrid's blocked evaluation: bit-identical to the product of its two factors."""

import pickle

import numpy as np
import pytest

from specreg.datasets._testing import make_toy_grid
from specreg.spectra import ResponseGrid


def _model(n_pix=2500, valid=None, ratio_method="linear"):
    """The toy grid times a smooth random response in two extra labels.

    2,500 pixels: two full pixel blocks and a partial one.
    """
    base = make_toy_grid(n_pix, valid=valid)
    axes = {
        "T_eff": np.array([4000.0, 5000.0, 6000.0]),
        "log_g": np.array([1.0, 3.0, 5.0]),
        "M_H": np.array([-2.5, -0.55, 0.75]),
        "a_M": np.array([-0.2, 0.0, 0.4]),
        "C_M": np.array([-0.5, 0.0, 0.5]),
    }
    rng = np.random.default_rng(0)
    ratio = np.exp(0.1 * rng.standard_normal((3, 3, 3, 3, 3, n_pix)))
    return ResponseGrid(base, axes, ratio, ratio_method=ratio_method)


def _labels(model, n, seed=1):
    rng = np.random.default_rng(seed)
    lo = np.array([b[0] for b in model.bounds.values()])
    hi = np.array([b[1] for b in model.bounds.values()])
    theta = lo + rng.random((n, model.n_params)) * (hi - lo)
    theta[: n // 2, :3] = theta[0, :3]  # repeated base labels: the base once per point
    return theta


def _factor_flux(model, theta, method=None):
    sub = theta[:, : model.base.n_params]
    return model.base.flux(sub, method=method) * model.ratio.flux(theta)


def _factor_jacobian(model, theta):
    k = model.base.n_params
    b, r = model.base.flux(theta[:, :k]), model.ratio.flux(theta)
    out = model.ratio.jacobian(theta) * b[:, :, None]
    out[:, :, :k] += model.base.jacobian(theta[:, :k]) * r[:, :, None]
    return out


@pytest.mark.parametrize("ratio_method", ["linear", "cubic"])
def test_flux_and_jacobian_equal_the_product_of_the_factors_bit_for_bit(ratio_method):
    model = _model(ratio_method=ratio_method)
    for theta in (_labels(model, 40), _labels(model, 40)[20:]):  # with and without repeats
        flux = model.flux(theta, chunk_size=16)
        assert flux.dtype == np.float32
        np.testing.assert_array_equal(flux, _factor_flux(model, theta))
        np.testing.assert_array_equal(
            model.flux(theta, method="linear"), _factor_flux(model, theta, "linear")
        )
        jac = model.jacobian(theta, chunk_size=7)
        assert jac.dtype == np.float32 and jac.shape == (len(theta), model.n_pix, 5)
        np.testing.assert_array_equal(jac, _factor_jacobian(model, theta))


def test_clipped_labels_are_evaluated_at_the_box():
    model = _model(300)
    theta = np.array([[3000.0, 3.0, 0.0, 0.9, -0.1]])
    inside = np.array([[4000.0, 3.0, 0.0, 0.4, -0.1]])
    np.testing.assert_array_equal(model.flux(theta, out_of_bounds="clip"), model.flux(inside))
    with pytest.raises(ValueError, match="outside the grid"):
        model.flux(theta)


def test_a_base_with_holes_keeps_the_factors_checks():
    valid = np.ones((5, 5, 6), dtype=bool)
    valid[2, 2, 2] = False
    model = _model(300, valid=valid)
    near_hole = np.array([[5000.0, 3.0, -1.2, 0.1, 0.1]])
    with pytest.raises(ValueError, match="hole"):
        model.flux(near_hole)
    assert np.isnan(model.flux(near_hole, on_hole="nan")).all()
    far = np.array([[4100.0, 1.1, 0.7, 0.1, 0.1]])
    np.testing.assert_array_equal(model.flux(far), _factor_flux(model, far))


def test_pickles_leave_the_caches_behind():
    model = _model(300)
    theta = _labels(model, 6)
    flux = model.flux(theta)
    _ = model.node_flux  # the node products: another cache
    clone = pickle.loads(pickle.dumps(model))
    assert clone._block_cache is None and clone._nodes_cache == {}
    np.testing.assert_array_equal(clone.flux(theta), flux)
