"""HDF5 I/O of spectra sets: specreg's own layout, sharded sets, and pfsspec files.

specreg layout (``format="specreg-spectra"``, ``schema_version=1``)::

    /wave            (n_pix,)     float64, Å
    /flux            (n, n_pix)   float32, noiseless
    /error           (n, n_pix)   float32, 1 sigma
    /noisy           (n, n_pix)   float32, optional fixed noise draw
    /params/<column> (n,)         one dataset per label column (numbers or UTF-8 strings)
    attrs: format, schema_version, n_spectra, params_columns, metadata (JSON)

Arrays are chunked by rows (whole spectra), compressed and checksummed
(fletcher32: bytes changed on disk raise on reading); nothing is pickled.
A sharded set is a directory holding ``index.json`` and the shard files it
names (``shard_<stamp>_<pid>_<i>.h5``, new names for every write so that a
rewrite never touches the old set before the new one is complete; older sets
name ``shard_<i>.h5`` and stay readable).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .._atomic import write_json_atomic
from ..spectra._validation import check_int, renamed
from ._h5util import (
    atomic_h5,
    checked_opts,
    create_checked,
    json_attr,
    pid_alive,
    read_dataset,
    remove_stale,
    to_json,
)
from ._spectra import Spectra

__all__ = [
    "SpectraWriter",
    "ShardedSpectra",
    "read_pfsspec",
    "read_spectra",
    "write_spectra",
    "write_shards",
]

SPECTRA_FORMAT = "specreg-spectra"
SHARDS_FORMAT = "specreg-shards"
SCHEMA_VERSION = 1
_ARRAYS = ("flux", "error", "noisy")
#: The reading-time leakage check: spectra it needs, spectra it uses, folds.
_LEAKAGE_MIN_SPECTRA = 30
_LEAKAGE_SAMPLE = 300
_LEAKAGE_CV = 3


class SpectraWriter:
    """Stream spectra into one HDF5 file, chunk by chunk, atomically.

    The file appears at ``path`` only when the writer is closed without error;
    until then it is written to a temporary name beside it.

    Parameters
    ----------
    path : str or Path
    wave : array-like of shape (n_pix,)
    compression : {"lzf", "gzip", None}, default="lzf"
        lzf is fast enough for bulk simulation; gzip is smaller.
    rows_per_chunk : int, default=64
        HDF5 chunk height (spectra per chunk).
    metadata : dict, optional

    Examples
    --------
    Simulated spectra streamed to disk a chunk at a time:

    >>> import os, tempfile
    >>> from specreg.datasets import iter_spectra, load_grid
    >>> path = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> with SpectraWriter(path, load_grid().wave) as w:
    ...     for chunk in iter_spectra(20, chunk_size=8, random_state=0):
    ...         w.append(chunk)
    >>> len(read_spectra(path))
    20
    """

    def __init__(self, path, wave, *, compression="lzf", rows_per_chunk=64, metadata=None):
        self.path = Path(path)
        self.wave = np.asarray(wave, dtype=float)
        self.compression = compression
        self.rows_per_chunk = check_int(rows_per_chunk, "rows_per_chunk")
        self.metadata = dict(metadata or {})
        self.n = 0
        self._columns = None
        self._ctx = None
        self._file = None
        # open datasets, kept open while writing: HDF5 flushes a dataset's chunk cache
        # when its handle closes, and a failure there (a full disk) cannot be raised
        self._datasets = {}

    def __enter__(self) -> SpectraWriter:
        self._ctx = atomic_h5(self.path)
        self._file = self._ctx.__enter__()
        try:
            create_checked(self._file, "wave", self.wave)
        except BaseException as exc:
            self._file = None
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def append(self, spectra: Spectra) -> None:
        """Append a chunk of spectra (same wave grid and columns as the first)."""
        f = self._file
        if f is None:
            raise RuntimeError("use SpectraWriter as a context manager")
        if spectra.n_pix != self.wave.size or not np.allclose(spectra.wave, self.wave):
            raise ValueError("spectra have a different wavelength grid than the file")
        m = len(spectra)
        if self._columns is None:
            self._columns = list(spectra.params.columns)
            self._has_noisy = spectra.noisy is not None
            for name in _ARRAYS:
                if name == "noisy" and not self._has_noisy:
                    continue
                self._datasets[name] = f.create_dataset(
                    name,
                    shape=(0, self.wave.size),
                    maxshape=(None, self.wave.size),
                    dtype=np.float32,
                    chunks=(self.rows_per_chunk, self.wave.size),
                    compression=self.compression,
                    shuffle=self.compression is not None,
                    fletcher32=True,
                )
            for col in self._columns:
                values = spectra.params[col].to_numpy()
                dtype = h5py.string_dtype() if values.dtype == object else values.dtype
                opts = checked_opts((0,), dtype, maxshape=(None,), chunks=(4096,))
                ds = f.create_dataset(f"params/{col}", shape=(0,), dtype=dtype, **opts)
                self._datasets[f"params/{col}"] = ds
        if list(spectra.params.columns) != self._columns:
            raise ValueError("params columns differ between chunks")
        if (spectra.noisy is not None) != self._has_noisy:
            raise ValueError("either every chunk has noisy flux or none")
        for name in _ARRAYS:
            if name in self._datasets:
                ds = self._datasets[name]
                ds.resize(self.n + m, axis=0)
                ds[self.n :] = getattr(spectra, name)
        for col in self._columns:
            ds = self._datasets[f"params/{col}"]
            ds.resize(self.n + m, axis=0)
            values = spectra.params[col].to_numpy()
            ds[self.n :] = values.astype(str).astype(object) if values.dtype == object else values
        self.n += m

    def __exit__(self, exc_type, exc, tb):
        f = self._file
        self._file = None
        self._datasets = {}
        if exc_type is None:
            try:
                f.attrs["format"] = SPECTRA_FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["n_spectra"] = self.n
                f.attrs["params_columns"] = to_json(self._columns or [])
                f.attrs["metadata"] = to_json(self.metadata)
                f.flush()  # write errors surface here, not when handles are dropped
            except BaseException as error:
                self._ctx.__exit__(type(error), error, error.__traceback__)
                raise
        return self._ctx.__exit__(exc_type, exc, tb)


def write_spectra(spectra: Spectra | Iterable[Spectra], path, **kwargs) -> Path:
    """Write spectra (a set, or an iterable of chunks) to one HDF5 file, atomically.

    Parameters
    ----------
    spectra : Spectra or iterable of Spectra
    path : str or Path
    **kwargs
        Passed to :class:`SpectraWriter` (``compression``, ``rows_per_chunk``,
        ``metadata``).

    Returns
    -------
    Path

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile, os
    >>> from specreg.datasets import Spectra
    >>> labels = pd.DataFrame({"log_g": [1.0, 2.0]})
    >>> s = Spectra(np.arange(3.0), np.ones((2, 3)), np.ones((2, 3)), labels)
    >>> p = write_spectra(s, os.path.join(tempfile.mkdtemp(), "s.h5"))
    >>> read_spectra(p).y.tolist()
    [1.0, 2.0]
    """
    chunks = [spectra] if isinstance(spectra, Spectra) else spectra
    writer = None
    for chunk in chunks:
        if writer is None:
            meta = dict(chunk.metadata, **kwargs.pop("metadata", {}))
            writer = SpectraWriter(path, chunk.wave, metadata=meta, **kwargs).__enter__()
        try:
            writer.append(chunk)
        except BaseException as exc:
            writer.__exit__(type(exc), exc, exc.__traceback__)
            raise
    if writer is None:
        raise ValueError("no spectra to write")
    writer.__exit__(None, None, None)
    return Path(path)


def _open(path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not an HDF5 file: {exc}") from None


def _params_columns(f: h5py.File, path) -> list:
    columns = json_attr(f, "params_columns", path, "[]")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ValueError(f"{path}: attribute 'params_columns' is not a JSON list of names")
    if not columns and "params" in f:
        columns = list(f["params"])
    return columns


def _read_params(f: h5py.File, path, rows=slice(None)) -> pd.DataFrame:
    data = {}
    for col in _params_columns(f, path):
        values = read_dataset(f, f"params/{col}", path, rows)
        if values.dtype.kind in "OS":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
        data[col] = values
    return pd.DataFrame(data)


def _check_ours(f: h5py.File, path) -> None:
    version = int(f.attrs.get("schema_version", -1))
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has spectra schema version {version}; this specreg reads up to "
            f"{SCHEMA_VERSION}: upgrade specreg"
        )


def _check_layout(f: h5py.File, path) -> int:
    """The number of spectra of an open specreg file, after checking its structure.

    Missing datasets or attributes and lengths that disagree with ``n_spectra``
    raise a ``ValueError`` naming the file and the item.
    """
    if "n_spectra" not in f.attrs:
        raise ValueError(f"{path} is damaged or incomplete: it has no attribute 'n_spectra'")
    try:
        n = int(f.attrs["n_spectra"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: attribute 'n_spectra' is not an integer ({exc})") from None
    shapes = {}
    for name in ("wave", *_ARRAYS):
        obj = f.get(name)
        if obj is None:
            if name == "noisy":
                continue
            raise ValueError(f"{path} is damaged or incomplete: it has no dataset {name!r}")
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"{path} is damaged: {name!r} is not a dataset")
        shapes[name] = obj.shape
    n_pix = int(np.prod(shapes["wave"]))
    for name in _ARRAYS:
        if name not in shapes:
            continue
        shape = shapes[name]
        if len(shape) != 2:
            raise ValueError(f"{path} is damaged: dataset {name!r} has shape {shape}, not 2-D")
        if shape[0] != n:
            raise ValueError(
                f"{path} is inconsistent: attribute n_spectra = {n} but dataset {name!r} "
                f"has {shape[0]} rows"
            )
        if shape[1] != n_pix:
            raise ValueError(
                f"{path} is inconsistent: dataset {name!r} has {shape[1]} pixels but "
                f"dataset 'wave' has {n_pix}"
            )
    for col in _params_columns(f, path):
        obj = f.get(f"params/{col}")
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(
                f"{path} is damaged or incomplete: it has no dataset 'params/{col}' "
                "(named by attribute 'params_columns')"
            )
        if obj.shape[:1] != (n,):
            raise ValueError(
                f"{path} is inconsistent: attribute n_spectra = {n} but dataset "
                f"'params/{col}' has shape {obj.shape}"
            )
    return n


def read_spectra(path, rows=None, *, check_leakage: bool = True) -> Spectra:
    """Read a spectra file: specreg's layout, or the reference study's pfsspec layout.

    Parameters
    ----------
    path : str or Path
        An HDF5 file, or a sharded-set directory (read whole).
    rows : slice or array-like of int, optional
        Rows to read (default all).
    check_leakage : bool, default=True
        For a labelled set (a ``log_g`` column, at least 30 spectra), check on a
        seeded subsample of 300 spectra that the errors do not predict log g
        better than the flux (:func:`specreg.metrics.error_leakage`, 3-fold;
        about 0.1-0.2 s for 4096 pixels), and warn if they do. The data are
        never modified. ``False`` skips the check.

    Returns
    -------
    Spectra

    Warns
    -----
    specreg.metrics.ErrorLeakageWarning
        The errors were computed from the noiseless flux and give log g away;
        ``spectra.with_reference_errors(noise_model)`` makes honest ones.

    Examples
    --------
    >>> spectra = read_spectra("test.h5")  # doctest: +SKIP
    """
    spectra = _read_any(path, rows)
    _check_values(spectra, path)
    if check_leakage:
        _check_leakage(spectra, path, stacklevel=3)
    return spectra


def _check_values(spectra: Spectra, path) -> None:
    """NaN, inf or non-positive errors in a file: an error naming the rows and pixels."""
    from ..spectra._validation import check_flux_error

    check_flux_error(spectra.flux, spectra.error, names=(f"flux of {path}", f"error of {path}"))
    if spectra.noisy is not None:
        check_flux_error(
            spectra.noisy, spectra.error, names=(f"noisy flux of {path}", f"error of {path}")
        )


def _read_any(path, rows) -> Spectra:
    path = Path(path)
    if path.is_dir():
        return ShardedSpectra(path)[slice(None) if rows is None else rows]
    with _open(path) as f:
        fmt = f.attrs.get("format")
        if fmt == SPECTRA_FORMAT:
            _check_ours(f, path)
            sel = _row_selection(rows, _check_layout(f, path))
            return _read_rows(f, sel, path)
        if "dataset/arrays/flux/value" in f or "spectrumdataset/wave" in f:
            pass  # pfsspec: read below with pandas for the PyTables params
        else:
            raise ValueError(
                f"{path} is neither a specreg spectra file (format={SPECTRA_FORMAT!r}) nor a "
                "pfsspec dataset (dataset/arrays/flux/value)"
            )
    spectra = read_pfsspec(path, check_leakage=False)
    return spectra if rows is None else spectra[rows]


def _row_selection(rows, n: int) -> np.ndarray:
    if rows is None:
        return np.arange(n)
    try:
        idx = np.arange(n)[rows]
    except (IndexError, TypeError, ValueError) as exc:
        raise ValueError(
            f"rows must select spectra of this file of {n}: an int, a slice, integer "
            f"indices or a boolean mask of length {n}; got {rows!r} ({exc})"
        ) from None
    return np.atleast_1d(idx)


def _read_rows(f: h5py.File, idx: np.ndarray, path) -> Spectra:
    """Rows ``idx`` of an open specreg file (h5py wants increasing unique indices).

    Missing or damaged datasets (a failed checksum) raise a ``ValueError`` naming
    ``path`` and the dataset.
    """
    uniq, inverse = np.unique(idx, return_inverse=True)
    contiguous = uniq.size > 0 and uniq[-1] - uniq[0] + 1 == uniq.size
    sel = slice(int(uniq[0]), int(uniq[-1]) + 1) if contiguous else uniq
    if uniq.size == 0:
        sel = slice(0, 0)
    arrays = {}
    for name in _ARRAYS:
        if name == "noisy" and name not in f:
            arrays[name] = None
        else:
            arrays[name] = read_dataset(f, name, path, sel)[inverse]
    params = _read_params(f, path, sel).iloc[inverse]
    metadata = json_attr(f, "metadata", path)
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: attribute 'metadata' is not a JSON object")
    return Spectra(
        read_dataset(f, "wave", path),
        arrays["flux"],
        arrays["error"],
        params,
        arrays["noisy"],
        metadata,
    )


def read_pfsspec(path, *, fill_nan_error: bool = True, check_leakage: bool = True) -> Spectra:
    """Read a pfsspec ``SpectrumDataset`` file of the reference study.

    See the reference-study page of the user guide for what the study's files
    hold and how they were made.

    Layout: ``spectrumdataset/wave``, ``dataset/arrays/{flux,error[,noisy]}/value``
    and the params DataFrame as a PyTables table under ``dataset/params``.

    Parameters
    ----------
    path : str or Path
    fill_nan_error : bool, default=True
        Fill the NaN errors pfsspec leaves at the first and last pixels from the
        nearest finite pixel of the same spectrum, as the reference loader did.
        Other NaN, inf or non-positive errors raise a ``ValueError`` naming the
        rows and pixels.
    check_leakage : bool, default=True
        Check that the errors do not give log g away, as :func:`read_spectra`
        does (the reference study's errors were computed from the noiseless flux
        and do); ``False`` skips the check.

    Returns
    -------
    Spectra
        Flux as stored (median-normalised to 0.5, noiseless); ``params`` keeps
        every stored column; ``snr`` is added (median flux/error) if absent.

    Warns
    -----
    specreg.metrics.ErrorLeakageWarning
        The error half predicts log g clearly better than the flux half.

    Examples
    --------
    >>> spectra = read_pfsspec("test_10k/dataset.h5")  # doctest: +SKIP
    """
    path = Path(path)
    with _open(path) as f:
        if "dataset/arrays/flux/value" not in f:
            raise ValueError(f"{path} is not a pfsspec dataset: no dataset/arrays/flux/value")
        if "spectrumdataset/wave" in f:
            wave = read_dataset(f, "spectrumdataset/wave", path)
        elif "dataset/wave" in f:
            wave = read_dataset(f, "dataset/wave", path)
        else:
            raise ValueError(f"{path} has no wavelength array spectrumdataset/wave")
        flux = read_dataset(f, "dataset/arrays/flux/value", path).astype(np.float32)
        if "dataset/arrays/error/value" not in f:
            raise ValueError(f"{path} has no dataset/arrays/error/value")
        error = read_dataset(f, "dataset/arrays/error/value", path).astype(np.float32)
        noisy = None
        if "dataset/arrays/noisy/value" in f:
            noisy = read_dataset(f, "dataset/arrays/noisy/value", path).astype(np.float32)
        has_params = "dataset/params" in f
    wave = np.asarray(wave, dtype=float).reshape(-1)
    if wave.size != flux.shape[1]:
        raise ValueError(f"{path}: wave has {wave.size} pixels but flux has {flux.shape[1]}")
    if fill_nan_error:
        error = _fill_nan_nearest(error)
    if not has_params:
        raise ValueError(f"{path} has no dataset/params table")
    params = pd.read_hdf(path, key="dataset/params")
    if "snr" not in params:
        with np.errstate(divide="ignore", invalid="ignore"):
            params["snr"] = np.nanmedian(flux / error, axis=1)
    spectra = Spectra(wave, flux, error, params, noisy, {"source": str(path), "layout": "pfsspec"})
    _check_values(spectra, path)
    if check_leakage:
        _check_leakage(spectra, path, stacklevel=3)
    return spectra


def _check_leakage(spectra: Spectra, path, stacklevel: int) -> None:
    """Warn when the error half of a labelled set predicts log g better than the flux.

    Runs :func:`specreg.metrics.error_leakage` on a seeded subsample (spectra with
    a finite log g and finite, positive errors); sets too small for
    cross-validation, or without a ``log_g`` column, are skipped silently.
    """
    if "log_g" not in spectra.params or len(spectra) < _LEAKAGE_MIN_SPECTRA:
        return
    y = pd.to_numeric(spectra.params["log_g"], errors="coerce").to_numpy(dtype=float)
    rows = np.flatnonzero(np.isfinite(y))
    if rows.size < _LEAKAGE_MIN_SPECTRA:
        return
    rng = np.random.default_rng(0)
    if rows.size > _LEAKAGE_SAMPLE:
        rows = np.sort(rng.choice(rows, size=_LEAKAGE_SAMPLE, replace=False))
    noisy = spectra.noisy is not None
    flux = (spectra.noisy if noisy else spectra.flux)[rows]
    error, y = spectra.error[rows], y[rows]
    ok = np.isfinite(flux).all(axis=1) & np.isfinite(error).all(axis=1) & (error > 0).all(axis=1)
    if ok.sum() < _LEAKAGE_MIN_SPECTRA or np.ptp(y[ok]) == 0:
        return
    from ..metrics import ErrorLeakageWarning, error_leakage

    report = error_leakage(
        np.hstack([flux[ok], error[ok]]),
        y[ok],
        cv=_LEAKAGE_CV,
        noisy=noisy,
        random_state=0,
        max_samples=None,
        n_threads=1,
    )
    if not report.leaks:
        return
    flux_text = "the flux alone gives" if noisy else "the flux alone (with one noise draw) gives"
    warnings.warn(
        ErrorLeakageWarning(
            f"{path}: the error column predicts log_g with cross-validated R^2 = "
            f"{report.r2_error:.2f} while {flux_text} {report.r2_flux:.2f}: the errors encode "
            "the noiseless flux (they were computed from it, sigma^2 = A a f / x + B b / x^2), "
            "so a model fed X = [flux | error] reads log_g off the errors and beats what a "
            "noisy observation allows. Get honest errors, from the magnitude and observing "
            "conditions only, with spectra.with_reference_errors(noise_model) (a "
            "specreg.spectra.PFSNoiseModel; it needs the 'mag' column). The data were read "
            f"unchanged. (A linear model on {report.n} spectra, {report.cv}-fold: "
            "specreg.metrics.error_leakage; read with check_leakage=False to skip the check.)"
        ),
        stacklevel=stacklevel,
    )


def _fill_nan_nearest(arr: np.ndarray) -> np.ndarray:
    """Fill the NaN runs at both ends of each row from the nearest finite pixel (a new array).

    pfsspec leaves the first and last pixels without an error; NaN or inf inside a
    spectrum is damage, not a convention, and is left for the value check to name.
    """
    out = arr.copy()
    bad = np.isnan(out)
    for row in np.flatnonzero(bad[:, 0] | bad[:, -1]):
        good = np.flatnonzero(~bad[row])
        if good.size == 0:
            raise ValueError(f"spectrum {row} has no finite error at all")
        out[row, : good[0]] = out[row, good[0]]
        out[row, good[-1] + 1 :] = out[row, good[-1]]
    return out


#: A shard file of a sharded set: ``shard_<hex stamp>_<writer pid>_<i>.h5`` (one stamp
#: per write); sets written before the crash-safe rewrite named them ``shard_<i>.h5``.
_SHARD_RE = re.compile(r"shard_(?:(?P<stamp>[0-9a-f]+)_(?P<pid>\d+)_)?\d{5}\.h5")
_SHARD_TMP_RE = r"shard_(?:[0-9a-f]+_\d+_)?\d{5}\.h5\.tmp-(?P<pid>\d+)"
_INDEX_TMP_RE = r"index\.json\.tmp-(?P<pid>\d+)"
_JOURNAL_TMP_RE = r"resume-[0-9A-Za-z_-]{1,64}\.json\.tmp-(?P<pid>\d+)"


def _own_shard(name) -> bool:
    """Whether an index entry names a file :func:`write_shards` writes (never a foreign one)."""
    parts = Path(name).parts
    return len(parts) == 1 and _SHARD_RE.fullmatch(parts[0]) is not None


def _indexed_files(index_path: Path) -> set[str] | None:
    """The shard files a readable index names (``None`` when there is no readable index)."""
    try:
        index = json.loads(index_path.read_text())
        return {str(s["file"]) for s in index["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unlink_all(directory: Path, names) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def _remove_stale_shard_writes(directory: Path, named: set[str] | None) -> None:
    """Remove what killed writers of this set left: temporary files and unindexed shards.

    Only files following :func:`write_shards`' own naming whose writer process is
    gone are removed; with no readable index, finished shards are left alone.
    """
    remove_stale(directory, _INDEX_TMP_RE)
    remove_stale(directory, _SHARD_TMP_RE)
    remove_stale(directory, _JOURNAL_TMP_RE)
    if named is None:
        return
    for entry in list(os.scandir(directory)):
        match = _SHARD_RE.fullmatch(entry.name)
        if (
            match is None
            or match.group("pid") is None  # the old naming: no writer to ask about
            or entry.name in named
            or not entry.is_file(follow_symlinks=False)
            or pid_alive(int(match.group("pid")))
        ):
            continue
        _unlink_all(directory, [entry.name])


def _write_json_atomic(path: Path, obj, *, kept: str, indent=None) -> None:
    """Write JSON to ``path`` atomically; a failure names ``path`` and says what is ``kept``."""
    try:
        write_json_atomic(path, obj, indent=indent)
    except OSError as exc:
        raise OSError(exc.errno, f"could not write {path} ({exc}); {kept}", str(path)) from exc


def _fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (the renames into it) to disk."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # a platform without directory handles: nothing to flush
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to sync a directory; the files are synced
    finally:
        os.close(fd)


def _write_index(index_path: Path, index: dict) -> None:
    _write_json_atomic(index_path, index, kept="the old index is kept", indent=1)


def _journal_path(directory: Path, key: str) -> Path:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", str(key)):
        raise ValueError(f"resume_key must be 1-64 letters, digits, '-' or '_', got {key!r}")
    return directory / f"resume-{key}.json"


def _read_journal(journal: Path) -> dict | None:
    """A resumable job's progress, if its journal and every shard it lists are there."""
    try:
        state = json.loads(journal.read_text())
        shards = [{"file": str(sh["file"]), "n": int(sh["n"])} for sh in state["shards"]]
        prefix, n_pix = str(state["prefix"]), int(state["n_pix"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{journal} is damaged ({exc}); remove it to start the job afresh"
        ) from None
    if not all(
        _own_shard(sh["file"]) and (journal.parent / sh["file"]).is_file() for sh in shards
    ):
        raise ValueError(
            f"{journal} lists shard files that are missing; remove it to start the job afresh"
        )
    return {"prefix": prefix, "shards": shards, "n_pix": n_pix}


def _write_journal(journal: Path, prefix: str, shards: list, n_pix) -> None:
    state = {"prefix": prefix, "shards": shards, "n_pix": n_pix}
    _write_json_atomic(journal, state, kept="the previous journal is kept")


def _journaled(directory: Path) -> set[str]:
    names: set[str] = set()
    for journal in directory.glob("resume-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            names |= {str(sh["file"]) for sh in json.loads(journal.read_text())["shards"]}
    return names


def resume_progress(directory, resume_key: str) -> int:
    """Spectra a resumable :func:`write_shards` job has already written (0 if none).

    Examples
    --------
    >>> import tempfile
    >>> resume_progress(tempfile.mkdtemp(), "job1")
    0
    """
    done = _read_journal(_journal_path(Path(directory), resume_key))
    return 0 if done is None else sum(sh["n"] for sh in done["shards"])


def write_shards(
    chunks: Iterable[Spectra],
    directory: str | os.PathLike,
    *,
    shard_size: int = 100_000,
    progress_callback: Callable[[int], object] | None = None,
    resume_key: str | None = None,
    progress: Callable[[int], object] | None = None,
    **kwargs,
) -> Path:
    """Write a stream of spectra chunks as a sharded set: shard files + ``index.json``.

    Memory stays bounded by one chunk. The shards get new names
    (``shard_<stamp>_<pid>_<i>.h5``, one stamp per write), each written atomically, and the
    index is replaced atomically last: an interrupted or killed write never
    yields a set that reads as complete, and a set already in ``directory``
    stays readable, unchanged, until the new one is complete. Then the shard
    files the old index named are removed (never other files), as are the
    temporary files and unindexed shards of earlier writers that were
    killed.

    Parameters
    ----------
    chunks : iterable of Spectra
    directory : str or Path
    shard_size : int, default=100_000
        Spectra per shard file.
    progress_callback : callable, optional
        Called with the number of spectra of each chunk written (e.g. a tqdm
        bar's ``update``).
    resume_key : str, optional
        Make the write resumable: after every finished shard a journal
        ``resume-<key>.json`` lists the shards written so far, and a later call
        with the same key (the same job: same chunks, same shard size) keeps
        those shards, skips their spectra in ``chunks`` and writes the rest. The
        key must identify the job (e.g. a hash of every setting and the seed);
        :func:`resume_progress` tells how far a job got.
    progress : callable, optional
        Deprecated old name of ``progress_callback``.

        .. deprecated:: 0.1
           ``progress`` was renamed ``progress_callback`` (``progress`` means a
           bar elsewhere); it will be removed in 0.3.
    **kwargs
        Passed to :class:`SpectraWriter`.

    Returns
    -------
    Path
        The directory.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from specreg.spectra import SpectralGrid, pfs_mr_wave
    >>> from specreg.datasets import iter_spectra
    >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, np.full((2, 4096), 0.5),
    ...                  pfs_mr_wave())
    >>> chunks = iter_spectra(5, model=g, chunk_size=2)
    >>> d = write_shards(chunks, tempfile.mkdtemp(), shard_size=3)
    >>> len(ShardedSpectra(d))
    5
    """
    callback = renamed(progress_callback, progress, old="progress", new="progress_callback")
    shard_size = check_int(shard_size, "shard_size")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index_path = directory / "index.json"
    old_files = _indexed_files(index_path)
    journal = None if resume_key is None else _journal_path(directory, resume_key)
    done = _read_journal(journal) if journal is not None else None
    # shards listed in any job's journal are that job's progress, not a dead writer's litter
    _remove_stale_shard_writes(
        directory, None if old_files is None else old_files | _journaled(directory)
    )
    if done is not None:
        prefix, shards = done["prefix"], [dict(sh) for sh in done["shards"]]
    else:
        prefix, shards = f"shard_{time.time_ns():x}_{os.getpid()}", []
    to_skip = n_total = sum(sh["n"] for sh in shards)
    writer, n_in_shard, n_pix = None, 0, done["n_pix"] if done else None
    try:
        for chunk in chunks:
            if to_skip:  # spectra of shards a killed run of this job already wrote
                skip = min(to_skip, len(chunk))
                to_skip -= skip
                if callback is not None:
                    callback(skip)
                chunk = chunk[skip:] if skip < len(chunk) else None
                if chunk is None:
                    continue
            start = 0
            while start < len(chunk):
                if writer is None:
                    name = f"{prefix}_{len(shards):05d}.h5"
                    writer = SpectraWriter(directory / name, chunk.wave, **kwargs).__enter__()
                    shards.append({"file": name, "n": 0})
                    n_in_shard = 0
                take = min(shard_size - n_in_shard, len(chunk) - start)
                writer.append(chunk[start : start + take])
                start += take
                n_in_shard += take
                shards[-1]["n"] = n_in_shard
                n_pix = chunk.n_pix
                if n_in_shard == shard_size:
                    finished, writer = writer, None
                    finished.__exit__(None, None, None)
                    if journal is not None:
                        _fsync_directory(directory)  # the shard's name, before the journal
                        _write_journal(journal, prefix, shards, n_pix)
            n_total += len(chunk)
            if callback is not None:
                callback(len(chunk))
        if writer is not None:
            finished, writer = writer, None
            finished.__exit__(None, None, None)
        # every shard is on disk (atomic_h5 syncs each file) and so are their names,
        # before the index that makes them a set replaces the old one
        _fsync_directory(directory)
        index = {
            "format": SHARDS_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "n_spectra": n_total,
            "n_pix": n_pix,
            "shards": shards,
        }
        _write_index(index_path, index)
    except BaseException as exc:
        try:
            if writer is not None:
                failed, writer = writer, None
                failed.__exit__(type(exc), exc, exc.__traceback__)  # may name the file
        finally:
            # the old set stays; a resumable job keeps its finished, journaled shards
            resumable = _read_journal(journal) if journal is not None else None
            keep = {sh["file"] for sh in resumable["shards"]} if resumable else set()
            _unlink_all(directory, [s["file"] for s in shards if s["file"] not in keep])
        raise
    if journal is not None:
        with contextlib.suppress(FileNotFoundError):
            journal.unlink()
    # the new set is complete: remove the shards only the old index named
    new_files = {s["file"] for s in shards}
    _unlink_all(directory, sorted(n for n in (old_files or set()) - new_files if _own_shard(n)))
    return directory


def _read_index(index_path: Path) -> dict:
    """The parsed ``index.json`` of a sharded set; damage raises a ``ValueError`` naming it."""
    try:
        text = index_path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{index_path} cannot be read: {exc}") from None
    try:
        index = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{index_path} is damaged: not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != SHARDS_FORMAT:
        raise ValueError(f"{index_path} is not a specreg shard index")
    if int(index.get("schema_version", -1)) > SCHEMA_VERSION:
        raise ValueError(f"{index_path} has a newer schema version: upgrade specreg")
    for key in ("shards", "n_pix"):
        if key not in index:
            raise ValueError(f"{index_path} is damaged: it has no entry {key!r}")
    if not isinstance(index["shards"], list):
        raise ValueError(f"{index_path} is damaged: 'shards' is not a list")
    for i, shard in enumerate(index["shards"]):
        ok = (
            isinstance(shard, dict)
            and isinstance(shard.get("file"), str)
            and isinstance(shard.get("n"), int)
            and shard["n"] >= 0
        )
        if not ok:
            raise ValueError(
                f"{index_path} is damaged: shard entry {i} is not {{'file': name, 'n': count}}"
            )
    return index


class ShardedSpectra:
    """A sharded spectra set on disk, read lazily by rows.

    Only ``params`` (small) is loaded eagerly; flux and errors are read from the
    shard files when rows are requested, so sets larger than memory can feed
    training (e.g. through a torch ``Dataset``).

    Parameters
    ----------
    directory : str or Path
        A directory written by :func:`write_shards`.

    Examples
    --------
    >>> shards = ShardedSpectra("train_1M/")  # doctest: +SKIP
    >>> batch = shards[np.arange(256)]  # doctest: +SKIP
    >>> batch.X.shape  # doctest: +SKIP
    (256, 8192)
    """

    def __init__(self, directory) -> None:
        self.directory = Path(directory)
        index_path = self.directory / "index.json"
        if not index_path.exists():
            raise ValueError(
                f"{self.directory} is not a complete sharded set: no index.json "
                "(an interrupted write leaves none)"
            )
        index = _read_index(index_path)
        self.shards = index["shards"]
        self.n_pix = index["n_pix"]
        sizes = np.array([s["n"] for s in self.shards], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._n = int(self._offsets[-1])
        if "n_spectra" in index and index["n_spectra"] != self._n:
            raise ValueError(
                f"{index_path} is inconsistent: 'n_spectra' is {index['n_spectra']} but its "
                f"shards hold {self._n} spectra"
            )
        frames = []
        for shard in self.shards:
            path = self.directory / shard["file"]
            if not path.is_file():
                raise ValueError(
                    f"{index_path} names shard {shard['file']!r}, but there is no file {path}"
                )
            with _open(path) as f:
                if f.attrs.get("format") != SPECTRA_FORMAT:
                    raise ValueError(
                        f"{path} (named by {index_path}) is not a specreg spectra file "
                        f"(format={SPECTRA_FORMAT!r})"
                    )
                _check_ours(f, path)
                n = _check_layout(f, path)
                if n != shard["n"]:
                    raise ValueError(
                        f"{path} holds {n} spectra but {index_path} says {shard['n']}"
                    )
                frames.append(_read_params(f, path))
                self.wave = read_dataset(f, "wave", path)
        self.params = pd.concat(frames, ignore_index=True)

    def __len__(self) -> int:
        return self._n

    @property
    def y(self) -> np.ndarray:
        """log g of all rows, shape (n,)."""
        return self.params["log_g"].to_numpy(dtype=np.float64)

    def __getitem__(self, rows) -> Spectra:
        """Rows as an in-memory :class:`Spectra` (slice, int array or mask)."""
        if isinstance(rows, int | np.integer):
            rows = [rows]
        idx = np.atleast_1d(np.arange(self._n)[rows])
        shard_of = np.searchsorted(self._offsets, idx, side="right") - 1
        parts, positions = [], []
        for s in np.unique(shard_of):
            take = np.flatnonzero(shard_of == s)
            path = self.directory / self.shards[s]["file"]
            with _open(path) as f:
                parts.append(_read_rows(f, idx[take] - self._offsets[s], path))
            positions.append(take)
        if not parts:
            empty = np.empty((0, self.n_pix), np.float32)
            return Spectra(self.wave, empty, empty, self.params.iloc[:0])
        order = np.argsort(np.concatenate(positions))
        from ._spectra import _concat

        merged = _concat(parts) if len(parts) > 1 else parts[0]
        return merged[order]

    def iter_chunks(self, chunk_size: int = 8192):
        """Yield consecutive row blocks as :class:`Spectra`.

        Examples
        --------
        >>> for chunk in ShardedSpectra("train/").iter_chunks(4096):  # doctest: +SKIP
        ...     pass
        """
        chunk_size = check_int(chunk_size, "chunk_size")  # here, not at the first next()
        return (self[start : start + chunk_size] for start in range(0, self._n, chunk_size))

    def __repr__(self) -> str:
        return f"ShardedSpectra({str(self.directory)!r}, n={self._n}, shards={len(self.shards)})"
