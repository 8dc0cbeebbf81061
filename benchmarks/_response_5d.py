"""The 5-D model for the benchmarks: the embedded one, or the real 3-D grid times a fake response.

The fake response lives on the real design axes (`specreg.grids._response.RESPONSE_AXES`)
and is realistic in size: ratios of about 0.9 to 1.1 that vary smoothly with all five
labels, plus a few hundred pixels of strong "alpha" and "carbon" lines (ratios down to
~0.7), so the posterior is informative in [alpha/M] and [C/M] at the benchmark's SNR.
"""

from __future__ import annotations

import numpy as np


def _line_profile(wave: np.ndarray, rng, n_lines: int, depth: tuple) -> np.ndarray:
    """A sum of Gaussian lines (about 1 Å wide) at random positions, shape (n_pix,)."""
    centres = rng.uniform(wave[0], wave[-1], n_lines)
    depths = rng.uniform(*depth, n_lines)
    prof = np.zeros_like(wave)
    for c, d in zip(centres, depths):
        prof += d * np.exp(-0.5 * ((wave - c) / 1.0) ** 2)
    return prof


def fake_response_model(base=None, seed: int = 0):
    """``ResponseGrid`` of the real 3-D grid and a smooth fake response, normalised.

    Parameters
    ----------
    base : SpectralGrid, optional
        The 3-D grid, not normalised (default ``load_grid(normalize=False)``).
    seed : int, default=0
        Seed of the line positions.

    Returns
    -------
    ResponseGrid
        Normalised like ``load_grid("5d")``.
    """
    from specreg.datasets import load_grid
    from specreg.grids._response import RESPONSE_AXES
    from specreg.spectra import ResponseGrid

    base = load_grid(normalize=False) if base is None else base
    rng = np.random.default_rng(seed)
    wave = base.wave
    # per-pixel sensitivities: a weak broad-band term and strong lines
    alpha = 0.04 + _line_profile(wave, rng, 120, (0.1, 0.9))
    carbon = 0.03 * np.sin(wave / 37.0) ** 2 + _line_profile(wave, rng, 80, (0.05, 0.5))
    axes = {k: np.asarray(v, float) for k, v in RESPONSE_AXES.items()}
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    t, g, m, a, c = (x[..., None] for x in mesh)
    tt = (t - 5000.0) / 1000.0
    gg = (g - 3.0) / 2.0
    mm = (m + 0.875) / 1.625
    # line strengths grow with metallicity and fall with temperature; [C/M] acts mostly
    # in cool giants (molecular bands); a small cross term couples the two labels
    s_alpha = 0.6 * (1.0 - 0.3 * tt) * (0.6 + 0.4 * mm) * (1.0 - 0.1 * gg)
    s_carbon = 0.4 * (1.0 - 0.4 * tt) * (0.7 + 0.3 * mm) * (1.0 - 0.2 * gg)
    log_ratio = -(a * s_alpha * alpha + c * s_carbon * carbon + 0.2 * a * c * alpha * carbon)
    ratio = np.exp(log_ratio).astype(np.float32)
    cont = None
    if base.node_continuum is not None:
        # the continuum responds ~10x less than the lines (as in the real synthesis)
        cont = np.exp(0.1 * log_ratio.mean(axis=-1, keepdims=True) * np.ones_like(log_ratio))
        cont = cont.astype(np.float32)
    model = ResponseGrid(
        base, axes, ratio, continuum_ratio=cont, metadata={"name": "3-D grid x fake response"}
    )
    return model.normalized()


def benchmark_5d_model():
    """(model, description): the embedded 5-D model, or the real 3-D grid x a fake response."""
    from specreg.datasets import load_grid

    try:
        return load_grid("5d"), "embedded 5-D model (3-D grid x Turbospectrum response)"
    except FileNotFoundError:
        pass
    return fake_response_model(), (
        "real 3-D grid x a fake smooth response on the real design axes "
        "(embedded 5-D response absent)"
    )
