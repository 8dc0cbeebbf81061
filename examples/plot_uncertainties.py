"""
Error bars you can trust: calibration against the exact posterior
=================================================================

Every label needs its error bar. The template fit and the Bayes estimator
return one per star with ``predict(X, return_std=True)``, for T_eff,
log g and [M/H] at once. On simulated spectra the exact posterior is
known, so the error bars can be checked: a calibrated 1-sigma interval
contains the true label 68 % of the time, at every SNR.
"""

import matplotlib.pyplot as plt
import numpy as np

from specreg import TemplateFitRegressor
from specreg.bounds import BayesCeilingRegressor
from specreg.datasets import load_grid, make_spectra
from specreg.metrics import calibration_by_snr, reliability_curve
from specreg.plotting import plot_reliability
from specreg.spectra import PFSNoiseModel

grid = load_grid()
labels = ("T_eff", "log_g", "M_H")
test = make_spectra(600, model=grid, noisy=True, random_state=7)
truth = test.params[list(labels)]
snr = test.params["snr"]

# %%
# One joint fit gives all three labels and their uncertainties; the Bayes
# estimator (the posterior mean) gives the smallest error bars any honest
# estimator can give.
noise = PFSNoiseModel(grid.wave)
fit = TemplateFitRegressor(grid, target=labels, noise_model=noise)
fit.fit(test.X, truth)
mean, std = fit.predict(test.X, return_std=True)
bayes = BayesCeilingRegressor(grid, target=labels, random_state=0)
bayes.fit(test.X)
post_mean, post_std = bayes.predict(test.X, return_std=True)

g = labels.index("log_g")
table = calibration_by_snr(
    truth["log_g"], mean[:, g], std[:, g], snr, bins=3,
    posterior_std=post_std[:, g],
)  # fmt: skip
columns = ["snr", "n", "coverage_68", "coverage_95", "z_std"]
print(table[columns + ["std_ratio_median"]])

# %%
# Reliability diagrams for log g: the fraction of true labels inside the
# central interval of each nominal level, one curve per SNR bin.
# Calibrated estimates lie on the diagonal, inside the band of +-2
# binomial standard errors.
fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), sharey=True)
estimates = [("template fit", mean, std), ("posterior", post_mean, post_std)]
for ax, (name, m, s) in zip(axes, estimates):
    curve = reliability_curve(truth["log_g"], m[:, g], s[:, g], snr, bins=3)
    plot_reliability(curve, ax=ax)
    ax.set_title(f"{name}: log g")
fig.tight_layout()
plt.show()

# %%
# The error bars follow the noise: they shrink with SNR, and the template
# fit's stay close to the posterior's (the ratio is the price of a point
# estimate that is not the posterior mean).
fig, ax = plt.subplots(figsize=(5.2, 4.0))
ax.scatter(snr, std[:, g], s=6, alpha=0.5, label="template fit")
ax.scatter(snr, post_std[:, g], s=6, alpha=0.5, label="posterior")
ax.set_xscale("log")
ax.set_xlabel("SNR (median flux / error)")
ax.set_ylabel("1-sigma uncertainty of log g (dex)")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Spectra the grid cannot describe: ``fit_z`` is about N(0, 1) when the
# grid fits, and ``out_of_model`` flags ``fit_z > 5``.
result = fit.predict_params(test.X)
z = result["fit_z"]
print("flagged:", int(result["out_of_model"].sum()), "of", len(result))
print("fit_z mean and std:", np.round([z.mean(), z.std()], 2))
