"""specreg: stellar parameters from 1-D spectra, and the noise-limited ceiling.

The public estimators are re-exported here; everything else lives in the
subpackages (``specreg.spectra``, ``specreg.datasets``, ``specreg.bounds``, ...).
They are imported on first use (PEP 562), so that ``import specreg`` and the
``specreg`` command's help and argument errors do not wait for torch and
scikit-learn.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # import once
        return value
    raise AttributeError(f"module 'specreg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
