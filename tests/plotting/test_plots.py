"""Plot functions return Axes, draw what they claim, and leave pyplot alone."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from specreg.plotting import (
    plot_learning_curve,
    plot_parity,
    plot_r2_vs_snr,
    plot_residuals,
    plot_spectrum,
)


@pytest.fixture
def tables():
    snr = np.array([3.0, 5.0, 8.0, 13.0])
    model = pd.DataFrame(
        {
            "snr": snr,
            "r2": [0.2, 0.4, 0.6, 0.8],
            "r2_lo": [0.1, 0.3, 0.5, 0.7],
            "r2_hi": [0.3, 0.5, 0.7, 0.9],
        }
    )
    ceiling = pd.DataFrame(
        {
            "snr": snr,
            "r2_bayes": [0.3, 0.5, 0.7, 0.9],
            "r2_bayes_mc_err": [0.01] * 4,
            "r2_max_median": [0.0, 0.3, 0.6, 0.85],
            "r2_max_p10": [0.0, 0.0, 0.3, 0.7],
            "r2_max_p90": [0.2, 0.6, 0.8, 0.95],
        }
    )
    return model, ceiling


def test_r2_vs_snr_draws_ceiling_fisher_band_and_models(tables):
    model, ceiling = tables
    n_before = len(plt.get_fignums())
    ax = plot_r2_vs_snr({"vit": model, "lgbm": model.assign(r2=model["r2"] - 0.1)}, ceiling)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Bayes-optimal ceiling" in labels and "vit" in labels and "lgbm" in labels
    assert any("Fisher" in s for s in labels)
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ceiling["r2_bayes"])
    assert len(plt.get_fignums()) == n_before  # no global pyplot figure was created


def test_r2_vs_snr_on_given_axes_without_fisher(tables):
    model, ceiling = tables
    fig, ax = plt.subplots()
    out = plot_r2_vs_snr({"m": model}, ceiling, fisher=False, ax=ax, log_snr=False)
    assert out is ax
    assert not any("Fisher" in t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)


def test_learning_curve_log_axis_and_shape_check():
    ax = plot_learning_curve(
        [1e3, 1e4, 1e5],
        {"a": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], "b": [0.2, 0.3, 0.4]},
        ceiling=0.9,
    )
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.15, 0.35, 0.55])
    with pytest.raises(ValueError, match="rows"):
        plot_learning_curve([1, 2], {"a": [0.1]})


def test_parity_and_residual_envelopes_follow_sqrt_crlb():
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 5, 500)
    crlb = np.full(500, 0.25)
    ax = plot_parity(y, y + rng.normal(0, 0.5, 500), crlb=crlb, bins=5)
    verts = ax.collections[-1].get_paths()[0].vertices
    assert np.ptp(verts[:, 1] - verts[:, 0]) <= 1.0 + 1e-9  # band is x +- 0.5
    ax = plot_residuals(y, y, crlb=crlb, bins=5)
    ylims = [c.get_paths()[0].vertices[:, 1] for c in ax.collections[1:]]
    assert max(np.abs(v).max() for v in ylims) == pytest.approx(1.96 * 0.5)


def test_plot_spectrum_checks_shapes():
    ax = plot_spectrum(np.arange(10.0), np.ones(10), error=np.full(10, 0.1), model=np.ones(10))
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="shape"):
        plot_spectrum(np.arange(10.0), np.ones(9))
