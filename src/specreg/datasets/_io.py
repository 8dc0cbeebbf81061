"""HDF5 I/O of spectra sets: specreg's own layout, sharded sets, and pfsspec files.

specreg layout (``format="specreg-spectra"``, ``schema_version=1``)::

    /wave            (n_pix,)     float64, Å
    /flux            (n, n_pix)   float32, noiseless
    /error           (n, n_pix)   float32, 1 sigma
    /noisy           (n, n_pix)   float32, optional fixed noise draw
    /params/<column> (n,)         one dataset per label column (numbers or UTF-8 strings)
    attrs: format, schema_version, n_spectra, params_columns, metadata (JSON)

Arrays are chunked by rows (whole spectra) and compressed; nothing is pickled.
A sharded set is a directory of such files plus ``index.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ._h5util import atomic_h5, from_json, to_json
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
    >>> import numpy as np, pandas as pd, tempfile, os
    >>> from specreg.datasets import Spectra
    >>> s = Spectra(np.arange(3.0), np.ones((2, 3)), np.ones((2, 3)), pd.DataFrame({"log_g": [1.0, 2.0]}))
    >>> path = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> with SpectraWriter(path, s.wave) as w:
    ...     w.append(s)
    >>> len(read_spectra(path))
    2
    """

    def __init__(self, path, wave, *, compression="lzf", rows_per_chunk=64, metadata=None):
        self.path = Path(path)
        self.wave = np.asarray(wave, dtype=float)
        self.compression = compression
        self.rows_per_chunk = int(rows_per_chunk)
        self.metadata = dict(metadata or {})
        self.n = 0
        self._columns = None
        self._ctx = None
        self._file = None

    def __enter__(self) -> SpectraWriter:
        self._ctx = atomic_h5(self.path)
        self._file = self._ctx.__enter__()
        self._file["wave"] = self.wave
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
                f.create_dataset(
                    name,
                    shape=(0, self.wave.size),
                    maxshape=(None, self.wave.size),
                    dtype=np.float32,
                    chunks=(self.rows_per_chunk, self.wave.size),
                    compression=self.compression,
                    shuffle=self.compression is not None,
                )
            for col in self._columns:
                values = spectra.params[col].to_numpy()
                dtype = h5py.string_dtype() if values.dtype == object else values.dtype
                f.create_dataset(
                    f"params/{col}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,)
                )
        if list(spectra.params.columns) != self._columns:
            raise ValueError("params columns differ between chunks")
        if (spectra.noisy is not None) != self._has_noisy:
            raise ValueError("either every chunk has noisy flux or none")
        for name in _ARRAYS:
            if name in f:
                f[name].resize(self.n + m, axis=0)
                f[name][self.n :] = getattr(spectra, name)
        for col in self._columns:
            ds = f[f"params/{col}"]
            ds.resize(self.n + m, axis=0)
            values = spectra.params[col].to_numpy()
            ds[self.n :] = values.astype(str).astype(object) if values.dtype == object else values
        self.n += m

    def __exit__(self, exc_type, exc, tb):
        f = self._file
        if exc_type is None:
            f.attrs["format"] = SPECTRA_FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["n_spectra"] = self.n
            f.attrs["params_columns"] = to_json(self._columns or [])
            f.attrs["metadata"] = to_json(self.metadata)
        self._file = None
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
    >>> s = Spectra(np.arange(3.0), np.ones((2, 3)), np.ones((2, 3)), pd.DataFrame({"log_g": [1.0, 2.0]}))
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


def _read_params(f: h5py.File, rows=slice(None)) -> pd.DataFrame:
    columns = from_json(f.attrs.get("params_columns", "[]")) or list(f["params"])
    data = {}
    for col in columns:
        values = f[f"params/{col}"][rows]
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
            sel = _row_selection(rows, int(f.attrs["n_spectra"]))
            return _read_rows(f, sel)
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
    idx = np.arange(n)[rows]
    return np.atleast_1d(idx)


def _read_rows(f: h5py.File, idx: np.ndarray) -> Spectra:
    """Rows ``idx`` of an open specreg file (h5py wants increasing unique indices)."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    contiguous = uniq.size > 0 and uniq[-1] - uniq[0] + 1 == uniq.size
    sel = slice(int(uniq[0]), int(uniq[-1]) + 1) if contiguous else uniq
    if uniq.size == 0:
        sel = slice(0, 0)
    arrays = {}
    for name in _ARRAYS:
        arrays[name] = f[name][sel][inverse] if name in f else None
    params = _read_params(f, sel).iloc[inverse]
    return Spectra(
        f["wave"][()],
        arrays["flux"],
        arrays["error"],
        params,
        arrays["noisy"],
        from_json(f.attrs.get("metadata", "")),
    )


def read_pfsspec(path, *, fill_nan_error: bool = True, check_leakage: bool = True) -> Spectra:
    """Read a pfsspec ``SpectrumDataset`` file of the reference study (REFERENCE.md 1.4).

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
            wave = f["spectrumdataset/wave"][()]
        elif "dataset/wave" in f:
            wave = f["dataset/wave"][()]
        else:
            raise ValueError(f"{path} has no wavelength array spectrumdataset/wave")
        flux = f["dataset/arrays/flux/value"][()].astype(np.float32)
        if "dataset/arrays/error/value" not in f:
            raise ValueError(f"{path} has no dataset/arrays/error/value")
        error = f["dataset/arrays/error/value"][()].astype(np.float32)
        noisy = None
        if "dataset/arrays/noisy/value" in f:
            noisy = f["dataset/arrays/noisy/value"][()].astype(np.float32)
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


def write_shards(
    chunks: Iterable[Spectra], directory, *, shard_size: int = 100_000, progress=None, **kwargs
) -> Path:
    """Write a stream of spectra chunks as a sharded set: shard files + ``index.json``.

    Memory stays bounded by one chunk. Each shard is written atomically and the
    index last, so an interrupted write never yields a set that reads as complete.

    Parameters
    ----------
    chunks : iterable of Spectra
    directory : str or Path
    shard_size : int, default=100_000
        Spectra per shard file.
    progress : callable, optional
        Called with the number of spectra of each chunk written (e.g. a tqdm's update).
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
    >>> from specreg.datasets._spectra import iter_spectra
    >>> g = SpectralGrid({"log_g": [1.0, 5.0]}, np.full((2, 4096), 0.5), pfs_mr_wave())
    >>> d = write_shards(iter_spectra(5, grid=g, chunk_size=2), tempfile.mkdtemp(), shard_size=3)
    >>> len(ShardedSpectra(d))
    5
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index_path = directory / "index.json"
    if index_path.exists():
        index_path.unlink()  # the set is incomplete until the new index is written
    shards, writer, n_in_shard, n_total, n_pix = [], None, 0, 0, None
    try:
        for chunk in chunks:
            start = 0
            while start < len(chunk):
                if writer is None:
                    name = f"shard_{len(shards):05d}.h5"
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
                    writer.__exit__(None, None, None)
                    writer = None
            n_total += len(chunk)
            if progress is not None:
                progress(len(chunk))
        if writer is not None:
            writer.__exit__(None, None, None)
            writer = None
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    index = {
        "format": SHARDS_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "n_spectra": n_total,
        "n_pix": n_pix,
        "shards": shards,
    }
    tmp = index_path.with_name(f"index.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, index_path)
    return directory


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
        index = json.loads(index_path.read_text())
        if index.get("format") != SHARDS_FORMAT:
            raise ValueError(f"{index_path} is not a specreg shard index")
        if int(index.get("schema_version", -1)) > SCHEMA_VERSION:
            raise ValueError(f"{index_path} has a newer schema version: upgrade specreg")
        self.shards = index["shards"]
        self.n_pix = index["n_pix"]
        sizes = np.array([s["n"] for s in self.shards], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._n = int(self._offsets[-1])
        frames = []
        for shard in self.shards:
            with _open(self.directory / shard["file"]) as f:
                _check_ours(f, shard["file"])
                frames.append(_read_params(f))
                self.wave = f["wave"][()]
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
            with _open(self.directory / self.shards[s]["file"]) as f:
                parts.append(_read_rows(f, idx[take] - self._offsets[s]))
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
        for start in range(0, self._n, chunk_size):
            yield self[start : start + chunk_size]

    def __repr__(self) -> str:
        return f"ShardedSpectra({str(self.directory)!r}, n={self._n}, shards={len(self.shards)})"
