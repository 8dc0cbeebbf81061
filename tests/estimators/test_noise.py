"""HeteroscedasticNoise and MedianNormalizer: the training/test noise contract, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.utils import get_tags

from specreg import HeteroscedasticNoise
from specreg.estimators import MedianNormalizer


@pytest.fixture
def stacked():
    rng = np.random.default_rng(0)
    flux = (0.5 + 0.05 * rng.standard_normal((300, 40))).astype(np.float32)
    error = rng.uniform(0.01, 0.2, (300, 40)).astype(np.float32)
    return flux, error, np.hstack([flux, error])


def test_fit_transform_adds_noise_with_per_pixel_sigma(stacked):
    flux, error, X = stacked
    out = HeteroscedasticNoise(noise_level=0.5, random_state=0).fit_transform(X)
    z = (out - flux) / (0.5 * error)
    assert out.shape == flux.shape
    # 12,000 draws: standard errors 0.009 (mean) and 0.0065 (std)
    assert abs(z.mean()) < 0.04 and abs(z.std() - 1) < 0.03
    # heteroscedastic: the residual scales with each pixel's own error
    big, small = error > 0.15, error < 0.05
    assert np.abs(out - flux)[big].mean() > 3 * np.abs(out - flux)[small].mean()


def test_transform_returns_test_flux_unchanged(stacked):
    flux, _, X = stacked
    noise = HeteroscedasticNoise(random_state=0).fit(X)
    out = noise.transform(X)
    np.testing.assert_array_equal(out, flux)
    assert not np.shares_memory(out, X)


def test_fresh_draw_on_every_call_without_seed_same_draw_with_int_seed(stacked):
    _, _, X = stacked
    free = HeteroscedasticNoise()
    assert not np.array_equal(free.fit_transform(X), free.fit_transform(X))
    seeded = HeteroscedasticNoise(random_state=3)
    np.testing.assert_array_equal(seeded.fit_transform(X), seeded.fit_transform(X))
    rs = np.random.RandomState(3)
    advancing = HeteroscedasticNoise(random_state=rs)
    assert not np.array_equal(advancing.fit_transform(X), advancing.fit_transform(X))


def test_tagged_non_deterministic_and_dtype_preserving(stacked):
    _, _, X = stacked
    tags = get_tags(HeteroscedasticNoise())
    assert tags.non_deterministic
    assert HeteroscedasticNoise().fit_transform(X).dtype == np.float32
    assert HeteroscedasticNoise().fit_transform(X.astype(np.float64)).dtype == np.float64


def test_keep_error_returns_noisy_flux_and_unchanged_error(stacked):
    flux, error, X = stacked
    noise = HeteroscedasticNoise(keep_error=True, random_state=1)
    out = noise.fit_transform(X)
    assert out.shape == X.shape
    np.testing.assert_array_equal(out[:, 40:], error)
    assert not np.array_equal(out[:, :40], flux)
    np.testing.assert_array_equal(noise.transform(X), X)


def test_noise_level_zero_just_strips_the_error_half(stacked):
    flux, _, X = stacked
    np.testing.assert_array_equal(HeteroscedasticNoise(noise_level=0).fit_transform(X), flux)


def test_noisy_transform_draws_test_noise_independent_of_training_noise(stacked):
    flux, error, X = stacked
    noise = HeteroscedasticNoise(noisy_transform=True, random_state=0)
    train, test = noise.fit_transform(X), noise.transform(X)
    z_train, z_test = (train - flux) / error, (test - flux) / error
    assert abs(np.std(z_test) - 1) < 0.02
    assert abs(np.corrcoef(z_train.ravel(), z_test.ravel())[0, 1]) < 0.02


def test_pipeline_trains_on_noisy_flux_and_predicts_on_given_flux(stacked):
    """Pipeline.fit goes through fit_transform (noise), predict through transform."""
    flux, _, X = stacked
    y = np.arange(len(X), dtype=float)
    pipe = make_pipeline(
        HeteroscedasticNoise(noise_level=5.0, random_state=0), KNeighborsRegressor(1)
    ).fit(X, y)
    knn = pipe[-1]
    assert not np.allclose(knn._fit_X, flux)  # trained on noisy flux
    # the test flux passes unchanged: the nearest neighbour of a noisy training row is
    # itself only when predict sees exactly what fit saw (it does not)
    assert np.mean(pipe.predict(X) == y) < 0.5


def test_feature_names_follow_the_flux_half():
    cols = [f"f{i}" for i in range(3)] + [f"e{i}" for i in range(3)]
    X = pd.DataFrame(np.full((2, 6), 0.5), columns=cols)
    assert list(HeteroscedasticNoise().fit(X).get_feature_names_out()) == cols[:3]
    assert list(HeteroscedasticNoise(keep_error=True).fit(X).get_feature_names_out()) == cols


def test_odd_width_raises(stacked):
    _, _, X = stacked
    with pytest.raises(ValueError, match="odd width"):
        HeteroscedasticNoise().fit_transform(X[:, :-1])


def test_negative_error_raises(stacked):
    _, _, X = stacked
    X = X.copy()
    X[5, 50] = -0.1
    with pytest.raises(ValueError, match=r"not >= 0 at \(row, pixel\) \(5, 10\)"):
        HeteroscedasticNoise().fit_transform(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_raises(stacked, bad):
    _, _, X = stacked
    X = X.copy()
    X[0, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        HeteroscedasticNoise().fit_transform(X)


@pytest.mark.parametrize("level", [-1.0, "high"])
def test_invalid_noise_level_raises(stacked, level):
    _, _, X = stacked
    with pytest.raises(ValueError, match="noise_level"):
        HeteroscedasticNoise(noise_level=level).fit(X)


@pytest.mark.parametrize(
    "transformer, match",
    [
        (HeteroscedasticNoise(keep_error="no"), "keep_error must be True or False; got 'no'"),
        (MedianNormalizer(stacked="no"), "stacked must be True or False; got 'no'"),
        (MedianNormalizer(value=np.inf), "value must be a finite number > 0"),
        (MedianNormalizer(value=True), "value must be a finite number > 0"),
    ],
)
def test_flags_and_values_are_checked_at_fit(stacked, transformer, match):
    # a string used to be taken as True; value=inf gave all-inf spectra
    _, _, X = stacked
    with pytest.raises(ValueError, match=match):
        transformer.fit_transform(X)


def test_transform_width_mismatch_raises(stacked):
    _, _, X = stacked
    noise = HeteroscedasticNoise().fit(X)
    with pytest.raises(ValueError, match="features"):
        noise.transform(X[:, :20])


def test_input_never_modified_in_place(stacked):
    _, _, X = stacked
    before = X.copy()
    noise = HeteroscedasticNoise(keep_error=True, noisy_transform=True)
    noise.fit_transform(X)
    noise.transform(X)
    np.testing.assert_array_equal(X, before)


# ------------------------------------------------------------------ MedianNormalizer
def test_median_normalizer_scales_flux_and_error_alike(stacked):
    flux, error, X = stacked
    scaled = 3.0 * X
    out = MedianNormalizer().fit_transform(scaled)
    np.testing.assert_allclose(np.median(out[:, :40], axis=1), 0.5, rtol=1e-6)
    # flux / error (the SNR) is invariant
    np.testing.assert_allclose(out[:, :40] / out[:, 40:], flux / error, rtol=1e-5)
    assert out.dtype == np.float32


def test_median_normalizer_flux_only_and_custom_value():
    X = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 2.0]])
    out = MedianNormalizer(value=1.0, stacked=False).fit_transform(X)
    np.testing.assert_allclose(out, [[0.5, 1.0, 2.0], [1.0, 1.0, 1.0]])


def test_median_normalizer_nonpositive_median_raises():
    with pytest.raises(ValueError, match="median <= 0"):
        MedianNormalizer(stacked=False).fit_transform([[-1.0, -2.0, 3.0]])


def test_median_normalizer_odd_width_stacked_raises():
    with pytest.raises(ValueError, match="odd width"):
        MedianNormalizer().fit_transform(np.ones((2, 5)))


def test_median_normalizer_before_noise_in_a_pipeline(stacked):
    """Normalise the clean flux, then draw noise in the same (scaled) units."""
    flux, error, X = stacked
    pipe = make_pipeline(MedianNormalizer(), HeteroscedasticNoise(random_state=0))
    out = pipe.fit_transform(2.0 * X)
    norm = MedianNormalizer().fit_transform(2.0 * X)
    z = (out - norm[:, :40]) / norm[:, 40:]
    assert abs(z.std() - 1) < 0.02


def test_noise_model_draws_the_physical_noise_of_the_flux(toy_grid):
    from specreg.datasets import make_spectra
    from specreg.spectra import PFSNoiseModel

    s = make_spectra(400, model=toy_grid, random_state=2)
    noise = PFSNoiseModel(toy_grid.wave)
    X = s.X
    before = X.copy()
    out = HeteroscedasticNoise(noise_model=noise, keep_error=True, random_state=0).fit_transform(X)
    sigma = noise.true_error(s.flux, s.error)
    z = (out[:, :4096] - s.flux) / sigma
    assert abs(z.std() - 1) < 0.01
    # the reported errors pass through unchanged, and the input is untouched
    np.testing.assert_array_equal(out[:, 4096:], s.error)
    np.testing.assert_array_equal(X, before)
    # photon noise: deep lines (low flux) are less noisy than the continuum
    assert not np.allclose(sigma, s.error)


def test_noise_model_refuses_errors_it_did_not_report(toy_grid):
    from specreg.spectra import PFSNoiseModel

    X = np.hstack([np.full((3, 4096), 0.5), np.full((3, 4096), 0.05)])
    with pytest.raises(ValueError, match="reference errors"):
        HeteroscedasticNoise(noise_model=PFSNoiseModel(toy_grid.wave)).fit_transform(X)
    with pytest.raises(TypeError, match="noise_model"):
        HeteroscedasticNoise(noise_model="pfs").fit_transform(X)
    with pytest.raises(ValueError, match="noise_level"):
        HeteroscedasticNoise(noise_level=np.inf).fit_transform(X)


def test_random_state_error_names_the_parameter():
    X = np.hstack([np.full((3, 4), 0.5), np.full((3, 4), 0.05)])
    with pytest.raises(ValueError, match="random_state must be None, an int"):
        HeteroscedasticNoise(random_state=-1).fit_transform(X)


def test_noisy_transform_is_a_flag(stacked):
    _, _, X = stacked
    with pytest.raises(ValueError, match="noisy_transform must be True or False"):
        HeteroscedasticNoise(noisy_transform="no").fit(X)
