"""Estimators: SpecViTRegressor, TemplateFitRegressor and noise transformers."""

from ._noise import HeteroscedasticNoise, MedianNormalizer
from ._template_fit import TemplateFitRegressor
from ._vit import SpecViTRegressor

__all__ = [
    "SpecViTRegressor",
    "HeteroscedasticNoise",
    "MedianNormalizer",
    "TemplateFitRegressor",
]
