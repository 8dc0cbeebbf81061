"""The reference study's classical baselines as scikit-learn pipelines on stacked X.

Both take ``X = [flux | error]`` (e.g. ``make_spectra(...).X``); the first step,
:class:`HeteroscedasticNoise`, draws training noise from the error half and passes
test flux (already noisy) through unchanged (see "Ridge and LightGBM baselines" in the
estimators user guide):

* Ridge: ``HeteroscedasticNoise -> StandardScaler -> Ridge(alpha=1e5)``;
* LightGBM: ``HeteroscedasticNoise -> LGBMRegressor(**REFERENCE_LGBM_PARAMS)`` on raw
  flux (trees are invariant to per-feature scaling).

Thread budgeting: LightGBM's OpenMP threads times joblib's workers should not exceed
the cores, or the run slows down (oversubscription); :func:`thread_budget` splits them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..spectra._validation import check_bool, check_int, check_noise_model, check_real
from ._noise import HeteroscedasticNoise

if TYPE_CHECKING:
    from ..spectra import PFSNoiseModel

__all__ = [
    "REFERENCE_LGBM_PARAMS",
    "REFERENCE_LGBM_EARLY_STOPPING_ROUNDS",
    "REFERENCE_RIDGE_ALPHA",
    "make_lightgbm_baseline",
    "make_ridge_baseline",
    "thread_budget",
]

#: Ridge regularisation of the reference's 1M model (on StandardScaled flux).
REFERENCE_RIDGE_ALPHA = 1e5

#: LightGBM settings of the reference study's published numbers, in the
#: scikit-learn API's names (``min_data_in_leaf`` -> ``min_child_samples``). As in the
#: reference, ``subsample`` is set without ``subsample_freq``, so bagging is inactive;
#: pass ``subsample_freq=1`` to :func:`make_lightgbm_baseline` to switch it on.
REFERENCE_LGBM_PARAMS: dict = {
    "objective": "regression",
    "metric": "rmse",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "max_depth": -1,
    "min_child_samples": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "n_estimators": 5000,
}

#: The reference stopped on a held-out set after 50 rounds without improvement (it
#: stopped at 1,293 trees at 1M spectra). Early stopping needs an evaluation set, see
#: :func:`make_lightgbm_baseline`.
REFERENCE_LGBM_EARLY_STOPPING_ROUNDS = 50


def thread_budget(n_workers: int | None = None, n_cores: int | None = None) -> tuple[int, int]:
    """Split the cores between joblib workers and the threads inside each worker.

    Parameters
    ----------
    n_workers : int, optional
        Parallel workers wanted (e.g. cross-validation folds run at once); default
        all cores, i.e. one thread each.
    n_cores : int, optional
        Cores to use; default the cores this process may run on.

    Returns
    -------
    n_workers, n_threads : int
        ``n_workers * n_threads <= n_cores``: pass ``n_workers`` to joblib
        (``cross_validate(..., n_jobs=n_workers)``) and ``n_threads`` to the model
        (``make_lightgbm_baseline(n_jobs=n_threads)``).

    Examples
    --------
    >>> thread_budget(2, n_cores=2)
    (2, 1)
    >>> thread_budget(1, n_cores=2)
    (1, 2)
    >>> thread_budget(8, n_cores=2)  # never more workers than cores
    (2, 1)
    """
    if n_cores is None:
        n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        n_cores = n_cores or os.cpu_count() or 1
    n_cores = check_int(n_cores, "n_cores")
    n_workers = n_cores if n_workers is None else min(check_int(n_workers, "n_workers"), n_cores)
    return n_workers, max(1, n_cores // n_workers)


def _training_noise(
    noise_level: float,
    noisy_transform: bool,
    noise_model: PFSNoiseModel | None,
    random_state: int | np.random.RandomState | None,
) -> HeteroscedasticNoise:
    """The first step of both baselines, from the factories' noise keywords (checked now)."""
    check_real(noise_level, "noise_level", low=0.0)
    check_bool(noisy_transform, "noisy_transform")
    if noise_model is not None:
        check_noise_model(noise_model)
    return HeteroscedasticNoise(
        noise_level=noise_level,
        noisy_transform=noisy_transform,
        noise_model=noise_model,
        random_state=random_state,
    )


def make_ridge_baseline(
    alpha: float = REFERENCE_RIDGE_ALPHA,
    *,
    noise_level: float = 1.0,
    noisy_transform: bool = False,
    noise_model: PFSNoiseModel | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> Pipeline:
    """The reference Ridge baseline: noise, StandardScaler, Ridge(alpha=1e5).

    Parameters
    ----------
    alpha : float, default=1e5
        Ridge regularisation (the reference's optimum at 1M spectra; smaller
        training sets prefer smaller values, e.g. 3e4 at 100k).
    noise_level : float, default=1.0
        Training-noise multiplier (:class:`HeteroscedasticNoise`).
    noisy_transform : bool, default=False
        Also add noise to test folds: for cross-validation on a noiseless set.
        Leave False when the test flux is already noisy.
    noise_model : PFSNoiseModel, optional
        Draw the training noise from this model's physical noise, the error half
        being its reported errors (:class:`HeteroscedasticNoise`); None: sigma is
        the error half.
    random_state : int, RandomState or None, default=None
        Seed of the noise draws (the reference used numpy seed 42 once).

    Returns
    -------
    Pipeline
        Input ``X = [flux | error]`` of shape (n, 2 * n_pix); predicts the
        label(s) it is fitted on (Ridge is natively multi-output: y of shape
        (n,) or (n, k)).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_validate
    >>> rng = np.random.default_rng(0)
    >>> y = rng.uniform(1, 5, 60)
    >>> flux = 0.5 + 0.01 * y[:, None] * rng.normal(size=(1, 20))
    >>> X = np.hstack([flux, np.full((60, 20), 0.001)])
    >>> pipe = make_ridge_baseline(alpha=1.0, random_state=0)
    >>> [name for name, _ in pipe.steps]
    ['heteroscedasticnoise', 'standardscaler', 'ridge']
    >>> cross_validate(pipe, X, y, cv=3)["test_score"].mean() > 0.9
    np.True_
    """
    check_real(alpha, "alpha", low=0.0)
    noise = _training_noise(noise_level, noisy_transform, noise_model, random_state)
    return make_pipeline(noise, StandardScaler(), Ridge(alpha=alpha))


def make_lightgbm_baseline(
    *,
    n_outputs: int = 1,
    n_jobs: int = 1,
    noise_level: float = 1.0,
    noisy_transform: bool = False,
    noise_model: PFSNoiseModel | None = None,
    random_state: int | np.random.RandomState | None = None,
    **params,
) -> Pipeline:
    """The reference LightGBM baseline: noise, then LGBMRegressor on raw flux.

    Parameters
    ----------
    n_outputs : int, default=1
        Labels predicted at once. LightGBM fits one label per model, so for
        ``n_outputs > 1`` the last step is a
        :class:`~sklearn.multioutput.MultiOutputRegressor` (one booster per
        label, step name ``"multioutputregressor"``) and y has shape
        (n, n_outputs).
    n_jobs : int, default=1
        LightGBM's OpenMP threads. Budget them against joblib's workers with
        :func:`thread_budget` (the default 1 is safe inside parallel CV).
    noise_level : float, default=1.0
        Training-noise multiplier.
    noisy_transform : bool, default=False
        Also add noise to test folds (cross-validation on a noiseless set).
    noise_model : PFSNoiseModel, optional
        As in :func:`make_ridge_baseline`.
    random_state : int, RandomState or None, default=None
        Seeds the noise and LightGBM.
    **params
        Overrides of :data:`REFERENCE_LGBM_PARAMS` (e.g. a smaller ``n_estimators``
        for quick runs, ``subsample_freq=1`` to activate bagging).

    Returns
    -------
    Pipeline
        Input ``X = [flux | error]``; predicts the label(s) it is fitted on.

    Notes
    -----
    The reference trained 5000 trees with early stopping after
    :data:`REFERENCE_LGBM_EARLY_STOPPING_ROUNDS` rounds on a held-out noisy set. In a
    pipeline, pass that set's *flux half* (it is not transformed) and the callback
    as fit parameters::

        from lightgbm import early_stopping
        pipe.fit(X, y, lgbmregressor__eval_X=X_val[:, :n_pix],
                 lgbmregressor__eval_y=y_val,
                 lgbmregressor__callbacks=[early_stopping(50)])

    (LightGBM < 4.7 spells it ``lgbmregressor__eval_set=[(X_val[:, :n_pix], y_val)]``.)

    Under ``cross_validate``/``learning_curve`` there is no evaluation set: fix
    ``n_estimators`` instead (the reference stopped at 532-1,349 trees between 10k
    and 1M spectra).

    Examples
    --------
    >>> pipe = make_lightgbm_baseline(n_estimators=10, n_jobs=1)
    >>> pipe.named_steps["lgbmregressor"].get_params()["num_leaves"]
    63
    >>> [name for name, _ in make_lightgbm_baseline(n_outputs=3).steps]
    ['heteroscedasticnoise', 'multioutputregressor']
    """
    from lightgbm import LGBMRegressor  # an optional-weight import, only when asked

    known = set(LGBMRegressor().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(
            f"make_lightgbm_baseline got unknown LightGBM parameter(s) {unknown}; "
            f"LGBMRegressor takes {sorted(known)}"
        )
    check_int(n_outputs, "n_outputs")
    lgbm_params = dict(REFERENCE_LGBM_PARAMS)
    lgbm_params.update(params)
    booster = LGBMRegressor(n_jobs=n_jobs, random_state=random_state, verbose=-1, **lgbm_params)
    if n_outputs > 1:
        from sklearn.multioutput import MultiOutputRegressor

        booster = MultiOutputRegressor(booster)
    noise = _training_noise(noise_level, noisy_transform, noise_model, random_state)
    return make_pipeline(noise, booster)
