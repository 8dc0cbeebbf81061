"""Benchmark: the Bayes-optimal ceiling of the 5-D model (and of the 3-D grid, same conditions).

Run by hand:  python benchmarks/bench_bayes_5d.py [--n 1000] [--no-3d] [--snapped 200]
Target: the Bayes ceiling for 1,000 test spectra of the 5-D model in <= 120 s on 2
cores (the ceiling speed floor), with the default sampler settings, the generator's
noise process in the likelihood and the ESS floor's resampling included. The same
measurement on the 3-D grid (floor 60 s, see bench_bounds.py) runs right after it, so
the two can be compared under the same machine load. ``--snapped N`` also times the
ceiling under the snapped prior (spectra drawn from it; enumeration and quadrature)
on N spectra of each model. Writes benchmarks/results/bayes_5d.json.

The 5-D model is the embedded one when its response is installed, else the real 3-D
grid times a fake smooth response on the real design axes (``_response_5d.py``; the
JSON says which). Each timing is that of ``FisherCeiling.table_by_snr`` with the true
labels, as in bench_bounds.py: the lattice templates, the posterior of every spectrum,
the Fisher matrices at the true labels and the per-bin summaries.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from _grids import benchmark_grid
from _machine import machine_record
from _response_5d import benchmark_5d_model


def bench_ceiling(
    model, description: str, n: int, n_draws: int, seed: int = 0, snapped: bool = False
) -> dict:
    """Time the Bayes ceiling of ``n`` simulated spectra of ``model``.

    With ``snapped``, the spectra are drawn from the snapped prior (the reference's
    sampling) and the ceiling uses that prior (enumeration and quadrature).
    """
    from specreg.bounds import FisherCeiling
    from specreg.datasets import make_spectra
    from specreg.spectra import LabelPrior

    prior = LabelPrior.from_grid(model, snap=True) if snapped else None
    test = make_spectra(
        n, model=model, prior=prior, mag=(20.5, 22.5), noisy=True, random_state=seed
    )
    theta = test.params[list(model.param_names)]
    ceiling = FisherCeiling(model, prior=prior, n_draws=n_draws, random_state=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    table = ceiling.table_by_snr(test.X, test.y, snr=test.params["snr"], theta=theta, bins=5)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    ev = ceiling.last_evaluation_
    return {
        "model": description,
        "param_names": list(model.param_names),
        "n_pix": int(model.n_pix),
        "n_spectra": n,
        "mag_range": [20.5, 22.5],
        "n_draws_per_spectrum": n_draws,
        "prior": (
            "snapped: one label free, the others on their nodes"
            if snapped
            else "uniform on the model's box (make_spectra default)"
        ),
        "seconds": round(elapsed, 1),
        "seconds_per_1000": round(elapsed * 1000 / n, 1),
        # CPU seconds of this process (all its threads): on a machine shared with other
        # jobs the wall time measures the load, the CPU time the work
        "cpu_seconds": round(cpu, 1),
        "ess_min": float(ev["ess"].min()),
        "ess_p05": float(ev["ess"].quantile(0.05)),
        "ess_median": float(ev["ess"].median()),
        "overall_r2_bayes_log_g": float(
            1 - np.mean((ev["posterior_mean"] - ev["y"]) ** 2) / np.var(ev["y"])
        ),
        "r2_bayes_per_snr_bin": table["r2_bayes"].round(4).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="test spectra")
    parser.add_argument("--n-draws", type=int, default=256)
    parser.add_argument("--no-3d", action="store_true", help="skip the 3-D comparison")
    parser.add_argument(
        "--snapped", type=int, default=0, help="also time the snapped prior on this many spectra"
    )
    parser.add_argument("--note", default="", help="conditions of the run (load, ...)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bayes_5d.json"
    )
    args = parser.parse_args()
    result = {
        "machine": machine_record(args.note),
        "target_s_per_1000": {"5d": 120.0, "3d": 60.0},
    }
    model, description_5d = benchmark_5d_model()
    result["5d"] = bench_ceiling(model, description_5d, args.n, args.n_draws)
    print(json.dumps(result["5d"], indent=1))
    if not args.no_3d:
        grid, description_3d = benchmark_grid()
        result["3d"] = bench_ceiling(grid, description_3d, args.n, args.n_draws)
        print(json.dumps(result["3d"], indent=1))
    if args.snapped:
        result["snapped_5d"] = bench_ceiling(
            model, description_5d, args.snapped, args.n_draws, snapped=True
        )
        print(json.dumps(result["snapped_5d"], indent=1))
        if not args.no_3d:
            result["snapped_3d"] = bench_ceiling(
                grid, description_3d, args.snapped, args.n_draws, snapped=True
            )
            print(json.dumps(result["snapped_3d"], indent=1))
    result["load_avg_at_end"] = os.getloadavg()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
