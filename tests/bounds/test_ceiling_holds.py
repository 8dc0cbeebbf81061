"""The Bayes ceiling holds for estimators that read all of X, on the embedded grid.

Each estimator gets the whole stacked input ``[noisy flux | reported error]``;
per SNR bin its R2 must not exceed the Bayes-optimal R2 by more than three
paired standard errors (test-set sampling and Monte-Carlo error together). A
positive control shows that the comparison does catch a leak: with the errors
the spectra were drawn with (``errors="true"``), a plain Ridge beats the
ceiling.
"""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from specreg.bounds import FisherCeiling
from specreg.datasets import load_grid, make_spectra
from specreg.estimators import HeteroscedasticNoise
from specreg.metrics import compare_to_ceiling
from specreg.spectra import PFSNoiseModel

N_TRAIN, N_TEST, BINS, MAX_Z = 3000, 600, 4, 3.0


@pytest.fixture(scope="module")
def honest():
    grid = load_grid()
    train = make_spectra(N_TRAIN, model=grid, noisy=True, random_state=11)
    test = make_spectra(N_TEST, model=grid, noisy=True, random_state=12)
    ceiling = FisherCeiling(grid, n_draws=256, random_state=0)
    frame = ceiling.evaluate(test.X, test.y, snr=test.params["snr"].to_numpy())
    return grid, train, test, frame


def _compare(test, frame, y_pred):
    return compare_to_ceiling(
        test.y,
        y_pred,
        frame["posterior_mean"],
        test.params["snr"],
        bayes_mc_se=frame["posterior_mean_se"],
        bins=BINS,
    )


def _stacked_ridge():
    # the penalty chosen by leave-one-out on the training set: the best Ridge there is
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 8)))


def test_ridge_on_all_of_X_stays_below_the_ceiling(honest):
    _, train, test, frame = honest
    y_pred = _stacked_ridge().fit(train.X, train.y).predict(test.X)
    table = _compare(test, frame, y_pred)
    assert np.all(table["z"] < MAX_Z), table.to_string()
    # the error half alone knows the magnitude only: it predicts nothing
    err_only = _stacked_ridge().fit(train.X[:, 4096:], train.y).predict(test.X[:, 4096:])
    assert 1 - np.mean((err_only - test.y) ** 2) / np.var(test.y) < 0.02


@pytest.mark.slow
def test_lightgbm_on_all_of_X_stays_below_the_ceiling(honest):
    from lightgbm import LGBMRegressor

    _, train, test, frame = honest
    model = LGBMRegressor(
        n_estimators=150, learning_rate=0.1, num_leaves=15, colsample_bytree=0.3,
        n_jobs=2, verbose=-1, random_state=0,
    )  # fmt: skip
    y_pred = model.fit(train.X, train.y).predict(test.X)
    table = _compare(test, frame, y_pred)
    assert np.all(table["z"] < MAX_Z), table.to_string()


@pytest.mark.slow
def test_vit_reading_the_errors_stays_below_the_ceiling(honest):
    from specreg.estimators import SpecViTRegressor

    grid, train, test, frame = honest
    clean = make_spectra(N_TRAIN, model=grid, random_state=13)  # noiseless: noise per fit
    vit = make_pipeline(
        HeteroscedasticNoise(keep_error=True, noise_model=PFSNoiseModel(grid.wave)),
        SpecViTRegressor(
            noise_level=0, patch_size=64, hidden_size=32, depth=1, heads=2,
            max_epochs=6, batch_size=128, lr=1e-3, device="cpu", random_state=0,
        ),
    )  # fmt: skip
    y_pred = vit.fit(clean.X, clean.y).predict(test.X)
    table = _compare(test, frame, y_pred)
    assert np.all(table["z"] < MAX_Z), table.to_string()


def test_leaky_errors_beat_the_ceiling_so_the_comparison_can_fail(honest):
    grid, _, test, frame = honest
    # the same observations (same seeds), but reporting the noise they were drawn with
    train = make_spectra(N_TRAIN, model=grid, noisy=True, errors="true", random_state=11)
    leaky = make_spectra(N_TEST, model=grid, noisy=True, errors="true", random_state=12)
    np.testing.assert_array_equal(leaky.noisy, test.noisy)
    # a Ridge that reads the error half beats the ceiling in every bin (R2 ~ 0.96 where
    # the ceiling is 0.58-0.93), by far at low SNR where the ceiling is lowest
    y_pred = _stacked_ridge().fit(train.X[:, 4096:], train.y).predict(leaky.X[:, 4096:])
    table = _compare(test, frame, y_pred)
    assert np.all(table["z"] > 2) and np.all(table["z"].iloc[:2] > MAX_Z), table.to_string()
