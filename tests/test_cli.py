import subprocess
import sys

import numpy as np
import pytest

from specreg import __version__
from specreg.cli import main
from specreg.datasets import ShardedSpectra, read_spectra, save_grid


@pytest.fixture(scope="module")
def grid_file(toy_grid, tmp_path_factory):
    return save_grid(toy_grid, tmp_path_factory.mktemp("grid") / "toy.h5")


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "simulate" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "specreg.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "simulate" in out.stdout


def test_simulate_writes_a_readable_set(grid_file, tmp_path):
    out = tmp_path / "test.h5"
    args = ["simulate", "--n", "40", "--out", str(out), "--grid", str(grid_file)]
    assert main([*args, "--noise", "fixed", "--seed", "3", "--quiet", "--mag", "21", "22"]) == 0
    s = read_spectra(out)
    assert len(s) == 40 and s.noisy is not None
    assert s.params["mag"].between(21, 22).all()
    assert s.metadata["seed"] == 3


def test_simulate_shards(grid_file, tmp_path):
    out = tmp_path / "shards"
    args = ["simulate", "--n", "25", "--out", str(out), "--grid", str(grid_file), "--quiet"]
    assert main([*args, "--shard-size", "10", "--chunk-size", "8", "--seed", "1"]) == 0
    shards = ShardedSpectra(out)
    assert len(shards) == 25 and len(shards.shards) == 3
    assert np.isfinite(shards[[24]].flux).all()


def test_simulate_bad_input_is_a_clear_error(grid_file, tmp_path, capsys):
    args = ["simulate", "--n", "5", "--out", str(tmp_path / "x.h5"), "--grid", str(grid_file)]
    assert main([*args, "--mag", "nan", "--quiet"]) == 2
    assert "error" in capsys.readouterr().err
    missing = str(tmp_path / "missing.h5")
    assert main(["simulate", "--n", "5", "--out", "x.h5", "--grid", missing, "--quiet"]) == 2


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--n", "0"], "argument --n: must be >= 1, got 0"),
        (["--n", "-5"], "argument --n: must be >= 1, got -5"),
        (["--n", "3", "--chunk-size", "0"], "argument --chunk-size: must be >= 1"),
        (["--n", "3", "--shard-size", "-1"], "argument --shard-size: must be >= 0"),
        (["--n", "3", "--mag", "20", "21", "22"], "--mag takes one magnitude or a range"),
    ],
)
def test_simulate_refuses_bad_numbers_with_one_line(tmp_path, capsys, extra, match):
    code = None
    try:
        code = main(["simulate", "--out", str(tmp_path / "a.h5"), *extra])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not (tmp_path / "a.h5").exists()


def test_simulate_reports_reference_errors_by_default(tmp_path):
    from specreg.datasets import read_spectra

    assert main(["simulate", "--n", "40", "--out", str(tmp_path / "a.h5"), "--mag", "21.5",
                 "--seed", "0", "--quiet"]) == 0  # fmt: skip
    s = read_spectra(tmp_path / "a.h5")
    np.testing.assert_array_equal(s.error, np.broadcast_to(s.error[0], s.error.shape))


def test_help_and_argument_errors_do_not_import_the_heavy_stack():
    code = (
        "import contextlib, io, sys\n"
        "from specreg.cli import main\n"
        "for argv in (['--help'], ['simulate', '--n', '0', '--out', 'x.h5']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy', 'pandas', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_file_system_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["simulate", "--n", "3", "--out", str(blocker / "a.h5"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("specreg simulate: error:") and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_simulate_resumes_an_interrupted_sharded_write(grid_file, tmp_path, capsys):
    import json
    import signal
    import time

    out, ref = tmp_path / "shards", tmp_path / "ref"
    args = ["simulate", "--n", "4000", "--grid", str(grid_file), "--shard-size", "200"]
    args += ["--chunk-size", "100", "--seed", "3", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "specreg.cli", *args, "--out", str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        journals = list(out.glob("resume-*.json")) if out.exists() else []
        try:
            if journals and len(json.loads(journals[0].read_text())["shards"]) >= 2:
                break
        except ValueError:  # caught mid-replace
            pass
        time.sleep(0.01)
    assert proc.poll() is None, "the write finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "index.json").exists()
    assert main([*args, "--out", str(out)]) == 0
    assert "resuming an interrupted write" in capsys.readouterr().err
    assert main([*args, "--out", str(ref)]) == 0
    a, b = ShardedSpectra(out), ShardedSpectra(ref)
    assert len(a) == len(b) == 4000 and not list(out.glob("resume-*.json"))
    rows = np.arange(0, 4000, 7)
    np.testing.assert_array_equal(a[rows].flux, b[rows].flux)
    np.testing.assert_array_equal(a[rows].error, b[rows].error)
    pd_a, pd_b = a[rows].params, b[rows].params
    np.testing.assert_array_equal(pd_a.to_numpy(), pd_b.to_numpy())


@pytest.mark.parametrize("teff", ["5000:4000:250", "5000:x:250", "4000:5000:0"])
def test_bad_grid_build_ranges_are_one_line(tmp_path, capsys, teff):
    code = main(["grid", "build", "--teff", teff, "--logg", "1", "--mh", "0",
                 "--out", str(tmp_path / "g")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("specreg grid: error:") and "Traceback" not in err


def test_an_out_that_is_a_directory_is_one_line(tmp_path, capsys):
    code = main(["simulate", "--n", "3", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("specreg simulate: error:") and "Traceback" not in err
    assert tmp_path.is_dir()


def test_simulate_draws_inside_the_box_given_on_the_command_line(grid_file, tmp_path):
    out = tmp_path / "box.h5"
    args = ["simulate", "--n", "60", "--out", str(out), "--grid", str(grid_file), "--quiet"]
    assert main([*args, "--logg", "2", "3", "--teff", "4500", "5500", "--seed", "0"]) == 0
    params = read_spectra(out).params
    assert params["log_g"].between(2, 3).all() and params["T_eff"].between(4500, 5500).all()
    assert params["log_g"].std() > 0.1


def test_simulate_snaps_to_nodes_inside_the_box(grid_file, toy_grid, tmp_path):
    out = tmp_path / "snap.h5"
    args = ["simulate", "--n", "200", "--out", str(out), "--grid", str(grid_file), "--quiet"]
    assert main([*args, "--snap", "--logg", "2", "4", "--seed", "1"]) == 0
    logg = read_spectra(out).params["log_g"]
    nodes = toy_grid.axes["log_g"][(toy_grid.axes["log_g"] >= 2) & (toy_grid.axes["log_g"] <= 4)]
    on_node = np.isin(logg, nodes)
    assert 0.5 < on_node.mean() < 0.95 and logg.between(2, 4).all()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--am", "0", "0.2"], r"--am sets a_M, but the grid has no a_M .*--grid 5d"),
        (["--teff", "3000", "5000"], r"T_eff = \[3000, 5000\] must lie inside the grid's box"),
        (["--logg", "3", "2"], "LO < HI"),
    ],
)
def test_bad_label_ranges_name_the_label_and_the_box(grid_file, tmp_path, capsys, extra, match):
    args = ["simulate", "--n", "5", "--out", str(tmp_path / "a.h5"), "--grid", str(grid_file)]
    assert main([*args, *extra, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("specreg simulate: error:")
    import re

    assert re.search(match, err), err
    assert not (tmp_path / "a.h5").exists()


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--response", "--teff", "4000"], "--response builds the fixed design .* drop --teff"),
        ([], r"grid build needs --teff, --logg, --mh \(or --response\)"),
    ],
)
def test_grid_build_options_are_checked(tmp_path, capsys, extra, match):
    import re

    assert main(["grid", "build", "--out", str(tmp_path / "b"), *extra]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "b").exists()


def test_grid_assemble_recognises_a_response_build(tmp_path, capsys, monkeypatch):
    import json

    from specreg.grids import _response

    build = tmp_path / "b"
    build.mkdir()
    (build / "build.json").write_text(json.dumps({"log_ratio_scale": 2.0**-15}))
    seen = []
    monkeypatch.setattr(_response, "assemble_response", lambda b, o: seen.append((b, o)) or o)
    assert main(["grid", "assemble", str(build), "--out", str(tmp_path / "r.h5")]) == 0
    assert seen == [(str(build), str(tmp_path / "r.h5"))]
    assert "5-D response" in capsys.readouterr().out
