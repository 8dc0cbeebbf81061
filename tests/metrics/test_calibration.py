"""Calibration scores: coverage, z moments, PIT, per-SNR tables, std ratios, reliability."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from specreg.metrics import (
    assign_snr_bins,
    calibration_by_snr,
    calibration_scores,
    reliability_curve,
    snr_bin_edges,
    std_ratio,
)

N = 40_000


@pytest.fixture
def gaussian():
    """A calibrated Gaussian model: y = mu + sigma * N(0, 1), sigma shrinking with SNR."""
    rng = np.random.default_rng(12345)
    snr = rng.lognormal(np.log(8), 0.5, N)
    mu = rng.uniform(1, 5, N)
    sigma = 2.0 / snr
    y = mu + sigma * rng.standard_normal(N)
    return y, mu, sigma, snr


def test_calibrated_model_covers_at_the_nominal_levels(gaussian):
    y, mu, sigma, _ = gaussian
    s = calibration_scores(y, mu, sigma)
    assert s["n"] == N
    for level, key in ((0.68, "coverage_68"), (0.95, "coverage_95")):
        se = np.sqrt(level * (1 - level) / N)
        assert s[f"{key}_se"] == pytest.approx(se)
        assert abs(s[key] - level) < 3 * se
    assert abs(s["z_mean"]) < 3 / np.sqrt(N)
    assert s["z_std"] == pytest.approx(1.0, abs=0.02)
    assert len(s["pit_hist"]) == 10
    # multinomial bin densities: sd sqrt(0.9 * 10 / N) ~ 0.015
    np.testing.assert_allclose(s["pit_hist"], 1.0, atol=0.06)
    assert np.mean(s["pit_hist"]) == pytest.approx(1.0)
    assert s["pit_ks"] < 1.63 / np.sqrt(N)  # the KS 1 % critical value
    assert s["mean_std"] == pytest.approx(np.mean(sigma))
    assert s["rmse"] == pytest.approx(np.sqrt(np.mean((mu - y) ** 2)))
    assert all(isinstance(v, float) for k, v in s.items() if k not in ("n", "pit_hist"))


def test_over_confident_model_under_covers(gaussian):
    y, mu, sigma, _ = gaussian
    s = calibration_scores(y, mu, sigma / 2)
    # |z| <= Phi^-1(0.84) = 0.994 on the halved std is |N(0, 1)| <= 0.497: 0.381
    assert s["coverage_68"] == pytest.approx(2 * norm.cdf(0.994458 / 2) - 1, abs=0.01)
    assert s["coverage_68"] == pytest.approx(0.38, abs=0.01)
    assert s["z_std"] == pytest.approx(2.0, abs=0.04)
    assert s["pit_ks"] > 0.1
    assert s["pit_hist"][0] > 2 and s["pit_hist"][-1] > 2  # U-shaped PIT
    wide = calibration_scores(y, mu, sigma * 2)  # under-confident: hump-shaped PIT
    assert wide["coverage_68"] > 0.9 and wide["z_std"] == pytest.approx(0.5, abs=0.01)
    assert wide["pit_hist"][0] < 0.5 and max(wide["pit_hist"]) > 1.2


def test_pit_path_equals_gaussian_path(gaussian):
    y, mu, sigma, _ = gaussian
    g = calibration_scores(y, mu, sigma, levels=(0.5, 0.68, 0.9, 0.95), n_pit_bins=7)
    pit = norm.cdf((y - mu) / sigma)
    p = calibration_scores(y, pit=pit, levels=(0.5, 0.68, 0.9, 0.95), n_pit_bins=7)
    for key in ("coverage_50", "coverage_68", "coverage_90", "coverage_95", "pit_ks"):
        assert p[key] == pytest.approx(g[key], abs=1.0 / N)
    np.testing.assert_allclose(p["pit_hist"], g["pit_hist"], atol=7 / N)
    assert p["n"] == g["n"]
    # pit alone gives no z, std or rmse
    assert {"z_mean", "z_std", "mean_std", "rmse"}.isdisjoint(p)
    # pit with the Gaussian: pit for coverage, y_pred / y_std for z and rmse
    both = calibration_scores(y, mu, sigma, pit=np.full(N, 0.5))
    assert both["coverage_68"] == 1.0 and both["pit_ks"] == pytest.approx(0.5)
    assert both["z_std"] == pytest.approx(g["z_std"]) and both["rmse"] == g["rmse"]


def test_level_keys_and_small_inputs():
    s = calibration_scores([0.0, 1.0], [0.0, 0.0], [1.0, 1.0], levels=[0.5, 0.999])
    assert {"coverage_50", "coverage_50_se", "coverage_100", "coverage_100_se"} <= set(s)
    assert s["coverage_50"] == 0.5 and s["coverage_100"] == 1.0
    assert s["coverage_50_se"] == pytest.approx(np.sqrt(0.25 / 2))
    assert calibration_scores([1.0], [1.0], [0.1])["z_std"] == 0.0  # NaN-free at n = 1
    one = calibration_scores([1.0, 2.0], pit=[0.05, 0.5], n_pit_bins=2, levels=0.68)
    assert one["pit_hist"] == [1.0, 1.0] and one["coverage_68"] == 0.5
    assert one["pit_ks"] == pytest.approx(0.5)  # ECDF 1 at u = 0.5


def test_std_ratio_numbers():
    r = std_ratio([1.0, 2.0, 4.0, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    ratio = np.array([1.0, 2.0, 4.0, 0.5, 1.0])
    assert r["median"] == 1.0
    assert r["q16"] == pytest.approx(np.quantile(ratio, 0.16))
    assert r["q84"] == pytest.approx(np.quantile(ratio, 0.84))
    assert r["mean_log_ratio"] == pytest.approx(np.mean(np.log(ratio)))
    assert set(r) == {"median", "q16", "q84", "mean_log_ratio"}
    same = std_ratio([0.3, 0.2], [0.3, 0.2])
    assert same["median"] == pytest.approx(1.0) and same["mean_log_ratio"] == pytest.approx(0)


def test_calibration_by_snr_bins_match_calibration_scores(gaussian):
    y, mu, sigma, snr = gaussian
    post = sigma * np.exp(np.random.default_rng(1).normal(0, 0.1, N))
    table = calibration_by_snr(y, mu, sigma, snr, bins=4, posterior_std=post)
    assert isinstance(table, pd.DataFrame) and len(table) == 4
    assert list(table.columns[:4]) == ["snr_lo", "snr_hi", "snr", "n"]
    assert "pit_hist" not in table
    assert table["n"].sum() == N
    edges = snr_bin_edges(snr, 4)
    idx = assign_snr_bins(snr, edges)
    np.testing.assert_allclose(table["snr_lo"], edges[:-1])
    np.testing.assert_allclose(table["snr_hi"], edges[1:])
    for b in range(4):
        sel = idx == b
        ref = calibration_scores(y[sel], mu[sel], sigma[sel])
        for key in ("n", "coverage_68", "coverage_68_se", "coverage_95", "z_std", "rmse"):
            assert table[key][b] == pytest.approx(ref[key])
        assert table["snr"][b] == pytest.approx(np.median(snr[sel]))
        r = std_ratio(sigma[sel], post[sel])
        assert table["std_ratio_median"][b] == pytest.approx(r["median"])
        assert table["std_ratio_q16"][b] == pytest.approx(r["q16"])
        assert table["std_ratio_q84"][b] == pytest.approx(r["q84"])
        assert table["std_ratio_q16"][b] < 1 < table["std_ratio_q84"][b]
        assert abs(table["coverage_68"][b] - 0.68) < 3 * table["coverage_68_se"][b]
    assert table["mean_std"].is_monotonic_decreasing  # sigma = 2 / snr


def test_calibration_by_snr_fixed_edges_keep_empty_bins():
    y = np.zeros(6)
    table = calibration_by_snr(
        y, pit=np.linspace(0.1, 0.9, 6), snr=[3, 4, 5, 6, 7, 50], bins=[2, 5.5, 8, 10]
    )
    assert table["n"].tolist() == [3, 2, 0]  # SNR 50 lies outside the edges
    assert table.loc[2, ["snr", "coverage_68", "pit_ks"]].isna().all()
    assert "z_std" not in table and "std_ratio_median" not in table
    assert table["n"].dtype.kind == "i"


def test_reliability_curve_of_calibrated_model_lies_on_the_diagonal(gaussian):
    y, mu, sigma, snr = gaussian
    curve = reliability_curve(y, mu, sigma, snr, bins=3)
    assert list(curve.columns) == [
        "snr_lo",
        "snr_hi",
        "snr",
        "level",
        "coverage",
        "coverage_se",
        "n",
    ]
    assert len(curve) == 3 * 19
    np.testing.assert_allclose(np.unique(curve["level"]), np.linspace(0.05, 0.95, 19))
    assert (np.abs(curve["coverage"] - curve["level"]) < 4 * curve["coverage_se"]).all()
    se = np.sqrt(curve["level"] * (1 - curve["level"]) / curve["n"])
    np.testing.assert_allclose(curve["coverage_se"], se)
    assert curve.groupby("snr_lo")["n"].first().sum() == N
    # coverage at 0.68 is calibration_scores' coverage_68
    one = reliability_curve(y, mu, sigma, levels=[0.68])
    assert len(one) == 1 and one[["snr_lo", "snr_hi", "snr"]].isna().all(axis=None)
    assert one["coverage"][0] == calibration_scores(y, mu, sigma)["coverage_68"]
    assert one["n"][0] == N
    # over-confident: below the diagonal everywhere
    low = reliability_curve(y, mu, sigma / 2, snr, bins=2)
    assert (low["coverage"] < low["level"]).all()
    # PIT input gives the same curve
    pit = reliability_curve(y, snr=snr, pit=norm.cdf((y - mu) / sigma), bins=3)
    np.testing.assert_allclose(pit["coverage"], curve["coverage"], atol=1.0 / N)


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_pred": np.zeros(4), "y_std": np.ones(5)}, r"y_true has 5, y_pred has 4, y_std has 5"),
        ({"pit": np.full(3, 0.5)}, r"y_true has 5, pit has 3"),
        ({"y_pred": [0, np.nan, 0, 0, 0], "y_std": np.ones(5)}, "y_pred contains NaN or inf"),
        ({"y_pred": np.zeros(5), "y_std": [1, 1, np.inf, 1, 1]}, "y_std contains NaN or inf"),
        ({"y_pred": np.zeros(5), "y_std": [1, 1, 0, 1, 1]}, r"y_std must be > 0.*index 2"),
        ({"y_pred": np.zeros(5), "y_std": -np.ones(5)}, r"y_std must be > 0"),
        ({"pit": [0.1, 0.2, 1.2, 0.5, 0.5]}, r"pit must lie in \[0, 1\].*index 2"),
        ({"pit": [0.1, -0.01, 0.2, 0.5, 0.5]}, r"pit must lie in \[0, 1\]"),
        ({}, "y_pred and y_std missing"),
        ({"y_pred": np.zeros(5)}, "y_std missing"),
        ({"y_std": np.ones(5)}, "y_pred missing"),
        ({"pit": np.full(5, 0.5), "levels": (0.68, 1.0)}, "strictly between 0 and 1"),
        ({"pit": np.full(5, 0.5), "levels": (0.0,)}, "strictly between 0 and 1"),
        ({"pit": np.full(5, 0.5), "levels": (68,)}, "strictly between 0 and 1"),
        ({"pit": np.full(5, 0.5), "levels": ()}, "non-empty"),
        ({"pit": np.full(5, 0.5), "levels": (0.68, 0.681)}, "duplicate keys"),
        ({"pit": np.full(5, 0.5), "n_pit_bins": 0}, "n_pit_bins must be a positive integer"),
        ({"pit": np.full(5, 0.5), "n_pit_bins": 2.5}, "n_pit_bins must be a positive integer"),
    ],
)
def test_calibration_scores_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration_scores(np.zeros(5), **kwargs)


def test_two_dimensional_inputs_ask_for_one_label():
    y = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"y_true is 2-D.*one label.*single column"):
        calibration_scores(y, y, np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"pit is 2-D.*pit\[:, 0\]"):
        calibration_scores(np.zeros(5), pit=np.full((5, 3), 0.5))
    with pytest.raises(ValueError, match="empty"):
        calibration_scores([], [], [])


def test_other_functions_validate():
    y, p, s = np.zeros(4), np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match="snr is required"):
        calibration_by_snr(y, p, s)
    with pytest.raises(ValueError, match="y_true has 4, snr has 3"):
        calibration_by_snr(y, p, s, [1, 2, 3])
    with pytest.raises(ValueError, match="posterior_std needs y_std"):
        calibration_by_snr(y, snr=np.arange(4.0), pit=np.full(4, 0.5), posterior_std=s)
    with pytest.raises(ValueError, match="posterior_std must be > 0"):
        calibration_by_snr(y, p, s, np.arange(4.0), posterior_std=[1, 0, 1, 1])
    with pytest.raises(ValueError, match="y_true has 4, snr has 4, posterior_std has 2"):
        calibration_by_snr(y, p, s, np.arange(4.0), posterior_std=[1, 1])
    with pytest.raises(ValueError, match="strategy"):
        calibration_by_snr(y, p, s, np.arange(4.0), strategy="bogus")
    with pytest.raises(ValueError, match="snr contains NaN"):
        reliability_curve(y, p, s, [1, 2, np.nan, 3])
    with pytest.raises(ValueError, match="y_true has 4, snr has 5"):
        reliability_curve(y, p, s, np.arange(5.0))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        reliability_curve(y, p, s, levels=[0.5, 1.5])
    with pytest.raises(ValueError, match="y_std missing"):
        reliability_curve(y, p)
    with pytest.raises(ValueError, match="y_std has 2, posterior_std has 3"):
        std_ratio([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="posterior_std must be > 0"):
        std_ratio([1, 1], [1, 0])
    with pytest.raises(ValueError, match="y_std contains NaN"):
        std_ratio([1, np.nan], [1, 1])
    with pytest.raises(ValueError, match="posterior_std is 2-D"):
        std_ratio([1, 1], [[1, 1]])


def test_inputs_are_not_modified(gaussian):
    y, mu, sigma, snr = gaussian
    pit = norm.cdf((y - mu) / sigma)
    post = sigma * 1.1
    arrays = [y, mu, sigma, snr, pit, post]
    copies = [a.copy() for a in arrays]
    lists = [y[:50].tolist(), mu[:50].tolist(), sigma[:50].tolist()]
    list_copies = [list(a) for a in lists]
    calibration_scores(y, mu, sigma, pit=pit)
    calibration_scores(*lists)
    calibration_by_snr(y, mu, sigma, snr, pit=pit, posterior_std=post)
    reliability_curve(y, mu, sigma, snr, pit=pit)
    reliability_curve(y, mu, sigma, snr)
    std_ratio(sigma, post)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)
    assert lists == list_copies
