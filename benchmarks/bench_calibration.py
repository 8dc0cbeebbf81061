"""Benchmark: calibration of the per-star uncertainties, and the out-of-model flag.

Run by hand:  python benchmarks/bench_calibration.py [--n 4000] [--bins 4]
Writes benchmarks/results/calibration.json.

On a fresh test set from the embedded grid (uniform labels, mag 20.5-22.5, one fixed
PFS-like noise draw, reported reference errors), per equal-count SNR bin and label:

* the Bayes estimator (:class:`~specreg.bounds.BayesCeilingRegressor` machinery): the
  coverage of its central 68 % and 95 % credible intervals (from the posterior CDF at
  the truth) and of mean +- std; targets +-3 points (68 %) and +-2 points (95 %);
* the template fit, ``predict(X, return_std=True)``: coverage of mean +- std and
  mean +- 1.96 std, the std of z and the ratio of its std to the exact posterior's;
  target +-5 points;
* the cost of ``return_std=True`` relative to a plain ``predict`` (target <= 1.5x);
* the template fit's out-of-model flag (``fit_z > OUT_OF_MODEL_Z``): the fraction
  flagged among spectra the model describes, spectra at half the resolution, and
  stars hotter than a sub-grid's box.

The numbers have the test set's own sampling error: the binomial standard error of a
coverage is reported next to it (about 1.5 points at 68 % for 1,000 spectra a bin).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

LABELS = ("T_eff", "log_g", "M_H")


def _coverage_rows(name, label, y, snr, edges, *, mean, std, pit=None, post_std=None):
    from specreg.metrics import calibration_by_snr, calibration_scores

    overall = calibration_scores(y, mean, std, pit=pit)
    overall.pop("pit_hist", None)
    table = calibration_by_snr(y, mean, std, snr, pit=pit, bins=edges, posterior_std=post_std)
    keep = ["snr_lo", "snr_hi", "n", "coverage_68", "coverage_68_se", "coverage_95"]
    keep += ["coverage_95_se", "z_std"] + (["std_ratio_median"] if post_std is not None else [])
    return {
        "model": name,
        "label": label,
        "overall": {k: round(float(v), 4) for k, v in overall.items()},
        "per_snr": [
            {k: round(float(r[k]), 4) for k in keep} for r in table.to_dict(orient="records")
        ],
    }


def _out_of_model(grid, noise, n: int, seed: int) -> dict:
    from scipy.ndimage import gaussian_filter1d

    from specreg.datasets import make_spectra
    from specreg.estimators import OUT_OF_MODEL_Z, TemplateFitRegressor
    from specreg.spectra import SpectralGrid

    rng = np.random.default_rng(seed)
    fit = TemplateFitRegressor(grid, noise_model=noise)
    inside = make_spectra(n, model=grid, noisy=True, random_state=seed)
    res_in = fit.fit(inside.X).predict_params(inside.X)
    # half the resolution: the grid's LSF (R ~ 5000, sigma ~ 1.6 px) convolved to R ~ 2500
    clean = make_spectra(n, model=grid, random_state=seed + 1)
    blurred = gaussian_filter1d(clean.flux, 2.8, axis=1)
    sigma = noise.true_error(blurred, clean.error)
    X_blur = np.hstack([blurred + sigma * rng.standard_normal(blurred.shape), clean.error])
    res_blur = fit.predict_params(X_blur)
    # hotter than the box: a sub-grid without its T_eff >= 5250 K nodes fits stars above 5500 K
    axes = dict(grid.axes)
    keep = axes["T_eff"] <= 5000
    sub = SpectralGrid(
        {k: (v[keep] if k == "T_eff" else v) for k, v in axes.items()},
        grid.node_flux.reshape(*grid.shape, -1)[keep],
        grid.wave,
        valid=grid.valid[keep],
    )
    hot = make_spectra(n, model=grid, noisy=True, random_state=seed + 2)
    sel = hot.params["T_eff"].to_numpy() > 5500
    res_hot = TemplateFitRegressor(sub, noise_model=noise).fit(hot.X).predict_params(hot.X[sel])
    snr_in, snr_blur = inside.params["snr"].to_numpy(), clean.params["snr"].to_numpy()
    snr_hot = hot.params["snr"].to_numpy()[sel]

    def rates(res, snr):
        flagged = res["out_of_model"].to_numpy()
        return {
            "n": int(flagged.size),
            "flagged": round(float(flagged.mean()), 4),
            "flagged_snr_above_10": round(float(flagged[snr > 10].mean()), 4),
            "fit_z_median": round(float(np.median(res["fit_z"])), 2),
        }

    return {
        "threshold_fit_z": OUT_OF_MODEL_Z,
        "in_model": {**rates(res_in, snr_in), "fit_z_std": round(float(res_in["fit_z"].std()), 3)},
        "half_resolution": rates(res_blur, snr_blur),
        "hotter_than_box": rates(res_hot, snr_hot),
    }


def run(n: int, bins: int, seed: int, n_samples: int) -> dict:
    from specreg.bounds import FisherCeiling
    from specreg.datasets import load_grid, make_spectra
    from specreg.estimators import TemplateFitRegressor
    from specreg.metrics import snr_bin_edges
    from specreg.spectra import PFSNoiseModel

    grid = load_grid()
    noise = PFSNoiseModel(grid.wave)
    test = make_spectra(n, model=grid, noisy=True, random_state=seed)
    snr = test.params["snr"].to_numpy()
    edges = snr_bin_edges(snr, bins)
    y = test.params[list(LABELS)]

    t0 = time.perf_counter()
    frame = FisherCeiling(grid, target=LABELS, n_draws=n_samples, random_state=seed).evaluate(
        test.X, y
    )
    bayes_s = time.perf_counter() - t0

    fit = TemplateFitRegressor(grid, target=LABELS, noise_model=noise).fit(test.X[:2])
    fit.predict(test.X[:64])  # warm-up
    t0 = time.perf_counter()
    fit.predict(test.X)
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, std = fit.predict(test.X, return_std=True)
    std_s = time.perf_counter() - t0

    rows = []
    for j, label in enumerate(LABELS):
        f = frame[frame["label"] == label]
        post_mean, post_std = (
            f["posterior_mean"].to_numpy(),
            np.sqrt(f["posterior_var"].to_numpy()),
        )
        truth = y[label].to_numpy()
        rows.append(
            _coverage_rows(
                "bayes_intervals", label, truth, snr, edges, mean=post_mean, std=post_std,
                pit=f["pit"].to_numpy(),
            )
        )  # fmt: skip
        rows.append(
            _coverage_rows(
                "bayes_gaussian", label, truth, snr, edges, mean=post_mean, std=post_std
            )
        )
        rows.append(
            _coverage_rows(
                "template_fit", label, truth, snr, edges, mean=mean[:, j], std=std[:, j],
                post_std=post_std,
            )
        )  # fmt: skip
    return {
        "benchmark": "calibration",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "grid": grid.metadata.get("name", "embedded"),
        "n_test": n,
        "bins": bins,
        "seed": seed,
        "posterior_samples": n_samples,
        "seconds": {
            "bayes_posterior": round(bayes_s, 1),
            "template_fit_predict": round(plain_s, 2),
            "template_fit_predict_return_std": round(std_s, 2),
            "return_std_cost_ratio": round(std_s / plain_s, 3),
        },
        "calibration": rows,
        "out_of_model": _out_of_model(grid, noise, min(n, 1000), seed + 10),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--bins", type=int, default=4)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--samples", type=int, default=256, help="importance samples")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "calibration.json"
    )
    args = parser.parse_args()
    result = run(args.n, args.bins, args.seed, args.samples)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["calibration"]:
        cells = [f"{r['coverage_68']:.3f}/{r['coverage_95']:.3f}" for r in row["per_snr"]]
        print(f"{row['model']:16s} {row['label']:6s} 68/95 per SNR bin: {' '.join(cells)}")
    print(json.dumps(result["seconds"]), json.dumps(result["out_of_model"], indent=1))


if __name__ == "__main__":
    main()
