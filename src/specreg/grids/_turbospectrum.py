"""Run Turbospectrum (``babsma_lu`` + ``bsyn_lu``) for one model atmosphere.

Turbospectrum reads its configuration from stdin as ``'KEYWORD:' 'value'``
lines and its data from a ``DATA/`` directory relative to the working
directory, so every synthesis runs in its own temporary directory with a
``DATA`` symlink (which also makes parallel runs safe).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._provision import Toolchain

__all__ = ["SynthesisSettings", "microturbulence", "run_turbospectrum"]

#: Elements that [alpha/M] applies to (Turbospectrum's own ``makeabund``
#: list: O, Ne, Mg, Si, S, Ar, Ca, Ti).
ALPHA_ELEMENTS = (8, 10, 12, 14, 16, 18, 20, 22)
#: Solar carbon, Grevesse+2007 (as in the MARCS headers and Turbospectrum).
SOLAR_C = 8.39


def microturbulence(logg: float) -> float:
    """Microturbulence ξ (km/s) from the smooth relation ξ = 2.478 − 0.325 log g.

    A smooth relation avoids the artificial jump a giant/dwarf step (2 vs
    1 km/s) would put into the grid.

    Parameters
    ----------
    logg : float
        Surface gravity (cgs, dex).

    Returns
    -------
    float
        ξ in km/s.

    Examples
    --------
    >>> from specreg.grids._turbospectrum import microturbulence
    >>> round(microturbulence(4.5), 4)
    1.0155
    """
    return 2.478 - 0.325 * float(logg)


@dataclass(frozen=True)
class SynthesisSettings:
    """Settings of one Turbospectrum synthesis (defaults = the grid recipe).

    Attributes
    ----------
    lambda_min, lambda_max : float
        bsyn range, Å (babsma runs 1 Å wider on both sides).
    step : float
        bsyn wavelength step, Å.
    tio_below_teff : float
        Include TiO lines only for T_eff below this (they are negligible
        above ~4500 K and cost ~45 % of the run time).
    c12_c13 : tuple of float
        Isotopic fractions of 12C and 13C (12C/13C = 15).
    timeout : float
        Seconds before a Turbospectrum call is killed.
    """

    lambda_min: float = 7100.0
    lambda_max: float = 8850.0
    step: float = 0.05
    tio_below_teff: float = 4500.0
    c12_c13: tuple[float, float] = (0.9375, 0.0625)
    timeout: float = 900.0


def _abundance_block(mh: float, am: float, cm: float) -> str:
    # METALLICITY and ALPHA/Fe scale Turbospectrum's Grevesse+2007 solar
    # mixture (identical to the MARCS headers); carbon is set explicitly.
    return (
        f"'METALLICITY:'    '{mh:.3f}'\n"
        f"'ALPHA/Fe   :'    '{am:.3f}'\n"
        "'HELIUM     :'    '0.00'\n"
        "'R-PROCESS  :'    '0.00'\n"
        "'S-PROCESS  :'    '0.00'\n"
        "'INDIVIDUAL ABUNDANCES:'   '1'\n"
        f"6  {SOLAR_C + mh + cm:.3f}\n"
    )


def run_turbospectrum(
    model_text: str,
    spherical: bool,
    teff: float,
    logg: float,
    mh: float,
    am: float = 0.0,
    cm: float = 0.0,
    *,
    tools: Toolchain,
    settings: SynthesisSettings = SynthesisSettings(),
    marcs_format: bool = True,
    workdir: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Synthesise one flux spectrum with Turbospectrum.

    Parameters
    ----------
    model_text : str
        MARCS model in web (ASCII) format.
    spherical : bool
        Spherical radiative transfer (for MARCS ``s`` models).
    teff, logg : float
        Used for ξ (from log g) and the TiO switch (T_eff).
    mh, am, cm : float
        [M/H] (all metals), [alpha/M] (O, Ne, Mg, Si, S, Ar, Ca, Ti) and
        [C/M]; they change the synthesis only, not the atmosphere.
    tools : Toolchain
        From `provision`.
    settings : SynthesisSettings, optional
    marcs_format : bool, default True
        False for models in Turbospectrum's own format (from the
        interpolator).
    workdir : path-like, optional
        Parent for the temporary run directory (default: system temp).

    Returns
    -------
    result : dict
        ``wave`` (Å), ``norm`` (continuum-normalised, bsyn column 2),
        ``flux`` (absolute flux, bsyn column 3), float64 arrays.

    Raises
    ------
    RuntimeError
        If Turbospectrum fails or produces no spectrum; the message holds the
        tail of its output.

    Examples
    --------
    >>> from specreg.grids import provision
    >>> from specreg.grids._marcs import MarcsLibrary
    >>> tools = provision()  # doctest: +SKIP
    >>> m = MarcsLibrary(tools.marcs_dir).get(5000, 2.0, 0.0)  # doctest: +SKIP
    >>> spec = run_turbospectrum(
    ...     m.text, m.spherical, 5000, 2.0, 0.0, tools=tools
    ... )  # doctest: +SKIP
    >>> spec["flux"].shape  # doctest: +SKIP
    (35001,)
    """
    s = settings
    xi = microturbulence(logg)
    lists = [tools.atoms, tools.hydrogen]
    for name, path in sorted(tools.molecules.items()):
        if name == "TiO" and teff >= s.tio_below_teff:
            continue
        lists.append(path)
    abund = _abundance_block(mh, am, cm)
    sph = "T" if spherical else "F"
    with tempfile.TemporaryDirectory(prefix="specreg_ts_", dir=workdir) as tmp:
        tmp = Path(tmp)
        os.symlink(tools.data_dir, tmp / "DATA")
        (tmp / "model.mod").write_text(model_text)
        babsma_in = (
            f"'LAMBDA_MIN:'  '{s.lambda_min - 1.0:.3f}'\n"
            f"'LAMBDA_MAX:'  '{s.lambda_max + 1.0:.3f}'\n"
            f"'LAMBDA_STEP:' '{s.step:.4f}'\n"
            "'MODELINPUT:' 'model.mod'\n"
            f"'MARCS-FILE:' '{'.true.' if marcs_format else '.false.'}'\n"
            "'MODELOPAC:' 'model.opac'\n"
            f"{abund}"
            "'XIFIX:' 'T'\n"
            f"{xi:.4f}\n"
        )
        bsyn_in = (
            "'NLTE :'          '.false.'\n"
            f"'LAMBDA_MIN:'    '{s.lambda_min:.3f}'\n"
            f"'LAMBDA_MAX:'    '{s.lambda_max:.3f}'\n"
            f"'LAMBDA_STEP:'   '{s.step:.4f}'\n"
            "'INTENSITY/FLUX:' 'Flux'\n"
            "'COS(THETA)    :' '1.00'\n"
            "'ABFIND        :' '.false.'\n"
            "'MODELOPAC:' 'model.opac'\n"
            "'RESULTFILE :' 'spec.out'\n"
            f"{abund}"
            "'ISOTOPES : ' '2'\n"
            f"6.012  {s.c12_c13[0]:.4f}\n"
            f"6.013  {s.c12_c13[1]:.4f}\n"
            f"'NFILES   :' '{len(lists)}'\n"
            + "".join(f"{p}\n" for p in lists)
            + f"'SPHERICAL:'  '{sph}'\n"
            "  30\n  300.00\n  15\n  1.30\n"
        )
        for exe, stdin in ((tools.babsma, babsma_in), (tools.bsyn, bsyn_in)):
            proc = subprocess.run(
                [str(exe)],
                input=stdin,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=s.timeout,
            )
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-2000:]
                raise RuntimeError(f"{exe.name} failed (rc={proc.returncode}):\n{tail}")
        out = tmp / "spec.out"
        if not out.exists() or out.stat().st_size == 0:
            raise RuntimeError("bsyn_lu produced no spectrum:\n" + proc.stdout[-2000:])
        data = np.loadtxt(out)
    return {"wave": data[:, 0], "norm": data[:, 1], "flux": data[:, 2]}
