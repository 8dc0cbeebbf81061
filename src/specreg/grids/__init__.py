"""Building spectral grids: Turbospectrum + MARCS builder and BOSZ readers.

Importing this package is cheap and side-effect free: the external tools are
downloaded and compiled only when `provision` or `build_grid` is called.
"""

from ._assemble import assemble_grid
from ._bosz import parse_bosz_name, read_bosz_directory, read_bosz_file
from ._builder import (
    BuildReport,
    NodePlan,
    build_grid,
    node_filename,
    pending_nodes,
    plan_grid,
    plan_node,
)
from ._lsf import convolve_constant_r, degrade_to_grid, resample_linear
from ._provision import default_cache_dir, provision
from ._validate import (
    CAT_LINES,
    NA_LINES,
    equivalent_width,
    leave_one_out_errors,
    line_depth,
)

__all__ = [
    "CAT_LINES",
    "NA_LINES",
    "BuildReport",
    "NodePlan",
    "assemble_grid",
    "build_grid",
    "convolve_constant_r",
    "default_cache_dir",
    "degrade_to_grid",
    "equivalent_width",
    "leave_one_out_errors",
    "line_depth",
    "node_filename",
    "parse_bosz_name",
    "pending_nodes",
    "plan_grid",
    "plan_node",
    "provision",
    "read_bosz_directory",
    "read_bosz_file",
    "resample_linear",
]
