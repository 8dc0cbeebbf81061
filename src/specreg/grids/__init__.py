"""Building spectral grids: Turbospectrum + MARCS builder and BOSZ readers.

Importing this package is cheap and side-effect free: the external tools are
downloaded and compiled only when `provision` or `build_grid` is called.
"""

from .._lazy import lazy_attributes

# public name -> the module that defines it, imported on first use (PEP 562) so that
# the `specreg` command's help and argument errors do not wait for scipy and pandas
_LAZY = {
    "assemble_grid": "._assemble",
    "parse_bosz_name": "._bosz",
    "read_bosz_directory": "._bosz",
    "read_bosz_file": "._bosz",
    "BuildReport": "._builder",
    "NodePlan": "._builder",
    "build_grid": "._builder",
    "node_filename": "._builder",
    "pending_nodes": "._builder",
    "plan_grid": "._builder",
    "plan_node": "._builder",
    "convolve_constant_r": "._lsf",
    "degrade_to_grid": "._lsf",
    "resample_linear": "._lsf",
    "default_cache_dir": "._provision",
    "provision": "._provision",
    "CAT_LINES": "._validate",
    "NA_LINES": "._validate",
    "equivalent_width": "._validate",
    "leave_one_out_errors": "._validate",
    "line_depth": "._validate",
}

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
