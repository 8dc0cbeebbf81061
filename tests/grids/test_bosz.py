"""The BOSZ readers on small BOSZ-format files written here: values, resampling, errors."""

from __future__ import annotations

import bz2
import gzip

import numpy as np
import pytest

from specreg.grids import (
    degrade_to_grid,
    parse_bosz_name,
    read_bosz_directory,
    read_bosz_file,
)

WAVE = np.linspace(8000.0, 8100.0, 2001)  # 0.05 Å, a BOSZ-like fine sampling


def _name(teff, logg, mh=0.0, am=0.0, cm=0.0, r=20000, suffix=".asc.bz2"):
    def signed(v):
        return f"{'m' if v < 0 else 'p'}{round(abs(v) * 10):02d}"

    g = f"{'-' if logg < 0 else ''}{round(abs(logg) * 10):02d}"
    return f"am{signed(mh)}c{signed(cm)}o{signed(am)}t{teff:.0f}g{g}v20modrt0b{r}rs{suffix}"


def _spectrum(teff, logg, mh=0.0, wave=WAVE):
    """A continuum set by T_eff and one line whose depth follows log g and [M/H]."""
    cont = 1e6 * (teff / 5000.0) * (1 + 1e-4 * (wave - 8050.0))
    depth = 0.3 + 0.05 * logg + 0.1 * mh
    flux = cont * (1 - depth * np.exp(-0.5 * ((wave - 8050.0) / 0.5) ** 2))
    return flux, cont


def _write(path, wave, flux, cont):
    text = "".join(f"{w:.4f} {f:.8e} {c:.8e}\n" for w, f, c in zip(wave, flux, cont))
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "wt") as fh:
        fh.write(text)
    return path


@pytest.fixture
def bosz_dir(tmp_path):
    """A 2 x 3 (T_eff x log g) directory at [M/H] = -0.5, one node missing."""
    for teff in (4500.0, 5000.0):
        for logg in (1.0, 2.5, 4.0):
            if (teff, logg) == (5000.0, 4.0):
                continue  # a hole
            _write(tmp_path / _name(teff, logg, mh=-0.5), WAVE, *_spectrum(teff, logg, -0.5))
    (tmp_path / "README.txt").write_text("not a spectrum")
    return tmp_path


def test_names_give_the_parameters():
    p = parse_bosz_name("amm05cp03op03t5000g25v20modrt0b5000rs.asc.bz2")
    assert p == {
        "T_eff": 5000.0,
        "log_g": 2.5,
        "M_H": -0.5,
        "a_M": 0.3,
        "C_M": 0.3,
        "vturb": 2.0,
        "R": 5000.0,
    }
    assert parse_bosz_name("/some/dir/amp00cm03om02t3500g-05v10modrt0b20000rs.asc")["log_g"] == (
        -0.5
    )
    q = parse_bosz_name("amp00cm03om02t3500g-05v10modrt0b20000rs.asc.gz")
    assert (q["C_M"], q["a_M"], q["vturb"], q["R"]) == (-0.3, -0.2, 1.0, 20000.0)
    p = parse_bosz_name(_name(4250, 1.5, -1.0, 0.4, -0.2))
    assert [p[k] for k in ("T_eff", "log_g", "M_H", "a_M", "C_M")] == [4250, 1.5, -1.0, 0.4, -0.2]


@pytest.mark.parametrize(
    "name",
    [
        "amm05cp03op03t5000g25v20modrt0b5000rs.txt",  # not .asc
        "amx05cp03op03t5000g25v20modrt0b5000rs.asc",  # bad sign letter
        "amm5cp03op03t5000g25v20modrt0b5000rs.asc",  # one digit
        "spectrum.asc.bz2",
    ],
)
def test_bad_names_raise(name):
    with pytest.raises(ValueError, match="not a BOSZ file name"):
        parse_bosz_name(name)


@pytest.mark.parametrize("suffix", [".asc", ".asc.bz2", ".asc.gz"])
def test_one_file_reads_its_three_columns(tmp_path, suffix):
    flux, cont = _spectrum(5000.0, 2.5)
    path = _write(tmp_path / _name(5000, 2.5, suffix=suffix), WAVE, flux, cont)
    w, f, c = read_bosz_file(path)
    np.testing.assert_allclose(w, WAVE, atol=1e-4)
    np.testing.assert_allclose(f, flux, rtol=1e-8)
    np.testing.assert_allclose(c, cont, rtol=1e-8)
    assert w.dtype == f.dtype == c.dtype == np.float64


def test_directory_gives_axes_nodes_holes_and_fixed_labels(bosz_dir):
    g = read_bosz_directory(bosz_dir)
    assert g["param_names"] == ["T_eff", "log_g"]
    np.testing.assert_array_equal(g["axes"]["T_eff"], [4500.0, 5000.0])
    np.testing.assert_array_equal(g["axes"]["log_g"], [1.0, 2.5, 4.0])
    assert g["fixed"] == {"M_H": -0.5, "a_M": 0.0, "C_M": 0.0}
    assert g["flux"].shape == g["continuum"].shape == (2, 3, WAVE.size)
    assert g["flux"].dtype == np.float32
    np.testing.assert_allclose(g["wave"], WAVE, atol=1e-4)  # the files' own sampling
    assert g["valid"].tolist() == [[True, True, True], [True, True, False]]
    assert np.all(g["flux"][1, 2] == 0) and np.all(g["continuum"][1, 2] == 0)
    flux, cont = _spectrum(4500.0, 2.5, -0.5)
    np.testing.assert_allclose(g["flux"][0, 1], flux, rtol=1e-6)
    np.testing.assert_allclose(g["continuum"][0, 1], cont, rtol=1e-6)
    assert len(g["files"]) == 5 and not any("README" in f for f in g["files"])


def test_resampling_without_lsf_is_linear_interpolation(bosz_dir):
    wave = np.linspace(8010.0, 8090.0, 97)
    g = read_bosz_directory(bosz_dir, wave=wave)
    np.testing.assert_array_equal(g["wave"], wave)
    assert g["flux"].shape == (2, 3, wave.size)
    flux, cont = _spectrum(5000.0, 1.0, -0.5)
    np.testing.assert_allclose(g["flux"][1, 0], np.interp(wave, WAVE, flux), rtol=1e-6)
    np.testing.assert_allclose(g["continuum"][1, 0], np.interp(wave, WAVE, cont), rtol=1e-6)


def test_lsf_removes_the_files_own_resolution_in_quadrature(bosz_dir):
    wave = np.linspace(8010.0, 8090.0, 401)
    g = read_bosz_directory(bosz_dir, wave=wave, resolution=5000.0)
    flux, cont = _spectrum(4500.0, 4.0, -0.5)
    r_eff = 1.0 / np.sqrt(1.0 / 5000.0**2 - 1.0 / 20000.0**2)  # the files have R = 20000
    expected = degrade_to_grid(WAVE, np.stack([flux, cont]), wave, r_eff)
    np.testing.assert_allclose(g["flux"][0, 2], expected[0], rtol=1e-5)
    np.testing.assert_allclose(g["continuum"][0, 2], expected[1], rtol=1e-5)
    # the line is broadened (shallower) but keeps its equivalent width
    assert g["flux"][0, 2].min() > np.interp(wave, WAVE, flux).min()
    depth = 1 - g["flux"][0, 2] / g["continuum"][0, 2]
    raw = 1 - flux / cont
    ew, ew_raw = np.sum(depth) * (wave[1] - wave[0]), np.sum(raw) * (WAVE[1] - WAVE[0])
    assert ew == pytest.approx(ew_raw, rel=1e-3)


def test_files_coarser_than_the_resolution_are_convolved_at_it(tmp_path):
    flux, cont = _spectrum(5000.0, 2.5)
    _write(tmp_path / _name(5000, 2.5, r=2000), WAVE, flux, cont)
    _write(tmp_path / _name(5500, 2.5, r=2000), WAVE, *_spectrum(5500.0, 2.5))
    wave = np.linspace(8010.0, 8090.0, 201)
    g = read_bosz_directory(tmp_path, wave=wave, resolution=5000.0)
    expected = degrade_to_grid(WAVE, np.stack([flux, cont]), wave, 5000.0)
    np.testing.assert_allclose(g["flux"][0], expected[0], rtol=1e-5)


def test_an_empty_directory_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="no BOSZ files"):
        read_bosz_directory(tmp_path)


def test_different_sampling_needs_wave(tmp_path):
    _write(tmp_path / _name(5000, 2.5), WAVE, *_spectrum(5000.0, 2.5))
    coarse = WAVE[::2]
    _write(tmp_path / _name(5500, 2.5), coarse, *_spectrum(5500.0, 2.5, wave=coarse))
    with pytest.raises(ValueError, match="differ in wavelength sampling; pass wave="):
        read_bosz_directory(tmp_path)
    g = read_bosz_directory(tmp_path, wave=np.linspace(8001.0, 8099.0, 50))
    assert g["valid"].all()


def test_two_files_with_the_same_parameters_raise(tmp_path):
    _write(tmp_path / _name(5000, 2.5), WAVE, *_spectrum(5000.0, 2.5))
    _write(tmp_path / _name(5000, 2.5, suffix=".asc"), WAVE, *_spectrum(5000.0, 2.5))
    _write(tmp_path / _name(5500, 2.5), WAVE, *_spectrum(5500.0, 2.5))
    with pytest.raises(ValueError, match="two BOSZ files with parameters"):
        read_bosz_directory(tmp_path)


def test_output_wave_beyond_the_files_raises(bosz_dir):
    with pytest.raises(ValueError, match="beyond the input wavelength range"):
        read_bosz_directory(bosz_dir, wave=np.linspace(7990.0, 8050.0, 10))


def test_load_grid_reads_a_bosz_directory(bosz_dir):
    from specreg.datasets import load_grid

    wave = np.linspace(8010.0, 8090.0, 97)
    grid = load_grid(bosz_dir, wave=wave, resolution=None, normalize=False, method="linear")
    assert grid.param_names == ("T_eff", "log_g")
    assert grid.valid.sum() == 5 and not grid.valid[1, 2]
    flux, _ = _spectrum(4500.0, 2.5, -0.5)
    np.testing.assert_allclose(
        grid.flux([[4500.0, 2.5]])[0], np.interp(wave, WAVE, flux), rtol=1e-6
    )
    np.testing.assert_allclose(np.median(load_grid(bosz_dir, wave=wave).node_flux[0]), 0.5)
