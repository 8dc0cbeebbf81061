"""Noise-limited ceilings: Fisher information / CRLB and the Bayes-optimal posterior mean.

See the user guide (``docs/user_guide/bounds.rst``) for which ceiling to quote:
the Bayes-optimal R2 (:class:`FisherCeiling`, aggregation ``"bayes"``) is the
one no estimator can beat; the Fisher aggregations explain it.
"""

from ._bayes import QUANTILE_LEVELS, PosteriorSummary, posterior_summary, split_X
from ._ceiling import AGGREGATIONS, FisherCeiling, summarise_ceiling
from ._estimator import BayesCeilingRegressor
from ._fisher import (
    aggregate_r2_max,
    condition_number,
    crlb_dynamic_range,
    fisher_matrices,
    fisher_matrix,
    marginal_crlb,
    r2_max,
    schur_decay,
    van_trees_bound,
)

__all__ = [
    "AGGREGATIONS",
    "QUANTILE_LEVELS",
    "BayesCeilingRegressor",
    "FisherCeiling",
    "summarise_ceiling",
    "PosteriorSummary",
    "aggregate_r2_max",
    "condition_number",
    "crlb_dynamic_range",
    "fisher_matrices",
    "fisher_matrix",
    "marginal_crlb",
    "posterior_summary",
    "r2_max",
    "schur_decay",
    "split_X",
    "van_trees_bound",
]
