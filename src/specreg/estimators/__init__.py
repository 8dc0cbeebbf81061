"""Estimators: SpecViTRegressor, TemplateFitRegressor and noise transformers."""

from ._vit import SpecViTRegressor

__all__ = [
    "SpecViTRegressor",
]
