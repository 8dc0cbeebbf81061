"""Benchmark: Fisher table and Bayes-optimal ceiling speed.

Run by hand:  python benchmarks/bench_bounds.py [--n-fisher 30000] [--n-bayes 1000]
Targets: Fisher table for 30,000 labels x 5 parameters x 4096 pixels in <= 10 s on
2 cores; Bayes-optimal ceiling for 1,000 test spectra (3-D grid) in <= 60 s, with the
generator's noise process in the likelihood and the ESS floor's resampling included.
Writes benchmarks/results/bounds.json.

The Fisher timing uses random float32 Jacobians of the right shape (it measures
the linear algebra: F = J^T W J, CRLB by Schur complement and full inverse,
Schur decay, condition numbers, aggregations). The Bayes timing uses the
embedded grid when it is installed, else a 9x9x14-node analytic line grid
(stated in the JSON).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from _grids import benchmark_grid
from _machine import machine_record


def bench_fisher(n: int, n_pix: int = 4096, d: int = 5, seed: int = 0) -> dict:
    from specreg.bounds import (
        aggregate_r2_max,
        condition_number,
        fisher_matrix,
        marginal_crlb,
        schur_decay,
    )

    rng = np.random.default_rng(seed)
    J = rng.standard_normal((n, n_pix, d), dtype=np.float32)
    J *= np.array([1e-4, 0.05, 0.05, 0.03, 0.03], dtype=np.float32)[:d]  # K vs dex scales
    err = rng.uniform(0.02, 0.3, (n, n_pix)).astype(np.float32)
    t0 = time.perf_counter()
    F = fisher_matrix(J, err)
    t1 = time.perf_counter()
    crlb = marginal_crlb(F, 1)
    crlb_inv = marginal_crlb(F, 1, method="inverse")
    rho = schur_decay(F, 1)
    cond = condition_number(F)
    agg = aggregate_r2_max(crlb, 1.3333)
    t2 = time.perf_counter()
    return {
        "n_labels": n,
        "n_params": d,
        "n_pix": n_pix,
        "jacobian": "random float32 of the right shape (linear algebra only)",
        "fisher_matrices_s": round(t1 - t0, 3),
        "crlb_schur_inverse_decay_cond_aggregate_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "target_s": 10.0,
        "schur_vs_inverse_max_rel_diff": float(np.max(np.abs(crlb / crlb_inv - 1))),
        "median_schur_decay": float(np.median(rho)),
        "median_condition_number_scaled": float(np.median(cond)),
        "r2_max_median_example": agg["median"],
    }


def bench_bayes(n: int, n_samples: int, seed: int = 0) -> dict:
    from specreg.bounds import FisherCeiling
    from specreg.datasets import make_spectra
    from specreg.metrics import scores_by_snr

    grid, description = benchmark_grid()
    test = make_spectra(n, model=grid, mag=(20.5, 22.5), noisy=True, random_state=seed)
    theta = test.params[list(grid.param_names)]
    ceiling = FisherCeiling(grid, n_draws=n_samples, random_state=seed, progress=True)
    t0 = time.perf_counter()
    table = ceiling.table_by_snr(test.X, test.y, snr=test.params["snr"], theta=theta, bins=5)
    elapsed = time.perf_counter() - t0
    ev = ceiling.last_evaluation_
    out = {
        "grid": description,
        "grid_shape": list(grid.shape),
        "n_pix": int(grid.n_pix),
        "n_spectra": n,
        "mag_range": [20.5, 22.5],
        "n_samples_per_spectrum": n_samples,
        "prior": "uniform on the grid box (make_spectra default)",
        "seconds": round(elapsed, 1),
        "target_s": 60.0,
        "ess_min": float(ev["ess"].min()),
        "ess_median": float(ev["ess"].median()),
        "overall_r2_bayes": float(
            1 - np.mean((ev["posterior_mean"] - ev["y"]) ** 2) / np.var(ev["y"])
        ),
    }
    cols = [
        "snr_lo",
        "snr_hi",
        "n",
        "snr",
        "r2_bayes",
        "r2_bayes_mc_err",
        "r2_bayes_expected",
        "r2_ml",
        "r2_max_median",
        "r2_max_p10",
        "r2_max_p90",
        "r2_population",
        "schur",
        "sigma_min",
    ]
    per_bin = table[cols].copy()
    try:
        from specreg.estimators import TemplateFitRegressor

        t0 = time.perf_counter()
        tf = TemplateFitRegressor(model=grid).fit(test.X[:4], test.y[:4])
        pred = tf.predict(test.X)
        out["template_fit_s"] = round(time.perf_counter() - t0, 1)
        per_bin["r2_template_fit"] = scores_by_snr(
            test.y, pred, test.params["snr"], bins=5, n_bootstrap=0
        )["r2"].to_numpy()
    except ImportError:
        out["template_fit_s"] = None
    out["per_snr_bin"] = json.loads(per_bin.round(4).to_json(orient="records"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-fisher", type=int, default=30000)
    parser.add_argument("--n-bayes", type=int, default=1000)
    parser.add_argument("--n-samples", type=int, default=256)
    parser.add_argument("--note", default="", help="conditions of the run (load, ...)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bounds.json"
    )
    args = parser.parse_args()
    result = {
        "machine": machine_record(args.note),
        "fisher": bench_fisher(args.n_fisher),
    }
    print(json.dumps(result["fisher"], indent=1))
    result["bayes"] = bench_bayes(args.n_bayes, args.n_samples)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["bayes"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
