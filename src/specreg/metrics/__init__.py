"""Per-SNR scores on the per-spectrum SNR axis, bootstrap bands and efficiencies;
calibration of predictive uncertainties; the error-leakage diagnostic."""

from ._calibration import (
    calibration_by_snr,
    calibration_scores,
    reliability_curve,
    std_ratio,
)
from ._leakage import (
    DEFAULT_LEAKAGE_ALPHAS,
    LEAKAGE_MARGIN,
    LEAKAGE_MIN_R2,
    ErrorLeakageReport,
    ErrorLeakageWarning,
    error_leakage,
)
from ._snr import (
    REFERENCE_SNR_EDGES,
    assign_snr_bins,
    compare_to_ceiling,
    efficiency_by_snr,
    regression_scores,
    scores_by_snr,
    snr_bin_edges,
    snr_from_X,
)

__all__ = [
    "DEFAULT_LEAKAGE_ALPHAS",
    "LEAKAGE_MARGIN",
    "LEAKAGE_MIN_R2",
    "REFERENCE_SNR_EDGES",
    "ErrorLeakageReport",
    "ErrorLeakageWarning",
    "assign_snr_bins",
    "calibration_by_snr",
    "calibration_scores",
    "compare_to_ceiling",
    "efficiency_by_snr",
    "error_leakage",
    "regression_scores",
    "reliability_curve",
    "scores_by_snr",
    "snr_bin_edges",
    "snr_from_X",
    "std_ratio",
]
