"""
The embedded grid: gravity-sensitive lines
==========================================

The Ca II triplet (8498, 8542, 8662 Å) is stronger in giants and the Na I
doublet (8183, 8195 Å) in dwarfs, where its pressure-broadened wings
grow. Here are node spectra of the embedded grid at T_eff = 4500 K,
[M/H] = 0, for several log g, normalised to their continuum.
"""

import matplotlib.pyplot as plt
import numpy as np

from specreg.datasets import load_grid

grid = load_grid(normalize=False)
for citation in grid.metadata.get("citations", []):
    print(citation)

log_gs = [1.0, 2.0, 3.0, 4.0, 5.0]
theta = np.array([[4500.0, g, 0.0] for g in log_gs])
flux = grid.flux(theta) / grid.continuum(theta)
colors = plt.cm.viridis(np.linspace(0, 0.9, len(log_gs)))

fig, axes = plt.subplots(
    1, 2, figsize=(11, 4), width_ratios=[1.6, 1], sharey=True
)
for f, g, c in zip(flux, log_gs, colors):
    for ax in axes:
        ax.plot(grid.wave, f, color=c, lw=1, label=f"log g = {g:.0f}")
axes[0].set_xlim(8480, 8680)
axes[0].set_title("Ca II triplet")
axes[1].set_xlim(8170, 8210)
axes[1].set_title("Na I doublet")
for ax in axes:
    ax.set_xlabel("wavelength [Å]")
axes[0].set_ylabel("flux / continuum")
axes[0].legend(loc="lower left", fontsize=8)
fig.tight_layout()
plt.show()
