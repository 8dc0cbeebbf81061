"""Per-SNR scores on the per-spectrum SNR axis, bootstrap bands and efficiencies."""

from ._snr import (
    REFERENCE_SNR_EDGES,
    assign_snr_bins,
    efficiency_by_snr,
    regression_scores,
    scores_by_snr,
    snr_bin_edges,
    snr_from_X,
)

__all__ = [
    "REFERENCE_SNR_EDGES",
    "assign_snr_bins",
    "efficiency_by_snr",
    "regression_scores",
    "scores_by_snr",
    "snr_bin_edges",
    "snr_from_X",
]
