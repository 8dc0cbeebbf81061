"""Benchmark: template-fit throughput (issue 4).

Run by hand:  python benchmarks/bench_template_fit.py [--n 2000] [--mag 21.5]
Target: >= 200 spectra/s for a 3-D grid and 4096 pixels on 2 cores (10k test spectra in
under a minute). Writes benchmarks/results/template_fit.json.

The spectra are drawn from the same grid the fit uses (the embedded grid when it is
installed, else a 9x9x14-node analytic line grid, stated in the JSON), with one fixed
PFS-like noise draw at the given magnitudes. Besides the rate, the JSON records the
accuracy of the fit on those spectra (R^2 and MAE on log g, convergence fraction), so a
speed-up that breaks the fit shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from _grids import benchmark_grid


def run(n: int, mag: tuple[float, float], n_jobs_list: tuple, seed: int = 0) -> dict:
    from specreg.datasets import make_spectra
    from specreg.estimators import TemplateFitRegressor

    grid, grid_name = benchmark_grid()
    test = make_spectra(n, grid=grid, mag=mag, noise="fixed", random_state=seed)
    X, y = test.X, test.y
    runs = {}
    for n_jobs in n_jobs_list:
        reg = TemplateFitRegressor(grid, n_jobs=n_jobs).fit(X[:2], y[:2])
        reg.predict(X[:64])  # warm-up: caches, thread pools
        t0 = time.perf_counter()
        res = reg.predict_params(X)
        dt = time.perf_counter() - t0
        pred = res["log_g"].to_numpy()
        runs[f"n_jobs={n_jobs}"] = {
            "seconds": round(dt, 2),
            "spectra_per_s": round(n / dt, 1),
            "r2_log_g": round(float(1 - np.mean((pred - y) ** 2) / np.var(y)), 4),
            "mae_log_g_dex": round(float(np.mean(np.abs(pred - y))), 4),
            "converged_fraction": round(float(np.mean(res["converged"])), 4),
            "median_iterations": float(np.median(res["n_iter"])),
        }
        print(f"n_jobs={n_jobs}: {runs[f'n_jobs={n_jobs}']}")
    best = max(r["spectra_per_s"] for r in runs.values())
    return {
        "benchmark": "template_fit",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min": os.getloadavg()[0],
        "grid": grid_name,
        "grid_shape": list(grid.shape),
        "n_pix": int(grid.n_pix),
        "n_spectra": n,
        "mag_range": list(mag),
        "median_snr": round(float(np.median(test.params["snr"])), 2),
        "runs": runs,
        "best_spectra_per_s": best,
        "target_spectra_per_s": 200.0,
        "meets_target": bool(best >= 200.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="test spectra (default 2000)")
    parser.add_argument("--mag", type=float, nargs=2, default=(20.5, 22.5))
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[None, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    n_jobs = tuple(None if j in (None, 0) else j for j in args.n_jobs)
    result = run(args.n, tuple(args.mag), n_jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "template_fit.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
