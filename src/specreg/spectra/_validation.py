"""Input checks shared by the spectral models (clear errors naming the problem)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["as_label_array", "check_finite"]


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``array`` holds NaN or inf.

    Examples
    --------
    >>> check_finite(np.ones(3), "flux")
    """
    if not np.all(np.isfinite(array)):
        bad = np.size(array) - np.count_nonzero(np.isfinite(array))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


def as_label_array(theta, param_names: tuple[str, ...]) -> np.ndarray:
    """Labels as a float64 array of shape (n, d), from an array or a DataFrame.

    A DataFrame is indexed by ``param_names`` (extra columns are ignored); a 1-D
    array of length d is one label vector. The input is never modified.

    Examples
    --------
    >>> as_label_array(pd.DataFrame({"b": [2.0], "a": [1.0]}), ("a", "b"))
    array([[1., 2.]])
    """
    d = len(param_names)
    if isinstance(theta, pd.DataFrame):
        missing = [p for p in param_names if p not in theta.columns]
        if missing:
            raise ValueError(f"labels DataFrame lacks column(s) {missing}")
        arr = theta.loc[:, list(param_names)].to_numpy(dtype=float)
    elif isinstance(theta, dict):
        arr = np.column_stack([np.atleast_1d(np.asarray(theta[p], float)) for p in param_names])
    else:
        arr = np.array(theta, dtype=float, copy=True)
        if arr.ndim == 1:
            arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(
            f"labels must have shape (n, {d}) for parameters {param_names}, got {arr.shape}"
        )
    check_finite(arr, "labels")
    return arr
