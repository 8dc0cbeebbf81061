"""Small HDF5 helpers: atomic writes, checksummed datasets, damage-naming reads, JSON metadata.

Nothing is pickled in data files. Every dataset specreg writes carries an HDF5
fletcher32 checksum (except variable-length strings, which HDF5 cannot filter),
so bytes overwritten on disk raise on reading instead of decoding to other numbers.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
from pathlib import Path

import h5py
import numpy as np

from .._atomic import atomic_path, temp_name

__all__ = [
    "atomic_h5",
    "checked_opts",
    "create_checked",
    "from_json",
    "json_attr",
    "pid_alive",
    "read_dataset",
    "remove_stale",
    "to_json",
]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (this process counts as alive).

    Examples
    --------
    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return True  # never a writer's pid: leave such files alone
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def remove_stale(directory, pattern: str) -> list[Path]:
    """Remove the entries of ``directory`` that a killed writer left behind.

    ``pattern`` is a regular expression matched against whole entry names; its
    group ``pid`` is the writer's process id. Only matching plain files whose
    writer is no longer alive are removed. Returns the removed paths.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / f"a.h5.tmp-{os.getpid()}").write_text("")
    >>> remove_stale(d, r"a\\.h5\\.tmp-(?P<pid>\\d+)")
    []
    """
    directory = Path(directory)
    regex = re.compile(pattern)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = regex.fullmatch(entry.name)
        if match is None or pid_alive(int(match.group("pid"))):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _tmp_pattern(name: str) -> str:
    return re.escape(name) + r"\.tmp-(?P<pid>\d+)"


@contextlib.contextmanager
def atomic_h5(path, mode: str = "w"):
    """Open ``path + '.tmp-<pid>'`` for writing; rename onto ``path`` only on success.

    Built on :func:`specreg._atomic.atomic_path` (the temporary file is flushed
    to disk before the rename), with the guarding HDF5 needs: a crash or an
    exception leaves no file at ``path`` (an older file there is kept), so a
    half-written file never reads as valid. Temporary files of earlier writers
    of the same ``path`` that were killed (their process is gone) are removed
    first. An ``OSError`` while writing (a full disk, say) removes the temporary
    file and is raised again naming ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_h5(os.path.join(d, "a.h5")) as f:
    ...     f["x"] = [1, 2]
    >>> os.listdir(d)
    ['a.h5']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, _tmp_pattern(path.name))
    raw = None
    try:
        with atomic_path(path) as tmp:
            handle = None
            try:
                raw = _GuardedFile(tmp, "w+")
                handle = h5py.File(raw, mode)
                yield handle
                handle.close()
                raw.close()
                if raw.error is not None:
                    raise raw.error
            except BaseException:
                _close(handle, raw)  # before atomic_path removes the file
                raise
    except BaseException as exc:
        code = _write_errno(exc)
        if raw is not None and raw.error is not None:
            exc, code = raw.error, raw.error.errno or errno.EIO
        if code is None:
            raise
        raise OSError(
            code,
            f"could not write {path} ({exc}); the partial file {temp_name(path).name} was removed",
            str(path),
        ) from exc


class _GuardedFile(io.FileIO):
    """The temporary file as HDF5 sees it: a failed write is recorded, not reported.

    HDF5 does not recover from write errors (a full disk): its caches are left
    inconsistent, the file cannot be closed and h5py may crash later. So the
    first ``OSError`` is kept in ``error``, later writes are skipped (the file
    will be deleted) and :func:`atomic_h5` raises it once HDF5 has closed the
    file cleanly.
    """

    error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    n = super().write(view[done:])
                    if not n:
                        raise OSError(errno.EIO, "no progress writing")
                    done += n
            except OSError as exc:
                self.error = exc
        return len(view)

    def truncate(self, size=None) -> int:
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size


def _close(handle, raw) -> None:
    """Close a failed temporary file (its removal is left to ``atomic_path``)."""
    if handle is not None:
        with contextlib.suppress(Exception):
            handle.close()
    if raw is not None:
        with contextlib.suppress(Exception):
            raw.close()


def _write_errno(exc: BaseException) -> int | None:
    """The errno of a failed write: any ``OSError``, or h5py's ``RuntimeError`` for a
    failed flush ("file write failed ... errno = 28"); ``None`` for other errors."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno is not None else errno.EIO
    if isinstance(exc, RuntimeError) and "write failed" in str(exc):
        match = re.search(r"errno = (\d+)", str(exc))
        return int(match.group(1)) if match else errno.EIO
    return None


def checked_opts(shape, dtype=None, **opts) -> dict:
    """``create_dataset`` options adding a fletcher32 checksum where HDF5 allows one.

    Checksums need chunked storage; scalars, empty fixed-size arrays and
    variable-length strings stay unfiltered.

    Examples
    --------
    >>> checked_opts((3,))
    {'chunks': True, 'fletcher32': True}
    >>> checked_opts((3,), h5py.string_dtype())
    {}
    """
    shape = tuple(shape)
    out = dict(opts)
    if dtype is not None and h5py.check_vlen_dtype(np.dtype(dtype)) is not None:
        return out  # HDF5 applies no filters to variable-length data
    if "chunks" not in out and "maxshape" not in out and (len(shape) == 0 or 0 in shape):
        return out  # cannot be chunked
    out.setdefault("chunks", True)
    out["fletcher32"] = True
    return out


def create_checked(group: h5py.Group, name: str, data=None, **opts) -> h5py.Dataset:
    """``group.create_dataset(name, data=data, ...)`` with a fletcher32 checksum.

    Examples
    --------
    >>> import tempfile, os
    >>> with h5py.File(os.path.join(tempfile.mkdtemp(), "c.h5"), "w") as f:
    ...     create_checked(f, "x", np.arange(3.0)).fletcher32
    True
    """
    if data is not None:
        data = np.asarray(data)
        shape, dtype = data.shape, opts.get("dtype", data.dtype)
    else:
        shape, dtype = opts.pop("shape"), opts.get("dtype")
        opts["shape"] = shape
    return group.create_dataset(name, data=data, **checked_opts(shape, dtype, **opts))


def read_dataset(f: h5py.File | h5py.Group, name: str, path, sel=()):
    """Read ``f[name][sel]``; a missing or damaged dataset raises a ``ValueError`` naming both.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "r.h5")
    >>> with h5py.File(p, "w") as f:
    ...     f["x"] = [1, 2]
    >>> with h5py.File(p) as f:
    ...     read_dataset(f, "y", p)
    Traceback (most recent call last):
    ...
    ValueError: .../r.h5 is damaged or incomplete: it has no dataset 'y'
    """
    try:
        obj = f.get(name)
    except (OSError, KeyError, RuntimeError) as exc:
        raise ValueError(f"{path} is damaged: dataset {name!r} cannot be opened: {exc}") from exc
    if obj is None:
        raise ValueError(f"{path} is damaged or incomplete: it has no dataset {name!r}")
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path} is damaged: {name!r} is not a dataset")
    try:
        return obj[sel]
    except OSError as exc:
        raise ValueError(
            f"{path} is damaged: dataset {name!r} cannot be read (checksum mismatch or "
            f"corrupt data: the bytes on disk were changed): {exc}"
        ) from exc


def json_attr(f: h5py.File | h5py.Group, name: str, path, default=""):
    """The JSON attribute ``name`` of ``f``, decoded; bad JSON raises a ``ValueError`` naming it.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "j.h5")
    >>> with h5py.File(p, "w") as f:
    ...     f.attrs["metadata"] = "{oops"
    ...     json_attr(f, "metadata", p)
    Traceback (most recent call last):
    ...
    ValueError: .../j.h5: attribute 'metadata' is not valid JSON ...
    """
    try:
        text = f.attrs.get(name, default)
    except OSError as exc:
        raise ValueError(f"{path} is damaged: attribute {name!r} cannot be read: {exc}") from exc
    try:
        return from_json(text)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"{path}: attribute {name!r} is not valid JSON ({exc})") from exc


def _default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in metadata")


def to_json(obj) -> str:
    """JSON text of metadata (numpy scalars and arrays become plain lists).

    Examples
    --------
    >>> to_json({"a": np.float32(1.5)})
    '{"a": 1.5}'
    """
    return json.dumps(obj, default=_default)


def from_json(text) -> dict:
    """Inverse of :func:`to_json` (accepts bytes).

    Examples
    --------
    >>> from_json(b'{"a": 1}')
    {'a': 1}
    """
    if isinstance(text, bytes):
        text = text.decode()
    return json.loads(text) if text else {}
