"""The main job: every model and the ceiling on the same spectra from the embedded grid.

``specreg benchmark --preset smoke | cpu | paper`` (or :func:`run_benchmark`) simulates
a training set (noiseless flux + errors; noise is drawn during training) and a test set
(one fixed noise draw, magnitudes 20.5-22.5), trains Ridge, LightGBM, the template fit and
SpecViT, computes the Bayes-optimal ceiling and the reference-style Fisher analysis for
the test spectra, and writes a results table, a per-SNR table, ``results.json`` and
figures. Every stage stores its artefact in the output directory and is skipped when a
finished artefact from the same configuration is there, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ._version import __version__
from .grids._labels import PARAM_NAMES
from .spectra._validation import check_bool, check_int, check_real

__all__ = ["PRESETS", "BenchmarkPreset", "available_cores", "run_benchmark"]

MODELS = ("ridge", "lightgbm", "template_fit", "vit")


@dataclass(frozen=True)
class BenchmarkPreset:
    """Sizes and model settings of one benchmark preset.

    Parameters
    ----------
    name : str
    n_train, n_test : int
        Training spectra (noiseless, noise drawn in training) and test spectra
        (one fixed noise draw).
    ridge_alpha : float or None
        None scales the reference's optimum (1e5 at 1M spectra) with n_train,
        since the penalty competes with a data term that grows with n.
    lgbm_params : dict
        Overrides of the reference LightGBM parameters.
    vit_params : dict
        SpecViTRegressor parameters.
    ceiling_samples : int
        Importance samples per spectrum for the Bayes ceiling.
    learning_curve_sizes : tuple of int
        Training sizes of the learning curve (``--learning-curve``).
    bins : int
        Equal-count SNR bins of the per-SNR table.
    grid : {None, "5d"}
        The embedded model the preset runs on: None is the 3-D grid.
    snap : bool
        Draw the labels as the reference study did: all but one label of every
        spectrum on a grid node (the Bayes ceiling then uses that prior).

    Examples
    --------
    >>> PRESETS["smoke"].n_train
    1500
    """

    name: str
    n_train: int
    n_test: int
    ridge_alpha: float | None = None
    lgbm_params: dict = field(default_factory=dict)
    vit_params: dict = field(default_factory=dict)
    ceiling_samples: int = 256
    learning_curve_sizes: tuple = ()
    bins: int = 8
    grid: str | None = None
    snap: bool = False

    def __post_init__(self):
        # a preset is checked when it is made, not after its training set is simulated
        check_int(self.n_train, "n_train", low=2)
        check_int(self.n_test, "n_test", low=2)  # an R2 needs a label variance
        if self.ridge_alpha is not None:
            check_real(self.ridge_alpha, "ridge_alpha", low=0.0, low_open=True)
        check_int(self.ceiling_samples, "ceiling_samples", low=8)
        for size in self.learning_curve_sizes:
            check_int(size, "learning_curve_sizes", low=2)
        check_int(self.bins, "bins")
        if self.grid not in (None, "5d"):
            raise ValueError(f"grid must be None (the 3-D grid) or '5d', got {self.grid!r}")
        check_bool(self.snap, "snap")


#: The ViT's training settings of the presets that run on a CPU (smoke, cpu, reference):
#: batches of 128 at a learning rate of 1e-3, without dropout.
_CPU_VIT = dict(batch_size=128, lr=1e-3, dropout=0.0)

#: The benchmark's presets by name: sizes and model settings (see `BenchmarkPreset`).
PRESETS = {
    "smoke": BenchmarkPreset(
        "smoke",
        n_train=1500,
        n_test=300,
        lgbm_params={"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15},
        vit_params=dict(patch_size=64, hidden_size=32, depth=1, heads=2, max_epochs=3, **_CPU_VIT),
        ceiling_samples=64,
        learning_curve_sizes=(300, 750, 1500),
        bins=4,
    ),
    "cpu": BenchmarkPreset(
        "cpu",
        n_train=20_000,
        n_test=2_000,
        lgbm_params={"n_estimators": 600, "learning_rate": 0.05, "num_leaves": 31},
        vit_params=dict(
            patch_size=32,
            hidden_size=64,
            depth=3,
            heads=4,
            max_epochs=12,
            **_CPU_VIT,
            warmup_epochs=1,
        ),
        ceiling_samples=256,
        learning_curve_sizes=(2_000, 5_000, 10_000, 20_000),
        bins=8,
    ),
    "paper": BenchmarkPreset(
        "paper",
        n_train=1_000_000,
        n_test=10_000,
        ridge_alpha=1e5,
        lgbm_params={"n_estimators": 1300},
        vit_params=dict(max_epochs=200, batch_size=256, lr=3e-4, amp="bf16"),
        ceiling_samples=256,
        learning_curve_sizes=(50_000, 100_000, 200_000, 500_000, 1_000_000),
        bins=8,
    ),
}


PRESETS["reference"] = replace(PRESETS["cpu"], name="reference", grid="5d", snap=True)


def _config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[
        :12
    ]


class _Stages:
    """The run's own files in ``out``, listed in a manifest with the configuration hash.

    A run owns only what it wrote: a stage is reused when its file is listed in
    the manifest for the same configuration (and has the size recorded); a
    changed configuration removes the files the manifest lists for the old one
    and nothing else; a file the run did not write is never reused, removed or
    overwritten. What happens is said on standard error even when ``verbose``
    is off.
    """

    MANIFEST = "specreg-benchmark.json"

    def __init__(self, out: Path, config: dict, log) -> None:
        self.out = out
        self.hash = _config_hash(config)
        self.config = config
        self.log = log
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a directory")
        out.mkdir(parents=True, exist_ok=True)
        (out / "stages").mkdir(exist_ok=True)
        self.files: dict[str, int] = {}
        path = out / self.MANIFEST
        if path.exists():
            try:
                old = json.loads(path.read_text())
                old_files = dict(old["files"])
                old_hash = old["hash"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path} is not a specreg benchmark manifest: {exc}") from None
            if old_hash == self.hash:
                self.files = old_files
            else:
                removed = [name for name in old_files if (out / name).is_file()]
                for name in removed:
                    (out / name).unlink()
                _notice(
                    f"configuration changed: removed the {len(removed)} file(s) this benchmark "
                    f"had written in {out} for the previous configuration; nothing else"
                )
        self._save()

    def _save(self) -> None:
        path = self.out / self.MANIFEST
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        manifest = {"hash": self.hash, "config": self.config, "files": self.files}
        tmp.write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        os.replace(tmp, path)

    def path(self, name: str) -> Path:
        return self.out / "stages" / name

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def owns(self, path: Path) -> bool:
        """``path`` was written by this configuration and is unchanged since (size)."""
        rel = self._rel(path)
        return rel in self.files and path.is_file() and path.stat().st_size == self.files[rel]

    def done(self, name: str) -> bool:
        return self.owns(self.path(name))

    def claim(self, path: Path) -> Path:
        """Check that ``path`` may be written (absent, or the run's own) and list it as pending."""
        rel = self._rel(path)
        if path.exists() and rel not in self.files:
            raise ValueError(
                f"refusing to overwrite {path}: this benchmark did not write it (it is not "
                f"in {self.out / self.MANIFEST}); choose another --out or move the file"
            )
        if rel not in self.files:
            # listed before it is written (size -1: never reused), so that a run killed
            # mid-write may replace its own partial file next time
            self.files[rel] = -1
            self._save()
        return path

    def write(self, path: Path, write) -> Path:
        """Write ``path`` atomically as the run's own: ``write(tmp)`` fills a temp file.

        The file is claimed first (never a foreign one), written beside its target,
        renamed over it and recorded; a failed write leaves no temp file behind.
        """
        self.claim(path)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.record(path)
        return path

    def record(self, path: Path) -> None:
        """List ``path`` (just written) as this run's own."""
        self.files[self._rel(path)] = path.stat().st_size
        self._save()


def _notice(msg: str) -> None:
    """What the benchmark does to files in --out: said even under --quiet."""
    import sys

    print(f"specreg benchmark: {msg}", file=sys.stderr, flush=True)


def _log_to(verbose: bool):
    def log(msg: str) -> None:
        if verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    return log


def _make_model(
    name: str,
    preset: BenchmarkPreset,
    grid,
    device: str,
    seed: int,
    n_train: int,
    jobs=1,
    verbose=False,
    checkpoint_dir=None,
    labels=("log_g",),
):
    from .estimators import (
        SpecViTRegressor,
        TemplateFitRegressor,
        make_lightgbm_baseline,
        make_ridge_baseline,
    )
    from .spectra import PFSNoiseModel

    # training noise is the generator's physical noise; the error half is the reported one
    noise = PFSNoiseModel(grid.wave)
    if name == "ridge":
        alpha = preset.ridge_alpha or max(1e2, 1e5 * n_train / 1e6)
        return make_ridge_baseline(alpha=alpha, noise_model=noise, random_state=seed)
    if name == "lightgbm":
        return make_lightgbm_baseline(
            n_outputs=len(labels),
            n_jobs=jobs,
            noise_model=noise,
            random_state=seed,
            **preset.lgbm_params,
        )
    if name == "template_fit":
        return TemplateFitRegressor(
            model=grid,
            target=_target(labels),
            noise_model=noise,
            n_jobs=jobs,
            progress_bar=verbose,
        )
    if name == "vit":
        # per-epoch checkpoints: a killed stage loses at most one epoch and resumes its own
        # run (the checkpoint's fingerprint covers the data and every training setting)
        params = {"verbose": int(verbose), "resume": True, **preset.vit_params}
        return SpecViTRegressor(
            device=device,
            noise_model=noise,
            random_state=seed,
            checkpoint_dir=checkpoint_dir,
            **params,
        )
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def _target(labels: tuple[str, ...]):
    """One label as a str (1-D y and predictions), several as a tuple."""
    return labels[0] if len(labels) == 1 else tuple(labels)


def _labels_of(spectra, labels: tuple[str, ...]) -> np.ndarray:
    """The true labels of a set: shape (n,) for one label, (n, k) for several."""
    y = spectra.params[list(labels)].to_numpy(dtype=float)
    return y[:, 0] if len(labels) == 1 else y


def _columns(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1)


def _data(stages, preset, grid, prior, seed, log):
    from .datasets import make_spectra, read_spectra, write_spectra

    paths = {"train": stages.out / "train.h5", "test": stages.out / "test.h5"}
    sets = {}
    for kind, n, noisy, s in [
        ("train", preset.n_train, False, seed),
        ("test", preset.n_test, True, seed + 1),
    ]:
        if stages.owns(paths[kind]):
            log(f"{kind} set: reusing {paths[kind]}")
            sets[kind] = read_spectra(paths[kind])
            continue
        t0 = time.perf_counter()
        sets[kind] = make_spectra(n, model=grid, prior=prior, noisy=noisy, random_state=s)
        write_spectra(
            sets[kind], stages.claim(paths[kind]), metadata={"seed": s, "preset": preset.name}
        )
        stages.record(paths[kind])
        log(f"{kind} set: {n} spectra in {time.perf_counter() - t0:.1f} s -> {paths[kind]}")
    return sets["train"], sets["test"]


def _has_std(name: str, model) -> bool:
    """Whether the fitted model returns ``predict(X, return_std=True)``."""
    return name == "template_fit" or getattr(model, "uncertainty", None) is not None


def _fit_predict(
    stages,
    name,
    preset,
    grid,
    train,
    test,
    device,
    seed,
    log,
    n_train=None,
    jobs=1,
    verbose=False,
    labels=("log_g",),
):
    n_train = len(train) if n_train is None else n_train
    tag = f"model_{name}.npz" if n_train == len(train) else f"lc_{name}_{n_train}.npz"
    if stages.done(tag):
        log(f"{name} (n={n_train}): reusing predictions")
        return dict(np.load(stages.path(tag)))
    checkpoints = stages.out / "stages" / "vit-checkpoints"
    model = _make_model(
        name, preset, grid, device, seed, n_train, jobs, verbose, checkpoints, labels
    )
    fit_params = {}
    if name == "lightgbm" and verbose and len(labels) == 1:
        total = model.named_steps["lgbmregressor"].n_estimators
        fit_params["lgbmregressor__callbacks"] = [_lightgbm_progress(total, log)]
    y_train, y_test = _labels_of(train, labels)[:n_train], _labels_of(test, labels)
    t0 = time.perf_counter()
    model.fit(train.X[:n_train], y_train, **fit_params)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = {}
    if _has_std(name, model):
        y_pred, y_std = model.predict(test.X, return_std=True)
        result["y_std"] = np.asarray(y_std, dtype=float)
    else:
        y_pred = model.predict(test.X)
    y_pred = np.asarray(y_pred, dtype=float)
    predict_s = time.perf_counter() - t0
    err, truth = _columns(y_pred - y_test), _columns(y_test)
    r2 = 1 - np.mean(err**2, axis=0) / np.var(truth, axis=0)
    log(
        f"{name} (n={n_train}): fit {fit_s:.1f} s, predict {predict_s:.1f} s, R2 "
        + ", ".join(f"{label} {v:.3f}" for label, v in zip(labels, r2))
    )
    result.update(y_pred=y_pred, fit_s=fit_s, predict_s=predict_s)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez adds no ".npz"
            np.savez(fh, **result)

    stages.write(stages.path(tag), save)
    return result


def _lightgbm_progress(total: int, log, every: float = 0.1):
    """A LightGBM callback that logs the trees grown about every tenth of the run."""
    step = max(1, int(round(total * every)))
    started = time.perf_counter()

    def callback(env) -> None:
        done = env.iteration - env.begin_iteration + 1
        if done % step == 0 or done == total:
            log(f"lightgbm: {done}/{total} trees, {time.perf_counter() - started:.0f} s")

    callback.order = 30
    return callback


def available_cores() -> int:
    """The CPU cores this process may use (its affinity mask, not the machine's count).

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _ceiling(stages, preset, grid, prior, test, seed, log, verbose=False, labels=("log_g",)):
    from .bounds import FisherCeiling

    path = stages.path("ceiling.csv")
    target = _target(labels)
    if stages.done("ceiling.csv"):
        log("ceiling: reusing per-spectrum evaluation")
        return pd.read_csv(path), FisherCeiling(
            grid, target=target, prior=prior, n_draws=preset.ceiling_samples
        )
    ceiling = FisherCeiling(
        grid,
        target=target,
        prior=prior,
        n_draws=preset.ceiling_samples,
        random_state=seed,
        progress=verbose,
    )
    t0 = time.perf_counter()
    theta = test.params[list(grid.param_names)]
    frame = ceiling.evaluate(
        test.X, test.params[list(labels)], theta=theta, snr=test.params["snr"].to_numpy()
    )
    log(f"ceiling: {len(test)} spectra in {time.perf_counter() - t0:.1f} s")
    stages.write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return frame, ceiling


#: Units of the labels in the results tables.
UNITS = dict(zip(PARAM_NAMES, ("K", "dex", "dex", "dex", "dex"), strict=True))


def _label_frame(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The ceiling's per-spectrum rows of one label (aligned with the test set)."""
    if "label" not in frame:
        return frame
    return frame[frame["label"] == label].reset_index(drop=True)


def _label_views(test, predictions, frame, labels):
    """Per label: its name, the truth, the ceiling's rows and each model's predictions.

    The predictions are ``{model: {"y_pred": (n,), "y_std": (n,)}}``, ``y_std``
    only for models that return one.
    """
    for j, label in enumerate(labels):
        preds = {
            name: {key: _columns(res[key])[:, j] for key in ("y_pred", "y_std") if key in res}
            for name, res in predictions.items()
        }
        yield label, test.params[label].to_numpy(dtype=float), _label_frame(frame, label), preds


def _summary_rows(test, predictions, frame, labels=("log_g",)):
    from .metrics import regression_scores

    rows = []
    for label, y, f, preds in _label_views(test, predictions, frame, labels):
        bayes_mean = f["posterior_mean"].to_numpy()
        mse_bayes = float(np.mean((y - bayes_mean) ** 2))
        entries = [(name, p["y_pred"], predictions[name]) for name, p in preds.items()]
        entries.append(("bayes_ceiling", bayes_mean, None))
        for name, y_pred, res in entries:
            scores = regression_scores(y, y_pred)
            mse = float(np.mean((y - y_pred) ** 2))
            rows.append(
                {
                    "model": name,
                    "label": label,
                    "unit": UNITS.get(label, ""),
                    "r2": scores["r2"],
                    "mae": scores["mae"],
                    "rmse": scores["rmse"],
                    "bias": scores["bias"],
                    "fit_s": np.nan if res is None else float(res["fit_s"]),
                    "predict_s": np.nan if res is None else float(res["predict_s"]),
                    "efficiency": mse_bayes / mse if mse > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _per_snr(test, predictions, frame, bins, seed, labels=("log_g",)):
    """Per-SNR tables of every label, stacked (column ``label``)."""
    from .metrics import snr_bin_edges

    snr = test.params["snr"].to_numpy()
    edges = snr_bin_edges(snr, bins)
    tables, per_model, ceilings = [], {}, {}
    for label, y, f, preds in _label_views(test, predictions, frame, labels):
        y_preds = {name: p["y_pred"] for name, p in preds.items()}
        table, models, ceiling_table = _per_snr_label(y, snr, edges, y_preds, f, seed)
        table.insert(0, "label", label)
        tables.append(table)
        per_model[label], ceilings[label] = models, ceiling_table
    return pd.concat(tables, ignore_index=True), per_model, ceilings


def _per_snr_label(y, snr, edges, preds, frame, seed):
    from .bounds import summarise_ceiling
    from .metrics import assign_snr_bins, compare_to_ceiling, scores_by_snr

    per_model = {
        name: scores_by_snr(y, y_pred, snr, bins=edges, random_state=seed)
        for name, y_pred in preds.items()
    }
    which = assign_snr_bins(snr, edges)
    ceil_rows = []
    for b in range(len(edges) - 1):
        sel = frame[which == b]
        row = summarise_ceiling(sel) if len(sel) > 1 else {}
        row.update(snr_lo=edges[b], snr_hi=edges[b + 1], snr=float(np.median(snr[which == b])))
        ceil_rows.append(row)
    ceiling_table = pd.DataFrame(ceil_rows)
    table = pd.DataFrame(
        {
            "snr_lo": edges[:-1],
            "snr_hi": edges[1:],
            "snr": ceiling_table["snr"],
            "n": np.bincount(which, minlength=len(edges) - 1),
        }
    )
    for name, t in per_model.items():
        table[f"r2_{name}"] = t["r2"].to_numpy()
    table["r2_bayes"] = ceiling_table.get("r2_bayes")
    table["r2_bayes_mc_err"] = ceiling_table.get("r2_bayes_mc_err")
    table["r2_fisher_median"] = ceiling_table.get("r2_max_median")
    # model minus ceiling in units of the paired standard error (test-set sampling and
    # Monte-Carlo error): a z above 2-3 would mean a model beats the ceiling
    for name, y_pred in preds.items():
        paired = compare_to_ceiling(
            y,
            y_pred,
            frame["posterior_mean"],
            snr,
            bayes_mc_se=frame["posterior_mean_se"],
            bins=edges,
        )
        table[f"se_{name}"] = paired["se"].to_numpy()
        table[f"z_{name}"] = paired["z"].to_numpy()
    return table, per_model, ceiling_table


def _calibration(test, predictions, frame, bins, labels=("log_g",)):
    """Coverage, z and PIT of every estimate with an uncertainty, overall and per SNR bin.

    Every estimate is judged by what ``predict(X, return_std=True)`` returns,
    Gaussian intervals mean +- std (the Bayes estimator's: posterior mean and
    standard deviation). The ratio of each std to the exact posterior std is
    reported next to them.
    """
    from .metrics import calibration_by_snr, calibration_scores, snr_bin_edges, std_ratio

    snr = test.params["snr"].to_numpy()
    edges = snr_bin_edges(snr, bins)
    overall, per_bin, curves = [], [], {}
    views = _label_views(test, predictions, frame, labels)
    for j, (label, y, f, preds) in enumerate(views):
        post_std = np.sqrt(f["posterior_var"].to_numpy())
        sources = {name: p for name, p in preds.items() if "y_std" in p}
        sources["bayes_ceiling"] = {"y_pred": f["posterior_mean"].to_numpy(), "y_std": post_std}
        for name, src in sources.items():
            scores = calibration_scores(y, src["y_pred"], src["y_std"])
            scores.pop("pit_hist", None)
            ratio = std_ratio(src["y_std"], post_std)["median"]
            overall.append({"model": name, "label": label, **scores, "std_ratio_median": ratio})
            table = calibration_by_snr(
                y, src["y_pred"], src["y_std"], snr, bins=edges, posterior_std=post_std
            )
            table.insert(0, "label", label)
            table.insert(0, "model", name)
            per_bin.append(table)
            if j == 0:
                curves[name] = src
    return pd.DataFrame(overall), pd.concat(per_bin, ignore_index=True), curves


def _figures(stages, test, predictions, per_model, ceilings, frame, lc=None, curves=None,
             labels=("log_g",)):  # fmt: skip
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plotting import plot_learning_curve, plot_parity, plot_r2_vs_snr, plot_reliability

    out = stages.out

    def save(fig, name: str, dpi: int) -> None:
        stages.write(out / name, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
        paths.append(out / name)
        plt.close(fig)

    paths = []
    for j, (label, y, f, preds) in enumerate(_label_views(test, predictions, frame, labels)):
        suffix = "" if j == 0 else f"_{label}"
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        plot_r2_vs_snr(per_model[label], ceilings[label], ax=ax)
        ax.set_title(f"{label}: models vs the Bayes-optimal ceiling (test set)")
        fig.tight_layout()
        save(fig, f"r2_vs_snr{suffix}.png", 120)

        y_preds = {name: p["y_pred"] for name, p in preds.items()}
        y_preds["bayes_ceiling"] = f["posterior_mean"].to_numpy()
        fig, axes = plt.subplots(1, len(y_preds), figsize=(3.2 * len(y_preds), 3.4), squeeze=False)
        crlb = f["crlb"].to_numpy() if "crlb" in f else None
        for ax, (name, y_pred) in zip(axes[0], y_preds.items()):
            plot_parity(y, y_pred, crlb=crlb, ax=ax, label=name)
            ax.set_title(name)
        fig.tight_layout()
        save(fig, f"parity{suffix}.png", 110)

    if curves:
        from .metrics import reliability_curve

        snr = test.params["snr"].to_numpy()
        y = test.params[labels[0]].to_numpy(dtype=float)
        fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.6), squeeze=False)
        for ax, (name, src) in zip(axes[0], curves.items()):
            curve = reliability_curve(y, src["y_pred"], src["y_std"], snr, bins=4)
            plot_reliability(curve, ax=ax)
            ax.set_title(f"{name}: {labels[0]}")
        fig.tight_layout()
        save(fig, "reliability.png", 110)

    if lc is not None:
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
        plot_learning_curve(lc["sizes"], lc["r2"], ceiling=lc["ceiling"], ax=ax)
        fig.tight_layout()
        save(fig, "learning_curve.png", 120)
    return paths


def _resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run_benchmark(
    preset: str | BenchmarkPreset = "cpu",
    out="specreg-benchmark",
    *,
    device: str = "auto",
    models: tuple[str, ...] = MODELS,
    labels: tuple[str, ...] = ("log_g",),
    learning_curve: bool = False,
    model=None,
    box: dict | None = None,
    snap: bool | None = None,
    seed: int = 0,
    jobs: int | None = None,
    verbose: bool = True,
    grid=None,
) -> dict:
    """Run the whole comparison; write tables, ``results.json`` and figures to ``out``.

    Parameters
    ----------
    preset : {"smoke", "cpu", "reference", "paper"} or BenchmarkPreset, default="cpu"
        ``smoke`` runs in about 20 s (tests), ``cpu`` in about 15 minutes on 2
        cores, ``reference`` is ``cpu`` with the reference study's sampling (the 5-D
        grid, snapped labels, mag 20.5-22.5), ``paper`` is the reference set-up (1M training spectra; needs a GPU and
        about 64 GB of memory).
    out : str or Path, default="specreg-benchmark"
        Output directory; finished stages found there are reused.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Device of the ViT.
    models : tuple of str
        Subset of ``("ridge", "lightgbm", "template_fit", "vit")``.
    labels : tuple of str, default=("log_g",)
        The labels every model predicts (all at once: multi-output Ridge and
        ViT, one LightGBM booster per label, one joint template fit) and the
        ceiling is computed for, e.g. ``("T_eff", "log_g", "M_H")``; the tables
        have one block of rows per label.
    learning_curve : bool, default=False
        Also train Ridge, LightGBM and the ViT on growing subsets (R2 vs N).
    model : SpectralModel, optional
        The forward model of the sets and the ceiling. Default: the preset's embedded
        model (the 3-D grid, or the 5-D one for the ``reference`` preset).
    box : dict of str -> (float, float), optional
        Narrower label ranges to draw from, e.g. ``{"T_eff": (4500, 5500)}``; each
        inside the grid's box (the ceiling's prior is the same box).
    snap : bool, optional
        Snap all but one label per spectrum to grid nodes; default the preset's.
    seed : int, default=0
        Seed of the training set (the test set uses ``seed + 1``) and of the models.
    jobs : int, optional
        Threads of LightGBM and workers of the template fit; default the cores this
        process may use (:func:`available_cores`).
    verbose : bool, default=True
        Log every stage, with progress lines for LightGBM (every tenth of the
        trees), the ViT (one line per epoch), the template fit and the ceiling.
    grid : SpectralModel, optional
        Deprecated old name of ``model``.

        .. deprecated:: 0.1
           ``grid`` was renamed ``model``; it will be removed in 0.3.

    Returns
    -------
    dict
        The content of ``results.json``: configuration, machine, the results table
        (R2, MAE/RMSE/bias in dex, fit and predict seconds, efficiency = MSE_Bayes /
        MSE_model), the per-SNR table and the figure paths.

    Examples
    --------
    >>> results = run_benchmark("smoke", "bench-out")  # doctest: +SKIP
    >>> results["results"][0]["model"]  # doctest: +SKIP
    'ridge'
    """
    from .datasets import load_grid

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {MODELS}")
    if not models:
        raise ValueError(f"models is empty; choose one or more of {MODELS}")
    check_int(seed, "seed", low=0)
    learning_curve = check_bool(learning_curve, "learning_curve")
    if snap is not None:
        snap = check_bool(snap, "snap")
    log = _log_to(verbose)
    if jobs is None:
        jobs = available_cores()
    jobs = check_int(jobs, "jobs")
    started = time.perf_counter()
    device = _resolve_device(device)
    if "vit" in models and preset.name == "paper" and device != "cuda":
        raise ValueError("the paper preset trains the reference ViT: it needs a CUDA GPU")
    from .spectra._validation import renamed

    grid = renamed(model, grid, old="grid", new="model")
    grid = load_grid(preset.grid) if grid is None else grid
    from .spectra import LabelPrior
    from .spectra._validation import resolve_target

    snap = preset.snap if snap is None else snap
    prior = LabelPrior.from_grid(grid, box=box, snap=snap)

    labels = resolve_target(tuple(labels), tuple(grid.param_names), name="labels")
    out = Path(out)
    config = {
        "preset": asdict(preset),
        "labels": list(labels),
        "seed": seed,
        "grid": getattr(grid, "metadata", {}).get("name", repr(grid)),
        "prior": repr(prior),
        "specreg": __version__,
        "errors": "reference",  # the reported errors of the simulated sets
    }
    stages = _Stages(out, config, log)
    log(f"preset {preset.name}: {preset.n_train} training / {preset.n_test} test spectra -> {out}")

    train, test = _data(stages, preset, grid, prior, seed, log)

    def fit_predict(name: str, n_train: int | None = None) -> dict:
        return _fit_predict(
            stages, name, preset, grid, train, test, device, seed, log, n_train, jobs, verbose,
            labels,
        )  # fmt: skip

    predictions = {name: fit_predict(name) for name in models}
    frame, ceiling = _ceiling(stages, preset, grid, prior, test, seed, log, verbose, labels)
    summary = _summary_rows(test, predictions, frame, labels)
    table, per_model, ceilings = _per_snr(test, predictions, frame, preset.bins, seed, labels)
    calibration, calibration_snr, curves = _calibration(
        test, predictions, frame, preset.bins, labels
    )
    lc = None
    if learning_curve:
        sizes = [n for n in preset.learning_curve_sizes if n <= len(train)]
        first = summary[summary["label"] == labels[0]]
        lc = {"sizes": sizes, "r2": {}, "ceiling": float(first.iloc[-1]["r2"])}
        y_test = _columns(_labels_of(test, labels))[:, 0]
        for name in [m for m in models if m != "template_fit"]:
            r2 = []
            for n in sizes:
                res = fit_predict(name, n)
                y_pred = _columns(res["y_pred"])[:, 0]
                r2.append(1 - np.mean((y_test - y_pred) ** 2) / np.var(y_test))
            lc["r2"][name] = r2
    figures = _figures(stages, test, predictions, per_model, ceilings, frame, lc, curves, labels)

    results = {
        "specreg": __version__,
        "preset": asdict(preset),
        "seed": seed,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "device": device,
        "grid": getattr(grid, "metadata", {}).get("name", repr(grid)),
        "n_train": len(train),
        "n_test": len(test),
        "labels": list(labels),
        "results": summary.to_dict(orient="records"),
        "per_snr": table.to_dict(orient="records"),
        "calibration": calibration.to_dict(orient="records"),
        "calibration_per_snr": calibration_snr.to_dict(orient="records"),
        "learning_curve": lc,
        "figures": [str(p) for p in figures],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    results = _strict_json(results)
    text = json.dumps(results, indent=2, allow_nan=False) + "\n"
    stages.write(out / "results.json", lambda tmp: tmp.write_text(text))
    tables = (
        ("results.csv", summary),
        ("per_snr.csv", table),
        ("calibration.csv", calibration),
        ("calibration_per_snr.csv", calibration_snr),
    )
    for name, frame in tables:
        stages.write(out / name, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
    if verbose:
        print(format_results(results))
    return results


def _strict_json(obj):
    """``obj`` with NaN and infinities as None (null): strict JSON for every reader."""
    if isinstance(obj, dict):
        return {str(k): _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _strict_json(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def format_results(results: dict) -> str:
    """Plain-text tables of a benchmark's ``results.json``.

    Examples
    --------
    >>> print(format_results({"results": [], "per_snr": []}))  # doctest: +ELLIPSIS
    <BLANKLINE>
    ...
    """
    summary = pd.DataFrame(results["results"])
    per_snr = pd.DataFrame(results["per_snr"])
    calibration = pd.DataFrame(results.get("calibration", []))
    labels = ", ".join(results.get("labels", ["log_g"]))

    def table(frame: pd.DataFrame) -> str:
        return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")

    lines = ["", f"{labels} on the test set (efficiency = MSE_Bayes / MSE_model):"]
    if not summary.empty:
        lines.append(table(summary))
    lines += ["", "R2 per SNR bin (per-spectrum SNR, equal-count bins):"]
    if not per_snr.empty:
        lines.append(table(per_snr))
    if not calibration.empty:
        keep = [
            c
            for c in ("model", "label", "coverage_68", "coverage_95", "z_std", "pit_ks",
                      "std_ratio_median")
            if c in calibration
        ]  # fmt: skip
        lines += ["", "Calibration of the uncertainties (nominal coverage 0.68 / 0.95):"]
        lines.append(table(calibration[keep]))
    return "\n".join(lines)
