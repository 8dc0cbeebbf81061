"""Gaussian line-spread function of constant resolving power, and resampling.

A constant resolving power R = λ/Δλ means a constant width in ln λ, so the
spectrum is put on a uniform ln λ grid, convolved with one fixed Gaussian
kernel there, and interpolated linearly onto the output pixels.  Pure numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["convolve_constant_r", "resample_linear", "degrade_to_grid"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _interp_rows(x_new: np.ndarray, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each row of ``rows`` (sampled at ``x``) interpolated linearly at ``x_new``."""
    return np.stack([np.interp(x_new, x, row) for row in rows])


def _ln_grid(wave: np.ndarray, oversample: float) -> tuple[np.ndarray, float]:
    """Uniform ln λ grid covering ``wave`` with the input's finest step."""
    lnw = np.log(wave)
    step = float(np.min(np.diff(lnw))) / oversample
    # Shrink the step slightly so the grid ends exactly on both input ends
    # (otherwise the last output pixels could fall outside it).
    n = int(np.ceil((lnw[-1] - lnw[0]) / step - 1e-9)) + 1
    grid = np.linspace(lnw[0], lnw[-1], n)
    return grid, float(grid[1] - grid[0])


def convolve_constant_r(
    wave: np.ndarray,
    flux: np.ndarray,
    resolution: float,
    oversample: float = 1.0,
    truncate: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Convolve spectra with a Gaussian LSF of FWHM λ/R on a uniform ln λ grid.

    Parameters
    ----------
    wave : ndarray, shape (n_wave,)
        Strictly increasing wavelengths (any unit).
    flux : ndarray, shape (..., n_wave)
        Spectra sampled at ``wave``; leading axes are batch axes.
    resolution : float
        Resolving power R; the kernel FWHM in ln λ is ``1/R``.
    oversample : float, default 1.0
        ln λ step = (finest input ln λ step) / ``oversample``.
    truncate : float, default 5.0
        Kernel half-width in units of sigma.

    Returns
    -------
    ln_wave_grid : ndarray, shape (n_ln,)
        Wavelengths (same unit as ``wave``) of the uniform ln λ grid.
    convolved : ndarray, shape (..., n_ln)
        Convolved spectra.  The input is extended by its end values before
        convolving, so a constant spectrum stays constant and flux is
        conserved away from the ends.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.grids import convolve_constant_r
    >>> wave = np.linspace(7000.0, 9000.0, 40001)
    >>> flux = np.ones_like(wave)
    >>> w, f = convolve_constant_r(wave, flux, 5000.0)
    >>> bool(np.allclose(f, 1.0))
    True
    """
    wave = np.asarray(wave, dtype=float)
    flux = np.asarray(flux, dtype=float)
    if np.any(np.diff(wave) <= 0):
        raise ValueError("wave must be strictly increasing")
    lngrid, step = _ln_grid(wave, oversample)
    on_grid = _interp_rows(lngrid, np.log(wave), flux.reshape(-1, flux.shape[-1]))
    sigma = _FWHM_TO_SIGMA / resolution / step  # in ln-grid pixels
    half = int(np.ceil(truncate * sigma))
    x = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    # Pad by repeating the end values ("nearest"): the ends do not taper
    # towards zero, and this is what the reference node spectra used.
    out = np.stack(
        [np.convolve(np.pad(f, half, mode="edge"), kernel, mode="valid") for f in on_grid]
    )
    return np.exp(lngrid), out.reshape(flux.shape[:-1] + (lngrid.size,))


def resample_linear(wave: np.ndarray, flux: np.ndarray, new_wave: np.ndarray) -> np.ndarray:
    """Linearly interpolate spectra onto new wavelengths.

    Parameters
    ----------
    wave : ndarray, shape (n_wave,)
        Increasing input wavelengths.
    flux : ndarray, shape (..., n_wave)
    new_wave : ndarray, shape (n_new,)
        Output wavelengths; must lie within ``wave`` (no extrapolation).

    Returns
    -------
    ndarray, shape (..., n_new)
        ``flux`` at ``new_wave``.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.grids import resample_linear
    >>> x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 4.0])
    >>> resample_linear(x, y, np.array([0.5]))
    array([1.])
    """
    wave = np.asarray(wave, dtype=float)
    new_wave = np.asarray(new_wave, dtype=float)
    if new_wave.min() < wave[0] or new_wave.max() > wave[-1]:
        raise ValueError("new_wave extends beyond the input wavelength range")
    flux = np.asarray(flux, dtype=float)
    out = _interp_rows(new_wave, wave, flux.reshape(-1, flux.shape[-1]))
    return out.reshape(flux.shape[:-1] + (new_wave.size,))


def degrade_to_grid(
    wave: np.ndarray,
    flux: np.ndarray,
    new_wave: np.ndarray,
    resolution: float,
    oversample: float = 1.0,
) -> np.ndarray:
    """Apply the constant-R Gaussian LSF, then resample onto ``new_wave``.

    Parameters
    ----------
    wave : ndarray, shape (n_wave,)
    flux : ndarray, shape (..., n_wave)
    new_wave : ndarray, shape (n_new,)
    resolution : float
        Resolving power R (FWHM = λ/R).
    oversample : float, default 1.0
        See `convolve_constant_r`.

    Returns
    -------
    ndarray, shape (..., n_new)
        The spectra as an instrument of resolving power R would record them.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.grids import degrade_to_grid
    >>> wave = np.linspace(7100.0, 8850.0, 35001)
    >>> new_wave = np.linspace(7100.2, 8849.8, 4096)
    >>> out = degrade_to_grid(wave, np.ones_like(wave), new_wave, 5000.0)
    >>> out.shape
    (4096,)
    """
    lw, conv = convolve_constant_r(wave, flux, resolution, oversample=oversample)
    return resample_linear(lw, conv, new_wave)
