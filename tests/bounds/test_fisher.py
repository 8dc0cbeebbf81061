"""Fisher matrices, CRLB (Schur vs inverse), R2_max aggregations, van Trees."""

import numpy as np
import pytest

from specreg.bounds import (
    aggregate_r2_max,
    condition_number,
    crlb_dynamic_range,
    fisher_matrices,
    fisher_matrix,
    marginal_crlb,
    r2_max,
    schur_decay,
    van_trees_bound,
)
from specreg.spectra import LabelPrior, PFSNoiseModel


def _random_spd(rng, n, d, scales):
    A = rng.standard_normal((n, d, d + 3))
    F = A @ A.transpose(0, 2, 1)
    s = np.asarray(scales)
    return F / s[None, :, None] / s[None, None, :]


def test_analytic_jacobian_matches_finite_differences(toy_grid):
    rng = np.random.default_rng(0)
    axes = list(toy_grid.axes.values())
    # labels in the middle part of random cells, so theta +- step stays in one cubic piece
    cell = [rng.integers(0, a.size - 1, 6) for a in axes]
    frac = rng.uniform(0.3, 0.7, (6, 3))
    theta = np.stack([a[c] + f * (a[c + 1] - a[c]) for a, c, f in zip(axes, cell, frac.T)], 1)
    J = toy_grid.jacobian(theta).astype(np.float64)
    # float32 flux: the step must be large against rounding, small against the cell
    steps = np.array([0.05 * (a[1] - a[0]) for a in axes])
    for a in range(3):
        dt = np.zeros(3)
        dt[a] = steps[a]
        fp = toy_grid.flux(theta + dt).astype(np.float64)
        fm = toy_grid.flux(theta - dt).astype(np.float64)
        fd = (fp - fm) / (2 * steps[a])
        scale = np.abs(J[:, :, a]).max()
        np.testing.assert_allclose(J[:, :, a], fd, atol=5e-3 * scale)


def test_fisher_matrix_matches_explicit_sum_and_is_chunk_invariant():
    rng = np.random.default_rng(1)
    J = rng.standard_normal((11, 300, 4))
    err = rng.uniform(0.1, 1.0, (11, 300))
    ref = np.einsum("npi,np,npj->nij", J, err**-2, J)
    np.testing.assert_allclose(fisher_matrix(J, err), ref, rtol=1e-10)
    np.testing.assert_allclose(
        fisher_matrix(J, err, chunk_size=3, chunk_pixels=17), ref, rtol=1e-10
    )
    # float32 Jacobians keep float32 speed but return float64, accurate to ~1e-5
    F32 = fisher_matrix(J.astype(np.float32), err.astype(np.float32))
    assert F32.dtype == np.float64
    np.testing.assert_allclose(F32, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("kw", [{"chunk_size": 0}, {"chunk_pixels": 0}, {"chunk_size": 2.5}])
def test_fisher_chunking_is_checked_not_clamped(kw):
    # chunk_size=0 used to return all-zero Fisher matrices (an infinite CRLB)
    name = next(iter(kw))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        fisher_matrix(np.ones((3, 4, 2)), np.full((3, 4), 0.5), **kw)


def test_fisher_matrices_checks_its_chunk_size(toy_grid):
    theta = toy_grid.nodes[:2]
    with pytest.raises(ValueError, match="chunk_size must be a positive integer; got 0"):
        fisher_matrices(toy_grid, theta, np.full((2, toy_grid.n_pix), 0.1), chunk_size=0)


def test_fisher_scales_with_inverse_error_squared(toy_grid):
    theta = np.array([[4700.0, 2.3, -1.1], [5600.0, 4.1, 0.2]])
    err = PFSNoiseModel(toy_grid.wave).error(toy_grid.flux(theta), 21.5)
    F1 = fisher_matrices(toy_grid, theta, err)
    F2 = fisher_matrices(toy_grid, theta, 2 * err)
    np.testing.assert_allclose(F2, F1 / 4, rtol=1e-5)
    np.testing.assert_allclose(marginal_crlb(F2), 4 * marginal_crlb(F1), rtol=1e-5)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_schur_complement_equals_full_inverse(index):
    rng = np.random.default_rng(index)
    # labels in K, dex and dex: raw Fisher entries differ by ~1e6
    F = _random_spd(rng, 50, 4, [1000.0, 1.0, 0.5, 0.2])
    schur = marginal_crlb(F, index, method="schur")
    inv = marginal_crlb(F, index, method="inverse")
    direct = np.linalg.inv(F)[:, index, index]
    np.testing.assert_allclose(schur, inv, rtol=1e-8)
    np.testing.assert_allclose(schur, direct, rtol=1e-8)


def test_schur_equals_inverse_on_grid_fisher(toy_grid):
    theta = LabelPrior.from_grid(toy_grid).sample(40, random_state=3)
    err = PFSNoiseModel(toy_grid.wave).error(toy_grid.flux(theta), 21.0)
    F = fisher_matrices(toy_grid, theta, err)
    np.testing.assert_allclose(
        marginal_crlb(F, 1, method="schur"), marginal_crlb(F, 1, method="inverse"), rtol=1e-7
    )
    assert crlb_dynamic_range(marginal_crlb(F, 1)) < 4
    rho = schur_decay(F, 1)
    assert np.all((rho > 0) & (rho <= 1))


def test_schur_decay_is_one_without_degeneracy_and_drops_with_correlation():
    F = np.array([np.diag([2.0, 3.0, 4.0])])
    assert schur_decay(F, 1)[0] == pytest.approx(1.0)
    G = np.array([[[1.0, 0.9], [0.9, 1.0]]])
    assert schur_decay(G, 0)[0] == pytest.approx(1 - 0.81)


def test_singular_fisher_gives_infinite_crlb_not_an_error():
    F = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    assert np.isinf(marginal_crlb(F, 0))[0] or marginal_crlb(F, 0)[0] > 1e10
    assert marginal_crlb(F, 0, floor=1e-3)[0] <= 1e3


def test_condition_number_scaled_removes_units():
    F = np.array([np.diag([1e6, 1.0])])
    assert condition_number(F, scaled=False)[0] == pytest.approx(1e6)
    assert condition_number(F)[0] == pytest.approx(1.0)


def test_r2_max_and_aggregations():
    crlb = np.array([0.01, 0.1, 0.5, 3.0])
    np.testing.assert_allclose(r2_max(crlb, 1.0), [0.99, 0.9, 0.5, 0.0])
    np.testing.assert_allclose(r2_max(crlb, 1.0, clip=False)[-1], -2.0)
    agg = aggregate_r2_max(crlb, 1.0)
    assert agg["median"] == pytest.approx(0.7)
    assert agg["population"] == pytest.approx(1 - crlb.mean())
    # the median of clipped pointwise values exceeds the population value here: the
    # reference's headline is optimistic when the CRLB distribution is skewed
    assert agg["median"] > agg["population"]
    with pytest.raises(ValueError, match="var_y"):
        r2_max(crlb, 0.0)


def test_van_trees_needs_a_tapered_prior_and_is_below_prior_variance():
    F = np.array([np.diag([1.0, 4.0])] * 3)
    with pytest.raises(ValueError, match="taper"):
        van_trees_bound(F, LabelPrior({"a": (0, 1), "b": (0, 1)}), 1)
    prior = LabelPrior({"a": (0, 1), "b": (0, 1)}, taper=0.2)
    bound = van_trees_bound(F, prior, 1)
    assert 0 < bound < 1 / 4  # information adds: below the data-only CRLB


@pytest.mark.parametrize(
    "jac, err, match",
    [
        (np.full((1, 3, 2), np.nan), np.ones((1, 3)), "NaN"),
        (np.ones((1, 3, 2)), np.zeros((1, 3)), "> 0"),
        (np.ones((1, 3, 2)), np.ones((2, 3)), "shape"),
        (np.ones((3, 2)), np.ones((1, 3)), "shape"),
    ],
)
def test_fisher_matrix_rejects_bad_input(jac, err, match):
    with pytest.raises(ValueError, match=match):
        fisher_matrix(jac, err)


def test_marginal_crlb_rejects_bad_method_and_index():
    F = np.eye(2)[None]
    with pytest.raises(ValueError, match="method"):
        marginal_crlb(F, 0, method="qr")
    with pytest.raises(ValueError, match=r"index must be an integer in \[-2, 1\] for 2 labels"):
        marginal_crlb(F, 5)


@pytest.mark.parametrize("index", [2, -3, 1.5, True, "1"])
def test_every_bound_refuses_an_index_it_would_wrap_or_truncate(index):
    # schur_decay(F, 2) used to wrap to label 0; van_trees_bound gave a numpy IndexError
    F = np.eye(2)[None]
    prior = LabelPrior({"a": (0, 1), "b": (0, 1)}, taper=0.2)
    for call in (
        lambda: marginal_crlb(F, index),
        lambda: schur_decay(F, index),
        lambda: van_trees_bound(F, prior, index),
    ):
        with pytest.raises(ValueError, match="index must be an integer"):
            call()


@pytest.mark.parametrize("floor", [np.nan, np.inf, -1.0])
def test_marginal_crlb_floor_is_a_finite_information(floor):
    with pytest.raises(ValueError, match="floor must be a finite number >= 0"):
        marginal_crlb(np.eye(2)[None], 0, floor=floor)


@pytest.mark.parametrize("crlb", [[-0.5, 0.1], [np.nan, 0.1]])
def test_ceilings_refuse_crlbs_that_are_not_variances(crlb):
    # r2_max([-0.5], 1) used to clip to R2 = 1: a perfect ceiling from a bad input
    for call in (
        lambda: r2_max(crlb, 1.0),
        lambda: aggregate_r2_max(crlb, 1.0),
        lambda: crlb_dynamic_range(crlb),
    ):
        with pytest.raises(ValueError, match="crlb holds variances"):
            call()


def test_an_infinite_crlb_is_a_direction_the_data_do_not_fix():
    assert r2_max([np.inf, 0.5], 1.0).tolist() == [0.0, 0.5]
    assert crlb_dynamic_range([np.inf, 0.01, 1.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="crlb is empty"):
        crlb_dynamic_range([])
