"""
Quick start: spectra, a baseline and its score
==============================================

Simulate PFS-like spectra from the embedded Turbospectrum + MARCS grid,
train the reference study's Ridge baseline and score it on a test set that
carries one fixed noise draw. The baseline draws fresh noise on the
noiseless training flux, scales the pixels and fits a ridge regression
with ``alpha = 3000``, which suits a few thousand training spectra (the
reference's ``1e5`` was tuned for a million).
"""

import matplotlib.pyplot as plt
import numpy as np

from specreg.datasets import load_grid, make_spectra
from specreg.estimators import make_ridge_baseline
from specreg.plotting import plot_parity, plot_spectrum
from specreg.spectra import PFSNoiseModel

grid = load_grid()
print(grid)

# noiseless flux and reported errors; the test set gets one noise draw
train = make_spectra(4000, model=grid, random_state=0)
test = make_spectra(500, model=grid, noisy=True, random_state=1)
print(train)
print(test.params.describe().loc[["min", "50%", "max"]].round(2))

# %%
# ``X = [flux | error]``: the error half is what a pipeline reports (it
# depends on the magnitude only, never on the star's spectrum). The
# pipeline's first step adds the noise model's physical noise to the flux
# when fitting, and passes the (already noisy) test flux through when
# predicting.
noise = PFSNoiseModel(grid.wave)
model = make_ridge_baseline(alpha=3000.0, noise_model=noise, random_state=0)
model.fit(train.X, train.y)
y_pred = model.predict(test.X)
r2 = 1 - np.mean((test.y - y_pred) ** 2) / np.var(test.y)
print(f"Ridge R2 on log g: {r2:.3f}")

# %%
# The brightest test spectrum, with its noiseless model, and the parity
# plot of all 500. At the faint end (SNR 3) the noise hides the lines.
i = int(test.params["snr"].to_numpy().argmax())
star = test.params.iloc[i]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=[1.8, 1])
plot_spectrum(
    test.wave,
    test.noisy[i],
    error=test.error[i],
    model=test.flux[i],
    ax=axes[0],
)
axes[0].set_title(
    f"T_eff = {star['T_eff']:.0f} K, log g = {star['log_g']:.2f}, "
    f"[M/H] = {star['M_H']:.2f}, SNR = {star['snr']:.1f}",
    fontsize=10,
)
plot_parity(test.y, y_pred, ax=axes[1], label="Ridge")
fig.tight_layout()
plt.show()
