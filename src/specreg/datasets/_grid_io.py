"""Reading and writing spectral grids; the embedded Turbospectrum + MARCS grid."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import ArrayLike

from ..spectra import SpectralGrid
from ..spectra._validation import check_bool, check_model, check_real
from ._h5util import atomic_h5, create_checked, json_attr, read_dataset, to_json

__all__ = ["load_grid", "save_grid", "EMBEDDED_GRID_NAME"]

GRID_FORMAT = "specreg-grid"
GRID_SCHEMA_VERSION = 1
#: File name of the grid shipped in ``specreg/datasets/data``.
EMBEDDED_GRID_NAME = "turbospectrum_marcs_pfsmr.h5"
#: File name of the 5-D model's [alpha/M] x [C/M] response, next to the 3-D grid.
EMBEDDED_RESPONSE_NAME = "turbospectrum_marcs_pfsmr_5d_response.h5"
#: Names ``load_grid`` takes for the embedded models.
EMBEDDED_MODELS = ("3d", "5d")


def embedded_grid_path() -> Path:
    """Path of the grid shipped with the package.

    Examples
    --------
    >>> embedded_grid_path().name
    'turbospectrum_marcs_pfsmr.h5'
    """
    return Path(str(resources.files("specreg.datasets") / "data" / EMBEDDED_GRID_NAME))


def resolve_model(model=None, *, jacobian: bool = False):
    """The spectral model to use: ``model`` itself, or the embedded grid if ``None``.

    The one place where "no model given" turns into the grid shipped with
    specreg, so that every estimator, scorer and simulator agrees on the default.

    Parameters
    ----------
    model : SpectralModel or None
        A spectral model (for example a `SpectralGrid`), or ``None``.
    jacobian : bool, default=False
        The caller needs the model's ``jacobian`` (fits and bounds), not only its flux.

    Returns
    -------
    SpectralModel

    Examples
    --------
    >>> resolve_model().param_names
    ('T_eff', 'log_g', 'M_H')
    """
    if model is None:
        return load_grid()
    # what every user of a model reads; fits and bounds also differentiate it
    needed = ("param_names", "wave", "bounds", "flux") + (("jacobian",) if jacobian else ())
    check_model(model, needed)
    return model


def save_grid(grid: SpectralGrid, path: str | os.PathLike) -> Path:
    """Write a grid in specreg's HDF5 grid format (atomically).

    Layout: root attributes ``format="specreg-grid"``, ``schema_version``,
    ``param_names``, ``metadata`` (JSON); datasets ``wave``, ``axes/<name>``,
    ``flux`` ``(*axis_lengths, n_pix)`` float32, optional ``continuum``, ``valid``.
    Every dataset carries a fletcher32 checksum, so bytes changed on disk raise
    on loading instead of decoding to other numbers.

    Parameters
    ----------
    grid : SpectralGrid
    path : str or Path

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from specreg.spectra import SpectralGrid
    >>> g = SpectralGrid({"x": [0.0, 1.0]}, np.ones((2, 3)), [1.0, 2.0, 3.0])
    >>> p = save_grid(g, os.path.join(tempfile.mkdtemp(), "g.h5"))
    >>> load_grid(p, normalize=False).shape
    (2,)
    """
    if not isinstance(grid, SpectralGrid):
        raise TypeError(f"save_grid writes a SpectralGrid, got {type(grid).__name__}")
    path = Path(path)
    with atomic_h5(path) as f:
        f.attrs["format"] = GRID_FORMAT
        f.attrs["schema_version"] = GRID_SCHEMA_VERSION
        f.attrs["param_names"] = np.array(grid.param_names, dtype=h5py.string_dtype())
        f.attrs["metadata"] = to_json(grid.metadata)
        create_checked(f, "wave", grid.wave)
        for name, nodes in grid.axes.items():
            create_checked(f, f"axes/{name}", nodes)
        chunks = (*([1] * len(grid.shape)), grid.n_pix)
        opts = dict(compression="gzip", compression_opts=6, shuffle=True, chunks=chunks)
        create_checked(f, "flux", grid.node_flux.reshape(*grid.shape, grid.n_pix), **opts)
        if grid.node_continuum is not None:
            cont = grid.node_continuum.reshape(*grid.shape, grid.n_pix)
            create_checked(f, "continuum", cont, **opts)
        create_checked(f, "valid", grid.valid)
    return path


def _is_response_file(path: Path) -> bool:
    """Whether ``path`` is a response file (the 5-D model's; see ``specreg grid build``)."""
    from ..grids._response import RESPONSE_FORMAT

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == RESPONSE_FORMAT
    except OSError:
        return False


def _read_grid_file(path: Path, method: str) -> SpectralGrid:
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not an HDF5 file: {exc}") from None
    with handle as f:
        if f.attrs.get("format") != GRID_FORMAT:
            raise ValueError(
                f"{path} is not a specreg grid file (missing attribute format={GRID_FORMAT!r})"
            )
        version = int(f.attrs.get("schema_version", -1))
        if version > GRID_SCHEMA_VERSION:
            raise ValueError(
                f"{path} has grid schema version {version}; this specreg reads up to "
                f"{GRID_SCHEMA_VERSION}: upgrade specreg"
            )
        if "param_names" not in f.attrs:
            raise ValueError(f"{path} is damaged or incomplete: it has no attribute 'param_names'")
        raw = np.atleast_1d(f.attrs["param_names"])
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
        axes = {n: read_dataset(f, f"axes/{n}", path) for n in names}
        flux = read_dataset(f, "flux", path)
        wave = read_dataset(f, "wave", path)
        continuum = read_dataset(f, "continuum", path) if "continuum" in f else None
        valid = read_dataset(f, "valid", path) if "valid" in f else None
        metadata = json_attr(f, "metadata", path)
        lengths = tuple(np.size(a) for a in axes.values())
        if flux.shape != (*lengths, np.size(wave)):
            raise ValueError(
                f"{path} is inconsistent: dataset 'flux' has shape {flux.shape} but the axes "
                f"{names} and dataset 'wave' give {(*lengths, np.size(wave))}"
            )
        for name, arr in (("continuum", continuum),):
            if arr is not None and arr.shape != flux.shape:
                raise ValueError(
                    f"{path} is inconsistent: dataset {name!r} has shape {arr.shape} but "
                    f"'flux' has {flux.shape}"
                )
        if valid is not None and valid.shape != lengths:
            raise ValueError(
                f"{path} is inconsistent: dataset 'valid' has shape {valid.shape} but the "
                f"axes give {lengths}"
            )
    return SpectralGrid(
        axes,
        flux,
        wave,
        continuum=continuum,
        valid=valid,
        method=method,
        metadata=metadata,
    )


def load_grid(
    path: str | os.PathLike | None = None,
    *,
    normalize: bool = True,
    method: str = "cubic",
    wave: ArrayLike | None = None,
    resolution: float | None = 5000.0,
) -> SpectralGrid:
    """Load a spectral grid: the embedded one, a specreg grid file, or BOSZ files.

    Parameters
    ----------
    path : str or Path, optional
        ``None`` (or ``"3d"``) loads the grid shipped with specreg: Turbospectrum +
        MARCS 1-D LTE spectra on the PFS MR-like pixel grid (T_eff 4000-6000 K, log g
        1-5, [M/H] -2.5..+0.75, [alpha/M] = [C/M] = 0; see ``grid.metadata`` for every
        setting and the citations). ``"5d"`` loads the 5-D model, a
        :class:`~specreg.spectra.ResponseGrid`: that grid times its response to
        [alpha/M] (-0.2..+0.4) and [C/M] (-0.5..+0.5), labels
        ``("T_eff", "log_g", "M_H", "a_M", "C_M")`` (see the 5-D grid user guide). A
        file is read as specreg's HDF5 grid format (see :func:`save_grid`) or as a
        response file (``specreg grid assemble`` of a ``--response`` build); a
        directory as BOSZ-style ASCII files. The names ``"3d"`` and ``"5d"`` always
        mean the embedded models: write ``"./5d"`` for a file of that name.
    normalize : bool, default=True
        Scale every node spectrum to median 0.5 over the window, the reference
        study's convention, which :class:`~specreg.spectra.PFSNoiseModel` assumes.
        ``False`` keeps absolute flux.
    method : {"cubic", "linear"}, default="cubic"
        Default interpolation of the returned grid.
    wave : array-like, optional
        For BOSZ directories: the pixel grid to resample onto (default: PFS MR).
    resolution : float or None, default=5000
        For BOSZ directories: resolving power of the Gaussian LSF applied before
        resampling (None: no convolution).

    Returns
    -------
    SpectralGrid
        A :class:`~specreg.spectra.ResponseGrid` for ``"5d"`` or a response file.

    Examples
    --------
    >>> grid = load_grid()  # doctest: +SKIP
    >>> grid.param_names  # doctest: +SKIP
    ('T_eff', 'log_g', 'M_H')
    >>> load_grid("5d").param_names
    ('T_eff', 'log_g', 'M_H', 'a_M', 'C_M')
    """
    normalize = check_bool(normalize, "normalize")
    if resolution is not None:
        check_real(resolution, "resolution", low=0.0, low_open=True)
    if path is None or (isinstance(path, str) and path == "3d"):
        path = embedded_grid_path()
        if not path.exists():
            raise FileNotFoundError(
                f"the embedded grid {path.name} is not installed with this copy of specreg; "
                "build one with `specreg grid build` and pass its path"
            )
    elif isinstance(path, str) and path == "5d":
        path = embedded_grid_path().with_name(EMBEDDED_RESPONSE_NAME)
        if not path.exists():
            raise FileNotFoundError(
                "the 5-D model's response is not installed with this copy of specreg; "
                "build it with `specreg grid build --response --out DIR` and "
                "`specreg grid assemble DIR --out response.h5`, then load_grid('response.h5')"
            )
    path = Path(path)
    if wave is not None and not path.is_dir():
        # a grid file brings its own pixels: a wave given here would be silently unused
        raise ValueError(
            "wave= resamples BOSZ spectra and applies to a BOSZ directory only; "
            f"{path.name} is a grid file with its own wavelength grid"
        )
    if path.is_file() and _is_response_file(path):
        from ..grids._response import read_response

        model = read_response(path, load_grid(normalize=False, method=method))
        return model.normalized() if normalize else model
    if path.is_dir():
        from ..grids import read_bosz_directory  # heavy imports only when needed
        from ..spectra._noise import pfs_mr_wave

        arrays = read_bosz_directory(
            path, wave=pfs_mr_wave() if wave is None else wave, resolution=resolution
        )
        grid = SpectralGrid(
            arrays["axes"],
            arrays["flux"],
            arrays["wave"],
            continuum=arrays.get("continuum"),
            valid=arrays.get("valid"),
            method=method,
            metadata=arrays.get("metadata", {"source": str(path)}),
        )
    elif path.exists():
        grid = _read_grid_file(path, method)
    else:
        raise FileNotFoundError(f"no grid at {path}")
    return grid.normalized() if normalize else grid
