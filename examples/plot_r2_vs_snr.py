"""
R² against SNR, with the Bayes-optimal ceiling
==============================================

The reference study's main figure, done right: the models and the ceiling
are evaluated on the same test spectra and binned on the same
per-spectrum SNR axis (median of flux/error), with the label variance of
each bin as the R² denominator. The ceiling is the R² of the posterior
mean, which no estimator beats in expectation; the dashed Fisher curve is
the reference's median-of-pointwise Cramér-Rao analysis, which biased
estimators can beat at low SNR.
"""

import matplotlib.pyplot as plt

from specreg import FisherCeiling, TemplateFitRegressor
from specreg.datasets import load_grid, make_spectra
from specreg.estimators import make_ridge_baseline
from specreg.metrics import scores_by_snr, snr_bin_edges
from specreg.spectra import PFSNoiseModel

grid = load_grid()
train = make_spectra(3000, model=grid, random_state=0)
test = make_spectra(300, model=grid, noisy=True, random_state=1)
snr = test.params["snr"].to_numpy()
edges = snr_bin_edges(snr, 4)

# training noise: the process the test noise came from
noise = PFSNoiseModel(grid.wave)
ridge = make_ridge_baseline(alpha=3000.0, noise_model=noise, random_state=0)
ridge.fit(train.X, train.y)
template = TemplateFitRegressor(grid).fit(test.X[:1], test.y[:1])
scores = {}  # R² per SNR bin, with a bootstrap band
for name, model in [("Ridge", ridge), ("template fit", template)]:
    pred = model.predict(test.X)
    scores[name] = scores_by_snr(test.y, pred, snr, bins=edges, random_state=0)

ceiling = FisherCeiling(grid, n_draws=128, random_state=0)
theta = test.params[list(grid.param_names)]  # the true labels
table = ceiling.table_by_snr(test.X, test.y, theta=theta, snr=snr, bins=edges)
columns = ["snr", "r2_bayes", "r2_bayes_mc_err", "r2_max_median"]
print(table[columns + ["r2_population"]].round(3))

# %%
# ``r2_population`` (1 - mean CRLB / variance) is negative in the lowest
# bin: there even an efficient unbiased estimator would do worse than
# predicting the mean label. The posterior mean is biased toward the
# prior, and does far better.
from specreg.plotting import plot_r2_vs_snr

fig, ax = plt.subplots(figsize=(8.4, 4.4))
plot_r2_vs_snr(scores, table, ax=ax)
fig.tight_layout()
plt.show()
