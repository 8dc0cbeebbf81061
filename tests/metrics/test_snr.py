"""Per-SNR-bin scores, bins, bootstrap bands and efficiencies."""

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, r2_score

from specreg.metrics import (
    REFERENCE_SNR_EDGES,
    assign_snr_bins,
    calibration_by_snr,
    compare_to_ceiling,
    efficiency_by_snr,
    regression_scores,
    scores_by_snr,
    snr_bin_edges,
    snr_from_X,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 2000
    snr = rng.lognormal(np.log(8), 0.5, n)
    y = rng.uniform(1, 5, n)
    pred = y + rng.normal(0, 2.0 / snr)
    return y, pred, snr


def test_quantile_bins_have_equal_counts(data):
    _, _, snr = data
    edges = snr_bin_edges(snr, 8)
    counts = np.bincount(assign_snr_bins(snr, edges), minlength=8)
    assert counts.sum() == snr.size
    assert counts.max() - counts.min() <= 1


def test_fixed_bins_exclude_outside_values():
    idx = assign_snr_bins([2.0, 3.0, 27.9, 28.0, 40.0], REFERENCE_SNR_EDGES)
    assert idx.tolist() == [-1, 0, 7, 7, -1]


@pytest.mark.parametrize("strategy", ["uniform", "log"])
def test_other_strategies_span_the_range(data, strategy):
    _, _, snr = data
    edges = snr_bin_edges(snr, 5, strategy=strategy)
    assert edges[0] == pytest.approx(snr.min()) and edges[-1] == pytest.approx(snr.max())


def test_scores_per_bin_match_sklearn_on_the_bins_labels(data):
    y, p, snr = data
    table = scores_by_snr(y, p, snr, bins=4, n_bootstrap=50, random_state=0)
    idx = assign_snr_bins(snr, snr_bin_edges(snr, 4))
    for b in range(4):
        sel = idx == b
        assert table["r2"][b] == pytest.approx(r2_score(y[sel], p[sel]))
        assert table["mae"][b] == pytest.approx(mean_absolute_error(y[sel], p[sel]))
        assert table["r2_lo"][b] <= table["r2"][b] <= table["r2_hi"][b]
    assert table["r2"].is_monotonic_increasing
    assert table["n"].sum() == y.size


def test_bootstrap_bands_shrink_with_more_data(data):
    y, p, snr = data
    small = scores_by_snr(y[:200], p[:200], snr[:200], bins=1, random_state=0)
    big = scores_by_snr(y, p, snr, bins=1, random_state=0)
    assert (big["r2_hi"] - big["r2_lo"])[0] < (small["r2_hi"] - small["r2_lo"])[0]


def test_efficiency_uses_the_same_spectra(data):
    y, p, snr = data
    bayes = y + 0.5 * (p - y)  # half the error -> efficiency 0.25 exactly
    t = efficiency_by_snr(y, p, bayes, snr, bins=3, random_state=0)
    np.testing.assert_allclose(t["efficiency"], 0.25)
    assert np.all(t["efficiency_lo"] <= 0.25 + 1e-12) and np.all(
        t["efficiency_hi"] >= 0.25 - 1e-12
    )


def test_regression_scores_bias_sign():
    s = regression_scores([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert s["bias"] == pytest.approx(0.5) and s["rmse"] == pytest.approx(0.5)


def test_snr_from_X():
    X = np.array([[1.0, 2.0, 3.0, 0.1, 0.1, 0.1]])
    assert snr_from_X(X)[0] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="odd width"):
        snr_from_X(np.ones((1, 3)))


@pytest.mark.parametrize(
    "args, match",
    [
        (([1.0, np.nan], [1.0, 2.0], [1.0, 2.0]), "NaN"),
        (([1.0, 2.0], [1.0], [1.0, 2.0]), "same length"),
    ],
)
def test_scores_by_snr_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        scores_by_snr(*args)


def test_bad_bins():
    with pytest.raises(ValueError, match="bins must be a positive integer; got 2.5"):
        snr_bin_edges([1.0, 2.0], 2.5)
    with pytest.raises(ValueError, match="bins must be a positive integer; got 0"):
        scores_by_snr([1.0, 2.0], [1.0, 2.0], [3.0, 4.0], bins=0)
    with pytest.raises(ValueError, match="increasing"):
        snr_bin_edges([1.0, 2.0], [3.0, 2.0])
    with pytest.raises(ValueError, match="strategy"):
        snr_bin_edges([1.0, 2.0], 2, strategy="kmeans")


def test_compare_to_ceiling_pairs_the_two_estimators():
    rng = np.random.default_rng(3)
    y = rng.uniform(1, 5, 3000)
    snr = rng.uniform(3, 30, 3000)
    bayes = y + rng.normal(0, 1 / snr)
    same = compare_to_ceiling(y, bayes, bayes, snr, bins=3)
    assert np.allclose(same["delta_r2"], 0) and np.allclose(same["se"], 0)
    worse = compare_to_ceiling(y, bayes + rng.normal(0, 0.3, 3000), bayes, snr, bins=3)
    assert (worse["z"] < -3).all()
    # the paired error is far below the two R2's unpaired errors
    assert (worse["se_sampling"] < 0.5 * np.abs(worse["delta_r2"])).all()


def test_a_bin_too_small_for_a_paired_error_keeps_its_snr_and_columns():
    y, snr = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([3.0, 4.0, 20.0, 21.0, 22.0])
    t = compare_to_ceiling(y, y + 0.1, y, snr, bins=[2.0, 10.0, 30.0])
    assert t["n"].tolist() == [2, 3]
    assert t["snr"].tolist() == [3.5, 21.0]
    assert np.isnan(t.loc[0, "delta_r2"]) and np.isfinite(t.loc[1, "delta_r2"])
    empty = compare_to_ceiling(y, y + 0.1, y, snr, bins=[30.0, 40.0])
    assert list(empty.columns) == list(t.columns) and empty["n"].tolist() == [0]


def test_every_per_snr_table_walks_the_same_bins(data):
    y, pred, snr = data
    tables = [
        scores_by_snr(y, pred, snr, bins=5, random_state=0),
        efficiency_by_snr(y, pred, y + 0.5 * (pred - y), snr, bins=5, random_state=0),
        compare_to_ceiling(y, pred, y + 0.5 * (pred - y), snr, bins=5),
        calibration_by_snr(y, pred, np.full(y.size, 0.1), snr, bins=5),
    ]
    for t in tables[1:]:
        for column in ("snr_lo", "snr_hi", "n", "snr"):
            np.testing.assert_array_equal(t[column], tables[0][column])


@pytest.mark.parametrize("table", ["scores", "efficiency"])
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_bootstrap": -1}, "n_bootstrap must be an integer >= 0; got -1"),
        ({"n_bootstrap": 2.5}, "n_bootstrap must be an integer >= 0; got 2.5"),
        ({"quantiles": (0.1, 1.5)}, "quantiles must be two levels"),
        ({"quantiles": (0.9, 0.1)}, "quantiles must be two levels"),
        ({"quantiles": (np.nan, 0.9)}, "quantiles must be two levels"),
        ({"quantiles": 0.5}, "quantiles must be two levels"),
        ({"random_state": "x"}, "random_state must be"),
    ],
)
def test_bootstrap_options_are_named_when_wrong(data, table, kw, match):
    y, pred, snr = data
    with pytest.raises(ValueError, match=match):
        if table == "scores":
            scores_by_snr(y, pred, snr, **kw)
        else:
            efficiency_by_snr(y, pred, y, snr, **kw)


@pytest.mark.parametrize("edges", [[100.0, 10.0, 1.0], [10.0], [1.0, np.nan, 100.0], []])
def test_explicit_edges_must_be_increasing_and_finite(edges):
    # assign_snr_bins used to put every spectrum in bin -1 or 0 without a word
    with pytest.raises(ValueError, match="at least 2 finite, increasing values"):
        assign_snr_bins([5.0, 50.0], edges)
    with pytest.raises(ValueError, match="at least 2 finite, increasing values"):
        snr_bin_edges([5.0, 50.0], edges)


def test_regression_scores_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="y_true is empty"):
        regression_scores([], [])
