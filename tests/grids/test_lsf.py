"""The Gaussian LSF on ln λ and the resampling."""

from __future__ import annotations

import numpy as np
import pytest

from specreg.grids import convolve_constant_r, degrade_to_grid, resample_linear


def _fwhm(x, y):
    half = y.max() / 2.0
    above = np.where(y >= half)[0]
    i0, i1 = above[0], above[-1]
    # linear interpolation of the two half-maximum crossings
    left = np.interp(half, [y[i0 - 1], y[i0]], [x[i0 - 1], x[i0]])
    right = np.interp(half, [y[i1 + 1], y[i1]], [x[i1 + 1], x[i1]])
    return right - left


@pytest.mark.parametrize("centre", [7300.0, 8500.0])
def test_delta_line_becomes_gaussian_with_fwhm_lambda_over_r(centre):
    wave = np.linspace(7100.0, 8850.0, 35001)  # 0.05 Å
    flux = np.zeros_like(wave)
    flux[np.argmin(np.abs(wave - centre))] = 1.0
    w, f = convolve_constant_r(wave, flux, 5000.0)
    assert _fwhm(w, f) == pytest.approx(centre / 5000.0, rel=0.02)


def test_flux_is_conserved():
    wave = np.linspace(7100.0, 8850.0, 35001)
    # a resolved line (sigma = 4 input pixels); unresolved lines lose a little
    # equivalent width in the linear interpolation onto the ln grid
    flux = 1.0 - 0.8 * np.exp(-0.5 * ((wave - 8000.0) / 0.2) ** 2)
    w, f = convolve_constant_r(wave, flux, 5000.0)
    trapz = getattr(np, "trapezoid", None) or np.trapz  # noqa: NPY201 (numpy 1.x)
    ew_in, ew_out = trapz(1.0 - flux, wave), trapz(1.0 - f, w)
    assert ew_out == pytest.approx(ew_in, rel=1e-3)


def test_constant_spectrum_stays_constant_including_ends():
    wave = np.linspace(7100.0, 8850.0, 3501)
    out = degrade_to_grid(
        wave, 3.0 * np.ones((2, wave.size)), np.linspace(7100.2, 8849.8, 4096), 5000.0
    )
    assert out.shape == (2, 4096)
    np.testing.assert_allclose(out, 3.0, rtol=1e-12)


def test_resample_linear_exact_on_lines_and_refuses_extrapolation():
    w = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(resample_linear(w, 2 * w, np.array([1.5, 2.5])), [3.0, 5.0])
    with pytest.raises(ValueError, match="beyond"):
        resample_linear(w, w, np.array([0.5]))


def test_non_increasing_wave_rejected():
    with pytest.raises(ValueError, match="increasing"):
        convolve_constant_r(np.array([2.0, 1.0, 3.0]), np.ones(3), 5000.0)
