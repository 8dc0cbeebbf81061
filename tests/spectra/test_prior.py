import numpy as np
import pytest

from specreg.spectra import LabelPrior


def test_uniform_sampling_in_box_with_expected_variance():
    prior = LabelPrior({"T_eff": (4000, 6000), "log_g": (1, 5)})
    theta = prior.sample(20000, random_state=0)
    assert theta.min(axis=0)[1] >= 1 and theta.max(axis=0)[1] <= 5
    assert abs(theta[:, 1].var() - 16 / 12) < 0.05


def test_snapping_keeps_one_label_free_per_draw():
    nodes = {"a": np.arange(0.0, 5.0), "b": np.arange(0.0, 5.0), "c": np.arange(0.0, 5.0)}
    prior = LabelPrior({k: (0, 4) for k in nodes}, snap_to=nodes)
    theta = prior.sample(3000, random_state=1)
    on_node = np.isclose(theta, np.round(theta))
    assert np.all(on_node.sum(axis=1) >= 2)
    assert 0.28 < (~on_node).mean() < 0.40  # one label in three is continuous


def test_taper_density_and_fisher_information():
    prior = LabelPrior({"x": (0.0, 1.0)}, taper=0.2)
    x = np.linspace(0.0005, 0.9995, 20001)
    p = np.exp(prior.logpdf(x[:, None]))
    assert abs(np.trapezoid(p, x) - 1) < 1e-3
    dlogp = np.gradient(np.log(p), x)
    numeric = np.trapezoid(p * dlogp**2, x)
    assert abs(numeric / prior.fisher_information()[0, 0] - 1) < 0.02
    draws = prior.sample(20000, random_state=0)[:, 0]
    assert (draws < 0.05).mean() < 0.01  # density vanishes at the edge


def test_flat_box_has_no_finite_fisher_information():
    with pytest.raises(ValueError, match="taper"):
        LabelPrior({"x": (0, 1)}).fisher_information()


@pytest.mark.parametrize("bounds", [{"x": (1, 0)}, {"x": (0, np.inf)}, {}])
def test_invalid_bounds_raise(bounds):
    with pytest.raises(ValueError):
        LabelPrior(bounds)


def test_from_grid_takes_model_and_warns_for_grid(toy_grid):
    prior = LabelPrior.from_grid(model=toy_grid, snap=True)
    assert prior.bounds == toy_grid.bounds
    with pytest.warns(FutureWarning, match="'grid' was renamed 'model'") as record:
        old = LabelPrior.from_grid(grid=toy_grid, snap=True)
    assert old.bounds == prior.bounds and record[0].filename == __file__
    with pytest.raises(TypeError, match="needs the spectral model"):
        LabelPrior.from_grid()


def test_snapping_needs_node_coordinates(toy_grid):
    class NoNodes:
        param_names = toy_grid.param_names
        bounds = toy_grid.bounds

    assert LabelPrior.from_grid(NoNodes()).bounds == toy_grid.bounds
    with pytest.raises(ValueError, match="needs a model with node coordinates"):
        LabelPrior.from_grid(NoNodes(), snap=True)


@pytest.mark.parametrize(
    "n, match",
    [
        (2.5, "n_samples must be an integer >= 0; got 2.5"),
        (-1, "n_samples must be an integer >= 0; got -1"),
        ("3", "n_samples must be an integer >= 0; got '3'"),
        (True, "n_samples must be an integer >= 0; got True"),
    ],
)
def test_sample_count_is_never_rounded(n, match):
    # sample(2.5) used to return 2 rows
    with pytest.raises(ValueError, match=match):
        LabelPrior({"x": (0, 1)}).sample(n)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"taper": "0.1"}, "taper must be a finite number"),
        ({"taper": 0.6}, "taper must be a finite number >= 0.0 and <= 0.5"),
        ({"snap_to": {"x": [np.nan]}}, "one or more finite node values"),
        ({"snap_to": {"x": []}}, "one or more finite node values"),
        ({"snap_to": {"x": [5.0]}}, "a snapped draw would leave the box"),
        ({"snap_to": {"x": [-0.2, 0.5]}}, "a snapped draw would leave the box"),
    ],
)
def test_prior_options_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        LabelPrior({"x": (0, 1)}, **kw)


def test_logpdf_needs_one_column_per_label():
    prior = LabelPrior({"x": (0, 1)})
    with pytest.raises(ValueError, match=r"theta must have shape \(n, 1\)"):
        prior.logpdf([[0.5, 0.5]])


def test_from_grid_snap_must_be_a_bool(toy_grid):
    with pytest.raises(ValueError, match="snap must be True or False; got 'no'"):
        LabelPrior.from_grid(toy_grid, snap="no")


def test_a_node_no_draw_snaps_to_may_lie_beyond_the_bounds():
    prior = LabelPrior({"x": (0, 1), "y": (0, 1)}, snap_to={"x": [0.0, 1.0, 5.0], "y": [0.5]})
    theta = prior.sample(200, random_state=0)
    assert theta.min() >= 0 and theta.max() <= 1
