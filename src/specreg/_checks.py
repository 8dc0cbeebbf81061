"""What scikit-learn's common estimator checks ask that ``[flux | error]`` input refuses.

Shared by the estimators' ``_expected_failed_checks`` tables: many checks build an X of 3 or
5 columns, which cannot be split into a flux half and an error half. Kept free of heavy
imports (no torch), so every estimator module may use it.
"""

from __future__ import annotations

__all__ = ["ODD_WIDTH_CHECKS", "ODD_WIDTH_REASON"]

#: Why an estimator on ``X = [flux | error]`` fails a check that feeds it odd-width X.
ODD_WIDTH_REASON = (
    "X must be [flux | error] with an even number of columns; the check feeds an "
    "odd-width X (3 or 5 features) and the estimator refuses it by design"
)

#: The checks that fit or predict on odd-width X (found by running the whole suite on the
#: ViT with noise_level=1 and on the template fit, and reading every exception).
ODD_WIDTH_CHECKS: tuple[str, ...] = (
    "check_fit_score_takes_y",
    "check_dont_overwrite_parameters",
    "check_estimators_dtypes",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_supervised_y_2d",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_dict_unchanged",
    "check_fit2d_predict1d",
)
