"""Readers for BOSZ-style ASCII spectra (Bohlin+2017 ATLAS9/SYNTHE grid).

File names encode the parameters, e.g.
``amm05cp03op03t5000g25v20modrt0b5000rs.asc.bz2``: [M/H] = -0.5,
[C/M] = +0.3, [alpha/M] = +0.3, T_eff = 5000 K, log g = 2.5, ξ = 2.0 km/s,
instrumental resolving power 5000.  Each file has columns wavelength (Å),
flux and continuum.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
from pathlib import Path

import numpy as np

from ._labels import PARAM_NAMES
from ._lsf import degrade_to_grid, resample_linear

__all__ = ["parse_bosz_name", "read_bosz_directory", "read_bosz_file"]

_BOSZ_RE = re.compile(
    r"^am(?P<ms>[mp])(?P<m>\d{2})c(?P<cs>[mp])(?P<c>\d{2})o(?P<os>[mp])(?P<o>\d{2})"
    r"t(?P<t>\d+)g(?P<gs>-?)(?P<g>\d+)v(?P<v>\d+)mod(?P<mod>[a-z0-9]*?)b(?P<b>\d+)"
    r"rs\.asc(?:\.bz2|\.gz)?$"
)


def parse_bosz_name(name: str | os.PathLike) -> dict[str, float]:
    """Parse the stellar parameters from a BOSZ file name.

    Parameters
    ----------
    name : str or path-like
        File name (directories are ignored).

    Returns
    -------
    params : dict
        ``T_eff``, ``log_g``, ``M_H``, ``a_M``, ``C_M``, ``vturb`` (km/s)
        and ``R`` (resolving power of the file).

    Raises
    ------
    ValueError
        If the name does not follow the BOSZ scheme.

    Examples
    --------
    >>> from specreg.grids import parse_bosz_name
    >>> p = parse_bosz_name("amm05cp03op03t5000g25v20modrt0b5000rs.asc.bz2")
    >>> p["T_eff"], p["log_g"], p["M_H"], p["a_M"], p["C_M"], p["R"]
    (5000.0, 2.5, -0.5, 0.3, 0.3, 5000.0)
    """
    m = _BOSZ_RE.match(Path(name).name)
    if m is None:
        raise ValueError(f"not a BOSZ file name: {Path(name).name!r}")

    def signed(sign: str, digits: str) -> float:
        return (-1.0 if sign == "m" else 1.0) * int(digits) / 10.0

    return {
        "T_eff": float(m["t"]),
        "log_g": (-1.0 if m["gs"] else 1.0) * int(m["g"]) / 10.0,
        "M_H": signed(m["ms"], m["m"]),
        "a_M": signed(m["os"], m["o"]),
        "C_M": signed(m["cs"], m["c"]),
        "vturb": int(m["v"]) / 10.0,
        "R": float(m["b"]),
    }


def read_bosz_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one BOSZ ASCII spectrum (plain, ``.bz2`` or ``.gz``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    wave, flux, continuum : ndarray
        float64 columns of the file.

    Examples
    --------
    >>> from specreg.grids import read_bosz_file
    >>> name = "amp00cp00op00t5000g25v20modrt0b5000rs.asc.bz2"
    >>> w, f, c = read_bosz_file(name)  # doctest: +SKIP
    """
    path = Path(path)
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "rt") as fh:
        data = np.loadtxt(fh, usecols=(0, 1, 2), ndmin=2)
    return data[:, 0], data[:, 1], data[:, 2]


def read_bosz_directory(
    path: str | os.PathLike,
    wave: np.ndarray | None = None,
    resolution: float | None = None,
) -> dict:
    """Read a directory of BOSZ spectra into grid arrays.

    Parameters
    ----------
    path : str or path-like
        Directory with BOSZ files (other files are ignored).
    wave : ndarray, optional
        Output pixel grid (Å).  Default: the files' own sampling (which must
        then be identical for all files).
    resolution : float, optional
        With ``wave``: degrade to this resolving power with a Gaussian LSF on
        a uniform ln λ grid before resampling.  The kernel width accounts for
        the files' own resolving power R_file (FWHM² = 1/R² − 1/R_file² in
        ln λ), so the result has resolving power ``resolution``.  Without
        it, spectra are only interpolated linearly.

    Returns
    -------
    grid : dict
        ``param_names`` (list of axes with more than one value, in the order
        T_eff, log_g, M_H, a_M, C_M), ``axes`` (dict name -> sorted 1-D
        array), ``fixed`` (dict of single-valued parameters), ``wave``,
        ``flux`` and ``continuum`` (float32, shape ``(*axis_lengths, n_pix)``,
        zero where missing), ``valid`` (bool, shape axis_lengths) and
        ``files`` (list of files read).

    Raises
    ------
    FileNotFoundError
        If no BOSZ file is found.
    ValueError
        If files have different sampling and no ``wave`` is given, or two
        files share parameters.

    Examples
    --------
    >>> from specreg.grids import read_bosz_directory
    >>> g = read_bosz_directory("bosz/")  # doctest: +SKIP
    >>> g["flux"].shape  # doctest: +SKIP
    (9, 9, 14, 4096)
    """
    path = Path(path)
    entries = []
    for f in sorted(path.iterdir()):
        try:
            entries.append((parse_bosz_name(f.name), f))
        except ValueError:
            continue
    if not entries:
        raise FileNotFoundError(f"no BOSZ files in {path}")
    values = {k: sorted({p[k] for p, _ in entries}) for k in PARAM_NAMES}
    names = [k for k in PARAM_NAMES if len(values[k]) > 1]
    fixed = {k: values[k][0] for k in PARAM_NAMES if len(values[k]) == 1}
    shape = tuple(len(values[k]) for k in names)

    flux = cont = None
    out_wave = None if wave is None else np.asarray(wave, dtype=float)
    valid = np.zeros(shape, dtype=bool)
    for params, f in entries:
        idx = tuple(values[k].index(params[k]) for k in names)
        if valid[idx]:
            raise ValueError(f"two BOSZ files with parameters {params}")
        w, fl, co = read_bosz_file(f)
        if out_wave is None:
            out_wave = w  # original sampling of the first file
        if wave is None:
            if w.shape != out_wave.shape or not np.allclose(w, out_wave, rtol=0, atol=1e-6):
                raise ValueError("BOSZ files differ in wavelength sampling; pass wave=")
            both = np.stack([fl, co])
        elif resolution is not None:
            r_file = params["R"]
            r_eff = resolution
            if r_file > resolution:
                # Gaussians add in quadrature: remove the file's own width.
                r_eff = 1.0 / np.sqrt(1.0 / resolution**2 - 1.0 / r_file**2)
            both = degrade_to_grid(w, np.stack([fl, co]), out_wave, r_eff)
        else:
            both = resample_linear(w, np.stack([fl, co]), out_wave)
        if flux is None:
            flux = np.zeros((*shape, out_wave.size), dtype=np.float32)
            cont = np.zeros_like(flux)
        flux[idx], cont[idx] = both[0], both[1]
        valid[idx] = True
    return {
        "param_names": names,
        "axes": {k: np.asarray(values[k], dtype=float) for k in names},
        "fixed": fixed,
        "wave": np.asarray(out_wave, dtype=float),
        "flux": flux,
        "continuum": cont,
        "valid": valid,
        "files": [str(f) for _, f in entries],
    }
