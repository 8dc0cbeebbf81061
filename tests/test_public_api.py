"""The names DESIGN.md fixes as specreg's top-level API."""

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
