"""The names DESIGN.md fixes as specreg's top-level API."""

import subprocess
import sys

import pytest

import specreg
from specreg.bounds import FisherCeiling
from specreg.estimators import HeteroscedasticNoise, SpecViTRegressor, TemplateFitRegressor


def test_fixed_names_are_re_exported_at_the_top_level():
    for cls in (SpecViTRegressor, TemplateFitRegressor, HeteroscedasticNoise, FisherCeiling):
        assert getattr(specreg, cls.__name__) is cls
        assert cls.__name__ in specreg.__all__
    assert isinstance(specreg.__version__, str)


def test_fit_distributed_has_a_public_import_path():
    import specreg.estimators
    from specreg.estimators import _ddp, fit_distributed

    assert "fit_distributed" in specreg.estimators.__all__
    assert fit_distributed is _ddp.fit_distributed


def test_iter_spectra_has_a_public_import_path():
    import specreg.datasets
    from specreg.datasets import _spectra, iter_spectra

    assert "iter_spectra" in specreg.datasets.__all__
    assert iter_spectra is _spectra.iter_spectra


def test_importing_the_estimators_does_not_import_torch():
    # the ViT and fit_distributed are bound on first use: a fresh interpreter that imports
    # specreg.estimators has no torch, and gets it (and the ViT) by asking for the ViT
    code = (
        "import sys, specreg.estimators as est\n"
        "before = 'torch' in sys.modules\n"
        "names = dir(est)\n"
        "from specreg.estimators import SpecViTRegressor\n"
        "print(before, 'SpecViTRegressor' in names, 'fit_distributed' in names,\n"
        "      'torch' in sys.modules, SpecViTRegressor.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True", "specreg.estimators._vit"]


def test_lazy_names_are_listed_and_unknown_names_refused():
    import specreg.estimators
    import specreg.grids

    for package in (specreg, specreg.estimators, specreg.grids):
        assert set(package.__all__) <= set(dir(package))
        with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
            package.no_such_name  # noqa: B018
