"""Throughput benchmark of SpecViTRegressor; writes benchmarks/results/vit.json.

Measures, through the estimator's real training path (skorch loop, per-batch noise on the
device, AdamW, clipping, schedule) and its batched ``predict``:

* on CPU: training and inference spectra/s for the reference config (p16_h256_L6_a8,
  4096 pixels) and a small config;
* on CUDA (if present): training and inference spectra/s in fp32 and bf16 AMP, and the
  achieved fraction of the GPU's peak dense FLOP/s (model FLOPs utilisation, counting
  2 FLOPs per multiply-add, training = 3x forward). On CPU-only machines the JSON records
  that GPU numbers were not measured.

Usage::

    python benchmarks/bench_vit.py [--quick] [--out benchmarks/results/vit.json]

Throughput aimed at: >= 20,000 training spectra/s on one H100 with bf16 for the reference
config (``meets_20k_train_target`` in the JSON). Timings on a shared machine are noisy; the JSON records the thread count and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from specreg.estimators import SpecViTRegressor
from specreg.estimators._vit_module import count_parameters, n_tokens

CONFIGS = {
    "reference_p16_h256_L6_a8": dict(patch_size=16, hidden_size=256, depth=6, heads=8),
    "small_p16_h64_L2_a4": dict(patch_size=16, hidden_size=64, depth=2, heads=4),
}
N_PIX = 4096

# dense peak FLOP/s per GPU model (vendor datasheets, without sparsity): (fp32, bf16)
_PEAK = {
    "H100 SXM": (67e12, 989e12),
    "H100 PCIe": (51e12, 756e12),
    "H100": (67e12, 989e12),
    "H200": (67e12, 989e12),
    "A100": (19.5e12, 312e12),
    "L40S": (91.6e12, 362e12),
    "A10": (31.2e12, 125e12),
    "V100": (15.7e12, 125e12),
}


def forward_flops(n_pix: int, patch_size: int, hidden_size: int, depth: int, mlp_ratio=4.0):
    """Matmul FLOPs of one forward pass for one spectrum (2 per multiply-add)."""
    n = n_tokens(n_pix, patch_size) + 1
    h, m = hidden_size, int(mlp_ratio * hidden_size)
    embed = 2 * n * patch_size * h
    per_block = 2 * n * h * 3 * h + 2 * 2 * n * n * h + 2 * n * h * h + 2 * 2 * n * h * m
    return embed + depth * per_block + 2 * h


def synthetic(n: int, n_pix: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    flux = (1 + 0.05 * rng.standard_normal((n, n_pix))).astype(np.float32)
    error = np.full_like(flux, 0.05)
    y = rng.uniform(1, 5, n).astype(np.float32)
    return np.hstack([flux, error]), y


def measure(cfg: dict, device: str, amp, n_train: int, n_infer: int, batch: int, epochs=1):
    """Spectra/s for training (one timed epoch after a warm-up fit) and for predict."""
    X, y = synthetic(max(n_train, n_infer), N_PIX)
    reg = SpecViTRegressor(
        **cfg, max_epochs=1, batch_size=batch, device=device, amp=amp, random_state=0
    )
    reg.fit(X[: 2 * batch], y[: 2 * batch])  # warm-up: allocation, kernels, autotuning
    net = reg.net_
    y_std = ((y[:n_train, None] - reg.y_mean_) / reg.y_scale_).astype(np.float32)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    net.partial_fit(X[:n_train], y_std, epochs=epochs)
    sync()
    train_s = time.perf_counter() - t0
    reg.predict(X[:batch])  # warm-up
    sync()
    t0 = time.perf_counter()
    reg.predict(X[:n_infer])
    sync()
    infer_s = time.perf_counter() - t0
    return {
        "device": device,
        "amp": amp,
        "batch_size": batch,
        "n_train": n_train * epochs,
        "n_infer": n_infer,
        "train_spectra_per_s": n_train * epochs / train_s,
        "infer_spectra_per_s": n_infer / infer_s,
        "n_params": count_parameters(reg.module_),
    }


def gpu_peak(name: str, amp) -> float | None:
    for key, (fp32, bf16) in _PEAK.items():
        if key in name:
            return bf16 if amp else fp32
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vit.json"))
    parser.add_argument("--quick", action="store_true", help="fewer spectra (CPU smoke run)")
    args = parser.parse_args(argv)

    results = {
        "benchmark": "bench_vit",
        "n_pix": N_PIX,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "configs": {},
    }
    for name, cfg in CONFIGS.items():
        small = name.startswith("small")
        fwd = forward_flops(N_PIX, **{k: cfg[k] for k in ("patch_size", "hidden_size", "depth")})
        entry = {"config": cfg, "forward_gflop_per_spectrum": fwd / 1e9}
        # CPU: keep it short (shared machine); the reference model is ~9 GFLOP per spectrum
        if args.quick:
            n_train, n_infer = (256, 512) if small else (32, 64)
        else:
            n_train, n_infer = (1024, 2048) if small else (96, 256)
        batch = 64 if small else 16
        entry["cpu"] = measure(cfg, "cpu", None, n_train, n_infer, batch)
        print(name, "cpu", json.dumps(entry["cpu"]))
        if torch.cuda.is_available():
            gpu_name = torch.cuda.get_device_name()
            entry["gpu"] = {"name": gpu_name}
            for amp in (None, "bf16"):
                res = measure(cfg, "cuda", amp, 65536 if small else 32768, 65536, 256)
                peak = gpu_peak(gpu_name, amp)
                achieved = 3 * fwd * res["train_spectra_per_s"]
                res["train_tflop_per_s"] = achieved / 1e12
                res["peak_tflop_per_s"] = None if peak is None else peak / 1e12
                res["fraction_of_peak"] = None if peak is None else achieved / peak
                entry["gpu"]["fp32" if amp is None else "bf16"] = res
                print(name, "cuda", amp, json.dumps(res))
            if not small:
                bf16 = entry["gpu"]["bf16"]["train_spectra_per_s"]
                entry["gpu"]["meets_20k_train_target"] = bf16 >= 20_000
        else:
            entry["gpu"] = {"measured": False, "reason": "no CUDA device on this machine"}
        results["configs"][name] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
