import json

import numpy as np
import pandas as pd
import pytest

from specreg.benchmark import PRESETS, format_results, run_benchmark
from specreg.cli import main
from specreg.datasets import save_grid


@pytest.fixture(scope="module")
def smoke_run(toy_grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    results = run_benchmark("smoke", out, model=toy_grid, verbose=False, device="cpu")
    return out, results


def test_smoke_benchmark_writes_results_and_figures(smoke_run):
    out, results = smoke_run
    on_disk = json.loads((out / "results.json").read_text())
    models = [row["model"] for row in on_disk["results"]]
    assert models == ["ridge", "lightgbm", "template_fit", "vit", "bayes_ceiling"]
    for row in on_disk["results"]:
        assert np.isfinite(row["r2"]) and row["mae"] > 0 and row["rmse"] >= row["mae"]
    assert len(on_disk["per_snr"]) == PRESETS["smoke"].bins
    for name in ("r2_vs_snr.png", "parity.png"):
        assert (out / name).stat().st_size > 10_000
    assert on_disk["n_train"] == 1500 and on_disk["n_test"] == 300
    # strict JSON (no bare NaN for the ceiling's fit time) and the tables as CSV files
    json.loads((out / "results.json").read_text(), parse_constant=pytest.fail)
    assert on_disk["results"][-1]["fit_s"] is None
    per_snr = pd.read_csv(out / "per_snr.csv")
    assert len(per_snr) == PRESETS["smoke"].bins and "z_ridge" in per_snr
    assert list(pd.read_csv(out / "results.csv")["model"]) == models


def test_no_model_beats_the_bayes_ceiling_beyond_noise(smoke_run):
    _, results = smoke_run
    rows = {r["model"]: r for r in results["results"]}
    ceiling = rows.pop("bayes_ceiling")["r2"]
    for name, row in rows.items():
        assert row["r2"] < ceiling + 0.05, name
        assert row["efficiency"] < 1.1, name


def test_second_run_reuses_finished_stages(smoke_run, toy_grid, capsys):
    out, first = smoke_run
    stamp = (out / "stages" / "model_ridge.npz").stat().st_mtime
    again = run_benchmark("smoke", out, model=toy_grid, verbose=True, device="cpu")
    printed = capsys.readouterr().out
    assert "reusing" in printed and "log_g on the test set" in printed
    assert (out / "stages" / "model_ridge.npz").stat().st_mtime == stamp
    # NaN (no fit time for the ceiling) is not == NaN: compare as frames
    pd.testing.assert_frame_equal(pd.DataFrame(again["results"]), pd.DataFrame(first["results"]))


def test_benchmark_cli_and_bad_preset(toy_grid, tmp_path, capsys):
    grid_file = save_grid(toy_grid, tmp_path / "toy.h5")
    args = [
        "benchmark",
        "--preset",
        "smoke",
        "--out",
        str(tmp_path / "o"),
        "--grid",
        str(grid_file),
    ]
    assert main([*args, "--models", "ridge", "template_fit", "--quiet"]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["model"] for r in results["results"]] == ["ridge", "template_fit", "bayes_ceiling"]
    with pytest.raises(ValueError, match="unknown preset"):
        run_benchmark("huge", tmp_path / "x", model=toy_grid)
    with pytest.raises(ValueError, match="unknown model"):
        run_benchmark("smoke", tmp_path / "x", model=toy_grid, models=("svm",))
    assert "R2 per SNR bin" in format_results(results)


def _quick(out, toy_grid, **kw):
    return run_benchmark(
        "smoke", out, model=toy_grid, verbose=False, device="cpu", models=("ridge",), **kw
    )


def test_a_changed_configuration_removes_only_the_runs_own_files(toy_grid, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mydata.h5").write_bytes(b"the user's own file")
    _quick(out, toy_grid, seed=0)
    capsys.readouterr()
    _quick(out, toy_grid, seed=1)  # another configuration, --quiet: still says what it does
    err = capsys.readouterr().err
    assert "configuration changed: removed the" in err and "nothing else" in err
    assert (out / "mydata.h5").read_bytes() == b"the user's own file"
    manifest = json.loads((out / "specreg-benchmark.json").read_text())
    assert "train.h5" in manifest["files"] and "mydata.h5" not in manifest["files"]


def test_a_foreign_training_set_is_never_reused_or_overwritten(toy_grid, tmp_path):
    from specreg.datasets import make_spectra, write_spectra

    out = tmp_path / "o"
    out.mkdir()
    foreign = make_spectra(50, model=toy_grid, random_state=9)
    write_spectra(foreign, out / "train.h5")
    before = (out / "train.h5").read_bytes()
    with pytest.raises(
        ValueError, match="refusing to overwrite .*train.h5: this benchmark did not"
    ):
        _quick(out, toy_grid)
    assert (out / "train.h5").read_bytes() == before


def test_a_file_left_by_a_killed_write_is_replaced_not_reused(toy_grid, tmp_path):
    out = tmp_path / "o"
    first = _quick(out, toy_grid)
    # as if killed while rewriting the Ridge predictions: listed as pending, partial bytes
    manifest_path = out / "specreg-benchmark.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["stages/model_ridge.npz"] = -1
    manifest_path.write_text(json.dumps(manifest))
    (out / "stages" / "model_ridge.npz").write_bytes(b"partial")
    again = _quick(out, toy_grid)
    assert again["results"][0]["r2"] == pytest.approx(first["results"][0]["r2"])


def test_long_stages_report_progress_and_quiet_silences_them(toy_grid, tmp_path, capsys):
    kw = dict(model=toy_grid, device="cpu", models=("lightgbm", "vit"), jobs=1)
    run_benchmark("smoke", tmp_path / "a", verbose=True, **kw)
    out = capsys.readouterr().out
    assert "lightgbm: 60/60 trees" in out and "lightgbm: 6/60 trees" in out
    assert "epoch" in out and "train_loss" in out  # one line per ViT epoch
    run_benchmark("smoke", tmp_path / "b", verbose=False, **kw)
    captured = capsys.readouterr()
    assert captured.out == "" and "trees" not in captured.err
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_benchmark("smoke", tmp_path / "c", **{**kw, "models": ("ridge",), "jobs": 0})


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"device": "gpu"}, "device must be 'auto', 'cpu' or 'cuda'"),
        ({"models": ()}, "models is empty"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 2.5}, "seed must be an integer >= 0"),
        ({"learning_curve": "no"}, "learning_curve must be True or False"),
        ({"snap": "no"}, "snap must be True or False"),
    ],
)
def test_run_benchmark_checks_its_options_before_simulating(toy_grid, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        run_benchmark("smoke", tmp_path / "out", model=toy_grid, **kw)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"n_train": -1}, "n_train must be an integer >= 2"),
        ({"n_test": 2.5}, "n_test must be an integer >= 2"),
        ({"bins": 0}, "bins must be a positive integer"),
        ({"ceiling_samples": 4}, "ceiling_samples must be an integer >= 8"),
        ({"ridge_alpha": -1.0}, "ridge_alpha must be a finite number > 0"),
        ({"learning_curve_sizes": (100, 0)}, "learning_curve_sizes must be an integer >= 2"),
        ({"grid": "4d"}, "grid must be None"),
        ({"snap": "yes"}, "snap must be True or False"),
    ],
)
def test_a_preset_is_checked_when_it_is_made(change, match):
    from dataclasses import replace

    with pytest.raises(ValueError, match=match):
        replace(PRESETS["smoke"], **change)


def test_the_vit_stage_checkpoints_every_epoch_and_resumes(toy_grid, tmp_path):
    kw = dict(model=toy_grid, device="cpu", models=("vit",), verbose=False, jobs=1)
    out = tmp_path / "o"
    first = run_benchmark("smoke", out, **kw)
    (last,) = (out / "stages" / "vit-checkpoints").glob("*/last.pt")
    # as if killed after the last epoch's checkpoint but before the predictions were saved
    (out / "stages" / "model_vit.npz").unlink()
    again = run_benchmark("smoke", out, **kw)
    assert again["results"][0]["r2"] == pytest.approx(first["results"][0]["r2"], abs=1e-6)
    assert last.exists()


def test_several_labels_from_the_command_line(toy_grid, tmp_path):
    grid_file = save_grid(toy_grid, tmp_path / "toy.h5")
    out = tmp_path / "labels"
    args = ["benchmark", "--preset", "smoke", "--out", str(out), "--grid", str(grid_file)]
    labels = ["T_eff", "log_g", "M_H"]
    models = ["ridge", "template_fit"]
    assert main([*args, "--models", *models, "--labels", *labels, "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == labels
    rows = pd.DataFrame(results["results"])
    assert len(rows) == 3 * (len(models) + 1)
    assert set(rows["label"]) == set(labels) and set(rows["unit"]) == {"K", "dex"}
    # every model learns every label; T_eff is the easiest one
    teff = rows[rows["label"] == "T_eff"].set_index("model")["r2"]
    assert (teff > 0.5).all(), teff
    per_snr = pd.read_csv(out / "per_snr.csv")
    assert sorted(per_snr["label"].unique()) == sorted(labels)
    assert len(per_snr) == 3 * PRESETS["smoke"].bins
    cal = pd.DataFrame(results["calibration"])
    assert set(cal["model"]) == {"template_fit", "bayes_ceiling"}
    assert cal["coverage_68"].between(0.4, 0.95).all()
    for name in ("r2_vs_snr.png", "r2_vs_snr_log_g.png", "r2_vs_snr_M_H.png", "reliability.png"):
        assert (out / name).is_file(), name
    with pytest.raises(ValueError, match=r"labels label\(s\) \['a_M'\] are not labels"):
        run_benchmark("smoke", tmp_path / "x", model=toy_grid, labels=("a_M",))


def test_grid_is_a_deprecated_name_of_model(toy_grid, tmp_path):
    with pytest.warns(FutureWarning, match="'grid' was renamed 'model'"):
        run_benchmark(
            "smoke", tmp_path / "x", grid=toy_grid, models=("ridge",), verbose=False, device="cpu"
        )
