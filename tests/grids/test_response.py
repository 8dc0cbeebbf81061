"""The [alpha/M] x [C/M] response: design, storage round trip, the 5-D product model."""

import json

import numpy as np
import pytest

from specreg.grids._builder import node_filename
from specreg.grids._response import (
    LOG_RATIO_SCALE,
    RESPONSE_AXES,
    _compact,
    assemble_response,
    read_response,
    response_plan,
)
from specreg.spectra import ResponseGrid, SpectralGrid


def test_plan_covers_the_design_without_the_base_nodes():
    plans = response_plan()
    n_ac = len(RESPONSE_AXES["a_M"]) * len(RESPONSE_AXES["C_M"])
    assert len(plans) == 125 * (n_ac - 1)
    params = {p.params for p in plans}
    assert len(params) == len(plans)
    assert not any(p[3] == 0 and p[4] == 0 for p in params)
    # every (T_eff, log g, [M/H]) of the design is a node of the embedded 3-D grid
    from specreg.datasets import load_grid

    grid = load_grid()
    for name in ("T_eff", "log_g", "M_H"):
        assert set(RESPONSE_AXES[name]) <= set(grid.axes[name])
        assert min(RESPONSE_AXES[name]) == grid.bounds[name][0]
        assert max(RESPONSE_AXES[name]) == grid.bounds[name][1]


def test_compact_round_trips_below_the_accuracy_asked():
    rng = np.random.default_rng(0)
    wave = np.linspace(7100.2, 8849.8, 64)
    raw = np.linspace(7100.0, 8850.0, 2000)
    flux = 1 + 0.1 * rng.random(raw.size)
    res = {"wave0": raw[0], "dwave": raw[1] - raw[0], "n": raw.size}
    res |= {"flux": flux, "continuum": 1.05 * np.ones_like(flux)}
    base = np.ones((2, wave.size))
    stored, scale = _compact(res, base, wave)
    assert stored.dtype == np.int16 and scale == LOG_RATIO_SCALE
    from specreg.grids import degrade_to_grid

    truth = degrade_to_grid(raw, np.stack([flux, res["continuum"]]), wave, 5000.0)
    back = np.exp(stored * LOG_RATIO_SCALE)
    assert np.abs(back / truth - 1).max() < 2e-5


def test_compact_widens_the_step_for_strong_responses_and_refuses_absurd_ones():
    raw = np.linspace(7100.0, 8850.0, 200)
    res = {"wave0": raw[0], "dwave": raw[1] - raw[0], "n": raw.size}
    res |= {"flux": np.full(raw.size, 5.0), "continuum": np.ones(raw.size)}
    stored, scale = _compact(res, np.ones((2, 8)), np.linspace(7100.2, 8849.8, 8))
    assert scale == 2.0**-14  # ln 5 / 2**-14 = 26,400 fits in int16
    np.testing.assert_allclose(np.exp(stored[0] * scale), 5.0, rtol=1e-4)
    res["flux"] = np.full(raw.size, 1e60)
    with pytest.raises(ValueError, match="stored range"):
        _compact(res, np.ones((2, 8)), np.linspace(7100.2, 8849.8, 8))


def _fake_build(tmp_path, axes, base, skip=()):
    """A build directory whose ratios are a known smooth function of the labels."""
    (tmp_path / "nodes").mkdir(parents=True)
    record = {"axes": {k: list(v) for k, v in axes.items()}, "log_ratio_scale": LOG_RATIO_SCALE}
    record["base_grid"] = "test"
    (tmp_path / "build.json").write_text(json.dumps(record))
    grid = np.array(np.meshgrid(*axes.values(), indexing="ij")).reshape(5, -1).T
    for i, p in enumerate(grid):
        if (p[3] == 0 and p[4] == 0) or tuple(p) in skip:
            continue
        lr = _true_log_ratio(p, base.n_pix)
        # a few nodes stored with a coarser step, as strong responses are
        step = LOG_RATIO_SCALE * (4 if i % 3 == 0 else 1)
        q = np.round(np.stack([lr, 0.1 * lr]) / step).astype(np.int16)
        np.savez(tmp_path / "nodes" / f"{node_filename(*p)}.npz", log_ratio=q, scale=step)
    return tmp_path


def _true_log_ratio(p, n_pix):
    # smooth in every label, zero at a = c = 0
    pix = np.linspace(0, 1, n_pix)
    return (p[3] * (1 + 1e-4 * (p[0] - 5000)) - 0.5 * p[4] ** 2 + 0.2 * p[3] * p[4]) * pix * 0.1


@pytest.fixture
def small_case(tmp_path):
    wave = np.linspace(7100.0, 8850.0, 16)
    t, g, m = np.array([4000.0, 5000.0, 6000.0]), np.array([1.0, 3.0, 5.0]), np.array([-1.0, 0.0])
    rng = np.random.default_rng(1)
    flux = 1 + rng.random((3, 3, 2, 16))
    base = SpectralGrid(
        {"T_eff": t, "log_g": g, "M_H": m}, flux, wave, continuum=2 * flux, method="linear"
    )
    axes = {"T_eff": t, "log_g": g, "M_H": m, "a_M": [-0.2, 0.0, 0.2], "C_M": [-0.5, 0.0, 0.5]}
    return base, axes, tmp_path


def test_assemble_and_read_give_the_product_model(small_case):
    base, axes, tmp = small_case
    path = assemble_response(_fake_build(tmp / "b", axes, base), tmp / "r.h5")
    model = read_response(path, base)
    assert isinstance(model, ResponseGrid)
    assert model.param_names == ("T_eff", "log_g", "M_H", "a_M", "C_M")
    node = np.array([[5000.0, 3.0, 0.0, 0.2, -0.5]])
    expect = base.flux(node[:, :3]) * np.exp(_true_log_ratio(node[0], 16))
    np.testing.assert_allclose(model.flux(node), expect, rtol=1e-4)
    # at a = c = 0 the 3-D grid is reproduced anywhere in its box
    off = np.array([[4400.0, 2.2, -0.3, 0.0, 0.0]])
    np.testing.assert_allclose(model.flux(off), base.flux(off[:, :3]), rtol=1e-6)
    assert model.continuum(node).shape == (1, 16)


def test_assemble_refuses_an_unfinished_build(small_case):
    base, axes, tmp = small_case
    build = _fake_build(tmp / "b", axes, base, skip={(4000.0, 1.0, -1.0, 0.2, 0.5)})
    with pytest.raises(ValueError, match="1 of .* no spectrum yet"):
        assemble_response(build, tmp / "r.h5")
    assert not (tmp / "r.h5").exists()


def test_read_refuses_a_normalised_base(small_case):
    base, axes, tmp = small_case
    path = assemble_response(_fake_build(tmp / "b", axes, base), tmp / "r.h5")
    with pytest.raises(ValueError, match="normalize=False"):
        read_response(path, base.normalized())


@pytest.mark.parametrize("ratio_method", ["linear", "cubic"])
def test_jacobian_is_the_derivative_of_the_product(small_case, ratio_method):
    base, axes, tmp = small_case
    built = read_response(
        assemble_response(_fake_build(tmp / "b", axes, base), tmp / "r.h5"), base
    )
    shape = (*built.ratio.shape, built.n_pix)
    model = ResponseGrid(
        base,
        built.ratio.axes,
        built.ratio.node_flux.reshape(shape),
        continuum_ratio=built.ratio.node_continuum.reshape(shape),
        ratio_method=ratio_method,
    )
    theta = np.array([[4700.0, 1.7, -0.4, 0.13, 0.21], [5600.0, 4.1, -0.8, -0.1, -0.3]])
    jac = model.jacobian(theta)
    for k, eps in enumerate([10.0, 1e-2, 1e-2, 1e-2, 1e-2]):  # float32 flux: not smaller
        step = np.zeros(5)
        step[k] = eps
        num = (model.flux(theta + step).astype(float) - model.flux(theta - step)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, k], num, atol=3e-4 * max(1, np.abs(num).max()))


def test_normalised_product_has_the_median_at_the_nodes(small_case):
    base, axes, tmp = small_case
    model = read_response(
        assemble_response(_fake_build(tmp / "b", axes, base), tmp / "r.h5"), base
    )
    norm = model.normalized()
    np.testing.assert_allclose(np.median(norm.node_flux, axis=1), 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.median(norm.base.node_flux, axis=1), 0.5, rtol=1e-5)


def test_labels_outside_the_box_name_the_label_and_the_box(small_case):
    base, axes, tmp = small_case
    model = read_response(
        assemble_response(_fake_build(tmp / "b", axes, base), tmp / "r.h5"), base
    )
    with pytest.raises(ValueError, match=r"a_M=0.6 not in \[-0.2, 0.2\]"):
        model.flux([[5000.0, 3.0, 0.0, 0.6, 0.0]])


def test_response_axes_must_extend_the_base(small_case):
    base, axes, _ = small_case
    ratio = np.ones((3, 3, 2, 3, 16))
    with pytest.raises(ValueError, match="must start with the base grid's labels"):
        ResponseGrid(base, {"log_g": axes["log_g"], "T_eff": axes["T_eff"]}, ratio)
    short = dict(axes, T_eff=[4000.0, 5000.0])
    with pytest.raises(ValueError, match="must cover the base box"):
        ones = np.ones((2, 3, 2, 3, 3, 16))
        ResponseGrid(base, short, ones, continuum_ratio=ones)


def test_nodes_are_the_base_nodes_times_the_response_nodes(small_case, tmp_path):
    base, axes, tmp = small_case
    coarse = dict(axes, T_eff=[4000.0, 6000.0])
    build = _fake_build(tmp / "b", coarse, base)
    model = read_response(assemble_response(build, tmp / "r.h5"), base)
    assert model.shape == (3, 3, 2, 3, 3)
    assert set(model.axes["T_eff"]) == {4000.0, 5000.0, 6000.0}
    # every node spectrum is the model evaluated at that node (5000 K is no response node)
    rows = [0, 100, model.n_nodes - 1, int(np.ravel_multi_index((1, 2, 0, 2, 0), model.shape))]
    np.testing.assert_allclose(model.node_flux[rows], model.flux(model.nodes[rows]), rtol=1e-5)
    assert not model.node_flux.flags.writeable


def test_build_response_resumes_another_design_but_refuses_other_synthesis(tmp_path):
    import json

    from specreg.grids._response import build_response

    # max_nodes=0: nothing is synthesised, no Turbospectrum is needed
    report = build_response(tmp_path, max_nodes=0, verbose=False)
    assert report["done"] == 0 and report["pending"] == 1000 + 56
    path = tmp_path / "build.json"
    record = json.loads(path.read_text())
    assert record["axes"]["a_M"] == [-0.2, 0.0, 0.4]
    # another design (an earlier, finer one): node files are named by their labels,
    # so the build goes on and records the design it now follows
    record["axes"]["a_M"] = [-0.2, 0.0, 0.2, 0.4]
    path.write_text(json.dumps(record))
    build_response(tmp_path, max_nodes=0, verbose=False)
    assert json.loads(path.read_text())["axes"]["a_M"] == [-0.2, 0.0, 0.4]
    # other synthesis settings: the finished nodes would not match, so it refuses
    record["settings"] = dict(record["settings"], step=0.01)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="other settings"):
        build_response(tmp_path, max_nodes=0, verbose=False)


def test_load_grid_reads_a_response_file_as_the_5d_model(tmp_path):
    from specreg.datasets import load_grid

    grid3 = load_grid(normalize=False)
    axes = {
        "T_eff": [4000.0, 6000.0],
        "log_g": [1.0, 5.0],
        "M_H": [-2.5, 0.75],
        "a_M": [-0.2, 0.0, 0.4],
        "C_M": [-0.5, 0.0, 0.5],
    }
    path = assemble_response(_fake_build(tmp_path / "b", axes, grid3), tmp_path / "r.h5")
    model = load_grid(path)
    assert isinstance(model, ResponseGrid)
    assert model.param_names == ("T_eff", "log_g", "M_H", "a_M", "C_M")
    assert model.bounds["a_M"] == (-0.2, 0.4) and model.bounds["C_M"] == (-0.5, 0.5)
    theta3 = np.array([[4420.0, 2.3, -1.1], [5710.0, 4.4, 0.3]])
    solar = np.column_stack([theta3, np.zeros((2, 2))])
    # at [alpha/M] = [C/M] = 0 the 5-D model is the 3-D grid, normalised or not
    np.testing.assert_allclose(model.flux(solar), load_grid().flux(theta3), rtol=1e-5)
    raw = load_grid(path, normalize=False)
    np.testing.assert_allclose(raw.flux(solar), grid3.flux(theta3), rtol=1e-6)
    with pytest.raises(ValueError, match=r"a_M=0.5 not in \[-0.2, 0.4\]"):
        model.flux([[5000.0, 3.0, 0.0, 0.5, 0.0]])


def test_load_grid_5d_says_how_to_build_it_when_missing(monkeypatch, tmp_path):
    from specreg.datasets import _grid_io, load_grid

    monkeypatch.setattr(_grid_io, "EMBEDDED_RESPONSE_NAME", "not-there.h5")
    with pytest.raises(FileNotFoundError, match="specreg grid build --response"):
        load_grid("5d")
