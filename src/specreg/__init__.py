"""specreg: stellar parameters from 1-D spectra, and the noise-limited ceiling.

The public estimators are re-exported here; everything else lives in the
subpackages (``specreg.spectra``, ``specreg.datasets``, ``specreg.bounds``, ...).
"""

from ._version import __version__
from .bounds import FisherCeiling
from .estimators import HeteroscedasticNoise, SpecViTRegressor, TemplateFitRegressor

__all__ = [
    "__version__",
    "FisherCeiling",
    "HeteroscedasticNoise",
    "SpecViTRegressor",
    "TemplateFitRegressor",
]
