"""``specreg ceiling`` on a 5-D model: the 3-D and 5-D ceilings side by side."""

import matplotlib
import pandas as pd
import pytest

from specreg._cli_ceiling import compare_tables
from specreg.cli import main
from specreg.datasets import load_grid
from specreg.datasets._testing import write_toy_response

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def response_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy5d") / "toy5d.h5"
    return write_toy_response(path, load_grid(normalize=False))


def test_ceiling_on_a_5d_model_prints_the_3d_one_beside_it(response_file, tmp_path, capsys):
    csv = tmp_path / "c.csv"
    argv = ["ceiling", "--mag", "19", "22", "--grid", str(response_file), "--n", "8"]
    argv += ["--n-draws", "16", "--out", str(tmp_path / "c.png"), "--csv", str(csv), "--quiet"]
    assert main(argv) == 0
    assert "3-D (other labels known, at 0) and 5-D (marginalised)" in capsys.readouterr().out
    table = pd.read_csv(csv)
    assert table["mag"].tolist() == [19.0, 22.0]
    for col in ("r2_bayes_3d", "r2_bayes_5d", "schur_3d", "schur_5d", "delta_r2_max"):
        assert table[col].notna().all(), col
    # marginalising over two more labels can only lose Fisher information
    assert (table["schur_5d"] <= table["schur_3d"] + 1e-9).all()
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_no_compare_prints_the_5d_table_alone(response_file, tmp_path, capsys):
    argv = ["ceiling", "--mag", "20", "--grid", str(response_file), "--n", "6"]
    assert main([*argv, "--n-draws", "8", "--out", "", "--quiet", "--no-compare"]) == 0
    assert "side by side" not in capsys.readouterr().out


def test_compare_tables_refuses_different_magnitudes():
    t = pd.DataFrame({"mag": [20.0], "snr": [9.0], "r2_bayes": [0.8]})
    t = t.assign(r2_max_median=0.9, schur=0.6)
    with pytest.raises(ValueError, match="different magnitudes"):
        compare_tables(t, t.assign(mag=21.0), 3, 5)
