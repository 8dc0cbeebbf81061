"""specreg: stellar parameters from 1-D spectra, and the noise-limited ceiling.

The public estimators are re-exported here; everything else lives in the
subpackages (``specreg.spectra``, ``specreg.datasets``, ``specreg.bounds``, ...).
They are imported on first use (PEP 562), so that ``import specreg`` and the
``specreg`` command's help and argument errors do not wait for torch and
scikit-learn.
"""

from ._lazy import lazy_attributes
from ._version import __version__

# public name -> the subpackage that defines it
_LAZY = {
    "FisherCeiling": "specreg.bounds",
    "HeteroscedasticNoise": "specreg.estimators",
    "SpecViTRegressor": "specreg.estimators",
    "TemplateFitRegressor": "specreg.estimators",
}

__all__ = [
    "__version__",
    "FisherCeiling",
    "HeteroscedasticNoise",
    "SpecViTRegressor",
    "TemplateFitRegressor",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
