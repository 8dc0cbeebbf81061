"""Plot functions return Axes, draw what they claim, and leave pyplot alone."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from specreg.metrics import reliability_curve
from specreg.plotting import (
    plot_learning_curve,
    plot_parity,
    plot_r2_vs_snr,
    plot_reliability,
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


def _render(fig):
    """Draw a figure the plot functions made (a bare Figure) and return its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_r2_vs_snr_ticks_are_plain_snr_values(tables):
    model, ceiling = tables
    ax = plot_r2_vs_snr({"m": model}, ceiling)
    _render(ax.figure)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["3", "4", "5", "7", "10"]  # the data span SNR 3-13
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    # a long range (the ceiling per magnitude, SNR 2-90) gets the coarse set
    wide = ceiling.assign(snr=[2.0, 8.0, 30.0, 90.0])
    ax = plot_r2_vs_snr(None, wide)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "5", "10", "20", "50", "100"]


def test_r2_vs_snr_legend_beside_the_axes_or_inside_or_none(tables):
    model, ceiling = tables
    ax = plot_r2_vs_snr({"m": model}, ceiling)
    renderer = _render(ax.figure)
    box = ax.get_legend().get_window_extent(renderer)
    assert box.x0 >= ax.get_window_extent(renderer).x1  # right of the axes: hides nothing
    assert box.x1 <= ax.figure.bbox.x1 + 1  # and still inside the figure
    ax = plot_r2_vs_snr({"m": model}, ceiling, legend="lower right")
    inside = ax.get_legend().get_window_extent(_render(ax.figure))
    assert ax.get_window_extent().contains(inside.x0 + 1, inside.y0 + 1)
    assert plot_r2_vs_snr({"m": model}, ceiling, legend=None).get_legend() is None


def test_learning_curve_log_axis_and_shape_check():
    ax = plot_learning_curve(
        [1e3, 1e4, 1e5],
        {"a": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], "b": [0.2, 0.3, 0.4]},
        ceiling=0.9,
    )
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1,000", "10k", "100k"]
    assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
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


@pytest.mark.parametrize("plot", [plot_parity, plot_residuals])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_pred": np.ones(4)}, "one length"),
        ({"y_pred": [1.0, np.nan, 3.0]}, "finite"),
        ({"crlb": [0.1, 0.2]}, "shape of y_true"),
        ({"crlb": [0.1, -0.2, 0.3]}, "variances"),
        ({"bins": 0}, "bins"),
    ],
)
def test_parity_and_residuals_refuse_bad_input(plot, kwargs, message):
    args = {"y_true": [1.0, 2.0, 3.0], "y_pred": [1.1, 2.0, 2.9], **kwargs}
    with pytest.raises(ValueError, match=message):
        plot(args.pop("y_true"), args.pop("y_pred"), **args)
    plt.close("all")


def test_plot_spectrum_checks_shapes():
    ax = plot_spectrum(np.arange(10.0), np.ones(10), error=np.full(10, 0.1), model=np.ones(10))
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="shape"):
        plot_spectrum(np.arange(10.0), np.ones(9))
    # a wrong-length error or model used to fail inside numpy or matplotlib
    with pytest.raises(ValueError, match=r"error has shape \(3,\); wave has \(10,\)"):
        plot_spectrum(np.arange(10.0), np.ones(10), error=np.ones(3))
    with pytest.raises(ValueError, match=r"model has shape \(9,\)"):
        plot_spectrum(np.arange(10.0), np.ones(10), model=np.ones(9))
    with pytest.raises(ValueError, match="every value must be >= 0"):
        plot_spectrum(np.arange(10.0), np.ones(10), error=np.full(10, -1.0))


def test_r2_vs_snr_and_learning_curve_check_their_options(tables):
    model, ceiling = tables
    with pytest.raises(ValueError, match="legend must be 'outside', None or a matplotlib"):
        plot_r2_vs_snr({"m": model}, ceiling, legend="bogus")
    with pytest.raises(ValueError, match="scores must be a dict"):
        plot_r2_vs_snr([model], ceiling)
    with pytest.raises(ValueError, match="ceiling must be a finite number"):
        plot_learning_curve([1, 2], {"a": [0.1, 0.2]}, ceiling=np.nan)
    with pytest.raises(ValueError, match="train_sizes must be one or more sizes > 0"):
        plot_learning_curve([0, 2], {"a": [0.1, 0.2]})


@pytest.fixture
def curve():
    rng = np.random.default_rng(0)
    snr = rng.uniform(3, 30, 3000)
    y_std = 1.0 / snr
    return reliability_curve(rng.standard_normal(3000) * y_std, np.zeros(3000), y_std, snr)


def test_reliability_draws_one_line_per_bin_the_diagonal_and_the_band(curve):
    n_before = len(plt.get_fignums())
    ax = plot_reliability(curve, label="vit")
    lines = ax.get_lines()
    assert len(lines) == 4 + 1  # 4 SNR bins and the diagonal
    diagonal = [ln for ln in lines if ln.get_label() == "calibrated"]
    assert len(diagonal) == 1
    np.testing.assert_allclose(diagonal[0].get_xdata(), [0, 1])
    np.testing.assert_allclose(diagonal[0].get_ydata(), [0, 1])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    first = curve.iloc[0]
    assert f"vit, SNR {first['snr_lo']:.3g}-{first['snr_hi']:.3g}" in labels
    assert sum(s.startswith("vit, SNR ") for s in labels) == 4
    binned = [ln for ln in lines if ln.get_label().startswith("vit")]
    g = curve[curve["snr_lo"] == first["snr_lo"]].sort_values("level")
    np.testing.assert_allclose(binned[0].get_xdata(), g["level"])
    np.testing.assert_allclose(binned[0].get_ydata(), g["coverage"])
    # the band: +-2 binomial SE of the smallest bin around the diagonal
    assert len(ax.collections) == 1
    verts = ax.collections[0].get_paths()[0].vertices
    half = np.abs(verts[:, 1] - verts[:, 0]).max()
    assert half == pytest.approx(2 * np.sqrt(0.25 / curve["n"].min()), rel=1e-3)
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlabel() == "nominal coverage" and ax.get_ylabel() == "empirical coverage"
    assert len(plt.get_fignums()) == n_before


def test_reliability_on_given_axes_single_bin_without_band():
    rng = np.random.default_rng(1)
    c = reliability_curve(rng.standard_normal(500), np.zeros(500), np.ones(500))
    fig, ax = plt.subplots()
    out = plot_reliability(c, ax=ax, band=False)
    assert out is ax
    assert len(ax.get_lines()) == 2 and not ax.collections
    assert "all spectra" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_reliability_skips_empty_bins_and_checks_columns():
    y = np.zeros(4)
    c = reliability_curve(y, y, np.ones(4), [3.0, 4.0, 5.0, 6.0], bins=[2, 5.5, 8, 10])
    ax = plot_reliability(c, label="m")
    assert len(ax.get_lines()) == 2 + 1  # the empty bin 8-10 draws nothing
    with pytest.raises(ValueError, match="coverage"):
        plot_reliability(c.drop(columns="coverage"))
