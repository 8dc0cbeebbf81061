"""Atomic file writes: the one temp-file-and-rename helper of the package.

A write goes to a temporary file beside its target (same folder, so the rename
cannot cross file systems), is flushed to disk, and replaces the target in one
``os.replace``. A write killed half-way leaves the previous file intact and at
most a ``<name>.tmp-<pid>`` file behind, which the next writer may remove.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "temp_name", "write_json_atomic", "write_text_atomic"]


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary file a write of ``path`` goes through: ``<name>.tmp-<pid>``.

    Examples
    --------
    >>> temp_name("/data/grid.h5").name.startswith("grid.h5.tmp-")
    True
    """
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def _fsync(path: Path) -> None:
    # the data must be on disk before the rename makes it visible
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : path-like
        Final file. Its folder is created if missing.
    fsync : bool, default=True
        Flush the temporary file to disk before the rename (set ``False`` only
        for files that are cheap to recompute).

    Yields
    ------
    tmp : Path
        Where to write; it is removed if the ``with`` block raises.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "a.txt")) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> os.listdir(d)
    ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see `atomic_path`); return the path.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_text_atomic(os.path.join(tempfile.mkdtemp(), "n.txt"), "1\\n")
    >>> p.read_text()
    '1\\n'
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (see `atomic_path`); return the path.

    Examples
    --------
    >>> import tempfile, os, json
    >>> p = write_json_atomic(os.path.join(tempfile.mkdtemp(), "a.json"), {"a": 1})
    >>> json.loads(p.read_text())
    {'a': 1}
    """
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=str) + "\n")
