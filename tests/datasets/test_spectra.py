import numpy as np
import pandas as pd
import pytest

from specreg.datasets import Spectra, iter_spectra, make_spectra
from specreg.datasets._spectra import _concat
from specreg.spectra import LabelPrior, PFSNoiseModel


def test_make_spectra_contract(toy_grid):
    s = make_spectra(300, model=toy_grid, random_state=0)
    assert s.flux.shape == s.error.shape == (300, 4096)
    assert s.flux.dtype == s.error.dtype == np.float32
    assert s.noisy is None
    assert list(s.params.columns) == ["T_eff", "log_g", "M_H", "mag", "snr"]
    assert s.X.shape == (300, 8192) and s.X.dtype == np.float32
    np.testing.assert_array_equal(s.X[:, :4096], s.flux)
    np.testing.assert_array_equal(s.X[:, 4096:], s.error)
    np.testing.assert_array_equal(s.y, s.params["log_g"])
    assert s.params["mag"].between(20.5, 22.5).all()
    sigma = PFSNoiseModel(toy_grid.wave).true_error(s.flux, s.error)
    np.testing.assert_allclose(s.params["snr"], np.median(s.flux / sigma, axis=1), rtol=1e-5)
    np.testing.assert_allclose(s.flux, toy_grid.flux(s.params[["T_eff", "log_g", "M_H"]]))
    assert np.all(s.error > 0)


def test_fixed_noise_is_one_draw_with_the_stated_sigma(toy_grid):
    s = make_spectra(400, model=toy_grid, noisy=True, random_state=1)
    z = (s.noisy - s.flux) / PFSNoiseModel(toy_grid.wave).true_error(s.flux, s.error)
    assert abs(z.std() - 1) < 0.01 and abs(z.mean()) < 0.01
    np.testing.assert_array_equal(s.X[:, :4096], s.noisy)


def test_same_seed_same_spectra_and_labels_independent_of_chunking(toy_grid):
    a = make_spectra(50, model=toy_grid, noisy=True, random_state=7)
    b = make_spectra(50, model=toy_grid, noisy=True, random_state=7)
    c = make_spectra(50, model=toy_grid, noisy=True, random_state=7, chunk_size=16)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    pd.testing.assert_frame_equal(a.params, c.params)
    d = make_spectra(50, model=toy_grid, random_state=8)
    assert not np.array_equal(a.flux, d.flux)


def test_return_X_y(toy_grid):
    X, y = make_spectra(20, model=toy_grid, random_state=0, return_X_y=True)
    assert X.shape == (20, 8192) and y.shape == (20,)


def test_snr_distribution_matches_reference_order_of_magnitude(toy_grid):
    s = make_spectra(2000, model=toy_grid, random_state=0)
    q5, q50, q95 = np.percentile(s.params["snr"], [5, 50, 95])
    # the calibrated noise curve: SNR percentiles 5/50/95 of 3.2 / 7.2 / 15.1, mag 20.5-22.5
    assert 2.8 < q5 < 3.7 and 6.4 < q50 < 8.2 and 13.5 < q95 < 17


def test_snapped_sampling_mimics_reference(toy_grid):
    s = make_spectra(600, model=toy_grid, snap=True, random_state=0)
    on_node = np.zeros((600, 3), bool)
    for j, (name, nodes) in enumerate(toy_grid.axes.items()):
        on_node[:, j] = np.isclose(s.params[name].to_numpy()[:, None], nodes[None]).any(axis=1)
    assert np.all(on_node.sum(axis=1) >= 2)


def test_snap_with_a_prior_is_refused(toy_grid):
    # the prior decides the sampling: snap=True would be ignored, so it is refused, and the
    # message names the snapped prior to pass instead
    prior = LabelPrior.from_grid(toy_grid)
    match = r"the prior decides the sampling.*LabelPrior\.from_grid\(model, snap=True\)"
    with pytest.raises(ValueError, match=match):
        make_spectra(10, model=toy_grid, prior=prior, snap=True, random_state=0)
    with pytest.raises(ValueError, match=match):
        iter_spectra(10, model=toy_grid, prior=prior, snap=True, random_state=0)
    snapped = LabelPrior.from_grid(toy_grid, snap=True)
    a = make_spectra(50, model=toy_grid, prior=snapped, random_state=0)
    b = make_spectra(50, model=toy_grid, snap=True, random_state=0)
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())


def test_holes_are_avoided_when_drawing(toy_grid):
    from ..conftest import TOY_AXES, make_toy_grid

    valid = np.ones([len(a) for a in TOY_AXES.values()], dtype=bool)
    valid[:, 0, :] = False  # no log g = 1 nodes at all
    grid = make_toy_grid(256, valid=valid)
    s = make_spectra(200, model=grid, noise_model=PFSNoiseModel(grid.wave), random_state=0)
    assert np.isfinite(s.flux).all()
    assert s.params["log_g"].min() >= 2.0 - 1e-9  # the cubic stencil reaches one node down


def test_prior_and_mag_options(toy_grid):
    prior = LabelPrior({"T_eff": (4500, 5000), "log_g": (2, 3), "M_H": (-1, 0)})
    s = make_spectra(30, model=toy_grid, prior=prior, mag=21.0, random_state=0)
    assert s.params["T_eff"].between(4500, 5000).all()
    assert (s.params["mag"] == 21.0).all()
    s2 = make_spectra(3, model=toy_grid, mag=[20.0, 21.0, 22.0], random_state=0)
    assert s2.params["mag"].tolist() == [20.0, 21.0, 22.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mag": np.nan}, "mag"),
        ({"mag": (22.0, np.inf)}, "mag"),
        ({"mag": [20.0, 21.0]}, "mag has 2 values"),
        ({"noisy": "fixed"}, "noisy must be True or False"),
        ({"noise": "fresh"}, "noise must be"),
        ({"noise_model": PFSNoiseModel(np.linspace(7000, 9000, 4096))}, "wavelength grid"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer; got 0"),
        ({"chunk_size": 2.0}, "chunk_size must be a positive integer; got 2.0"),
        ({"snap": "no"}, "snap must be True or False; got 'no'"),
        ({"return_X_y": "no"}, "return_X_y must be True or False; got 'no'"),
    ],
)
def test_bad_options_raise(toy_grid, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_spectra(5, model=toy_grid, random_state=0, **kwargs)


@pytest.mark.parametrize("n_samples", [-1, 2.5, "3", True])
def test_n_samples_is_a_whole_count_never_rounded(toy_grid, n_samples):
    # int(2.5) would silently simulate 2 spectra
    with pytest.raises(ValueError, match="n_samples must be an integer >= 0"):
        make_spectra(n_samples, model=toy_grid, random_state=0)


def test_prior_missing_a_grid_label_raises(toy_grid):
    with pytest.raises(ValueError, match="does not cover"):
        make_spectra(5, model=toy_grid, prior=LabelPrior({"T_eff": (4000, 6000)}))


def test_iter_spectra_bounded_chunks(toy_grid):
    sizes = [len(c) for c in iter_spectra(25, model=toy_grid, chunk_size=10, random_state=0)]
    assert sizes == [10, 10, 5]


def test_iter_spectra_checks_its_options_when_called(toy_grid):
    with pytest.raises(ValueError, match="errors must be one of"):
        iter_spectra(5, model=toy_grid, errors="observed")  # before any chunk is asked for


@pytest.mark.parametrize("make", [make_spectra, iter_spectra])
def test_old_names_grid_and_noise_warn_and_still_work(toy_grid, make):
    def spectra(**kwargs):
        out = make(20, random_state=3, chunk_size=8, **kwargs)
        return out if make is make_spectra else _concat(list(out))

    new = spectra(model=toy_grid, noisy=True)
    with pytest.warns(FutureWarning) as record:
        old = spectra(grid=toy_grid, noise="fixed")
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert messages[0].startswith("'grid' was renamed 'model'")
    assert messages[1].startswith("'noise' was renamed 'noisy'") and "noisy=True" in messages[1]
    assert {w.filename for w in record} == {__file__}  # the warnings point at the caller
    np.testing.assert_array_equal(old.noisy, new.noisy)
    np.testing.assert_array_equal(old.flux, new.flux)
    with pytest.raises(TypeError, match="pass 'model' only"):
        make(5, model=toy_grid, grid=toy_grid)
    with pytest.raises(TypeError, match="pass 'noisy' only"):
        make(5, model=toy_grid, noisy=True, noise="fixed")


def test_spectra_row_selection_and_with_noise(toy_grid):
    s = make_spectra(10, model=toy_grid, random_state=0)
    sub = s[[3, 1]]
    np.testing.assert_array_equal(sub.flux, s.flux[[3, 1]])
    assert sub.params.index.tolist() == [0, 1]
    noisy = s.with_noise(random_state=0)
    assert noisy.noisy is not None and s.noisy is None


def test_spectra_validates_shapes():
    with pytest.raises(ValueError, match="match wave"):
        Spectra(np.arange(3.0), np.ones((2, 4)), np.ones((2, 4)), pd.DataFrame({"log_g": [1, 2]}))
    with pytest.raises(ValueError, match="rows"):
        Spectra(np.arange(3.0), np.ones((2, 3)), np.ones((2, 3)), pd.DataFrame({"log_g": [1]}))


def test_reported_errors_depend_on_magnitude_only_not_on_the_labels(toy_grid):
    s = make_spectra(200, model=toy_grid, mag=21.5, noisy=True, random_state=3)
    # one magnitude: every spectrum reports the same error, whatever its labels and noise
    np.testing.assert_array_equal(s.error, np.broadcast_to(s.error[0], s.error.shape))
    noise = PFSNoiseModel(toy_grid.wave)
    np.testing.assert_allclose(s.error[0], noise.reference_error(1.0)[0])
    # ... while the noise itself is physical: photon noise of the true flux
    sigma = noise.true_error(s.flux, s.error)
    np.testing.assert_allclose(sigma, noise.error(s.flux, 21.5), rtol=1e-5)
    assert sigma.std(axis=0).max() > 0


def test_true_errors_are_the_leaky_opt_in(toy_grid):
    a = make_spectra(30, model=toy_grid, errors="true", random_state=0)
    b = make_spectra(30, model=toy_grid, random_state=0)
    noise = PFSNoiseModel(toy_grid.wave)
    np.testing.assert_allclose(a.error, noise.true_error(b.flux, b.error), rtol=1e-6)
    assert a.metadata["errors"] == "true" and b.metadata["errors"] == "reference"
    with pytest.raises(ValueError, match="errors must be one of"):
        make_spectra(3, model=toy_grid, errors="observed")


def test_with_noise_draws_the_physical_noise_with_the_noise_model(toy_grid):
    s = make_spectra(300, model=toy_grid, random_state=4)
    noise = PFSNoiseModel(toy_grid.wave)
    noisy = s.with_noise(0, noise_model=noise)
    z = (noisy.noisy - s.flux) / noise.true_error(s.flux, s.error)
    assert abs(z.std() - 1) < 0.01
    with pytest.raises(ValueError, match="noise_level"):
        s.with_noise(0, noise_level=np.inf)


def test_with_reference_errors_replaces_leaky_errors_in_a_copy(toy_grid):
    leaky = make_spectra(20, model=toy_grid, errors="true", noisy=True, random_state=5)
    before = leaky.error.copy()
    honest = leaky.with_reference_errors()
    np.testing.assert_array_equal(leaky.error, before)
    np.testing.assert_array_equal(honest.noisy, leaky.noisy)
    expected = make_spectra(20, model=toy_grid, noisy=True, random_state=5).error
    np.testing.assert_allclose(honest.error, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="'mag'"):
        Spectra(
            leaky.wave, leaky.flux, leaky.error, leaky.params[["log_g"]]
        ).with_reference_errors()


def test_random_state_error_names_the_parameter(toy_grid):
    with pytest.raises(ValueError, match="random_state must be None, a non-negative int"):
        make_spectra(3, model=toy_grid, random_state=-1)


def test_a_prior_or_noise_model_of_the_wrong_kind_is_named(toy_grid):
    with pytest.raises(TypeError, match="prior must be a LabelPrior"):
        make_spectra(3, model=toy_grid, prior="uniform")
    spectra = make_spectra(3, model=toy_grid, random_state=0)
    with pytest.raises(TypeError, match="noise_model must be a PFSNoiseModel"):
        spectra.with_noise(noise_model="pfs")
    with pytest.raises(ValueError, match="random_state must be"):
        spectra.with_noise(random_state=-1)


def test_objects_of_the_wrong_kind_are_named_where_they_enter(toy_grid, tmp_path):
    from specreg.bounds import posterior_summary
    from specreg.datasets import save_grid
    from specreg.spectra import LabelPrior

    with pytest.raises(TypeError, match="model must be a SpectralModel"):
        make_spectra(3, model="3d-grid")
    with pytest.raises(TypeError, match="model must be a SpectralModel"):
        LabelPrior.from_grid("3d")
    with pytest.raises(TypeError, match="save_grid writes a SpectralGrid"):
        save_grid("grid", tmp_path / "g.h5")
    flux = toy_grid.flux([[5000.0, 3.0, -1.0]])
    err = np.full_like(flux, 0.01)
    with pytest.raises(TypeError, match="prior must be a LabelPrior"):
        posterior_summary(toy_grid, flux, err, prior="uniform")
    with pytest.raises(TypeError, match="noise_model must be a PFSNoiseModel"):
        posterior_summary(toy_grid, flux, err, noise_model="pfs")
    with pytest.raises(ValueError, match="progress must be True or False"):
        posterior_summary(toy_grid, flux, err, progress="no")
