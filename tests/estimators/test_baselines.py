"""The reference Ridge and LightGBM baselines as pipelines on stacked X from make_spectra."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_validate, learning_curve
from sklearn.preprocessing import StandardScaler

from specreg import HeteroscedasticNoise
from specreg.datasets import make_spectra
from specreg.estimators import (
    REFERENCE_LGBM_PARAMS,
    make_lightgbm_baseline,
    make_ridge_baseline,
    thread_budget,
)


@pytest.fixture(scope="module")
def train_set(small_grid):
    """Noiseless training spectra (bright: the test is about the recipe, not SNR)."""
    return make_spectra(240, model=small_grid, mag=(18.0, 19.0), random_state=0)


def test_ridge_recipe_is_noise_scaler_ridge_1e5():
    pipe = make_ridge_baseline()
    steps = [type(step) for _, step in pipe.steps]
    assert steps == [HeteroscedasticNoise, StandardScaler, Ridge]
    assert pipe.named_steps["ridge"].alpha == 1e5
    assert pipe.named_steps["heteroscedasticnoise"].noise_level == 1.0


def test_lightgbm_recipe_carries_reference_params_and_overrides():
    pipe = make_lightgbm_baseline(n_jobs=2, n_estimators=7, subsample_freq=1)
    params = pipe.named_steps["lgbmregressor"].get_params()
    for key, value in REFERENCE_LGBM_PARAMS.items():
        if key != "n_estimators":
            assert params[key] == value, key
    assert params["n_estimators"] == 7 and params["subsample_freq"] == 1
    assert params["n_jobs"] == 2
    assert REFERENCE_LGBM_PARAMS["n_estimators"] == 5000  # the override did not leak


@pytest.mark.parametrize(
    "n_workers, n_cores, expected", [(None, 2, (2, 1)), (1, 2, (1, 2)), (3, 2, (2, 1))]
)
def test_thread_budget_never_oversubscribes(n_workers, n_cores, expected):
    workers, threads = thread_budget(n_workers, n_cores=n_cores)
    assert (workers, threads) == expected
    assert workers * threads <= n_cores


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_workers": 0, "n_cores": 2}, "n_workers must be a positive integer; got 0"),
        ({"n_workers": 1.5, "n_cores": 2}, "n_workers must be a positive integer; got 1.5"),
        ({"n_workers": 1, "n_cores": 0}, "n_cores must be a positive integer; got 0"),
    ],
)
def test_thread_budget_refuses_what_it_used_to_clamp(kw, match):
    with pytest.raises(ValueError, match=match):
        thread_budget(**kw)


def test_ridge_baseline_cross_validate_on_make_spectra(train_set):
    workers, _ = thread_budget(2)
    pipe = make_ridge_baseline(alpha=10.0, noisy_transform=True, random_state=0)
    scores = cross_validate(pipe, train_set.X, train_set.y, cv=3, n_jobs=workers)
    assert scores["test_score"].shape == (3,)
    assert scores["test_score"].mean() > 0.5, scores["test_score"]


def test_lightgbm_baseline_cross_validate_with_budgeted_threads(train_set):
    workers, threads = thread_budget(2)
    pipe = make_lightgbm_baseline(
        n_jobs=threads, n_estimators=60, noisy_transform=True, random_state=0
    )
    scores = cross_validate(
        pipe, train_set.X, train_set.y, cv=3, n_jobs=workers, return_estimator=True
    )
    assert scores["test_score"].mean() > 0.3, scores["test_score"]
    for est in scores["estimator"]:
        assert est.named_steps["lgbmregressor"].n_jobs * workers <= max(2, workers)


def test_baselines_through_learning_curve(train_set):
    workers, threads = thread_budget(2)
    for pipe in (
        make_ridge_baseline(alpha=10.0, noisy_transform=True, random_state=0),
        make_lightgbm_baseline(
            n_jobs=threads, n_estimators=30, noisy_transform=True, random_state=0
        ),
    ):
        sizes, train, test = learning_curve(
            pipe, train_set.X, train_set.y, train_sizes=[0.3, 1.0], cv=2, n_jobs=workers
        )
        assert sizes.tolist() == [36, 120]
        assert test.shape == (2, 2) and np.isfinite(test).all()


def test_lightgbm_early_stopping_on_flux_half_of_a_noisy_validation_set(small_grid, train_set):
    """The reference's 5000 trees + early stopping(50), via fit parameters."""
    from lightgbm import early_stopping

    val = make_spectra(60, model=small_grid, mag=(18.0, 19.0), noisy=True, random_state=1)
    pipe = make_lightgbm_baseline(n_jobs=1, n_estimators=2000, random_state=0)
    pipe.fit(
        train_set.X,
        train_set.y,
        lgbmregressor__eval_X=val.X[:, : val.n_pix],
        lgbmregressor__eval_y=val.y,
        lgbmregressor__callbacks=[early_stopping(10, verbose=False)],
    )
    assert pipe.named_steps["lgbmregressor"].best_iteration_ < 2000
    assert pipe.predict(val.X).shape == (60,)


def test_fixed_test_noise_protocol_pre_noised_test_flux_passes_unchanged(small_grid, train_set):
    """Train on noiseless X (noise drawn at fit), predict on a pre-noised test set."""
    test = make_spectra(50, model=small_grid, mag=(18.0, 19.0), noisy=True, random_state=2)
    pipe = make_ridge_baseline(alpha=10.0, random_state=42).fit(train_set.X, train_set.y)
    direct = pipe[1:].predict(test.noisy)
    np.testing.assert_allclose(pipe.predict(test.X), direct)


def test_lightgbm_parameter_typos_are_refused():
    with pytest.raises(TypeError, match=r"unknown LightGBM parameter\(s\) \['n_estimator'\]"):
        make_lightgbm_baseline(n_estimator=3)


def test_baselines_fit_several_labels_at_once():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 1, (80, 2))
    flux = 0.5 + 0.05 * y @ rng.normal(size=(2, 16))
    X = np.hstack([flux, np.full_like(flux, 1e-4)])
    ridge = make_ridge_baseline(alpha=1e-3, random_state=0).fit(X, y)
    assert ridge.predict(X).shape == (80, 2)
    lgbm = make_lightgbm_baseline(n_outputs=2, n_estimators=20, random_state=0).fit(X, y)
    pred = lgbm.predict(X)
    assert pred.shape == (80, 2)
    assert all(np.corrcoef(pred[:, k], y[:, k])[0, 1] > 0.8 for k in range(2))
    with pytest.raises(ValueError, match="n_outputs must be a positive integer"):
        make_lightgbm_baseline(n_outputs=0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ({"alpha": "1"}, "alpha must be a finite number"),
        ({"noise_level": -1.0}, "noise_level must be a finite number >= 0"),
        ({"noisy_transform": "no"}, "noisy_transform must be True or False"),
    ],
)
def test_baseline_factories_check_their_keywords_when_called(kw, match):
    # these used to surface only at fit, from scikit-learn or the noise step
    with pytest.raises(ValueError, match=match):
        make_ridge_baseline(**kw)
