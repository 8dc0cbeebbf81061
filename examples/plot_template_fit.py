"""
Template fitting with formal uncertainties
==========================================

:class:`~specreg.TemplateFitRegressor` fits every spectrum against the
grid by maximum likelihood: a coarse chi-square over all nodes (matrix
products), then a vectorised Levenberg-Marquardt refinement with the
grid's exact Jacobian. The amplitude is solved analytically; the error
half of ``X`` gives the weights.
"""

import matplotlib.pyplot as plt
import numpy as np

from specreg import TemplateFitRegressor
from specreg.datasets import load_grid, make_spectra

grid = load_grid()
test = make_spectra(
    300, model=grid, noisy=True, mag=(20.5, 22.5), random_state=3
)

# fitting learns nothing: fit() only checks the data
fit = TemplateFitRegressor(grid).fit(test.X[:1], test.y[:1])
labels = fit.predict_params(test.X)
print(labels.head())

# %%
# Fitted log g against the truth, with the formal (inverse-Hessian)
# errors. The fit never leaves the grid's box, log g 1-5; at low SNR the
# formal error can be larger than the box itself.
lo, hi = grid.bounds["log_g"]
fig, ax = plt.subplots(figsize=(5, 4.5))
ax.errorbar(
    test.y,
    labels["log_g"],
    yerr=labels["log_g_err"],
    fmt=".",
    alpha=0.5,
    ms=3,
    elinewidth=0.8,
)
ax.plot([lo, hi], [lo, hi], "k--", lw=1)
ax.set_xlim(lo - 0.2, hi + 0.2)
ax.set_ylim(lo - 0.7, hi + 0.7)
ax.set_xlabel("true log g")
ax.set_ylabel("fitted log g")
r2 = 1 - np.mean((labels["log_g"] - test.y) ** 2) / np.var(test.y)
ax.set_title(f"template fit, R2 = {r2:.2f}")
fig.tight_layout()
plt.show()
