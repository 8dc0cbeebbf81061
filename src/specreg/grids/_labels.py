"""The label names of specreg's grids, in one place.

Kept free of imports, so that the ``specreg`` command can name its label options from
it without loading numpy.
"""

from __future__ import annotations

__all__ = ["PARAM_NAMES"]

#: The labels of every grid specreg builds or reads, in node order: the order of
#: `node_filename`'s and `plan_node`'s parameters and of the grid axes.
PARAM_NAMES = ("T_eff", "log_g", "M_H", "a_M", "C_M")
