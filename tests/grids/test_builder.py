"""Planning (geometry switch), resumability with a fake synthesis, assembly."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from specreg._atomic import temp_name
from specreg.grids import (
    assemble_grid,
    build_grid,
    node_filename,
    pending_nodes,
    plan_grid,
    plan_node,
)
from specreg.grids._builder import _build_grid
from specreg.spectra import pfs_mr_wave


@pytest.mark.parametrize(
    ("logg", "expected"),
    [
        (2.5, [(2.5, "spherical", 1.0)]),
        (3.0, [(3.0, "spherical", 1.0)]),
        (3.1, [(3.0, "spherical", 0.8), (3.5, "plane-parallel", 0.2)]),
        (3.25, [(3.0, "spherical", 0.5), (3.5, "plane-parallel", 0.5)]),
        (3.5, [(3.5, "plane-parallel", 1.0)]),
        (4.5, [(4.5, "plane-parallel", 1.0)]),
    ],
)
def test_geometry_switch_planning(logg, expected):
    plan = plan_node(5000.0, logg, -0.5, 0.2, 0.1)
    got = [(c.logg, c.geometry, round(c.weight, 6)) for c in plan.components]
    assert got == expected
    assert all(c.teff == 5000.0 and c.mh == -0.5 for c in plan.components)
    assert sum(c.weight for c in plan.components) == pytest.approx(1.0)
    assert plan.params == (5000.0, logg, -0.5, 0.2, 0.1)


def test_plan_grid_orders_expensive_nodes_first():
    plans = plan_grid([4000.0, 5000.0], [2.0, 3.25], [0.0])
    costs = [(p.params[0] < 4500) * 13 + 5 for p in plans]
    first = plans[0]
    assert first.params[0] == 4000.0 and len(first.components) == 2  # TiO + two runs
    assert len(plans) == 4
    assert costs[0] >= costs[-1]


def test_node_filename_is_unique_and_stable():
    a = node_filename(4500, 2.0, -0.25)
    assert a == "t4500_g+2.000_m-0.250_a+0.000_c+0.000"
    assert node_filename(4500, 2.0, 0.25) != a


def _labelled(teff, logg, mh):
    return {"T_eff": teff, "log_g": logg, "M_H": mh}


def _fake_wave():
    return 7100.0, 0.5, 3501  # 7100-8850 Å at 0.5 Å: cheap


def _make_fake(calls, fail=()):
    def synth(plan):
        calls.append(plan.name)
        if plan.params[:3] in fail:
            raise RuntimeError("boom")
        w0, dw, n = _fake_wave()
        wave = w0 + dw * np.arange(n)
        t, g, m = plan.params[:3]
        cont = (t / 5000.0) * np.ones(n)
        flux = cont * (1.0 - 0.3 * np.exp(-0.5 * ((wave - 8542.0) / (1.0 + g)) ** 2) * (1 + m))
        return {
            "flux": flux.astype(np.float32),
            "continuum": cont.astype(np.float32),
            "wave0": w0,
            "dwave": dw,
            "n": n,
            "meta": {"params": list(plan.params), "models": [{"source": "node"}]},
        }

    return synth


def test_build_is_resumable_and_logs_failures(tmp_path):
    calls: list[str] = []
    axes = ([4500.0, 5000.0], [2.0, 4.0], [-1.0, 0.0])
    rep = _build_grid(
        _labelled(*axes),
        out=tmp_path,
        synthesize=_make_fake(calls, fail={(5000.0, 4.0, 0.0)}),
    )
    assert (rep.n_total, rep.n_done, rep.n_failed) == (8, 7, 1)
    assert len(calls) == 8
    assert (tmp_path / "failures.log").exists()
    assert "FAIL" in (tmp_path / "build.log").read_text()
    # A killed run may leave a temporary file: it must not count as done.
    junk = temp_name(tmp_path / "spectra" / f"{node_filename(5000.0, 4.0, 0.0)}.npz")
    junk.write_bytes(b"partial")

    calls.clear()
    rep2 = _build_grid(_labelled(*axes), out=tmp_path, synthesize=_make_fake(calls))
    assert calls == [node_filename(5000.0, 4.0, 0.0)]  # only the failed node re-runs
    assert (rep2.n_done, rep2.n_skipped, rep2.n_failed) == (1, 7, 0)
    assert pending_nodes(plan_grid(*axes), tmp_path) == []
    assert not list((tmp_path / "spectra").glob("*.tmp-*"))


def _no_tools(cache_dir, settings):
    """Worker initialiser of the pool test: nothing to provision."""


def _fake_node(plan):
    if plan.params[1] == 4.0 and plan.params[0] == 5000.0:
        raise RuntimeError("boom")
    return _make_fake([])(plan)


def test_the_worker_pool_hands_every_outcome_to_the_parent(monkeypatch):
    from specreg.grids import _builder

    # the workers are forked from this process: they see the stand-ins
    monkeypatch.setattr(_builder, "_worker_init", _no_tools)
    monkeypatch.setattr(_builder, "synthesize_node", _fake_node)
    plans = plan_grid([4500.0, 5000.0], [2.0, 4.0], [0.0])
    got = {}
    _builder._run_in_pool(plans, lambda n, res, err: got.update({n: (res, err)}), jobs=2)
    assert sorted(got) == sorted(p.name for p in plans)
    bad = node_filename(5000.0, 4.0, 0.0)
    assert got[bad][0] is None and "boom" in got[bad][1]
    assert all(res["n"] == 3501 for n, (res, _) in got.items() if n != bad)


def test_build_refuses_different_settings_in_same_dir(tmp_path):
    _build_grid(_labelled([5000.0], [2.0], [0.0]), out=tmp_path, synthesize=_make_fake([]))
    with pytest.raises(ValueError, match="different settings"):
        _build_grid(
            _labelled([5000.0], [2.0], [0.0]),
            out=tmp_path,
            settings={"step": 0.03},
            synthesize=_make_fake([]),
        )


def test_build_grid_takes_progress_bar_and_warns_for_progress(tmp_path):
    axes = ([5000.0], [2.0], [0.0])
    _build_grid(_labelled(*axes), out=tmp_path, synthesize=_make_fake([]))
    # every node is done: nothing to synthesise, so no Turbospectrum is needed
    rep = build_grid(*axes, out=tmp_path, progress_bar=False)
    assert (rep.n_total, rep.n_skipped) == (1, 1)
    with pytest.warns(FutureWarning, match="'progress' was renamed 'progress_bar'") as record:
        rep = build_grid(*axes, out=tmp_path, progress=False)
    assert rep.n_skipped == 1
    assert record[0].filename == __file__  # the warning points at the caller
    with pytest.raises(TypeError, match="pass 'progress_bar' only"):
        build_grid(*axes, out=tmp_path, progress_bar=False, progress=True)
    import inspect

    assert "synthesize" not in inspect.signature(build_grid).parameters  # a test hook


def test_assemble_writes_the_grid_format(tmp_path):
    axes = ([4500.0, 5000.0], [2.0, 4.0], [-1.0, 0.0])
    _build_grid(
        _labelled(*axes),
        out=tmp_path / "b",
        synthesize=_make_fake([], fail={(4500.0, 2.0, -1.0)}),
    )
    path = assemble_grid(tmp_path / "b", tmp_path / "grid.h5")
    assert path.exists() and not (tmp_path / "grid.h5.tmp").exists()
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "specreg-grid"
        assert int(f.attrs["schema_version"]) == 1
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["param_names"]]
        assert names == ["T_eff", "log_g", "M_H"]  # a_M, C_M do not vary
        meta = json.loads(f.attrs["metadata"])
        assert meta["lsf"]["R"] == 5000.0
        assert "Gustafsson" in " ".join(meta["citations"])
        np.testing.assert_array_equal(f["wave"][()], pfs_mr_wave())
        np.testing.assert_array_equal(f["axes/T_eff"][()], [4500.0, 5000.0])
        flux, cont, valid = f["flux"], f["continuum"][()], f["valid"][()]
        assert flux.shape == (2, 2, 2, 4096) and flux.dtype == np.float32
        assert flux.chunks == (1, 1, 1, 4096) and flux.compression == "gzip"
        # written by save_grid, the one writer of the format: every dataset checksummed
        assert all(f[n].fletcher32 for n in ("wave", "axes/T_eff", "flux", "continuum", "valid"))
        assert valid.dtype == bool and valid.sum() == 7 and not valid[0, 0, 0]
        flux = flux[()]
        assert np.all(flux[0, 0, 0] == 0)
        assert np.all(np.isfinite(flux)) and np.all(flux[valid] > 0)
        # continuum is the LSF-degraded continuum: flat here
        np.testing.assert_allclose(cont[1, 1, 1], 1.0, rtol=1e-6)


def test_assembled_grid_loads_with_datasets_loader(tmp_path):
    datasets = pytest.importorskip("specreg.datasets")
    _build_grid(
        _labelled([4500.0, 5000.0], [2.0, 4.0], [0.0, 0.5]),
        out=tmp_path / "b",
        synthesize=_make_fake([]),
    )
    path = assemble_grid(tmp_path / "b", tmp_path / "grid.h5")
    grid = datasets.load_grid(path, normalize=False)
    assert grid.param_names == ["T_eff", "log_g", "M_H"] or list(grid.param_names) == [
        "T_eff",
        "log_g",
        "M_H",
    ]


def test_build_command_accepts_negative_ranges_without_equals_sign():
    import argparse

    from specreg.grids._cli import add_build_parser, parse_axis

    parser = argparse.ArgumentParser(prog="specreg")
    add_build_parser(parser.add_subparsers(dest="command"))
    argv = ["grid", "build", "--teff", "4000", "--logg", "2", "--mh", "-2.5:-2:0.25", "-0.5"]
    ns = parser.parse_args([*argv, "--alpha", "-0.2", "--out", "d"])
    assert parse_axis(ns.mh) == [-2.5, -2.25, -2.0, -0.5]
    assert parse_axis(ns.alpha) == [-0.2]
    with pytest.raises(SystemExit):  # a real unknown option is still an error
        parser.parse_args([*argv, "--bogus", "--out", "d"])


def test_the_marcs_library_does_not_import_the_model_interpolation():
    """One direction only: _interpolate builds on _marcs (no import loop)."""
    import inspect

    from specreg.grids import _interpolate, _marcs

    assert "_interpolate" not in inspect.getsource(_marcs)
    assert _interpolate.MarcsLibrary is _marcs.MarcsLibrary


def test_geometry_limits_have_one_home():
    from specreg.grids import _builder, _marcs

    assert _builder.SPHERICAL_MAX_LOGG is _marcs.SPHERICAL_MAX_LOGG
    assert _builder.PLANE_PARALLEL_MIN_LOGG is _marcs.PLANE_PARALLEL_MIN_LOGG
    assert [_marcs.geometry_of(g) for g in (3.0, 3.25, 3.5)] == [
        "spherical",
        None,
        "plane-parallel",
    ]
