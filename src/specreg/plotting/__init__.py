"""Matplotlib figures; every function takes ``ax=`` and returns the Axes."""

from ._plots import (
    plot_learning_curve,
    plot_parity,
    plot_r2_vs_snr,
    plot_reliability,
    plot_residuals,
    plot_spectrum,
)

__all__ = [
    "plot_learning_curve",
    "plot_parity",
    "plot_r2_vs_snr",
    "plot_reliability",
    "plot_residuals",
    "plot_spectrum",
]
