"""FITS index reader, MARCS names, the bracket logic, line-list conversion."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from specreg.grids._fits import read_fits_table
from specreg.grids._interpolate import bracket
from specreg.grids._linelists import (
    convert_moog_molecules,
    cut_turbospectrum_atoms,
    moog_to_ts_species,
)
from specreg.grids._marcs import parse_marcs_name
from specreg.grids._turbospectrum import microturbulence


def _card(key: str, value: str) -> bytes:
    return f"{key:<8s}= {value:>20s}".ljust(80).encode()


def _write_tiny_fits(path, names, teff, nlines) -> None:
    """A primary HDU plus a 3-row BINTABLE with 100A, K and D columns."""
    blk = 2880
    prim = b"".join(
        [_card("SIMPLE", "T"), _card("BITPIX", "8"), _card("NAXIS", "0"), b"END".ljust(80)]
    ).ljust(blk, b" ")
    row = 100 + 8 + 8
    cards = [
        _card("XTENSION", "'BINTABLE'"),
        _card("BITPIX", "8"),
        _card("NAXIS", "2"),
        _card("NAXIS1", str(row)),
        _card("NAXIS2", str(len(names))),
        _card("PCOUNT", "0"),
        _card("GCOUNT", "1"),
        _card("TFIELDS", "3"),
        _card("TTYPE1", "'filename'"),
        _card("TFORM1", "'100A    '"),
        _card("TTYPE2", "'nlines  '"),
        _card("TFORM2", "'K       '"),
        _card("TTYPE3", "'teff    '"),
        _card("TFORM3", "'D       '"),
        b"END".ljust(80),
    ]
    head = b"".join(cards).ljust(blk, b" ")
    dt = np.dtype([("filename", "S100"), ("nlines", ">i8"), ("teff", ">f8")])
    rows = np.array(list(zip([n.encode() for n in names], nlines, teff)), dtype=dt)
    data = rows.tobytes()
    data = data.ljust(-(-len(data) // blk) * blk, b"\0")
    path.write_bytes(prim + head + data)


def test_fits_reader_on_tiny_synthetic_table(tmp_path):
    f = tmp_path / "index.fits"
    names = ["s3900_g+0.5_a.mod", "p5000_g+4.5_b.mod.filled", "x"]
    _write_tiny_fits(f, names, [3900.0, 5000.0, 6000.5], [310, 312, 1])
    cols = read_fits_table(f)
    assert list(cols["filename"]) == names
    np.testing.assert_array_equal(cols["nlines"], [310, 312, 1])
    np.testing.assert_array_equal(cols["teff"], [3900.0, 5000.0, 6000.5])
    assert cols["teff"].dtype.byteorder in ("=", "<", "|")


def test_fits_reader_rejects_file_without_table(tmp_path):
    f = tmp_path / "empty.fits"
    f.write_bytes(
        b"".join([_card("SIMPLE", "T"), _card("NAXIS", "0"), b"END".ljust(80)]).ljust(2880)
    )
    with pytest.raises(ValueError, match="BINTABLE"):
        read_fits_table(f)


def test_parse_marcs_name_spherical_and_plane_parallel():
    s = parse_marcs_name(
        "s3900_g+0.5_m1.0_t02_x3_z-1.25_a+0.40_c+0.00_n+0.00_o+0.40_r+0.00_s+0.00.mod.filled"
    )
    assert s["geometry"] == "spherical"
    assert (s["teff"], s["logg"], s["mh"], s["am"]) == (3900.0, 0.5, -1.25, 0.4)
    p = parse_marcs_name("p5750_g+4.5_m0.0_t01_st_z-0.25_a+0.10_c+0.00_n+0.00")
    assert p["geometry"] == "plane-parallel"
    with pytest.raises(ValueError):
        parse_marcs_name("not_a_model.mod")


def test_bracket_puts_node_values_at_upper_end():
    v = np.array([3.5, 4.0, 4.5, 5.0])
    assert bracket(v, 4.2)[0] == (4.0, 4.5)
    assert bracket(v, 4.5)[0] == (4.0, 4.5)  # on a node: upper end, not lower
    assert bracket(v, 3.5)[0] == (3.5, 4.0)  # lowest node: only possible pair
    assert bracket(v, 6.0)[0] == (4.5, 5.0)  # beyond: extrapolate from the end
    assert bracket(np.array([1.0]), 1.0) == []


def test_microturbulence_is_smooth_relation():
    assert microturbulence(0.0) == pytest.approx(2.478)
    assert microturbulence(5.0) == pytest.approx(2.478 - 1.625)
    # no step between giants and dwarfs
    assert abs(microturbulence(3.49) - microturbulence(3.51)) < 0.01


@pytest.mark.parametrize(
    ("moog", "ts", "label"),
    [
        ("607.01214", "0607.012014", "12C14N"),
        ("606.01213", "0606.012013", "12C13C"),
        ("106.00113", "0106.001013", "1H13C"),
        ("822.01648", "0822.016048", "16O48Ti"),
    ],
)
def test_moog_to_ts_species(moog, ts, label):
    assert moog_to_ts_species(moog) == (ts, label)


def test_convert_moog_molecules_blocks_and_window(tmp_path):
    lines = [
        "  7000.000 607.01214     0.100    -1.000               7.724",
        "  7100.500 607.01214     0.200    -2.000               7.724",
        "  7100.100 607.01314     0.300    -3.000               7.724",
        "  8900.000 607.01214     0.100    -1.000               7.724",
    ]
    with gzip.open(tmp_path / "moogcn.gz", "wt") as fh:
        fh.write("header line\n" + "\n".join(lines) + "\n")
    out = convert_moog_molecules(tmp_path, tmp_path / "ts", 7095.0, 8855.0)
    assert list(out) == ["CN"]
    text = out["CN"].read_text().splitlines()
    assert text[0].startswith("'0607.012014") and text[0].split()[-1] == "1"
    assert "7100.500" in text[2]
    assert text[3].startswith("'0607.013014") and text[3].split()[-1] == "1"
    assert len(text) == 6


def test_cut_atoms_rewrites_block_counts(tmp_path):
    src = tmp_path / "atoms"
    src.write_text(
        "'   3.000            '    1         3\n'Li I    LTE'\n"
        "  6707.000  0.000  0.1 2.5 4.0 1e8 'p' 'd' 0.0 1.0 'x'\n"
        "  7100.000  0.000  0.1 2.5 4.0 1e8 'p' 'd' 0.0 1.0 'x'\n"
        "  8000.000  0.000  0.1 2.5 4.0 1e8 'p' 'd' 0.0 1.0 'x'\n"
        "'  11.000            '    1         1\n'Na I    LTE'\n"
        "  5890.000  0.000  0.1 2.5 4.0 1e8 's' 'p' 0.0 1.0 'x'\n"
    )
    dst = cut_turbospectrum_atoms(src, tmp_path / "cut", 7095.0, 8855.0)
    text = dst.read_text().splitlines()
    assert len(text) == 4
    assert text[0].split()[-1] == "2"
    assert "Na" not in dst.read_text()
