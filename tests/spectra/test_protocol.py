"""SpectralGrid (and ResponseGrid) satisfy the SpectralModel protocol, signatures included."""

import inspect

import numpy as np
import pytest

from specreg.spectra import ResponseGrid, SpectralModel
from specreg.spectra._protocol import OPTIONAL_MEMBERS

_METHODS = ("flux", "jacobian")


def _response_grid(grid):
    a = np.array([0.0, 0.2])
    ratio = np.ones((*grid.shape, a.size, grid.n_pix))
    return ResponseGrid(grid, {**grid.axes, "a_M": a}, ratio)


@pytest.fixture(params=["grid", "response"])
def model(request, small_grid):
    return small_grid if request.param == "grid" else _response_grid(small_grid)


def test_protocol_declares_its_members():
    declared = {n for n in SpectralModel.__annotations__} | {
        n for n in _METHODS if callable(getattr(SpectralModel, n, None))
    }
    assert declared == {"param_names", "wave", "bounds", "flux", "jacobian"}
    assert SpectralModel.__doc__ is not None
    for name in _METHODS:
        assert getattr(SpectralModel, name).__doc__, name
    for name in OPTIONAL_MEMBERS:  # each optional member is documented
        assert f"``{name}" in SpectralModel.__doc__, name


def test_grids_satisfy_the_protocol(model):
    assert isinstance(model, SpectralModel)
    assert isinstance(model.param_names, tuple)
    assert all(isinstance(n, str) for n in model.param_names)
    assert model.wave.shape == (model.n_pix,)
    assert set(model.bounds) == set(model.param_names)
    for name in _METHODS:  # every keyword of the protocol is accepted, same default
        want = inspect.signature(getattr(SpectralModel, name)).parameters
        have = inspect.signature(getattr(model, name)).parameters
        for pname, param in want.items():
            if pname == "self":
                continue
            assert pname in have, (name, pname)
            assert have[pname].kind == param.kind, (name, pname)
            assert have[pname].default == param.default, (name, pname)
    for name in OPTIONAL_MEMBERS:
        assert hasattr(model, name), name


def test_grids_behave_as_the_protocol_says(model):
    lo = np.array([b[0] for b in model.bounds.values()])
    hi = np.array([b[1] for b in model.bounds.values()])
    theta = np.vstack([0.5 * (lo + hi), hi + 1.0])
    with pytest.raises(ValueError, match="outside the grid"):
        model.flux(theta)
    flux = model.flux(theta, out_of_bounds="clip")
    assert flux.shape == (2, model.n_pix)
    np.testing.assert_array_equal(flux[1], model.flux(hi[None, :])[0])
    jac = model.jacobian(theta, out_of_bounds="clip")
    assert jac.shape == (2, model.n_pix, len(model.param_names))
    assert model.stencil_valid(theta).shape == (2,)


def _plain_model(grid, *, jacobian: bool = True):
    """A plain object delegating the protocol's members to ``grid`` (jacobian optional)."""

    class Minimal:
        param_names = grid.param_names
        wave = grid.wave
        bounds = grid.bounds

        def flux(self, theta, *, out_of_bounds="raise"):
            return grid.flux(theta, out_of_bounds=out_of_bounds)

    if jacobian:
        Minimal.jacobian = lambda self, theta, *, out_of_bounds="raise": grid.jacobian(
            theta, out_of_bounds=out_of_bounds
        )
    return Minimal


def test_a_plain_object_with_the_members_is_a_spectral_model(small_grid):
    Minimal = _plain_model(small_grid)
    assert isinstance(Minimal(), SpectralModel)
    assert not isinstance(small_grid.wave, SpectralModel)
    assert not any(hasattr(Minimal(), n) for n in OPTIONAL_MEMBERS)


def test_a_flux_only_model_simulates_and_the_bounds_name_what_it_lacks(small_grid):
    from specreg import FisherCeiling, TemplateFitRegressor
    from specreg.datasets import make_spectra

    FluxOnly = _plain_model(small_grid, jacobian=False)
    FluxOnly.__name__ = "FluxOnly"
    spectra = make_spectra(4, model=FluxOnly(), noisy=True, random_state=0)
    assert spectra.X.shape == (4, 2 * small_grid.n_pix)
    with pytest.raises(TypeError, match="FluxOnly has no jacobian"):
        FisherCeiling(FluxOnly(), n_draws=16).evaluate(spectra.X, spectra.params["log_g"])
    with pytest.raises(TypeError, match="FluxOnly has no jacobian"):
        TemplateFitRegressor(model=FluxOnly()).fit(spectra.X, spectra.y)
