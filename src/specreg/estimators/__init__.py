"""Estimators: the ViT (and fit_distributed), the template fit, noise transformers, baselines."""

from ._baselines import (
    REFERENCE_LGBM_PARAMS,
    make_lightgbm_baseline,
    make_ridge_baseline,
    thread_budget,
)
from ._ddp import fit_distributed
from ._noise import HeteroscedasticNoise, MedianNormalizer
from ._template_fit import OUT_OF_MODEL_Z, TemplateFitRegressor
from ._vit import SpecViTRegressor

__all__ = [
    "SpecViTRegressor",
    "fit_distributed",
    "HeteroscedasticNoise",
    "MedianNormalizer",
    "TemplateFitRegressor",
    "OUT_OF_MODEL_Z",
    "REFERENCE_LGBM_PARAMS",
    "make_lightgbm_baseline",
    "make_ridge_baseline",
    "thread_budget",
]
