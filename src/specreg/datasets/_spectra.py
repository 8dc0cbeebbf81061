"""Spectra sets and their generation from a spectral model, a prior and a noise model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..spectra import LabelPrior, PFSNoiseModel, SpectralModel, snr_median
from ..spectra._validation import (
    as_generator,
    check_bool,
    check_int,
    check_noise_model,
    check_prior,
    check_real,
    renamed,
)
from ._grid_io import resolve_model

__all__ = ["Spectra", "make_spectra", "iter_spectra", "ERROR_MODES"]

#: What ``make_spectra(errors=...)`` reports as the 1-sigma error: ``"reference"``
#: (magnitude and conditions only; the default) or ``"true"`` (the simulated noise
#: itself, a function of the noiseless flux: it leaks the labels).
ERROR_MODES = ("reference", "true")


@dataclass
class Spectra:
    """A set of spectra with their errors and labels.

    Parameters
    ----------
    wave : ndarray of shape (n_pix,)
        Wavelengths in Å.
    flux : ndarray of shape (n, n_pix), float32
        Noiseless flux.
    error : ndarray of shape (n, n_pix), float32
        Reported 1-sigma error per pixel, > 0: what a pipeline reports for the
        observation, never a function of the noiseless flux (see
        ``make_spectra(errors=...)``).
    params : DataFrame of n rows
        Labels (``T_eff``, ``log_g``, ``M_H``, ...) plus ``mag`` and ``snr``
        (median of flux/error).
    noisy : ndarray of shape (n, n_pix), float32, optional
        One fixed noise draw (test sets).
    metadata : dict
        Provenance (grid, noise model, seed, ...).

    Attributes
    ----------
    X : ndarray of shape (n, 2 * n_pix), float32
        The model input ``[flux | error]``; the flux half is ``noisy`` when present.
    y : ndarray of shape (n,)
        ``log_g``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> flux, error = np.ones((2, 3)), np.full((2, 3), 0.1)
    >>> s = Spectra(np.arange(3.0), flux, error,
    ...             pd.DataFrame({"log_g": [1.0, 2.0]}))
    >>> s.X.shape, s.y.tolist()
    ((2, 6), [1.0, 2.0])
    """

    wave: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    params: pd.DataFrame
    noisy: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.wave = np.asarray(self.wave, dtype=float)
        self.flux = np.asarray(self.flux, dtype=np.float32)
        self.error = np.asarray(self.error, dtype=np.float32)
        n_pix = self.wave.shape[0]
        for name in ("flux", "error", "noisy"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=np.float32)
            setattr(self, name, arr)
            if arr.ndim != 2 or arr.shape[1] != n_pix:
                raise ValueError(
                    f"{name} must have shape (n, {n_pix}) to match wave, got {arr.shape}"
                )
            if arr.shape[0] != len(self.params):
                raise ValueError(
                    f"{name} has {arr.shape[0]} rows but params has {len(self.params)}"
                )
        self.params = self.params.reset_index(drop=True)

    def __len__(self) -> int:
        return self.flux.shape[0]

    @property
    def n_pix(self) -> int:
        """Number of pixels."""
        return self.wave.shape[0]

    @property
    def X(self) -> np.ndarray:
        """Stacked model input ``[flux | error]``, shape (n, 2 * n_pix), float32."""
        first = self.flux if self.noisy is None else self.noisy
        return np.hstack([first, self.error]).astype(np.float32, copy=False)

    @property
    def y(self) -> np.ndarray:
        """Target: ``log_g``, shape (n,)."""
        if "log_g" not in self.params:
            raise ValueError("these spectra have no log_g label")
        return self.params["log_g"].to_numpy(dtype=np.float64)

    @property
    def snr(self) -> np.ndarray:
        """Per-spectrum SNR (median of flux/error over pixels), shape (n,)."""
        if "snr" in self.params:
            return self.params["snr"].to_numpy()
        return snr_median(self.flux, self.error)

    def __getitem__(self, rows) -> Spectra:
        """Row subset (slice, integer array or boolean mask)."""
        if isinstance(rows, int | np.integer):
            rows = [rows]
        idx = np.arange(len(self))[rows]
        return Spectra(
            self.wave,
            self.flux[idx],
            self.error[idx],
            self.params.iloc[idx],
            None if self.noisy is None else self.noisy[idx],
            dict(self.metadata),
        )

    def with_noise(
        self, random_state=None, noise_level: float = 1.0, noise_model: PFSNoiseModel | None = None
    ) -> Spectra:
        """A copy with one fixed noise draw ``noisy = flux + noise_level * sigma * N(0, 1)``.

        Parameters
        ----------
        random_state : int, Generator or None
        noise_level : float, default=1.0
            Multiplier of the noise, >= 0.
        noise_model : PFSNoiseModel, optional
            Draw the physical noise of this model (photon noise of the true flux,
            :meth:`PFSNoiseModel.true_error`); the ``error`` must then be its
            reference errors (``make_spectra``'s default). Without it the noise
            sigma is ``error`` itself.

        Returns
        -------
        Spectra

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> labels = pd.DataFrame({"log_g": [1.0]})
        >>> s = Spectra(np.arange(2.0), np.ones((1, 2)), np.ones((1, 2)), labels)
        >>> s.with_noise(0).noisy.shape
        (1, 2)
        """
        check_real(noise_level, "noise_level", low=0)
        if noise_model is not None:
            check_noise_model(noise_model)
        rng = as_generator(random_state)
        sigma = (
            self.error if noise_model is None else noise_model.true_error(self.flux, self.error)
        )
        eps = rng.standard_normal(self.flux.shape, dtype=np.float32)
        noisy = self.flux + np.float32(noise_level) * sigma * eps
        meta = dict(self.metadata, noise_seed=_seed_repr(random_state), noise_level=noise_level)
        return Spectra(self.wave, self.flux, self.error, self.params, noisy, meta)

    def with_reference_errors(self, noise_model: PFSNoiseModel | None = None) -> Spectra:
        """A copy whose ``error`` is the reference error at each spectrum's magnitude.

        Files whose errors were computed from the noiseless flux (the reference
        study's among them) leak the labels through the error half of ``X``;
        this replaces them by what a pipeline could report without knowing the
        spectrum: :meth:`PFSNoiseModel.reference_error` at the nominal collected
        flux of the ``mag`` column. Flux, noisy flux and labels are unchanged,
        and so is the original set (a new one is returned).

        Parameters
        ----------
        noise_model : PFSNoiseModel, optional
            Default ``PFSNoiseModel(self.wave)``.

        Returns
        -------
        Spectra

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from specreg.spectra import pfs_mr_wave
        >>> flux = np.full((2, 4096), 0.4, np.float32)
        >>> labels = pd.DataFrame({"log_g": [1.0, 2.0], "mag": [21.0, 22.0]})
        >>> s = Spectra(pfs_mr_wave(), flux, 0.1 * flux, labels)
        >>> honest = s.with_reference_errors()
        >>> bool((honest.error[0] < honest.error[1]).all())
        True
        >>> bool(np.allclose(s.error, 0.04))  # the set itself is unchanged
        True
        """
        if "mag" not in self.params:
            raise ValueError(
                "these spectra have no 'mag' column; reference errors need magnitudes"
            )
        noise_model = _noise_model_for(self.wave, noise_model, "the spectra's")
        x = noise_model.collected_flux(self.params["mag"].to_numpy(float))
        error = noise_model.reference_error(x)
        meta = dict(self.metadata, errors="reference", errors_from=repr(noise_model))
        return Spectra(self.wave, self.flux, error, self.params, self.noisy, meta)

    def __repr__(self) -> str:
        labels = [c for c in self.params.columns if c not in ("mag", "snr")]
        return (
            f"Spectra(n={len(self)}, n_pix={self.n_pix}, labels={labels}, "
            f"noisy={self.noisy is not None})"
        )


def _seed_repr(random_state):
    return random_state if isinstance(random_state, int | type(None)) else repr(random_state)


def _seed_sequence(random_state) -> np.random.SeedSequence:
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(int(random_state.randint(2**31)))
    try:
        return np.random.SeedSequence(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "random_state must be None, a non-negative int, a Generator or a RandomState; "
            f"got {random_state!r}"
        ) from exc


def _noise_model_for(wave, noise_model, whose: str) -> PFSNoiseModel:
    """``noise_model`` (default ``PFSNoiseModel(wave)``), checked to be on ``wave``."""
    if noise_model is None:
        return PFSNoiseModel(wave)
    if noise_model.wave.shape != wave.shape or not np.allclose(noise_model.wave, wave):
        raise ValueError(f"the noise model's wavelength grid differs from {whose}")
    return noise_model


def _draw_labels(model, prior, n, rng) -> np.ndarray:
    """Labels from the prior whose interpolation needs no hole (redrawn until so)."""
    theta = prior.sample(n, rng)
    if hasattr(model, "stencil_valid"):  # an optional SpectralModel member
        ok = model.stencil_valid(theta)
        for _ in range(100):
            if ok.all():
                break
            theta[~ok] = prior.sample(int((~ok).sum()), rng)
            ok = model.stencil_valid(theta)
        else:
            raise ValueError("could not draw labels away from the grid's holes in 100 tries")
    return theta


def _draw_mags(mag, n, rng) -> np.ndarray:
    if np.ndim(mag) == 0:
        mags = np.full(n, float(mag))
    elif isinstance(mag, tuple) and len(mag) == 2:
        lo, hi = float(mag[0]), float(mag[1])
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise ValueError(f"mag range must be finite (lo, hi) with hi >= lo, got {mag}")
        mags = rng.uniform(lo, hi, n)
    else:
        mags = np.asarray(mag, dtype=float).reshape(-1)
        if mags.size != n:
            raise ValueError(f"mag has {mags.size} values for {n} spectra")
    if not np.all(np.isfinite(mags)):
        raise ValueError("mag contains NaN or infinite values")
    return mags


def _fixed_noise(noise) -> bool:
    """``noisy`` for the deprecated ``noise`` argument (None or "fixed")."""
    if noise not in (None, "fixed"):
        raise ValueError(f"noise must be None or 'fixed', got {noise!r}")
    return noise == "fixed"


def _renamed_options(model, grid, noisy, noise) -> tuple:
    """``model`` and ``noisy`` given the deprecated ``grid`` and ``noise`` (warning)."""
    model = renamed(model, grid, old="grid", new="model", stacklevel=3)
    noisy = renamed(
        noisy, noise, old="noise", new="noisy", default=False, convert=_fixed_noise, stacklevel=3
    )
    if not isinstance(noisy, bool | np.bool_):
        raise ValueError(f"noisy must be True or False, got {noisy!r}")
    return model, bool(noisy)


def iter_spectra(
    n_samples: int,
    *,
    model: SpectralModel | None = None,
    prior: LabelPrior | None = None,
    mag: float | tuple[float, float] | ArrayLike = (20.5, 22.5),
    noisy: bool = False,
    noise_model: PFSNoiseModel | None = None,
    errors: str = "reference",
    snap: bool = False,
    chunk_size: int = 8192,
    random_state: int | np.random.Generator | None = None,
    grid: SpectralModel | None = None,
    noise: str | None = None,
) -> Iterator[Spectra]:
    """Generate spectra chunk by chunk (bounded memory); see :func:`make_spectra`.

    The parameters are those of :func:`make_spectra` (but ``return_X_y``). They
    are checked, and all labels and magnitudes drawn (small), when it is
    called, so the labels do not depend on ``chunk_size``; the noise draws do
    (one generator per chunk). Feed it to :func:`write_shards` to simulate
    sets larger than memory.

    Yields
    ------
    Spectra
        Chunks of at most ``chunk_size`` spectra.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
    >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, np.full((2, 4096), 0.5),
    ...                  pfs_mr_wave())
    >>> chunks = iter_spectra(5, model=g, chunk_size=2, random_state=0)
    >>> [len(c) for c in chunks]
    [2, 2, 1]
    """
    model, noisy = _renamed_options(model, grid, noisy, noise)
    return _generate(
        n_samples, model, prior, mag, noisy, noise_model, errors, snap, chunk_size, random_state
    )


def _generate(
    n_samples, model, prior, mag, noisy, noise_model, errors, snap, chunk_size, random_state
) -> Iterator[Spectra]:
    """Check the options and draw the labels now; return the generator of the chunks."""
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    n_samples = check_int(n_samples, "n_samples", low=0)
    chunk_size = check_int(chunk_size, "chunk_size")
    snap = check_bool(snap, "snap")
    if prior is not None:
        check_prior(prior)
    model = resolve_model(model)
    if prior is None:
        prior = LabelPrior.from_grid(model, snap=snap)
    elif snap:
        # a given prior is drawn from as it is: snapping is a property of the prior
        raise ValueError(
            "snap=True has no effect with a prior: the prior decides the sampling; "
            "pass prior=LabelPrior.from_grid(model, snap=True) (with box=... for a "
            "sub-box) instead of snap"
        )
    missing = [p for p in model.param_names if p not in prior.param_names]
    if missing:
        raise ValueError(f"the prior does not cover the model's labels {missing}")
    noise_model = _noise_model_for(model.wave, noise_model, "the spectral model's")
    seq = _seed_sequence(random_state)
    label_rng = np.random.default_rng(seq.spawn(1)[0])
    theta_all = _draw_labels(model, prior, n_samples, label_rng)
    order = [prior.param_names.index(p) for p in model.param_names]
    mags_all = _draw_mags(mag, n_samples, label_rng)
    meta = {
        "generator": "specreg.datasets.make_spectra",
        "random_state": _seed_repr(random_state),
        "chunk_size": chunk_size,
        "noise_model": repr(noise_model),
        "errors": errors,
        "prior": repr(prior),
        "grid": getattr(model, "metadata", {}).get("name", repr(model)),
    }

    def chunks() -> Iterator[Spectra]:
        n_chunks = max(1, -(-n_samples // chunk_size))
        for k, chunk_seq in zip(range(n_chunks), seq.spawn(n_chunks)):
            sl = slice(k * chunk_size, min((k + 1) * chunk_size, n_samples))
            theta = theta_all[sl]
            rng = np.random.default_rng(chunk_seq)
            flux = model.flux(theta[:, order])
            x = noise_model.collected_flux(mags_all[sl], random_state=rng, n=flux.shape[0])
            sigma = noise_model.sigma(flux, x)  # the physical noise, drawn below
            # the reported error: what a pipeline would know (see ERROR_MODES)
            error = sigma if errors == "true" else noise_model.reference_error(x)
            params = pd.DataFrame(theta, columns=prior.param_names)
            params["mag"] = mags_all[sl]
            params["snr"] = np.median(flux / sigma, axis=1)
            fixed = None
            if noisy:
                fixed = flux + sigma * rng.standard_normal(flux.shape, dtype=np.float32)
            yield Spectra(model.wave, flux, error, params, fixed, dict(meta))

    return chunks()


def make_spectra(
    n_samples: int,
    *,
    model: SpectralModel | None = None,
    prior: LabelPrior | None = None,
    mag: float | tuple[float, float] | ArrayLike = (20.5, 22.5),
    noisy: bool = False,
    noise_model: PFSNoiseModel | None = None,
    errors: str = "reference",
    snap: bool = False,
    chunk_size: int = 8192,
    random_state: int | np.random.Generator | None = None,
    return_X_y: bool = False,
    grid: SpectralModel | None = None,
    noise: str | None = None,
) -> Spectra | tuple[np.ndarray, np.ndarray]:
    """Simulate a set of spectra: labels -> model flux -> per-pixel errors.

    Parameters
    ----------
    n_samples : int
        Number of spectra.
    model : SpectralModel, optional
        Forward model (median-normalised flux), e.g. a
        :class:`~specreg.spectra.SpectralGrid`; default the embedded grid
        (:func:`~specreg.datasets.load_grid`).
    prior : LabelPrior, optional
        Label prior; default uniform in the model's box. Labels whose
        interpolation would need a missing grid node are redrawn (models with
        ``stencil_valid``).
    mag : (float, float), float or array-like, default=(20.5, 22.5)
        i-band magnitudes: a uniform range, one value, or one per spectrum.
    noisy : bool, default=False
        Add one stored noise draw (``noisy``), as for test sets; training sets
        stay noiseless (noise is drawn fresh per batch later).
    noise_model : PFSNoiseModel, optional
        Default ``PFSNoiseModel(model.wave)``. The noise is physical: photon noise
        of the true flux plus sky and read noise (:meth:`PFSNoiseModel.sigma`).
    errors : {"reference", "true"}, default="reference"
        The 1-sigma errors reported in ``error`` (the second half of ``X``):

        * ``"reference"``: what a pipeline can know, the expected noise of a
          smooth reference spectrum at the star's magnitude and observing
          conditions (:meth:`PFSNoiseModel.reference_error`). It carries no
          information about the labels and does not change when noise is drawn,
          so training and test inputs are made the same way.
        * ``"true"``: the noise the spectrum was drawn with. **It leaks the
          labels**: it is a function of the noiseless flux, so a linear model on
          the error half alone predicts log g almost perfectly and beats every
          noise-limited ceiling. Use it only to study that leakage.
    snap : bool, default=False
        Mimic the reference study's sampling: per spectrum one label stays
        continuous and the others snap to grid nodes (see
        :class:`~specreg.spectra.LabelPrior`; needs a model with ``axes``).
        Only without ``prior``: a prior decides the sampling itself, so
        ``snap=True`` with a prior raises ``ValueError``; snap a prior with
        ``LabelPrior.from_grid(model, snap=True)``.
    chunk_size : int, default=8192
        Spectra generated at once (bounds temporary memory).
    random_state : int or None
        Seed; the same seed and chunk_size give the same spectra.
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a :class:`Spectra`.
    grid : SpectralModel, optional
        Deprecated old name of ``model``.

        .. deprecated:: 0.1
           ``grid`` was renamed ``model``; it will be removed in 0.3.
    noise : {None, "fixed"}, optional
        Deprecated: ``noise="fixed"`` is ``noisy=True``.

        .. deprecated:: 0.1
           ``noise`` was renamed ``noisy`` (a bool); it will be removed in 0.3.

    Returns
    -------
    Spectra, or (X, y)
        ``X`` of shape (n, 2 * n_pix) float32 ``[flux | error]`` (flux noisy
        when ``noisy=True``), ``y`` = log g of shape (n,).

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
    >>> wave = pfs_mr_wave()
    >>> flux = 0.5 + 0.01 * np.arange(3)[:, None] * np.ones(4096)
    >>> g = SpectralGrid({"log_g": [1.0, 3.0, 5.0]}, flux, wave)
    >>> s = make_spectra(10, model=g, noisy=True, random_state=0)
    >>> s.X.shape, s.y.shape
    ((10, 8192), (10,))
    """
    model, noisy = _renamed_options(model, grid, noisy, noise)
    return_X_y = check_bool(return_X_y, "return_X_y")
    chunks = _generate(
        n_samples, model, prior, mag, noisy, noise_model, errors, snap, chunk_size, random_state
    )
    spectra = _concat(list(chunks))
    if return_X_y:
        return spectra.X, spectra.y
    return spectra


def _concat(chunks: list[Spectra]) -> Spectra:
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    noisy = None if first.noisy is None else np.concatenate([c.noisy for c in chunks])
    return Spectra(
        first.wave,
        np.concatenate([c.flux for c in chunks]),
        np.concatenate([c.error for c in chunks]),
        pd.concat([c.params for c in chunks], ignore_index=True),
        noisy,
        first.metadata,
    )
