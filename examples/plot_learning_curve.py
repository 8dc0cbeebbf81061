"""
Learning curves: ViT vs LightGBM vs Ridge
==========================================

R² on one fixed test set against the number of training spectra, for three models
that all take the same stacked input ``X = [flux | error]``. The sizes here are tiny so that
the example runs in under a minute on a CPU; ``specreg benchmark --learning-curve`` runs the
same comparison at scale.
"""

import matplotlib.pyplot as plt
import numpy as np

from specreg import SpecViTRegressor
from specreg.datasets import load_grid, make_spectra
from specreg.estimators import make_lightgbm_baseline, make_ridge_baseline
from specreg.plotting import plot_learning_curve
from specreg.spectra import PFSNoiseModel

grid = load_grid()
train = make_spectra(2000, grid=grid, mag=(20.5, 21.0), random_state=0)
test = make_spectra(300, grid=grid, noise="fixed", mag=(20.5, 21.0), random_state=1)
sizes = [250, 500, 1000, 2000]
noise = PFSNoiseModel(grid.wave)  # training noise from the reported errors

models = {
    "Ridge": lambda n: make_ridge_baseline(alpha=3000.0, noise_model=noise, random_state=0),
    "LightGBM": lambda n: make_lightgbm_baseline(
        n_jobs=2,
        n_estimators=80,
        learning_rate=0.1,
        num_leaves=15,
        noise_model=noise,
        random_state=0,
    ),
    "SpecViT (tiny)": lambda n: SpecViTRegressor(
        patch_size=64,
        hidden_size=32,
        depth=1,
        heads=2,
        max_epochs=4,
        noise_model=noise,
        batch_size=64,
        lr=2e-3,
        dropout=0.0,
        device="cpu",
        random_state=0,
    ),
}
r2 = {name: [] for name in models}
for n in sizes:
    for name, make in models.items():
        model = make(n).fit(train.X[:n], train.y[:n])
        pred = model.predict(test.X)
        r2[name].append(1 - np.mean((test.y - pred) ** 2) / np.var(test.y))
print({k: np.round(v, 3).tolist() for k, v in r2.items()})

fig, ax = plt.subplots(figsize=(6, 4.2))
plot_learning_curve(sizes, r2, ax=ax)
fig.tight_layout()
plt.show()
