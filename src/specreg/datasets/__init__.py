"""Spectra sets: generation, HDF5 I/O (own format, pfsspec, shards) and the grids."""

from ._grid_io import load_grid, save_grid
from ._io import ShardedSpectra, read_pfsspec, read_spectra, write_shards, write_spectra
from ._spectra import Spectra, iter_spectra, make_spectra

__all__ = [
    "ShardedSpectra",
    "Spectra",
    "iter_spectra",
    "load_grid",
    "make_spectra",
    "read_pfsspec",
    "read_spectra",
    "save_grid",
    "write_shards",
    "write_spectra",
]
