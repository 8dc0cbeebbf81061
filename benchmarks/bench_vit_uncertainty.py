"""Gaussian uncertainty head of SpecViTRegressor against MSE training, on the embedded grid.

Trains the same small architecture (the cpu preset's: patch 32, hidden 64, depth 3, heads 4)
at the same budget and seed twice, with ``uncertainty=None`` (MSE) and
``uncertainty="gaussian"`` / ``"truncated"`` (beta-NLL), on noiseless training spectra with per-batch
physical noise (``noise_model=PFSNoiseModel(grid.wave)``), and measures on a noisy test set:

* test R^2 of log g of both models (the Gaussian head should be within 0.01 of MSE);
* calibration: the coverage of the central 68.3 % and 95 % predictive intervals (from the
  predictive CDF at the true label, ``predict_cdf``; for the Gaussian head these are
  ``mean +- std`` and ``mean +- 1.96 std``, for the truncated head its quantiles), the
  coverage of ``mean +- std`` itself, and the std of ``z = (y - mean) / std`` (ideal 1),
  overall and in equal-count bins of the test SNR;
* the wall time of ``predict(X)`` against ``predict(X, return_std=True)`` (a ratio of at most 1.5 is acceptable).

Usage (about 10-15 minutes on 2 CPU cores)::

    python benchmarks/bench_vit_uncertainty.py [--n-train 16000] [--epochs 10]
        [--out benchmarks/results/vit_uncertainty.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from specreg.benchmark import PRESETS
from specreg.datasets import load_grid, make_spectra
from specreg.estimators import SpecViTRegressor
from specreg.spectra import PFSNoiseModel

# the cpu preset's architecture and optimiser; the epochs are this script's --epochs
ARCH = {k: v for k, v in PRESETS["cpu"].vit_params.items() if k != "max_epochs"}


def code_revision() -> str | None:
    """The git commit of this checkout, ``+dirty`` when it has changes; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def platform_signature() -> dict:
    """What CPU training results depend on besides the code: the processor and its
    instruction sets (they choose the kernels), the thread count and the packages."""
    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_flags_sha1": hashlib.sha1(" ".join(sorted(flags.split())).encode()).hexdigest()[:12],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - np.mean((y - pred) ** 2) / np.var(y))


def calibration(y: np.ndarray, mean: np.ndarray, std: np.ndarray, pit: np.ndarray) -> dict:
    """Coverage of the central 68 / 95 % predictive intervals (from the PIT), the
    coverage of ``mean +- std`` and ``mean +- 1.96 std``, and the normalised residuals."""
    z = (y - mean) / std
    return {
        "n": int(len(y)),
        "coverage_68": float(np.mean(np.abs(pit - 0.5) <= 0.34135)),
        "coverage_95": float(np.mean(np.abs(pit - 0.5) <= 0.475)),
        "coverage_mean_pm_std": float(np.mean(np.abs(z) <= 1.0)),
        "coverage_mean_pm_1.96std": float(np.mean(np.abs(z) <= 1.96)),
        "z_std": float(np.std(z)),
        "z_mean": float(np.mean(z)),
        "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
        "median_std": float(np.median(std)),
        "rms_std": float(np.sqrt(np.mean(std**2))),
    }


def best_time(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def snr_bins(snr: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of ``n_bins`` equal-count SNR bins and each spectrum's bin."""
    edges = np.quantile(snr, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, snr, side="right") - 1, 0, n_bins - 1)
    return edges, which


def evaluate(reg, test, edges, which) -> dict:
    """R^2 overall and per SNR bin; for a Gaussian head, calibration and predict timing."""
    y = test.y
    gaussian = reg.uncertainty is not None
    if gaussian:
        mean, std = reg.predict(test.X, return_std=True)
        assert np.array_equal(mean, reg.predict(test.X))
        pit = reg.predict_cdf(test.X, y)
    else:
        mean = reg.predict(test.X)
    out = {
        "r2_log_g": r2(y, mean),
        "rmse_dex": float(np.sqrt(np.mean((y - mean) ** 2))),
        "r2_per_snr_bin": [r2(y[which == b], mean[which == b]) for b in range(len(edges) - 1)],
    }
    if not gaussian:
        return out
    out["calibration"] = calibration(y, mean, std, pit)
    out["calibration_per_snr_bin"] = [
        {"snr_low": float(edges[b]), "snr_high": float(edges[b + 1])}
        | calibration(y[which == b], mean[which == b], std[which == b], pit[which == b])
        for b in range(len(edges) - 1)
    ]
    # does the predicted std follow the actual error? rank correlation with |residual|
    ranks = [np.argsort(np.argsort(v)) for v in (std, np.abs(y - mean))]
    out["spearman_std_vs_abs_residual"] = float(np.corrcoef(*ranks)[0, 1])
    reg.predict(test.X[:256])  # warm-up
    t_mean = best_time(lambda: reg.predict(test.X))
    t_std = best_time(lambda: reg.predict(test.X, return_std=True))
    out["predict_timing"] = {
        "n_spectra": len(y),
        "predict_s": t_mean,
        "predict_return_std_s": t_std,
        "ratio": t_std / t_mean,
    }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=16_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--nll-beta", type=float, nargs="+", default=[1.0], help="one run per head and beta"
    )
    parser.add_argument(
        "--heads",
        nargs="+",
        default=["gaussian", "truncated"],
        choices=["gaussian", "truncated"],
        help="uncertainty heads to train (the truncated one is the Gaussian truncated to "
        "the training labels' range)",
    )
    parser.add_argument(
        "--variance-head",
        nargs="+",
        default=["joint"],
        choices=["joint", "detached"],
        help="variance heads to train: trained with the network (joint), or a layer on "
        "the mean's features with the network trained by MSE (detached)",
    )
    parser.add_argument("--bins", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse",
        help="an earlier output of this script with the same settings, the same clean "
        "commit and the same platform (processor, instruction sets, threads, packages): its "
        "models are not trained again (CPU training with a fixed seed is bit-for-bit "
        "reproducible there, not across processors) and its entries are kept",
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "vit_uncertainty.json")
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    settings = {
        "n_train": args.n_train,
        "n_test": args.n_test,
        "seed": args.seed,
        "bins": args.bins,
        "train_noise": "noiseless, per-batch PFSNoiseModel(grid.wave) noise",
        "test_noise": "fixed",
        "label": "log_g",
        "vit": dict(ARCH, max_epochs=args.epochs, device="cpu"),
    }
    models = {}
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        if earlier["settings"] != settings:
            raise SystemExit(f"{args.reuse} was run with other settings; not reusing it")
        # bit-for-bit reproducible within one version of the code only
        code = code_revision()
        if code is None or code.endswith("+dirty") or earlier.get("code") != code:
            raise SystemExit(
                f"{args.reuse} was run with code {earlier.get('code')!r}, this is {code!r}: "
                "models are reused only from a run of the same clean commit"
            )
        here = platform_signature()
        if earlier.get("platform") != here:
            raise SystemExit(
                f"{args.reuse} was run on {earlier.get('platform')!r}, this is {here!r}: "
                "models are reused only from the same platform"
            )
        for name, entry in earlier["models"].items():
            models[name] = {**entry, "reused_from_run_of": entry.get("date", earlier["date"])}

    grid = load_grid()
    t0 = time.perf_counter()
    train = make_spectra(args.n_train, model=grid, random_state=args.seed)
    test = make_spectra(args.n_test, model=grid, noisy=True, random_state=args.seed + 1)
    print(f"data: {args.n_train} + {args.n_test} spectra in {time.perf_counter() - t0:.0f} s")
    noise = PFSNoiseModel(grid.wave)
    edges, which = snr_bins(np.asarray(test.params["snr"], float), args.bins)

    runs = [("mse", {})] + [
        (
            f"{head}_beta{b:g}" + ("_detached" if vh == "detached" else ""),
            {"uncertainty": head, "nll_beta": b}
            | ({"variance_head": vh} if vh == "detached" else {}),
        )
        for head in args.heads
        for b in args.nll_beta
        for vh in args.variance_head
    ]
    for name, extra in runs:
        if name in models:
            print(name, "reused from", args.reuse)
            continue
        reg = SpecViTRegressor(
            noise_model=noise, random_state=args.seed, **settings["vit"], **extra
        )
        t0 = time.perf_counter()
        reg.fit(train.X, train.y)
        entry = {
            "params": extra,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fit_s": time.perf_counter() - t0,
            "final_train_loss": reg.history_[-1]["train_loss"],
        }
        entry.update(evaluate(reg, test, edges, which))
        models[name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if "per_snr" not in k}))

    mse = models["mse"]["r2_log_g"]
    out = {
        "benchmark": "bench_vit_uncertainty",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "code": code_revision(),
        "platform": platform_signature(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "settings": settings,
        "snr_bin_edges": [float(e) for e in edges],
        "delta_r2_vs_mse": {
            name: m["r2_log_g"] - mse for name, m in models.items() if name != "mse"
        },
        "models": models,
        "wall_s": time.perf_counter() - started,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["delta_r2_vs_mse"]))
    print("wrote", path)


if __name__ == "__main__":
    main()
