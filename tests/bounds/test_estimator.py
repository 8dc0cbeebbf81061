"""BayesCeilingRegressor: the posterior mean behind the sklearn API."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

from specreg.bounds import BayesCeilingRegressor
from specreg.datasets import make_spectra
from specreg.spectra import PFSNoiseModel


@pytest.fixture(scope="module")
def noise(small_grid):
    return PFSNoiseModel(small_grid.wave, obj_coeff=0.0)


@pytest.fixture(scope="module")
def spectra(small_grid, noise):
    return make_spectra(
        120, model=small_grid, mag=19.5, noisy=True, noise_model=noise, random_state=5
    )


def test_predicts_posterior_means_and_beats_ridge_in_cv(small_grid, noise, spectra):
    est = BayesCeilingRegressor(small_grid, noise=noise, n_draws=48, random_state=0)
    bayes = cross_val_score(est, spectra.X, spectra.y, cv=3, scoring="neg_mean_squared_error")
    ridge = cross_val_score(
        Ridge(1e-2), spectra.X, spectra.y, cv=3, scoring="neg_mean_squared_error"
    )
    assert bayes.mean() > ridge.mean()
    post = est.fit(spectra.X).predict_posterior(spectra.X[:5])
    assert post.mean.shape == (5, 3) and np.all(post.ess > 5)


def test_target_selects_the_label(small_grid, noise, spectra):
    est = BayesCeilingRegressor(
        small_grid, noise=noise, target="T_eff", n_draws=32, random_state=0
    )
    pred = est.fit(spectra.X).predict(spectra.X[:10])
    np.testing.assert_allclose(pred, spectra.params["T_eff"][:10], atol=150)
    with pytest.raises(ValueError, match="target"):
        BayesCeilingRegressor(small_grid, target="logg").fit(spectra.X)


def test_clone_pickle_and_not_fitted(small_grid, noise, spectra):
    est = BayesCeilingRegressor(small_grid, noise=noise, n_draws=16, random_state=0)
    assert clone(est).get_params()["n_draws"] == 16
    with pytest.raises(NotFittedError):
        est.predict(spectra.X)
    est.fit(spectra.X)
    again = pickle.loads(pickle.dumps(est))
    assert again.predict(spectra.X[:2]).shape == (2,)


def test_rejects_wrong_width_and_nan(small_grid, spectra):
    with pytest.raises(ValueError, match="2 \\* 512"):
        BayesCeilingRegressor(small_grid).fit(spectra.X[:, :100])
    est = BayesCeilingRegressor(small_grid, noise="given", n_draws=16).fit(spectra.X)
    X = spectra.X[:2].copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.predict(X)


def test_bad_noise_is_refused_at_fit(small_grid, spectra):
    with pytest.raises(ValueError, match="noise must be"):
        BayesCeilingRegressor(small_grid, noise="fixed").fit(spectra.X)


def test_several_labels_and_their_posterior_std(small_grid, noise, spectra):
    target = ("T_eff", "log_g", "M_H")
    est = BayesCeilingRegressor(
        small_grid, noise=noise, target=target, n_draws=64, random_state=0
    ).fit(spectra.X, spectra.params[list(target)])
    mean, std = est.predict(spectra.X[:40], return_std=True)
    assert mean.shape == std.shape == (40, 3) and np.all(std > 0)
    truth = spectra.params[list(target)].to_numpy()[:40]
    # the truth lies within 3 posterior sigma for nearly all spectra, in every label
    assert np.mean(np.abs(mean - truth) < 3 * std, axis=0).min() > 0.9
    q = est.predict_quantiles(spectra.X[:40], quantiles=(0.025, 0.5, 0.975))
    assert q.shape == (40, 3, 3) and np.all(q[:, 0] <= q[:, 1]) and np.all(q[:, 1] <= q[:, 2])
    one = BayesCeilingRegressor(small_grid, noise=noise, n_draws=64, random_state=0)
    mean1, std1 = one.fit(spectra.X).predict(spectra.X[:5], return_std=True)
    assert mean1.shape == std1.shape == (5,)
    assert one.predict_quantiles(spectra.X[:5]).shape == (5, 3)


def test_target_labels_and_y_columns_are_checked(small_grid, spectra):
    with pytest.raises(ValueError, match=r"\['logg'\] are not labels of the spectral model"):
        BayesCeilingRegressor(small_grid, target=("T_eff", "logg")).fit(spectra.X)
    with pytest.raises(ValueError, match=r"columns of y \('T_eff', 'M_H'\) do not match"):
        BayesCeilingRegressor(small_grid, target=("T_eff", "log_g")).fit(
            spectra.X, spectra.params[["T_eff", "M_H"]]
        )
    with pytest.raises(ValueError, match="repeats a label"):
        BayesCeilingRegressor(small_grid, target=("log_g", "log_g")).fit(spectra.X)


def test_grid_and_n_samples_are_deprecated_aliases(small_grid, noise, spectra):
    new = BayesCeilingRegressor(small_grid, noise=noise, n_draws=16, random_state=0)
    old = BayesCeilingRegressor(grid=small_grid, noise=noise, n_samples=16, random_state=0)
    with pytest.warns(FutureWarning) as record:
        old.fit(spectra.X)
    messages = " ".join(str(w.message) for w in record)
    assert "'grid' was renamed 'model'" in messages
    assert "'n_samples' was renamed 'n_draws'" in messages
    np.testing.assert_array_equal(
        old.predict(spectra.X[:4]), new.fit(spectra.X).predict(spectra.X[:4])
    )
    with pytest.warns(FutureWarning, match="'grid_' was renamed 'model_'"):
        assert old.grid_ is small_grid
    with pytest.warns(FutureWarning, match="ceiling_ attribute is deprecated"):
        assert old.ceiling_.n_draws == 16
    with pytest.raises(TypeError, match="pass 'model' only"):
        BayesCeilingRegressor(small_grid, grid=small_grid).fit(spectra.X)
    # an unpickled estimator (a process-based cross_validate) holds the defaults too
    fresh = pickle.loads(pickle.dumps(BayesCeilingRegressor(small_grid, noise=noise)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        fresh.fit(spectra.X)


def test_fit_resets_the_generator_and_keeps_no_ceiling(small_grid, noise, spectra):
    est = BayesCeilingRegressor(small_grid, noise=noise, n_draws=16, random_state=0)
    first = est.fit(spectra.X).predict(spectra.X[:4])
    # the same fit gives the same first prediction; the next one draws afresh
    np.testing.assert_array_equal(est.fit(spectra.X).predict(spectra.X[:4]), first)
    assert not np.array_equal(est.predict(spectra.X[:4]), first)
    assert "ceiling_" not in vars(est) and est.noise_model_ is noise


def test_expected_failed_checks_name_their_reason():
    reasons = BayesCeilingRegressor()._expected_failed_checks()
    assert len(reasons) == 21 and all(r.startswith(("X ", "the check")) for r in reasons.values())
