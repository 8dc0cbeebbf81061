"""Small HDF5 helpers: atomic writes and JSON metadata (no pickle in data files)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

__all__ = ["atomic_h5", "to_json", "from_json"]


@contextlib.contextmanager
def atomic_h5(path, mode: str = "w"):
    """Open ``path + '.tmp-<pid>'`` for writing; rename onto ``path`` only on success.

    A crash or an exception leaves no file at ``path`` (an older file there is
    kept), so a half-written file never reads as valid.

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
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


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
