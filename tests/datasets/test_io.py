import json
import os
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from specreg._atomic import temp_name
from specreg.datasets import (
    ShardedSpectra,
    Spectra,
    load_grid,
    make_spectra,
    read_pfsspec,
    read_spectra,
    save_grid,
    write_shards,
    write_spectra,
)
from specreg.datasets._spectra import iter_spectra
from specreg.metrics import ErrorLeakageWarning


@pytest.fixture(scope="module")
def spectra(toy_grid):
    return make_spectra(120, model=toy_grid, noisy=True, random_state=0)


def test_round_trip_own_layout(spectra, tmp_path):
    path = write_spectra(spectra, tmp_path / "set.h5", metadata={"note": "test"})
    back = read_spectra(path)
    np.testing.assert_array_equal(back.flux, spectra.flux)
    np.testing.assert_array_equal(back.error, spectra.error)
    np.testing.assert_array_equal(back.noisy, spectra.noisy)
    pd.testing.assert_frame_equal(back.params, spectra.params)
    assert back.metadata["note"] == "test"
    with h5py.File(path) as f:
        assert f.attrs["format"] == "specreg-spectra" and f.attrs["schema_version"] == 1
        assert f["flux"].chunks[1] == 4096 and f["flux"].compression is not None
        # plain numbers and strings only: nothing pickled
        kinds = []
        f.visititems(
            lambda n, o: kinds.append(o.dtype.kind) if isinstance(o, h5py.Dataset) else None
        )
        assert set(kinds) <= set("fiub")


def test_read_selected_rows(spectra, tmp_path):
    path = write_spectra(spectra, tmp_path / "set.h5")
    sub = read_spectra(path, rows=[7, 2, 7])
    np.testing.assert_array_equal(sub.flux, spectra.flux[[7, 2, 7]])


def test_failed_write_leaves_no_file(spectra, tmp_path):
    def chunks():
        yield spectra[:10]
        raise RuntimeError("killed")

    target = tmp_path / "partial.h5"
    with pytest.raises(RuntimeError):
        write_spectra(chunks(), target)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_older_file(spectra, tmp_path):
    target = write_spectra(spectra[:5], tmp_path / "a.h5")

    def chunks():
        yield spectra[:10]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_spectra(chunks(), target)
    assert len(read_spectra(target)) == 5


def test_shards_lazy_rows_match_in_memory(toy_grid, spectra, tmp_path):
    chunks = iter_spectra(120, model=toy_grid, noisy=True, chunk_size=50, random_state=0)
    directory = write_shards(chunks, tmp_path / "shards", shard_size=45)
    index = json.loads((directory / "index.json").read_text())
    assert [s["n"] for s in index["shards"]] == [45, 45, 30]
    shards = ShardedSpectra(directory)
    assert len(shards) == 120
    full = make_spectra(120, model=toy_grid, noisy=True, chunk_size=50, random_state=0)
    rows = np.array([119, 0, 44, 45, 46, 90])
    got = shards[rows]
    np.testing.assert_array_equal(got.flux, full.flux[rows])
    np.testing.assert_array_equal(got.noisy, full.noisy[rows])
    np.testing.assert_array_equal(got.y, full.y[rows])
    assert sum(len(c) for c in shards.iter_chunks(50)) == 120
    assert len(read_spectra(directory)) == 120


def test_chunking_options_are_checked_before_anything_is_written(toy_grid, spectra, tmp_path):
    from specreg.datasets._io import SpectraWriter

    # shard_size=0 used to loop forever; iter_chunks(0) failed in range() at the first next()
    with pytest.raises(ValueError, match="shard_size must be a positive integer; got 0"):
        write_shards(iter_spectra(4, model=toy_grid, random_state=0), tmp_path / "s", shard_size=0)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="rows_per_chunk must be a positive integer; got 0"):
        SpectraWriter(tmp_path / "a.h5", spectra.wave, rows_per_chunk=0)
    assert not (tmp_path / "a.h5").exists()
    shards = ShardedSpectra(write_shards([spectra], tmp_path / "ok", shard_size=50))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer; got 0"):
        shards.iter_chunks(0)


def test_shard_progress_callback_and_its_old_name(toy_grid, tmp_path):
    counts = []
    chunks = iter_spectra(25, model=toy_grid, chunk_size=10, random_state=0)
    write_shards(chunks, tmp_path / "a", shard_size=20, progress_callback=counts.append)
    assert counts == [10, 10, 5]
    counts.clear()
    chunks = iter_spectra(25, model=toy_grid, chunk_size=10, random_state=0)
    with pytest.warns(FutureWarning, match="'progress' was renamed 'progress_callback'") as rec:
        write_shards(chunks, tmp_path / "b", shard_size=20, progress=counts.append)
    assert counts == [10, 10, 5] and rec[0].filename == __file__


def test_interrupted_shard_write_is_not_a_complete_set(toy_grid, tmp_path):
    def chunks():
        yield from iter_spectra(30, model=toy_grid, chunk_size=10, random_state=0)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_shards(chunks(), tmp_path / "s", shard_size=20)
    with pytest.raises(ValueError, match="no index.json"):
        ShardedSpectra(tmp_path / "s")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_shards_are_on_disk_before_the_index_names_them(toy_grid, tmp_path, monkeypatch):
    """Each shard file, and the directory holding their names, is synced before the swap."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    chunks = iter_spectra(30, model=toy_grid, chunk_size=10, random_state=0)
    directory = write_shards(chunks, tmp_path / "set", shard_size=12)
    monkeypatch.undo()

    directory = directory.resolve()
    index_file = directory / "index.json"
    index = events.index(("replace", str(temp_name(index_file)), str(index_file)))
    names = [s["file"] for s in json.loads((directory / "index.json").read_text())["shards"]]
    assert len(names) == 3
    last_shard = 0
    for name in names:
        final, tmp = str(directory / name), str(temp_name(directory / name))
        synced = events.index(("fsync", tmp))
        renamed = events.index(("replace", tmp, final))
        assert synced < renamed < index
        last_shard = max(last_shard, renamed)
    dir_synced = [i for i, e in enumerate(events) if e == ("fsync", str(directory))]
    assert any(last_shard < i < index for i in dir_synced)


def _write_pfsspec(path, spectra, with_nan=True):
    error = spectra.error.copy()
    if with_nan:
        error[:, 0] = np.nan
        error[:, -1] = np.nan
    with h5py.File(path, "w") as f:
        f["spectrumdataset/wave"] = spectra.wave
        f["dataset/arrays/flux/value"] = spectra.flux
        f["dataset/arrays/error/value"] = error
        f["dataset/arrays/noisy/value"] = spectra.noisy
        f["dataset/arrays/mask/value"] = np.zeros(spectra.flux.shape, np.int32)
    params = spectra.params.drop(columns=["snr"]).assign(
        a_M=0.0, C_M=0.0, redshift=0.0, id=np.arange(len(spectra))
    )
    params.to_hdf(path, key="dataset/params", format="table", mode="a")


def test_read_pfsspec_layout(spectra, tmp_path):
    path = tmp_path / "dataset.h5"
    _write_pfsspec(path, spectra)
    back = read_pfsspec(path)
    np.testing.assert_array_equal(back.flux, spectra.flux)
    np.testing.assert_array_equal(back.noisy, spectra.noisy)
    assert np.isfinite(back.error).all()
    np.testing.assert_array_equal(back.error[:, 0], spectra.error[:, 1])  # nearest fill
    np.testing.assert_array_equal(back.y, spectra.y)
    assert {"a_M", "C_M", "snr", "id"} <= set(back.params.columns)
    assert len(read_spectra(path)) == len(spectra)  # auto-detected


def test_not_our_file_raises_clear_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["something"] = [1, 2]
    with pytest.raises(ValueError, match="neither a specreg spectra file .* nor a pfsspec"):
        read_spectra(path)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        read_spectra(text)
    with pytest.raises(ValueError, match="not a specreg grid"):
        load_grid(path)


def test_grid_round_trip(toy_grid, tmp_path):
    path = save_grid(toy_grid, tmp_path / "grid.h5")
    back = load_grid(path, normalize=False)
    assert back.param_names == toy_grid.param_names
    np.testing.assert_array_equal(back.node_flux, toy_grid.node_flux)
    assert back.metadata["name"] == "toy line grid"
    normed = load_grid(path)
    np.testing.assert_allclose(np.median(normed.node_flux, axis=1), 0.5, rtol=1e-5)


def test_newer_schema_is_refused(spectra, tmp_path):
    path = write_spectra(spectra[:3], tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="upgrade specreg"):
        read_spectra(path)


# --- the reading-time check that the errors do not give log g away -----------------


@pytest.fixture(scope="module")
def leaky_and_honest(toy_grid):
    """The same 200 stars and noisy flux, with errors from the noiseless flux or from mag."""
    kw = dict(model=toy_grid, noisy=True, random_state=1)
    return make_spectra(200, errors="true", **kw), make_spectra(200, **kw)


def _leak_warnings(record):
    return [w for w in record if issubclass(w.category, ErrorLeakageWarning)]


def test_reading_a_leaky_file_warns_and_keeps_the_data(leaky_and_honest, tmp_path):
    leaky = leaky_and_honest[0]
    path = write_spectra(leaky, tmp_path / "leaky.h5")
    with pytest.warns(ErrorLeakageWarning) as record:
        back = read_spectra(path)
    (w,) = _leak_warnings(record)
    assert w.filename == __file__  # points at the caller of read_spectra
    text = str(w.message)
    assert re.search(
        r"predicts log_g with cross-validated R\^2 = (0\.9\d|1\.00) while the flux", text
    )
    assert re.search(r"the flux alone gives (-?0\.[0-5]\d)", text)
    assert "noiseless flux" in text and "with_reference_errors(noise_model)" in text
    assert "check_leakage=False" in text and str(path) in text
    np.testing.assert_array_equal(back.error, leaky.error)  # never modified
    np.testing.assert_array_equal(back.noisy, leaky.noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ErrorLeakageWarning)
        read_spectra(path, check_leakage=False)
        read_spectra(path, rows=slice(0, 20))  # too few spectra for CV: skipped silently


def test_reading_an_honest_file_does_not_warn(leaky_and_honest, tmp_path):
    path = write_spectra(leaky_and_honest[1], tmp_path / "honest.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ErrorLeakageWarning)
        assert len(read_spectra(path)) == 200


def test_noiseless_leaky_training_file_warns(toy_grid, tmp_path):
    train = make_spectra(150, model=toy_grid, errors="true", random_state=2)
    path = write_spectra(train, tmp_path / "train.h5")
    with pytest.warns(ErrorLeakageWarning, match=r"flux alone \(with one noise draw\) gives"):
        read_spectra(path)
    honest = write_spectra(train.with_reference_errors(), tmp_path / "train_honest.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ErrorLeakageWarning)
        read_spectra(honest)


def test_pfsspec_leaky_file_warns_once(leaky_and_honest, tmp_path):
    leaky, honest = leaky_and_honest
    path = tmp_path / "dataset.h5"
    _write_pfsspec(path, leaky)
    with pytest.warns(ErrorLeakageWarning, match="with_reference_errors"):
        read_pfsspec(path)
    with pytest.warns(ErrorLeakageWarning) as record:
        read_spectra(path)  # auto-detected: checked once, not twice
    assert len(_leak_warnings(record)) == 1 and record[0].filename == __file__
    fair = tmp_path / "fair.h5"
    _write_pfsspec(fair, honest)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ErrorLeakageWarning)
        read_pfsspec(fair)
        read_spectra(fair)
        read_pfsspec(path, check_leakage=False)


def test_small_or_unlabelled_files_are_not_checked(leaky_and_honest, tmp_path):
    leaky = leaky_and_honest[0]
    small = write_spectra(leaky[:25], tmp_path / "small.h5")
    unlabelled = leaky[:100]
    unlabelled.params = unlabelled.params.drop(columns=["log_g"])
    nolabel = write_spectra(unlabelled, tmp_path / "nolabel.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ErrorLeakageWarning)
        assert len(read_spectra(small)) == 25
        assert len(read_spectra(nolabel)) == 100


@pytest.mark.parametrize(
    "value, match", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (0.0, "not > 0")]
)
def test_bad_errors_in_a_file_are_named_by_row_and_pixel(spectra, tmp_path, value, match):
    bad = Spectra(spectra.wave, spectra.flux, spectra.error.copy(), spectra.params, spectra.noisy)
    bad.error[3, 7] = value
    path = tmp_path / "bad.h5"
    write_spectra(bad, path)
    with pytest.raises(ValueError, match=rf"error of .*bad.h5 has 1 .*{match}.*\(3, 7\)"):
        read_spectra(path)
    # pfsspec files too (NaN only at the edge pixels are filled, as the reference did)
    pfs = tmp_path / "dataset.h5"
    _write_pfsspec(pfs, bad, with_nan=False)
    with pytest.raises(ValueError, match=r"\(3, 7\)"):
        read_pfsspec(pfs)


def test_load_grid_refuses_options_it_would_not_use():
    # wave= used to be ignored silently for a grid file, resolution=-1 accepted
    with pytest.raises(ValueError, match="applies to a BOSZ directory only"):
        load_grid(wave=np.linspace(7100.0, 8850.0, 100))
    with pytest.raises(ValueError, match="resolution must be a finite number > 0"):
        load_grid(resolution=-1.0)
    with pytest.raises(ValueError, match="normalize must be True or False"):
        load_grid(normalize="yes")


@pytest.mark.parametrize("rows", [500, 2.5, "a", [0, 999]])
def test_read_spectra_names_rows_it_cannot_select(spectra, tmp_path, rows):
    path = write_spectra(spectra, tmp_path / "s.h5")
    with pytest.raises(ValueError, match="rows must select spectra of this file"):
        read_spectra(path, rows=rows)
