"""A PFS medium-resolution-like noise model: per-pixel 1-sigma errors from magnitude and flux.

The reference study's simulator is not public, so this is a documented
approximation (the noise page of the user guide compares it with the reference
study's data): the variance of pixel j is

    sigma_j**2 = A * a_j * f_j / x + B * b_j / x**2,    x = 10**(-0.4 (m - 21.5)),

with f the median-normalised (0.5) noiseless flux, ``a_j = 1/T(λ)`` the object
shot-noise profile (T a smooth throughput curve) and ``b_j = S(λ)/T(λ)**2`` the
background (sky + detector) profile, both scaled to median 1. The constants A and
B are calibrated so that the median per-spectrum SNR, median(f/sigma), matches
the reference grid's 87.4 / 24.0 / 7.1 / 4.6 / 3.0 / 1.9 at i = 18 / 20 / 21.5 /
22 / 22.5 / 23.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from ._validation import as_generator, check_bool, check_finite, check_int, check_real

__all__ = ["PFSNoiseModel", "pfs_mr_wave", "snr_median", "REFERENCE_SNR_TABLE", "REFERENCE_FLUX"]

#: Flux level of the smooth reference spectrum behind the reported errors (the
#: median of a median-normalised spectrum).
REFERENCE_FLUX = 0.5

#: (i-band magnitude, median per-spectrum SNR) of the reference study's grids.
REFERENCE_SNR_TABLE = (
    (18.0, 87.4),
    (20.0, 24.0),
    (21.5, 7.1),
    (22.0, 4.6),
    (22.5, 3.0),
    (23.0, 1.9),
)

# Approximate vacuum-ish positions (Å) of strong OH Meinel and O2 airglow lines in
# the PFS MR window. They only shape the error spectrum (spikes where sky lines
# sit, as in the reference data); they are not a sky model for subtraction.
_SKY_LINES = np.array(
    [
        7241.0, 7249.4, 7276.4, 7284.4, 7303.7, 7316.3, 7329.1, 7340.9, 7358.7, 7369.2,
        7392.2, 7401.7, 7524.1, 7571.8, 7586.2, 7750.6, 7794.1, 7808.5, 7821.5, 7841.3,
        7853.3, 7879.9, 7913.7, 7949.4, 7964.6, 7993.3, 8014.3, 8025.8, 8052.0, 8062.4,
        8344.6, 8352.8, 8382.4, 8399.2, 8415.2, 8430.2, 8452.3, 8465.4, 8493.4, 8504.7,
        8538.7, 8548.7, 8739.8, 8761.3, 8767.9, 8778.3, 8791.2, 8827.1, 8836.0,
    ]
)  # fmt: skip
_SKY_LINE_STRENGTH = 1.5 + 2.5 * np.abs(np.sin(np.arange(_SKY_LINES.size) * 2.399))


def pfs_mr_wave(n_pix: int = 4096, lo: float = 7100.2, hi: float = 8849.8) -> np.ndarray:
    """The PFS MR-like pixel grid: linear, 4096 pixels, 7100.2-8849.8 Å.

    Examples
    --------
    >>> w = pfs_mr_wave()
    >>> w.shape, float(w[0]), float(w[-1])
    ((4096,), 7100.2, 8849.8)
    """
    n_pix = check_int(n_pix, "n_pix", low=2)
    check_real(lo, "lo", low=0.0, low_open=True)
    check_real(hi, "hi", low=lo, low_open=True)
    return np.linspace(lo, hi, n_pix)


def _check_wave(wave) -> np.ndarray:
    """A 1-D wavelength grid in Å: at least 2 finite, positive, increasing values (a copy)."""
    w = np.array(wave, dtype=float)
    if w.ndim != 1 or w.size < 2:
        raise ValueError(f"wave must be a 1-D grid of at least 2 wavelengths, got shape {w.shape}")
    check_finite(w, "wave")
    if w[0] <= 0 or np.any(np.diff(w) <= 0):
        raise ValueError("wave must be positive and strictly increasing (Å)")
    return w


def snr_median(flux, error) -> np.ndarray:
    """Per-spectrum SNR: the median over pixels of flux / error.

    This is the reference study's ``snr`` column (evaluate it on noiseless flux).

    Parameters
    ----------
    flux, error : array-like of shape (n, n_pix)

    Returns
    -------
    snr : ndarray of shape (n,)

    Examples
    --------
    >>> snr_median([[1.0, 2.0, 3.0]], [[0.1, 0.1, 0.1]]).round(6).tolist()
    [20.0]
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    error = np.atleast_2d(np.asarray(error, dtype=np.float64))
    if flux.shape != error.shape:
        raise ValueError(f"flux {flux.shape} and error {error.shape} differ in shape")
    if flux.ndim != 2 or flux.shape[1] == 0:
        raise ValueError(
            f"flux and error must have shape (n, n_pix) with n_pix >= 1, got {flux.shape}"
        )
    check_finite(flux, "flux")
    check_finite(error, "error")
    if np.any(error <= 0):
        raise ValueError("error must be > 0 everywhere")
    return np.median(flux / error, axis=1)


def _profiles(wave: np.ndarray, sky_lines: bool) -> tuple[np.ndarray, np.ndarray]:
    """Object (1/T) and background (S/T**2) profiles, each scaled to median 1."""
    # smooth throughput: falls toward the red (detector QE), O2 A-band residual dip
    throughput = np.exp(-(((wave - 7700.0) / 2600.0) ** 2))
    throughput *= 1.0 - 0.25 * np.exp(-0.5 * ((wave - 7630.0) / 25.0) ** 2)
    sky = 1.0 + 0.35 * (wave - wave[0]) / max(wave[-1] - wave[0], 1.0)
    if sky_lines:
        sigma = _SKY_LINES / 5000.0 / 2.3548  # unresolved lines at R = 5000
        profile = _SKY_LINE_STRENGTH[None, :] * np.exp(
            -0.5 * ((wave[:, None] - _SKY_LINES[None, :]) / sigma[None, :]) ** 2
        )
        sky = sky + profile.sum(axis=1)
    obj = 1.0 / throughput
    bkg = sky / throughput**2
    return obj / np.median(obj), bkg / np.median(bkg)


class PFSNoiseModel:
    """Per-pixel 1-sigma errors of a PFS MR-like observation.

    ``sigma_j**2 = obj_coeff * a_j * f_j / x + bkg_coeff * b_j / x**2`` with
    ``x = 10**(-0.4 (mag - 21.5))`` (see the module docstring). The throughput
    and sky profiles are smooth approximations with approximate OH sky-line
    spikes; they are not the PFS exposure-time calculator.

    Parameters
    ----------
    wave : array-like of shape (n_pix,), optional
        Wavelengths in Å; default :func:`pfs_mr_wave`.
    obj_coeff, bkg_coeff : float, optional
        The constants A and B. Default: calibrated on a flat spectrum of 0.5
        (a median-normalised spectrum) to :data:`REFERENCE_SNR_TABLE`.
    sky_lines : bool, default=True
        Add OH sky-line spikes to the background profile.
    condition_scatter : float, default=0.0
        Standard deviation (natural log) of a per-spectrum lognormal factor on
        the collected flux, standing in for seeing / zenith angle / fibre
        position. The reference study's test set is matched by
        ``throughput_scale=1.15, condition_scatter=0.3`` (see the noise page of
        the user guide).
    throughput_scale : float, default=1.0
        Multiplies the collected flux x (the SNR in the background limit).

    Examples
    --------
    >>> import numpy as np
    >>> noise = PFSNoiseModel()
    >>> flux = np.full((1, 4096), 0.5)
    >>> err = noise.error(flux, mag=21.5)
    >>> snr = float(snr_median(flux, err)[0])  # the reference's 7.1, within 5 %
    >>> abs(snr / 7.1 - 1) < 0.05
    True
    """

    def __init__(
        self,
        wave=None,
        *,
        obj_coeff: float | None = None,
        bkg_coeff: float | None = None,
        sky_lines: bool = True,
        condition_scatter: float = 0.0,
        throughput_scale: float = 1.0,
    ) -> None:
        self.wave = pfs_mr_wave() if wave is None else _check_wave(wave)
        check_real(condition_scatter, "condition_scatter", low=0.0)
        check_real(throughput_scale, "throughput_scale", low=0.0, low_open=True)
        self.sky_lines = check_bool(sky_lines, "sky_lines")
        self.condition_scatter = float(condition_scatter)
        self.throughput_scale = float(throughput_scale)
        self.obj_profile, self.bkg_profile = _profiles(self.wave, sky_lines)
        if obj_coeff is None or bkg_coeff is None:
            a, b = _calibrate(self.obj_profile, self.bkg_profile, np.full(self.wave.size, 0.5))
            obj_coeff = a if obj_coeff is None else obj_coeff
            bkg_coeff = b if bkg_coeff is None else bkg_coeff
        check_real(obj_coeff, "obj_coeff", low=0.0)
        check_real(bkg_coeff, "bkg_coeff", low=0.0, low_open=True)
        self.obj_coeff = float(obj_coeff)
        self.bkg_coeff = float(bkg_coeff)

    def __repr__(self) -> str:
        return (
            f"PFSNoiseModel(n_pix={self.wave.size}, obj_coeff={self.obj_coeff:.4g}, "
            f"bkg_coeff={self.bkg_coeff:.4g}, condition_scatter={self.condition_scatter}, "
            f"throughput_scale={self.throughput_scale})"
        )

    def collected_flux(self, mag, random_state=None, n: int | None = None) -> np.ndarray:
        """x = 10**(-0.4 (mag - 21.5)) times the observing-condition factors.

        Examples
        --------
        >>> PFSNoiseModel().collected_flux([21.5, 19.0]).round(3).tolist()
        [1.0, 10.0]
        """
        mag = np.atleast_1d(np.asarray(mag, dtype=float))
        if n is not None:
            n = check_int(n, "n", low=0)
            if mag.size == 1:
                mag = np.full(n, mag[0])
            elif mag.size != n:
                raise ValueError(f"mag has {mag.size} values for n={n} spectra")
        check_finite(mag, "mag")
        x = 10.0 ** (-0.4 * (mag - 21.5)) * self.throughput_scale
        if self.condition_scatter > 0:
            rng = as_generator(random_state)
            x = x * np.exp(self.condition_scatter * rng.standard_normal(x.shape))
        return x

    def _check_flux(self, flux, name: str = "flux") -> np.ndarray:
        flux = np.atleast_2d(np.asarray(flux))
        if flux.ndim != 2 or flux.shape[1] != self.wave.size:
            raise ValueError(
                f"{name} must have {self.wave.size} pixels to match the noise model's wave "
                f"grid, got shape {flux.shape}"
            )
        check_finite(flux, name)
        return flux

    def _check_x(self, x, n: int) -> np.ndarray:
        x = np.atleast_1d(np.asarray(x, dtype=float)).reshape(-1)
        if x.size == 1 and n > 1:
            x = np.full(n, x[0])
        if x.size != n:
            raise ValueError(f"collected flux x has {x.size} values for {n} spectra")
        if not np.all(np.isfinite(x) & (x > 0)):
            raise ValueError("collected flux x must be finite and > 0")
        return x

    def error(self, flux, mag, random_state=None) -> np.ndarray:
        """True 1-sigma noise per pixel (photon noise of ``flux``, sky and read noise).

        This is the standard deviation the simulator draws noise with. It depends
        on the noiseless flux, so it must not be handed to an estimator as the
        reported error (it would encode the answer): see :meth:`reference_error`.

        Parameters
        ----------
        flux : array-like of shape (n, n_pix) or (n_pix,)
            Median-normalised (0.5) noiseless flux on this model's ``wave``.
        mag : float or array-like of shape (n,)
            i-band magnitudes.
        random_state : int, Generator or None
            Only used when ``condition_scatter > 0``.

        Returns
        -------
        error : ndarray of shape (n, n_pix), float32, finite and > 0

        Examples
        --------
        >>> import numpy as np
        >>> PFSNoiseModel().error(np.full(4096, 0.5), 22.0).shape
        (1, 4096)
        """
        flux = self._check_flux(flux)
        x = self.collected_flux(mag, random_state, n=flux.shape[0])
        if x.shape[0] != flux.shape[0]:
            raise ValueError(f"mag has {x.shape[0]} values for {flux.shape[0]} spectra")
        return self.sigma(flux, x)

    def sigma(self, flux, x) -> np.ndarray:
        """True 1-sigma noise of noiseless ``flux`` observed with collected flux ``x``.

        Parameters
        ----------
        flux : array-like of shape (n, n_pix)
            Noiseless, median-normalised flux.
        x : float or array-like of shape (n,)
            Collected flux (:meth:`collected_flux`), > 0.

        Returns
        -------
        sigma : ndarray of shape (n, n_pix), float32
            Source photon noise plus the sky and detector background, per pixel,
            in the units of ``flux``.

        Examples
        --------
        >>> import numpy as np
        >>> m = PFSNoiseModel()
        >>> flat = np.full((1, 4096), 0.5)
        >>> bool(np.allclose(m.sigma(flat, 1.0), m.error(flat, 21.5)))
        True
        """
        flux = self._check_flux(flux)
        x = self._check_x(x, flux.shape[0])
        return self._variance_to_sigma(flux, x, flux_level=None)

    def _variance_to_sigma(self, flux, x: np.ndarray, flux_level) -> np.ndarray:
        """sqrt(obj * f / x + bkg / x**2) in float32, in row blocks (millions of spectra).

        ``f`` is ``max(flux, 0)`` (negative flux, never physical here, has no shot
        noise), or the constant ``flux_level`` when ``flux`` is None.
        """
        inv_x = (1.0 / x).astype(np.float32)[:, None]
        obj = (self.obj_coeff * self.obj_profile).astype(np.float32)
        bkg = (self.bkg_coeff * self.bkg_profile).astype(np.float32)
        n = inv_x.shape[0]
        out = np.empty((n, self.wave.size), dtype=np.float32)
        block = max(1, 2**20 // max(self.wave.size, 1))  # ~4 MB temporaries, cache-sized
        for start in range(0, n, block):
            rows = slice(start, start + block)
            v = out[rows]
            if flux is None:
                np.multiply(bkg, inv_x[rows], out=v)
                v += obj * np.float32(flux_level)
            else:
                np.maximum(flux[rows], 0, out=v, casting="unsafe")
                v *= obj
                v += bkg * inv_x[rows]
            v *= inv_x[rows]
            np.sqrt(v, out=v)
        return out

    def reference_error(self, x, reference_flux: float = REFERENCE_FLUX) -> np.ndarray:
        """The reported 1-sigma error: the expected noise of a smooth reference spectrum.

        A pipeline reports errors from what it can know: the exposure, sky and
        detector, and the object's brightness, not the star's noiseless spectrum.
        This is the noise a flat spectrum at the normalisation level
        ``reference_flux`` would have when observed with collected flux ``x``: it
        depends on the magnitude and observing conditions only, so it carries no
        information about the labels, and it is the same for a training spectrum
        and for its noisy version (per-batch noise leaves it unchanged). The noise
        itself is drawn with :meth:`sigma` (photon noise of the true flux).

        Parameters
        ----------
        x : float or array-like of shape (n,)
            Collected flux (:meth:`collected_flux`), > 0.
        reference_flux : float, default=0.5
            Flux level of the reference spectrum (the median of a median-normalised
            spectrum), > 0.

        Returns
        -------
        error : ndarray of shape (n, n_pix), float32

        Examples
        --------
        >>> m = PFSNoiseModel()
        >>> err = m.reference_error([1.0, 10.0])
        >>> err.shape, bool((err[0] > err[1]).all())
        ((2, 4096), True)
        """
        check_real(reference_flux, "reference_flux", low=0.0, low_open=True)
        x = np.atleast_1d(np.asarray(x, dtype=float)).reshape(-1)
        x = self._check_x(x, x.size)
        return self._variance_to_sigma(None, x, flux_level=reference_flux)

    def collected_flux_from_error(
        self, error, reference_flux: float = REFERENCE_FLUX, rtol: float = 1e-4
    ) -> np.ndarray:
        """Invert :meth:`reference_error`: the collected flux x of each spectrum.

        Parameters
        ----------
        error : array-like of shape (n, n_pix)
            Reported errors made by :meth:`reference_error` of this model.
        reference_flux : float, default=0.5
        rtol : float, default=1e-4
            Largest relative spread over pixels of the x each pixel implies.

        Returns
        -------
        x : ndarray of shape (n,)

        Raises
        ------
        ValueError
            When ``error`` is not this model's reference error (the pixels imply
            different x), e.g. errors from a file or from ``errors="true"``.

        Examples
        --------
        >>> m = PFSNoiseModel()
        >>> x = m.collected_flux_from_error(m.reference_error([0.5, 2.0]))
        >>> x.round(4).tolist()
        [0.5, 2.0]
        """
        error = self._check_flux(error, "error")
        if np.any(error <= 0):
            raise ValueError("error must be > 0 everywhere")
        check_real(reference_flux, "reference_flux", low=0.0, low_open=True)
        check_real(rtol, "rtol", low=0.0, low_open=True)
        p = self.obj_coeff * self.obj_profile * reference_flux
        q = self.bkg_coeff * self.bkg_profile
        s2 = np.asarray(error, dtype=np.float64) ** 2
        # each pixel: q u^2 + p u - s^2 = 0 for u = 1 / x (the positive root)
        u = 2.0 * s2 / (p + np.sqrt(p * p + 4.0 * q * s2))
        u_med = np.median(u, axis=1)
        spread = np.max(np.abs(u / u_med[:, None] - 1.0), axis=1)
        bad = spread > rtol
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"the errors are not this noise model's reference errors: in row {row} "
                f"(and {int(bad.sum()) - 1} other(s)) the collected flux they imply varies by "
                f"{100 * spread[row]:.3g} % over the pixels. Simulate with "
                'make_spectra(errors="reference") and the same noise model, or treat the '
                'errors as the true noise (noise="given")'
            )
        return 1.0 / u_med

    def true_error(self, flux, reported_error, reference_flux: float = REFERENCE_FLUX):
        """The true noise of ``flux`` for spectra whose reported errors are reference errors.

        Recovers the collected flux from ``reported_error``
        (:meth:`collected_flux_from_error`) and returns :meth:`sigma` there: the
        noise a simulator (or the Bayes posterior) must use, given only the
        stacked input ``[flux | reported error]``.

        Parameters
        ----------
        flux : array-like of shape (n, n_pix)
            Noiseless (model) flux.
        reported_error : array-like of shape (n, n_pix)

        Returns
        -------
        sigma : ndarray of shape (n, n_pix), float32
            The noise the spectra were drawn with (not the reported errors).

        Examples
        --------
        >>> import numpy as np
        >>> m = PFSNoiseModel()
        >>> flux = np.full((1, 4096), 0.3)
        >>> sigma = m.true_error(flux, m.reference_error(2.0))
        >>> bool(np.allclose(sigma, m.sigma(flux, 2.0)))
        True
        """
        x = self.collected_flux_from_error(reported_error, reference_flux)
        return self.sigma(flux, x)

    def calibrate(self, flux, table=REFERENCE_SNR_TABLE) -> PFSNoiseModel:
        """A copy whose constants reproduce ``table`` for the typical spectrum ``flux``.

        Parameters
        ----------
        flux : array-like of shape (n_pix,)
            A typical median-normalised spectrum.
        table : sequence of (mag, snr)
            Target median(flux/error) per magnitude.

        Returns
        -------
        PFSNoiseModel

        Examples
        --------
        >>> import numpy as np
        >>> flat = np.full((1, 4096), 0.5)
        >>> m = PFSNoiseModel().calibrate(flat[0], [(20.0, 30.0), (22.0, 5.0)])
        >>> round(float(snr_median(flat, m.error(flat, 22.0))[0]), 1)
        5.0
        """
        flux = np.asarray(flux, dtype=float)
        if flux.ndim > 1 and flux.shape[0] == 1:
            flux = flux[0]
        if flux.shape != self.wave.shape:
            raise ValueError(
                f"flux must be one spectrum of {self.wave.size} pixels (the noise model's "
                f"wave grid), got shape {flux.shape}"
            )
        check_finite(flux, "flux")
        rows = np.asarray(table, dtype=float)
        # two constants to fit: at least two (mag, snr) rows
        if rows.ndim != 2 or rows.shape[1] != 2 or rows.shape[0] < 2:
            raise ValueError(f"table must be two or more (mag, snr) pairs, got shape {rows.shape}")
        check_finite(rows, "table")
        if np.any(rows[:, 1] <= 0):
            raise ValueError("table's SNR values must be > 0")
        a, b = _calibrate(self.obj_profile, self.bkg_profile, flux, rows)
        return PFSNoiseModel(
            self.wave,
            obj_coeff=a,
            bkg_coeff=b,
            sky_lines=self.sky_lines,
            condition_scatter=self.condition_scatter,
            throughput_scale=self.throughput_scale,
        )


def _calibrate(obj, bkg, flux, table=REFERENCE_SNR_TABLE) -> tuple[float, float]:
    mags = np.array([t[0] for t in table], dtype=float)
    target = np.array([t[1] for t in table], dtype=float)
    x = 10.0 ** (-0.4 * (mags - 21.5))
    f = np.clip(flux, 0, None)

    def resid(logc):
        a, b = np.exp(logc)
        sig = np.sqrt(a * obj * f / x[:, None] + b * bkg / x[:, None] ** 2)
        snr = np.median(flux / sig, axis=1)
        return np.log(snr) - np.log(target)

    # a fit of the reference study's SNR table at the median pixel: a good start
    fit = least_squares(resid, np.log([1.314e-3, 4.23e-3]), x_scale=1.0)
    a, b = np.exp(fit.x)
    return float(a), float(b)
