"""``specreg ceiling`` end to end on a small grid file."""

import matplotlib
import pandas as pd

from specreg.cli import main
from specreg.datasets import save_grid

matplotlib.use("Agg")


def test_ceiling_command_prints_table_and_writes_figure(small_grid, tmp_path, capsys):
    grid_path = save_grid(small_grid, tmp_path / "grid.h5")
    fig, csv = tmp_path / "c.png", tmp_path / "c.csv"
    argv = ["ceiling", "--mag", "19", "22.5", "--grid", str(grid_path), "--n", "30"]
    argv += ["--n-draws", "32", "--out", str(fig), "--csv", str(csv), "--quiet", "--reference"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "r2_bayes" in out and "r2_max_median" in out and "var_nodes" in out
    assert fig.stat().st_size > 1000
    table = pd.read_csv(csv)
    assert table["mag"].tolist() == [19.0, 22.5]
    assert table["r2_bayes"].iloc[0] > table["r2_bayes"].iloc[1]


def test_ceiling_command_reports_missing_grid(tmp_path, capsys):
    assert main(["ceiling", "--grid", str(tmp_path / "nope.h5"), "--n", "5", "--quiet"]) == 2
    assert "error" in capsys.readouterr().err


def test_ceiling_command_rejects_tiny_n(small_grid, tmp_path, capsys):
    grid_path = save_grid(small_grid, tmp_path / "grid.h5")
    assert main(["ceiling", "--grid", str(grid_path), "--n", "1", "--quiet"]) == 2
    assert "--n" in capsys.readouterr().err


def test_empty_out_writes_no_figure(small_grid, tmp_path, capsys, monkeypatch):
    grid_path = save_grid(small_grid, tmp_path / "grid.h5")
    monkeypatch.chdir(tmp_path)
    argv = ["ceiling", "--mag", "20", "--grid", str(grid_path), "--n", "20", "--n-draws", "16"]
    assert main([*argv, "--out", "", "--quiet"]) == 0
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / ".png").exists()


def test_n_samples_option_is_a_deprecated_alias(small_grid, tmp_path, capsys):
    import pytest

    grid_path = save_grid(small_grid, tmp_path / "grid.h5")
    argv = ["ceiling", "--mag", "20", "--grid", str(grid_path), "--n", "10", "--out", ""]
    with pytest.warns(FutureWarning, match="--n-samples was renamed --n-draws"):
        assert main([*argv, "--n-samples", "16", "--quiet"]) == 0
