"""scikit-learn's common estimator checks over every public specreg estimator.

The estimators are found, not listed: every class in the ``__all__`` of ``specreg`` and of
its public subpackages that subclasses :class:`sklearn.base.BaseEstimator`. Each is built
with its default constructor, or by ``_CHECK_INSTANCES`` where the checks need other
arguments (a small spectral model, a small ViT). A public estimator that cannot be built
fails ``test_every_public_estimator_is_checked``.

Each estimator class lists the checks it fails by design, with the reason, in its own
``_expected_failed_checks()`` method. Most come from one decision: specreg's estimators
take the stacked ``X = [flux | error]`` (see the noise user guide), so they refuse X of odd
width and, where the errors are chi-square weights, errors <= 0, while scikit-learn's
checks feed generic data (1-3 features, negative values). The failures are strict: a
listed check that passes fails the run, so the tables cannot go stale.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import specreg
from specreg.bounds import BayesCeilingRegressor
from specreg.estimators import HeteroscedasticNoise, SpecViTRegressor, TemplateFitRegressor
from specreg.spectra import SpectralGrid


# ------------------------------------------------------------------------- discovery
def public_estimators() -> list[type]:
    """Every BaseEstimator subclass in the __all__ of specreg and its public subpackages."""
    modules = [specreg] + [
        importlib.import_module(f"specreg.{info.name}")
        for info in pkgutil.iter_modules(specreg.__path__)
        if not info.name.startswith("_")
    ]
    found: dict[type, None] = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
                found[obj] = None
    return sorted(found, key=lambda cls: (cls.__module__, cls.__name__))


# --------------------------------------------------------------- check configurations
# sklearn's regression checks use X with 10 features, i.e. 5 pixels of [flux | error],
# and targets of order 100: a test-only 1-D grid over a wide log g axis on 5 pixels.
_TINY_N_PIX = 5


def _tiny_grid() -> SpectralGrid:
    log_g = np.linspace(-1.0e4, 1.0e4, 9)
    pix = np.arange(_TINY_N_PIX)
    flux = 1.0 + 0.5 * np.sin(np.outer(log_g / 4.0e3, pix + 1.0) + pix)
    return SpectralGrid({"log_g": log_g}, flux, 7100.0 + pix, metadata={"name": "tiny test grid"})


# the estimators whose checks need constructor arguments (classes not listed here are
# checked as cls()); the ViT is one small configuration that trains to the check's R^2 in
# 20 epochs, on flux-only X (noise_level=0) so that every check runs
_CHECK_INSTANCES: dict[type, Callable[[], list[BaseEstimator]]] = {
    HeteroscedasticNoise: lambda: [
        HeteroscedasticNoise(random_state=0),
        HeteroscedasticNoise(keep_error=True, noisy_transform=True, random_state=0),
    ],
    TemplateFitRegressor: lambda: [TemplateFitRegressor(_tiny_grid(), params=("log_g",))],
    BayesCeilingRegressor: lambda: [
        BayesCeilingRegressor(_tiny_grid(), noise="given", random_state=0)
    ],
    SpecViTRegressor: lambda: [
        SpecViTRegressor(
            patch_size=4,
            hidden_size=16,
            depth=1,
            heads=2,
            max_epochs=20,
            lr=1e-2,
            batch_size=64,
            dropout=0.0,
            noise_level=0,
            device="cpu",
            random_state=0,
        )
    ],
}


def _instances() -> tuple[list[BaseEstimator], dict[type, str]]:
    """The instances to check, and why each class that could not be built was not."""
    instances, unbuilt = [], {}
    for cls in public_estimators():
        try:
            instances += _CHECK_INSTANCES.get(cls, lambda cls=cls: [cls()])()
        except Exception as exc:  # reported by test_every_public_estimator_is_checked
            unbuilt[cls] = f"{type(exc).__name__}: {exc}"
    return instances, unbuilt


INSTANCES, UNBUILT = _instances()


# -------------------------------------------------------------------------- tests
@pytest.fixture(autouse=True)
def _one_torch_thread():
    # torch's spinning OpenMP workers slow the small ViT down several-fold when another
    # job shares the cores; one thread keeps its checks fast
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_public_estimator_is_checked():
    assert not UNBUILT, f"public estimators without a check configuration: {UNBUILT}"
    classes = public_estimators()
    assert {SpecViTRegressor, TemplateFitRegressor, HeteroscedasticNoise} <= set(classes)
    assert {type(est) for est in INSTANCES} == set(classes)
    # each lists its expected failures itself (check name -> reason; {} if it has none)
    lacking = [cls.__name__ for cls in classes if not hasattr(cls, "_expected_failed_checks")]
    assert not lacking, f"no _expected_failed_checks(self) -> dict[str, str] in {lacking}"


def test_the_vit_is_checked_once():
    assert sum(isinstance(est, SpecViTRegressor) for est in INSTANCES) == 1


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    # a class without the method fails test_every_public_estimator_is_checked (and its
    # failing checks fail below) instead of breaking the collection of this module
    return getattr(estimator, "_expected_failed_checks", dict)()


@parametrize_with_checks(
    INSTANCES, expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
