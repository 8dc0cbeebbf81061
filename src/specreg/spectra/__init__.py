"""Spectral models: grids with interpolation, noise models and label priors."""

from ._grid import SpectralGrid
from ._noise import REFERENCE_SNR_TABLE, PFSNoiseModel, pfs_mr_wave, snr_median
from ._prior import LabelPrior
from ._protocol import SpectralModel
from ._response_grid import ResponseGrid
from ._validation import split_stacked

__all__ = [
    "REFERENCE_SNR_TABLE",
    "LabelPrior",
    "PFSNoiseModel",
    "ResponseGrid",
    "SpectralGrid",
    "SpectralModel",
    "pfs_mr_wave",
    "snr_median",
    "split_stacked",
]
