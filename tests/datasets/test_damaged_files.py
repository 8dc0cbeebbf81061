"""Killed writes, full disks, overwritten bytes and damaged structure in spectra files.

Kills are real (a child process, SIGKILL); full disks are simulated.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from specreg.datasets import (
    ShardedSpectra,
    Spectra,
    load_grid,
    read_spectra,
    save_grid,
    write_shards,
    write_spectra,
)

N_PIX = 64
WAVE = np.linspace(4000.0, 5000.0, N_PIX)


def _chunk(seed, n=10):
    rng = np.random.default_rng(seed)
    return Spectra(
        WAVE,
        rng.random((n, N_PIX), dtype=np.float32) + 0.5,
        np.full((n, N_PIX), 0.1, np.float32),
        pd.DataFrame({"x": rng.random(n), "name": [f"s{seed}-{i}" for i in range(n)]}),
    )


def _chunks(seeds, n=10):
    for seed in seeds:
        yield _chunk(seed, n)


CHILD = r"""
import sys, time
from pathlib import Path
import numpy as np, pandas as pd
from specreg.datasets import Spectra, write_shards, write_spectra

mode, target, marker = sys.argv[1:4]
wave = np.linspace(4000.0, 5000.0, 64)

def chunk(seed, n=10):
    rng = np.random.default_rng(seed)
    return Spectra(wave, rng.random((n, 64), dtype=np.float32) + 0.5,
                   np.full((n, 64), 0.1, np.float32), pd.DataFrame({"x": rng.random(n)}))

def chunks():
    for i in range(3):
        yield chunk(100 + i)
    Path(marker).write_text("ready")
    time.sleep(600)

if mode == "shards":
    write_shards(chunks(), target, shard_size=25)
else:
    write_spectra(chunks(), target)
"""


def _killed_write(mode, target, tmp_path) -> int:
    """Run a writer in a child process, SIGKILL it mid-write; its (dead) pid."""
    marker = tmp_path / f"ready-{mode}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(target), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"writer exited early: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("writer did not get going within 60 s")
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return proc.pid


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _esc(path) -> str:
    return re.escape(str(path))


# --- 1 + 2: killed writes --------------------------------------------------------------


def test_killed_rewrite_keeps_the_old_sharded_set(tmp_path):
    directory = tmp_path / "set"
    write_shards(_chunks(range(4)), directory, shard_size=15)
    old = ShardedSpectra(directory)[:]
    foreign = directory / "notes.txt"
    foreign.write_text("mine")
    pid = _killed_write("shards", directory, tmp_path)

    # the complete old set still reads, unchanged
    shards = ShardedSpectra(directory)
    assert len(shards) == 40
    got = shards[:]
    np.testing.assert_array_equal(got.flux, old.flux)
    pd.testing.assert_frame_equal(got.params, old.params)
    assert any(str(pid) in p.name for p in directory.iterdir())  # the child's leftovers

    # a live writer's temporary file and files not in the writers' patterns are left alone
    live = directory / f"index.json.tmp-{os.getppid()}"
    live.write_text("{}")
    other = directory / f"notes.txt.tmp-{_dead_pid()}"
    other.write_text("not ours")

    write_shards(_chunks(range(10, 13)), directory, shard_size=20)
    new = ShardedSpectra(directory)
    assert len(new) == 30
    np.testing.assert_array_equal(
        new[:].flux, np.concatenate([_chunk(s).flux for s in (10, 11, 12)])
    )
    names = sorted(p.name for p in directory.iterdir())
    assert not any(str(pid) in n for n in names), names  # the killed writer's files are gone
    assert foreign.read_text() == "mine" and other.exists() and live.exists()
    index = json.loads((directory / "index.json").read_text())
    named = {s["file"] for s in index["shards"]}
    assert len(named) == 2
    # only the index, the new shards and the files that were not ours remain
    assert set(names) == {"index.json", *named, foreign.name, other.name, live.name}


def test_failed_rewrite_keeps_the_old_sharded_set(tmp_path):
    directory = tmp_path / "set"
    write_shards(_chunks(range(3)), directory, shard_size=20)
    before = sorted(p.name for p in directory.iterdir())

    def chunks():
        yield _chunk(50)
        yield _chunk(51)
        yield _chunk(52)
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        write_shards(chunks(), directory, shard_size=20)
    assert sorted(p.name for p in directory.iterdir()) == before
    assert len(ShardedSpectra(directory)) == 30


def test_rewrite_of_an_old_layout_set_removes_only_its_shards(tmp_path):
    """Sets written before the shard folders (shard_<i>.h5 beside the index) are replaced."""
    directory = tmp_path / "set"
    directory.mkdir()
    for i, seed in enumerate((1, 2)):
        write_spectra(_chunk(seed), directory / f"shard_{i:05d}.h5")
    index = {
        "format": "specreg-shards",
        "schema_version": 1,
        "n_spectra": 20,
        "n_pix": N_PIX,
        "shards": [{"file": "shard_00000.h5", "n": 10}, {"file": "shard_00001.h5", "n": 10}],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "shard_00007.h5").write_text("not named by the index: kept")
    assert len(ShardedSpectra(directory)) == 20
    write_shards(_chunks([5]), directory)
    names = {p.name for p in directory.iterdir()}
    assert "shard_00000.h5" not in names and "shard_00001.h5" not in names
    assert "shard_00007.h5" in names
    assert len(ShardedSpectra(directory)) == 10


def test_killed_write_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "set.h5"
    pid = _killed_write("file", target, tmp_path)
    stale = tmp_path / f"set.h5.tmp-{pid}"
    assert stale.exists() and not target.exists()
    live = tmp_path / f"set.h5.tmp-{os.getppid()}"
    live.write_text("a live writer's")
    dead = _dead_pid()
    other = tmp_path / f"other.h5.tmp-{dead}"
    other.write_text("another path's")
    odd = tmp_path / f"set.h5.tmp-{dead}.bak"
    odd.write_text("not the pattern")

    write_spectra(_chunk(1), target)
    assert not stale.exists()
    assert live.exists() and other.exists() and odd.exists()
    assert len(read_spectra(target)) == 10


# --- 3: full disk ------------------------------------------------------------------------


def test_full_disk_names_the_file_and_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "old.h5"
    write_spectra(_chunk(1), target)
    with monkeypatch.context() as m:
        m.setattr(h5py.Dataset, "__setitem__", _no_space)
        with pytest.raises(OSError, match=_esc(target)) as info:
            write_spectra(_chunk(2), target)
        assert info.value.errno == errno.ENOSPC
        with pytest.raises(OSError, match=_esc(tmp_path / "new.h5")):
            write_spectra(_chunk(2), tmp_path / "new.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]
    np.testing.assert_array_equal(read_spectra(target).flux, _chunk(1).flux)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_shards_and_grids(tmp_path, monkeypatch, toy_grid):
    directory = tmp_path / "set"
    write_shards(_chunks(range(2)), directory, shard_size=15)
    before = sorted(p.name for p in directory.iterdir())
    grid_path = tmp_path / "grid.h5"
    with monkeypatch.context() as m:
        m.setattr(h5py.Dataset, "__setitem__", _no_space)
        with pytest.raises(OSError, match=r"shard_[0-9a-f]+_\d+_00000\.h5") as info:
            write_shards(_chunks(range(5, 8)), directory, shard_size=15)
        assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in directory.iterdir()) == before
    assert len(ShardedSpectra(directory)) == 20

    original = h5py.Group.create_dataset

    def create(self, name, *args, **kwargs):
        if name == "flux":
            _no_space()
        return original(self, name, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(h5py.Group, "create_dataset", create)
        with pytest.raises(OSError, match=_esc(grid_path)) as info:
            save_grid(toy_grid, grid_path)
        assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.glob("grid.h5*")) == []

    with monkeypatch.context() as m:  # the index itself cannot be written
        replace = os.replace

        def fail_index(src, dst):
            if Path(dst).name == "index.json":
                _no_space()
            replace(src, dst)

        m.setattr(os, "replace", fail_index)
        with pytest.raises(OSError, match=_esc(directory / "index.json")):
            write_shards(_chunks(range(5, 8)), directory, shard_size=15)
    assert sorted(p.name for p in directory.iterdir()) == before
    assert len(ShardedSpectra(directory)) == 20


FSIZE_CHILD = r"""
import os, resource, signal, sys
import numpy as np, pandas as pd
from specreg.datasets import ShardedSpectra, Spectra, save_grid, write_shards, write_spectra
from specreg.spectra import SpectralGrid

out = sys.argv[1]
rng = np.random.default_rng(0)
wave = np.arange(4096.0)
def spectra(n):
    return Spectra(wave, rng.random((n, 4096), dtype=np.float32) + 0.5,
                   np.ones((n, 4096), np.float32), pd.DataFrame({"x": np.arange(n, dtype=float)}))
shards = os.path.join(out, "set")
write_shards([spectra(20)], shards, shard_size=10)
before = sorted(os.listdir(shards))
grid = SpectralGrid({"x": np.arange(100.0)}, rng.random((100, 4096)) + 0.5, wave)
# files larger than 1 MB fail to grow (EFBIG), like a full disk
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
for compression in (None, "lzf", "gzip"):
    try:
        write_spectra(spectra(500), os.path.join(out, "big.h5"), compression=compression)
    except OSError as exc:
        print("spectra", exc.errno, str(exc).splitlines()[0][:120], flush=True)
try:
    write_shards([spectra(300)], shards, shard_size=200)
except OSError as exc:
    print("shards", exc.errno, str(exc).splitlines()[0][:120], flush=True)
try:
    save_grid(grid, os.path.join(out, "grid.h5"))
except OSError as exc:
    print("grid", exc.errno, str(exc).splitlines()[0][:120], flush=True)
assert sorted(os.listdir(shards)) == before, (sorted(os.listdir(shards)), before)
assert len(ShardedSpectra(shards)) == 20
print("files", sorted(os.listdir(out)), flush=True)
"""


def test_real_write_failure_raises_naming_the_file_without_crashing(tmp_path):
    """A file-size limit makes HDF5's writes fail for real (EFBIG): no crash, no leftovers."""
    proc = subprocess.run(
        [sys.executable, "-c", FSIZE_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    efbig = str(errno.EFBIG)
    assert [ln.split()[:2] for ln in lines[:5]] == [
        ["spectra", efbig],
        ["spectra", efbig],
        ["spectra", efbig],
        ["shards", efbig],
        ["grid", efbig],
    ], proc.stdout
    assert all(f"could not write {tmp_path}" in ln for ln in lines[:5]), proc.stdout
    assert "big.h5" in lines[0] and "grid.h5" in lines[4]
    assert lines[5] == "files ['set']", proc.stdout


# --- 4: checksums ------------------------------------------------------------------------


def _flip(path, name, chunk=0):
    """Overwrite bytes inside the stored data of dataset ``name`` (chunk ``chunk``)."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        if ds.chunks is None:
            offset, size = ds.id.get_offset(), ds.id.get_storage_size()
        else:
            info = ds.id.get_chunk_info(chunk)
            offset, size = info.byte_offset, info.size
    with open(path, "r+b") as fh:
        fh.seek(offset + size // 2)
        data = bytearray(fh.read(4))
        fh.seek(offset + size // 2)
        fh.write(bytes(b ^ 0x5A for b in data))


def _filters(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(
            lambda n, o: (
                out.__setitem__(n, (o.fletcher32, o.dtype))
                if isinstance(o, h5py.Dataset)
                else None
            )
        )
    return out


def test_every_dataset_is_checksummed(tmp_path, toy_grid):
    spectra = _chunk(1)
    spectra.noisy = spectra.flux + 0.01
    files = [write_spectra(spectra, tmp_path / "s.h5"), save_grid(toy_grid, tmp_path / "g.h5")]
    directory = write_shards(_chunks(range(3)), tmp_path / "set", shard_size=15)
    files += [directory / s["file"] for s in ShardedSpectra(directory).shards]
    for path in files:
        filters = _filters(path)
        assert filters
        for name, (fletcher32, dtype) in filters.items():
            vlen = h5py.check_vlen_dtype(dtype) is not None
            assert fletcher32 or vlen, f"{path}:{name}"  # HDF5 cannot filter vlen strings


@pytest.mark.parametrize("compression", [None, "lzf", "gzip"])
@pytest.mark.parametrize("name", ["flux", "error", "wave", "params/x"])
def test_overwritten_bytes_raise_naming_file_and_dataset(tmp_path, compression, name):
    path = write_spectra(_chunk(1, n=100), tmp_path / "s.h5", compression=compression)
    _flip(path, name)
    with pytest.raises(ValueError, match=rf"{_esc(path)} is damaged: dataset '{name}'"):
        read_spectra(path)
    with pytest.raises(ValueError, match=rf"{_esc(path)} is damaged: dataset '{name}'"):
        read_spectra(path, rows=[0, 3])


def test_overwritten_shard_bytes_raise_naming_the_shard(tmp_path):
    directory = write_shards(_chunks(range(3)), tmp_path / "set", shard_size=15)
    shards = ShardedSpectra(directory)
    shard = directory / shards.shards[1]["file"]
    _flip(shard, "flux")
    with pytest.raises(ValueError, match=rf"{_esc(shard)} is damaged: dataset 'flux'"):
        shards[20:25]
    assert len(shards[:10]) == 10  # the other shards still read


@pytest.mark.parametrize("name", ["flux", "wave", "valid", "axes/log_g"])
def test_overwritten_grid_bytes_raise_naming_file_and_dataset(tmp_path, toy_grid, name):
    path = save_grid(toy_grid, tmp_path / "grid.h5")
    _flip(path, name)
    with pytest.raises(ValueError, match=rf"{_esc(path)} is damaged: dataset '{name}'"):
        load_grid(path)


def test_files_without_checksums_still_read(tmp_path, toy_grid):
    """Files written before the checksums (no fletcher32 filter) read as before."""
    spectra = _chunk(3)
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f["wave"] = spectra.wave
        for name in ("flux", "error"):
            data = getattr(spectra, name)
            f.create_dataset(name, data=data, maxshape=(None, N_PIX), chunks=(64, N_PIX))
        f["params/x"] = spectra.params["x"].to_numpy()
        names = spectra.params["name"].to_numpy().astype(object)
        f.create_dataset("params/name", data=names, dtype=h5py.string_dtype())
        f.attrs.update(
            format="specreg-spectra",
            schema_version=1,
            n_spectra=10,
            params_columns=json.dumps(["x", "name"]),
            metadata="{}",
        )
    back = read_spectra(path)
    np.testing.assert_array_equal(back.flux, spectra.flux)
    assert back.params["name"].tolist() == spectra.params["name"].tolist()

    grid_path = tmp_path / "old_grid.h5"
    with h5py.File(grid_path, "w") as f:
        f.attrs["format"] = "specreg-grid"
        f.attrs["schema_version"] = 1
        f.attrs["param_names"] = np.array(toy_grid.param_names, dtype=h5py.string_dtype())
        f.attrs["metadata"] = json.dumps(toy_grid.metadata)
        f["wave"] = toy_grid.wave
        for name, nodes in toy_grid.axes.items():
            f[f"axes/{name}"] = nodes
        f["flux"] = toy_grid.node_flux.reshape(*toy_grid.shape, toy_grid.n_pix)
        f["valid"] = toy_grid.valid
    np.testing.assert_array_equal(
        load_grid(grid_path, normalize=False).node_flux, toy_grid.node_flux
    )


# --- 5: damaged structure ----------------------------------------------------------------


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


@pytest.mark.parametrize(
    "damage, item",
    [
        (lambda f: f.__delitem__("flux"), "'flux'"),
        (lambda f: f.__delitem__("error"), "'error'"),
        (lambda f: f.__delitem__("wave"), "'wave'"),
        (lambda f: f.__delitem__("params/x"), "'params/x'"),
        (lambda f: f.attrs.__delitem__("n_spectra"), "'n_spectra'"),
        (lambda f: f.attrs.__setitem__("n_spectra", 12), "n_spectra = 12"),
        (lambda f: f.attrs.__setitem__("n_spectra", 7), "n_spectra = 7"),
        (lambda f: f.attrs.__setitem__("metadata", "{broken"), "'metadata'"),
        (lambda f: f.attrs.__setitem__("params_columns", "[x"), "'params_columns'"),
    ],
)
def test_damaged_spectra_file_names_file_and_item(tmp_path, damage, item):
    path = _edit(write_spectra(_chunk(1), tmp_path / "s.h5"), damage)
    with pytest.raises(ValueError, match=rf"{_esc(path)}.*{re.escape(item)}"):
        read_spectra(path)


def test_shard_length_disagreeing_with_the_index(tmp_path):
    directory = write_shards(_chunks(range(3)), tmp_path / "set", shard_size=15)
    shard = directory / ShardedSpectra(directory).shards[0]["file"]
    _edit(shard, lambda f: f.attrs.__setitem__("n_spectra", 99))
    with pytest.raises(ValueError, match=rf"{_esc(shard)}.*n_spectra = 99"):
        ShardedSpectra(directory)


@pytest.mark.parametrize(
    "damage, item",
    [
        (lambda f: f.attrs.__delitem__("param_names"), "'param_names'"),
        (lambda f: f.__delitem__("flux"), "'flux'"),
        (lambda f: f.__delitem__("axes/log_g"), "'axes/log_g'"),
        (lambda f: f.attrs.__setitem__("metadata", "not json"), "'metadata'"),
    ],
)
def test_damaged_grid_file_names_file_and_item(tmp_path, toy_grid, damage, item):
    path = _edit(save_grid(toy_grid, tmp_path / "grid.h5"), damage)
    with pytest.raises(ValueError, match=rf"{_esc(path)}.*{re.escape(item)}"):
        load_grid(path)


@pytest.mark.parametrize(
    "edit, item",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: text.replace("_00001.h5", "_00009.h5"), "_00009.h5"),
        (lambda text: text.replace('"shards"', '"pieces"'), "'shards'"),
        (lambda text: text.replace('"n_spectra": 30', '"n_spectra": 31'), "'n_spectra'"),
    ],
)
def test_bad_index_names_the_index_and_the_item(tmp_path, edit, item):
    directory = write_shards(_chunks(range(3)), tmp_path / "set", shard_size=15)
    index = directory / "index.json"
    index.write_text(edit(index.read_text()))
    with pytest.raises(ValueError, match=rf"{_esc(index)}.*{re.escape(item)}"):
        ShardedSpectra(directory)
    with pytest.raises(ValueError, match=_esc(index)):
        read_spectra(directory)
