"""Estimators: the ViT (and fit_distributed), the template fit, noise transformers, baselines.

The ViT and ``fit_distributed`` are imported on first use (PEP 562): their modules load
torch, which the other estimators do not need.
"""

from .._lazy import lazy_attributes
from ._baselines import (
    REFERENCE_LGBM_PARAMS,
    make_lightgbm_baseline,
    make_ridge_baseline,
    thread_budget,
)
from ._noise import HeteroscedasticNoise, MedianNormalizer
from ._template_fit import OUT_OF_MODEL_Z, TemplateFitRegressor

# public name -> the module that defines it (and imports torch)
_LAZY = {
    "SpecViTRegressor": "._vit",
    "fit_distributed": "._ddp",
}

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

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
