"""Estimators: SpecViTRegressor, TemplateFitRegressor and noise transformers."""

from ._baselines import (
    REFERENCE_LGBM_PARAMS,
    make_lightgbm_baseline,
    make_ridge_baseline,
    thread_budget,
)
from ._noise import HeteroscedasticNoise, MedianNormalizer
from ._template_fit import TemplateFitRegressor
from ._vit import SpecViTRegressor

__all__ = [
    "SpecViTRegressor",
    "HeteroscedasticNoise",
    "MedianNormalizer",
    "TemplateFitRegressor",
    "REFERENCE_LGBM_PARAMS",
    "make_lightgbm_baseline",
    "make_ridge_baseline",
    "thread_budget",
]
