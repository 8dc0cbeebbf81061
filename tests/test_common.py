"""scikit-learn's common estimator checks over every public specreg estimator and transformer.

Each expected failure is listed with its reason. Most come from one design decision:
specreg's estimators take the stacked ``X = [flux | error]`` (DESIGN.md section 3), so
they refuse X of odd width and, where the errors are chi-square weights, errors <= 0;
sklearn's checks feed generic data (1-3 features, negative values).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.estimator_checks import parametrize_with_checks

import specreg.estimators as est_module
from specreg.estimators import HeteroscedasticNoise, MedianNormalizer, TemplateFitRegressor
from specreg.estimators._vit import _ODD_WIDTH_CHECKS
from specreg.spectra import SpectralGrid

# ------------------------------------------------------------------------------ grids
# sklearn's regression checks use X with 10 features, i.e. 5 pixels of [flux | error],
# and targets of order 100: a test-only 1-D grid over a wide log g axis on 5 pixels.
_TINY_N_PIX = 5


def _tiny_grid() -> SpectralGrid:
    log_g = np.linspace(-1.0e4, 1.0e4, 9)
    pix = np.arange(_TINY_N_PIX)
    flux = 1.0 + 0.5 * np.sin(np.outer(log_g / 4.0e3, pix + 1.0) + pix)
    return SpectralGrid({"log_g": log_g}, flux, 7100.0 + pix, metadata={"name": "tiny test grid"})


# ---------------------------------------------------------------- expected failures
# Found by running every check (sklearn.utils.estimator_checks.check_estimator with
# on_fail=None) and reading each failure's exception; grouped by cause.
_ODD = (
    "X must be [flux | error] with an even number of columns; the check feeds an "
    "odd-width X (3 or 5 features) and the estimator refuses it by design"
)
_NEG_ERROR = (
    "the check's X has negative values in its second half, which is the 1-sigma error "
    "half of [flux | error]; negative errors are refused by design (the estimator does "
    "not claim positive_only: the flux half may be negative, noisy flux often is)"
)
_NONPOS_MEDIAN = (
    "the check's X has rows whose flux median is <= 0, which cannot be "
    "median-normalised; refused by design (the estimator does not claim positive_only: "
    "only the median must be positive)"
)
_ERROR_WEIGHTS = (
    "the check's X has values <= 0 in the error half; the template fit uses 1/error**2 "
    "as chi-square weights and refuses errors <= 0 by design (no silent infinite weight)"
)
_GRID_WIDTH = (
    f"the check's X has 2 or 4 columns (1 or 2 pixels), but the spectral model (a "
    f"test-only {_TINY_N_PIX}-pixel grid, matching the checks' 10-feature regression "
    "data) has another number of pixels; X must match the model, refused by design"
)

_VIT_TINY = (
    "the ViT here is a 2-epoch, 16-wide toy so that this module stays fast; it does not "
    "reach the check's R^2 > 0.5 on the training data (a 20-epoch run passes, in 4 min)"
)

_NOISE_XFAIL = {
    **dict.fromkeys(
        (
            "check_fit_score_takes_y",
            "check_dont_overwrite_parameters",
            "check_estimators_dtypes",
            "check_estimators_nan_inf",
            "check_estimators_pickle",
            "check_f_contiguous_array_estimator",
            "check_transformer_data_not_an_array",
            "check_transformer_general",
            "check_transformer_preserve_dtypes",
            "check_dict_unchanged",
            "check_fit2d_predict1d",
        ),
        _ODD,
    ),
    **dict.fromkeys(
        (
            "check_estimators_overwrite_params",
            "check_estimators_fit_returns_self",
            "check_readonly_memmap_input",
            "check_n_features_in_after_fitting",
            "check_positive_only_tag_during_fit",
        ),
        _NEG_ERROR,
    ),
}

_MEDIAN_XFAIL = {
    **dict.fromkeys(
        (
            "check_fit_score_takes_y",
            "check_dont_overwrite_parameters",
            "check_estimators_dtypes",
            "check_pipeline_consistency",
            "check_estimators_nan_inf",
            "check_estimators_pickle",
            "check_f_contiguous_array_estimator",
            "check_transformer_data_not_an_array",
            "check_transformer_general",
            "check_transformer_preserve_dtypes",
            "check_transformers_unfitted_stateless",
            "check_methods_sample_order_invariance",
            "check_methods_subset_invariance",
            "check_dict_unchanged",
            "check_fit2d_predict1d",
        ),
        _ODD,
    ),
    **dict.fromkeys(
        (
            "check_estimators_overwrite_params",
            "check_estimators_fit_returns_self",
            "check_readonly_memmap_input",
            "check_n_features_in_after_fitting",
            "check_positive_only_tag_during_fit",
        ),
        _NONPOS_MEDIAN,
    ),
}

_TEMPLATE_XFAIL = {
    # the same odd-width checks as the ViT's (a regressor on stacked X)
    **dict.fromkeys(_ODD_WIDTH_CHECKS, _ODD),
    **dict.fromkeys(
        (
            "check_estimators_overwrite_params",
            "check_estimators_fit_returns_self",
            "check_readonly_memmap_input",
            "check_n_features_in_after_fitting",
            "check_regressors_no_decision_function",
            "check_non_transformer_estimators_n_iter",
            "check_fit_idempotent",
            "check_fit_check_is_fitted",
            "check_n_features_in",
            "check_requires_y_none",
        ),
        _GRID_WIDTH,
    ),
    **dict.fromkeys(
        (
            "check_positive_only_tag_during_fit",
            "check_regressors_train",
            "check_regressor_data_not_an_array",
            "check_regressors_int",
        ),
        _ERROR_WEIGHTS,
    ),
}


def _estimators():
    out = [
        HeteroscedasticNoise(random_state=0),
        HeteroscedasticNoise(keep_error=True, noisy_transform=True, random_state=0),
        MedianNormalizer(),
        TemplateFitRegressor(_tiny_grid(), params=("log_g",)),
    ]
    if hasattr(est_module, "SpecViTRegressor"):
        out.append(
            est_module.SpecViTRegressor(
                patch_size=4,
                hidden_size=16,
                depth=1,
                heads=2,
                max_epochs=2,
                noise_level=0,
                device="cpu",
                random_state=0,
            )
        )
    return out


def _expected_failed_checks(estimator) -> dict[str, str]:
    import os

    if os.environ.get("SPECREG_DISCOVER"):
        return {}
    if isinstance(estimator, HeteroscedasticNoise):
        return _NOISE_XFAIL
    if isinstance(estimator, MedianNormalizer):
        return _MEDIAN_XFAIL
    if isinstance(estimator, TemplateFitRegressor):
        return _TEMPLATE_XFAIL
    if type(estimator).__name__ == "SpecViTRegressor":
        from specreg.estimators import _vit

        provider = getattr(_vit, "vit_expected_failed_checks", None)
        expected = dict(provider(estimator)) if provider is not None else {}
        expected.setdefault("check_regressors_train", _VIT_TINY)
        return expected
    return {}


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
