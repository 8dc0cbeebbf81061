"""The error-leakage diagnostic on leaky (flux-computed) and honest (magnitude-only) errors."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from specreg.datasets import load_grid, make_spectra
from specreg.metrics import (
    DEFAULT_LEAKAGE_ALPHAS,
    LEAKAGE_MARGIN,
    ErrorLeakageReport,
    error_leakage,
)
from specreg.metrics._leakage import _ridge_gcv_predict, _standardise
from specreg.spectra import PFSNoiseModel

N = 400


@pytest.fixture(scope="module")
def test_sets():
    """Two test sets with the same stars and the same noisy flux: leaky and honest errors."""
    grid = load_grid()
    leaky = make_spectra(N, model=grid, noisy=True, errors="true", random_state=0)
    honest = make_spectra(N, model=grid, noisy=True, random_state=0)
    return leaky, honest


@pytest.fixture(scope="module")
def training_arrays(test_sets):
    """Noiseless flux with errors built by hand: from the flux (leaky) or from 0.5 (honest)."""
    flux, mag = test_sets[0].flux, test_sets[0].params["mag"].to_numpy()
    noise = PFSNoiseModel()
    leaky = noise.error(flux, mag)
    honest = noise.error(np.full_like(flux, 0.5), mag)
    return flux, leaky, honest, test_sets[0].y


@pytest.fixture(scope="module")
def reports(test_sets):
    """The default diagnostic (5-fold) on the leaky and on the honest test set."""
    return tuple(error_leakage(s.X, s.y, random_state=0) for s in test_sets)


def test_leaky_test_set_leaks(reports):
    report = reports[0]
    assert isinstance(report, ErrorLeakageReport)
    assert report.leaks
    assert report.r2_error > 0.95
    assert 0.05 < report.r2_flux < 0.6
    assert report.n == N and report.n_pix == 4096 and report.cv == 5 and report.noisy
    assert "LEAK" in str(report) and f"{report.r2_error:.2f}" in str(report)
    assert report.as_dict()["leaks"] is True


def test_honest_test_set_does_not_leak(reports):
    report = reports[1]
    assert not report.leaks
    assert abs(report.r2_error) < 0.05
    assert 0.05 < report.r2_flux < 0.6
    # the noisy flux is the same draw in both sets: so is its score
    assert report.r2_flux == pytest.approx(reports[0].r2_flux)
    assert "no leak" in str(report)


def test_noiseless_training_set_is_judged_with_one_noise_draw(training_arrays):
    flux, leaky, honest, y = training_arrays
    X = np.hstack([flux, leaky])
    before = X.copy()
    report = error_leakage(X, y, noisy=False, cv=3, random_state=0)
    np.testing.assert_array_equal(X, before)  # the noise draw is not written into X
    assert report.leaks and not report.noisy
    assert report.r2_error > 0.95 and report.r2_flux < 0.6
    assert "one noise draw" in str(report)
    # taken as noisy, the noiseless flux predicts as well as the errors: no "leak" seen
    assert not error_leakage(X, y, noisy=True, cv=3, random_state=0).leaks
    fair = error_leakage(np.hstack([flux, honest]), y, noisy=False, cv=3, random_state=0)
    assert not fair.leaks and abs(fair.r2_error) < 0.05


def test_kernel_ridge_matches_the_sklearn_pipeline(test_sets):
    train, test = np.arange(150), np.arange(150, 200)
    for X in (test_sets[0].error, test_sets[0].noisy):
        X, y = X[:200].astype(np.float64), test_sets[0].y[:200]
        pipe = make_pipeline(StandardScaler(), RidgeCV(alphas=DEFAULT_LEAKAGE_ALPHAS))
        expected = pipe.fit(X[train], y[train]).predict(X[test])
        z_train, z_test = _standardise(X[train], X[test])
        got, _ = _ridge_gcv_predict(
            z_train @ z_train.T, z_test @ z_train.T, y[train, None], DEFAULT_LEAKAGE_ALPHAS
        )
        np.testing.assert_allclose(got[:, 0], expected, atol=1e-3 * np.ptp(y))


def test_seeded_subsample_and_several_targets(test_sets):
    leaky, _ = test_sets
    a = error_leakage(leaky.X, leaky.y, cv=3, max_samples=120, random_state=1)
    b = error_leakage(leaky.X, leaky.y, cv=3, max_samples=120, random_state=1)
    assert a == b and a.n == 120 and a.leaks
    Y = leaky.params[["log_g", "T_eff"]].to_numpy()
    multi = error_leakage(leaky.X, Y, cv=3, max_samples=200, random_state=0)
    assert multi.leaks and multi.r2_error > 0.9
    strict = error_leakage(leaky.X, leaky.y, cv=3, max_samples=120, random_state=1, margin=2.0)
    assert not strict.leaks and strict.margin == 2.0 and LEAKAGE_MARGIN == 0.05


def _X(n=40, n_pix=8, seed=0):
    rng = np.random.default_rng(seed)
    return np.hstack([rng.uniform(0.4, 0.6, (n, n_pix)), rng.uniform(0.05, 0.1, (n, n_pix))])


@pytest.mark.parametrize(
    ("change", "kwargs", "match"),
    [
        (lambda X, y: (X[:, 0], y), {}, "must be 2-D"),
        (lambda X, y: (X[:, :-1], y), {}, "odd width"),
        (lambda X, y: (np.where(np.eye(*X.shape, dtype=bool), np.nan, X), y), {}, "NaN or inf"),
        (lambda X, y: (np.where(X == X[3, 2], np.inf, X), y), {}, "NaN or inf"),
        (lambda X, y: (np.concatenate([X[:, :8], -X[:, 8:]], axis=1), y), {}, "not > 0"),
        (lambda X, y: (np.concatenate([X[:, :8], 0 * X[:, 8:]], axis=1), y), {}, "not > 0"),
        (lambda X, y: (X, y[:-1]), {}, "39 values but X has 40 rows"),
        (lambda X, y: (X, np.where(np.arange(40) == 5, np.nan, y)), {}, "y contains NaN"),
        (lambda X, y: (X, np.ones(40)), {}, "constant"),
        (lambda X, y: (X[:4], y[:4]), {}, "fewer than the cv=5 folds"),
        (lambda X, y: (X, y), {"cv": 1}, r"cv \(the number of folds\) must be an integer >= 2"),
        (lambda X, y: (X, y), {"cv": 2.5}, r"cv \(the number of folds\) must be an integer >= 2"),
        (lambda X, y: (X, y), {"max_samples": 3}, "fewer spectra than cv=5"),
        (lambda X, y: (X, y), {"alphas": [1.0, -1.0]}, "alphas must be"),
        (lambda X, y: (X, y), {"n_threads": 0}, "n_threads must be"),
        (lambda X, y: (X, y), {"margin": np.nan}, "margin must be a finite number >= 0"),
        (lambda X, y: (X, y), {"margin": -1.0}, "margin must be a finite number >= 0"),
        (lambda X, y: (X, y), {"min_r2": 2.0}, "min_r2 must be a finite number <= 1"),
        (lambda X, y: (X, y), {"noisy": "no"}, "noisy must be True or False"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, kwargs, match):
    X, y = change(_X(), np.linspace(1, 5, 40))
    with pytest.raises(ValueError, match=match):
        error_leakage(X, y, **kwargs)
