"""Input checks shared by the spectral models (clear errors naming the problem)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "as_generator",
    "as_label_array",
    "check_bool",
    "check_finite",
    "check_int",
    "check_model",
    "check_errors",
    "check_flux_error",
    "check_noise_model",
    "check_prior",
    "check_real",
    "check_seed",
    "is_integer",
    "check_target_y",
    "renamed",
    "resolve_target",
    "target_shaped",
    "split_stacked",
]


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


#: Rules for the error half of a stacked input: what each consumer can accept.
ERROR_RULES = {
    "positive": (lambda e: e > 0, "> 0"),
    "nonnegative": (lambda e: e >= 0, ">= 0"),
}


def _where(mask: np.ndarray, limit: int = 3) -> str:
    """``(row, pixel)`` pairs of the first ``limit`` True entries of a 2-D mask."""
    idx = np.argwhere(mask)[:limit]
    pairs = ", ".join(f"({int(r)}, {int(c)})" for r, c in idx)
    more = " ..." if int(mask.sum()) > limit else ""
    return f"(row, pixel) {pairs}{more}"


def split_stacked(
    X, *, n_pix: int | None = None, error_rule: str = "positive", name: str = "X"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the stacked model input ``X = [flux | error]`` and split it into halves.

    Every consumer of the stacked input (noise transformers, the template fit,
    the ViT, the bounds, the metrics) goes through this one function, so the
    checks and messages are the same everywhere.

    Parameters
    ----------
    X : array-like of shape (n, 2 * n_pix)
        Flux in the first half of the columns, 1-sigma errors in the second.
    n_pix : int, optional
        Pixels the consumer needs (e.g. the spectral model's); checked when given.
    error_rule : {"positive", "nonnegative"}, default="positive"
        ``"positive"`` for consumers that divide by the errors (chi-square weights,
        likelihoods, SNR); ``"nonnegative"`` for those that only scale noise by them.
    name : str, default="X"
        How the array is called in error messages.

    Returns
    -------
    flux, error : ndarrays of shape (n, n_pix)
        Views into ``X`` (never written to), in X's floating dtype.

    Raises
    ------
    ValueError
        Not 2-D, an odd width, a pixel count other than ``n_pix``, NaN or infinite
        values, or errors that break ``error_rule``; the message names the rows
        and pixels.

    Examples
    --------
    >>> import numpy as np
    >>> flux, error = split_stacked(np.array([[1.0, 2.0, 0.1, 0.2]]))
    >>> flux.tolist(), error.tolist()
    ([[1.0, 2.0]], [[0.1, 0.2]])
    >>> split_stacked(np.array([[1.0, 2.0, 0.1, 0.0]]))
    Traceback (most recent call last):
    ...
    ValueError: the error half of X has 1 value(s) that are not > 0 at (row, pixel) (0, 1); ...
    """
    if error_rule not in ERROR_RULES:
        raise ValueError(f"error_rule must be one of {sorted(ERROR_RULES)}, got {error_rule!r}")
    X = np.asarray(X)
    if X.dtype.kind not in "fc":
        X = X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [flux | error] of shape (n, 2 * n_pix), got {X.shape}"
        )
    width = X.shape[1]
    if width % 2:
        raise ValueError(
            f"{name} must be the stacked [flux | error] array with an even number of columns; "
            f"got {width} feature(s) (odd width)"
        )
    half = width // 2
    if n_pix is not None:
        n_pix = check_int(n_pix, "n_pix")
    if n_pix is not None and half != n_pix:
        raise ValueError(
            f"{name} has {width} columns, i.e. {half} pixels of flux and of error, but "
            f"{n_pix} pixels are needed (2 * {n_pix} columns)"
        )
    flux, error = X[:, :half], X[:, half:]
    check_flux_error(
        flux, error, error_rule=error_rule, names=(f"flux half of {name}", f"error half of {name}")
    )
    return flux, error


def check_flux_error(
    flux: np.ndarray,
    error: np.ndarray,
    *,
    error_rule: str = "positive",
    names: tuple[str, str] = ("flux", "error"),
) -> None:
    """Check separate flux and error arrays as :func:`split_stacked` checks the halves.

    Raises ``ValueError`` for differing shapes, NaN or infinite values and
    errors that break ``error_rule``, naming the rows and pixels.

    Examples
    --------
    >>> check_flux_error(np.ones((2, 3)), np.full((2, 3), 0.1))
    >>> check_flux_error(np.ones((1, 3)), np.array([[0.1, np.nan, 0.1]]))
    Traceback (most recent call last):
    ...
    ValueError: the error has 1 NaN or infinite value(s) at (row, pixel) (0, 1)
    """
    if error_rule not in ERROR_RULES:
        raise ValueError(f"error_rule must be one of {sorted(ERROR_RULES)}, got {error_rule!r}")
    if flux.shape != error.shape:
        raise ValueError(f"{names[0]} {flux.shape} and {names[1]} {error.shape} differ in shape")
    _check_all_finite(flux, names[0])
    check_errors(error, error_rule=error_rule, name=names[1])


def _check_all_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"the {name} has {int(bad.sum())} NaN or infinite value(s) at {_where(bad)}"
        )


def check_errors(error: np.ndarray, *, error_rule: str = "positive", name: str = "error") -> None:
    """Check a 2-D array of 1-sigma errors: finite and following ``error_rule``.

    The check :func:`check_flux_error` makes of its error array, for consumers that
    have errors without flux (e.g. Fisher matrices).

    Examples
    --------
    >>> check_errors(np.array([[0.1, 0.0]]))
    Traceback (most recent call last):
    ...
    ValueError: the error has 1 value(s) that are not > 0 at (row, pixel) (0, 1); 1-sigma errors must be > 0
    """
    if error_rule not in ERROR_RULES:
        raise ValueError(f"error_rule must be one of {sorted(ERROR_RULES)}, got {error_rule!r}")
    _check_all_finite(error, name)
    rule, text = ERROR_RULES[error_rule]
    bad = ~rule(error)
    if bad.any():
        raise ValueError(
            f"the {name} has {int(bad.sum())} value(s) that are not {text} at "
            f"{_where(bad)}; 1-sigma errors must be {text}"
        )


def check_seed(random_state, name: str = "random_state"):
    """:func:`sklearn.utils.check_random_state` with an error that names the parameter.

    Examples
    --------
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: random_state must be None, an int in [0, 2**32 - 1] or a RandomState; got -1
    """
    from sklearn.utils import check_random_state

    try:
        return check_random_state(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be None, an int in [0, 2**32 - 1] or a RandomState; got {random_state!r}"
        ) from exc


def as_generator(random_state, name: str = "random_state") -> np.random.Generator:
    """:func:`numpy.random.default_rng` with an error that names the parameter.

    Examples
    --------
    >>> as_generator(-1)
    Traceback (most recent call last):
    ...
    ValueError: random_state must be None, a non-negative int, a SeedSequence or a Generator; got -1
    """
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be None, a non-negative int, a SeedSequence or a Generator; "
            f"got {random_state!r}"
        ) from exc


def check_real(value, name: str, *, low=None, high=None, low_open: bool = False) -> None:
    """A finite real number in [low, high] (or (low, high] with low_open), or a named error.

    Examples
    --------
    >>> check_real(float("inf"), "noise_level", low=0)
    Traceback (most recent call last):
    ...
    ValueError: noise_level must be a finite number >= 0; got inf.
    """
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        rule = " and ".join(r for r in (lo, hi) if r)
        raise ValueError(f"{name} must be a finite number {rule}; got {value!r}.")


def check_bool(value, name: str) -> bool:
    """True or False (numpy's bool too), or a named error; never the truth of a string.

    Examples
    --------
    >>> check_bool(np.True_, "snap")
    True
    >>> check_bool("no", "snap")
    Traceback (most recent call last):
    ...
    ValueError: snap must be True or False; got 'no'.
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def is_integer(value) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), a bool not counting as one.

    Examples
    --------
    >>> is_integer(np.int64(3)), is_integer(3.0), is_integer(True)
    (True, False, False)
    """
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value, name: str, *, low: int = 1) -> int:
    """An integer >= ``low``, returned as a Python int, or a named error.

    Booleans, floats (even whole ones) and strings are refused rather than
    rounded: a silent ``int(2.5)`` would run something other than what was asked.

    Examples
    --------
    >>> check_int(np.int64(3), "batch_size")
    3
    >>> check_int(2.5, "bins")
    Traceback (most recent call last):
    ...
    ValueError: bins must be a positive integer; got 2.5.
    >>> check_int(1, "cv", low=2)
    Traceback (most recent call last):
    ...
    ValueError: cv must be an integer >= 2; got 1.
    """
    if not is_integer(value) or value < low:
        rule = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {rule}; got {value!r}.")
    return int(value)


def check_model(model, members=("param_names", "wave", "bounds", "flux"), name="model"):
    """Refuse an object lacking the :class:`SpectralModel` ``members`` its caller uses.

    Examples
    --------
    >>> check_model(np.ones(3), ("wave", "flux"))
    Traceback (most recent call last):
    ...
    TypeError: model must be a SpectralModel (...); ndarray has no wave, flux
    """
    missing = [a for a in members if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"{name} must be a SpectralModel (e.g. a SpectralGrid from load_grid); "
            f"{type(model).__name__} has no {', '.join(missing)}"
        )


def check_prior(prior, members=("param_names", "sample"), name="prior") -> None:
    """Refuse an object lacking the :class:`LabelPrior` ``members`` its caller uses.

    Examples
    --------
    >>> check_prior("uniform")
    Traceback (most recent call last):
    ...
    TypeError: prior must be a LabelPrior (or None), got str
    """
    if not all(hasattr(prior, a) for a in members):
        raise TypeError(f"{name} must be a LabelPrior (or None), got {type(prior).__name__}")


def check_noise_model(noise_model, name: str = "noise_model") -> None:
    """Refuse anything but a noise model that can recover the true noise (``true_error``).

    Examples
    --------
    >>> check_noise_model("pfs")
    Traceback (most recent call last):
    ...
    TypeError: noise_model must be a PFSNoiseModel (with true_error) or None; got str
    """
    if not hasattr(noise_model, "true_error"):
        raise TypeError(
            f"{name} must be a PFSNoiseModel (with true_error) or None; got "
            f"{type(noise_model).__name__}"
        )


def resolve_target(target, names: tuple[str, ...], *, name: str = "target") -> tuple[str, ...]:
    """The labels an estimator predicts, checked against the spectral model's.

    Parameters
    ----------
    target : str or sequence of str
        One label (predictions of shape (n,)) or several (shape (n, k)).
    names : tuple of str
        The spectral model's labels.
    name : str, default="target"
        The parameter's name in error messages.

    Returns
    -------
    tuple of str
        The target labels, in the order given.

    Raises
    ------
    ValueError
        An empty target, a repeated label, or a label the model lacks (the
        message names it and the model's labels).

    Examples
    --------
    >>> resolve_target(("log_g", "T_eff"), ("T_eff", "log_g", "M_H"))
    ('log_g', 'T_eff')
    """
    labels = (target,) if isinstance(target, str) else tuple(target)
    if not labels or not all(isinstance(t, str) for t in labels):
        raise ValueError(f"{name} must be a label name or a tuple of them; got {target!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{name}={labels} repeats a label")
    unknown = [t for t in labels if t not in names]
    if unknown:
        raise ValueError(
            f"{name} label(s) {unknown} are not labels of the spectral model, which has "
            f"{tuple(names)}"
        )
    return labels


def check_target_y(
    y, target, n_samples: int | None = None, names: tuple[str, ...] = ()
) -> np.ndarray:
    """``y`` as a float array matching ``target``: shape (n,) for one label, (n, k) for k.

    A DataFrame (or a named Series) must name exactly the target labels; its
    columns are reordered to ``target``. The input is never modified.

    Parameters
    ----------
    y : array-like of shape (n,) or (n, k), Series or DataFrame
    target : str or tuple of str
        As returned by :func:`resolve_target` (a 1-tuple or a str means one label).
    n_samples : int, optional
        Expected number of rows.
    names : tuple of str, optional
        The spectral model's labels: a Series named after another of them than
        the target is refused (a mixed-up column).

    Returns
    -------
    ndarray of shape (n,) or (n, k), float64

    Examples
    --------
    >>> import pandas as pd
    >>> y = pd.DataFrame({"M_H": [0.0], "log_g": [2.0]})
    >>> check_target_y(y, ("log_g", "M_H"))
    array([[2., 0.]])
    """
    labels = (target,) if isinstance(target, str) else tuple(target)
    k = len(labels)
    if isinstance(y, pd.DataFrame):
        columns = [str(c) for c in y.columns]
        if sorted(columns) != sorted(labels):
            raise ValueError(
                f"the columns of y {tuple(columns)} do not match target={labels}; name "
                "the columns after the target labels or pass target= for these columns"
            )
        arr = y.loc[:, list(labels)].to_numpy(dtype=float)
    else:
        if isinstance(y, pd.Series) and y.name is not None and k == 1:
            if str(y.name) != labels[0] and str(y.name) in names:
                raise ValueError(
                    f"y is the {y.name!r} column but target={labels[0]!r}; pass the "
                    f"{labels[0]!r} column or target={str(y.name)!r}"
                )
        arr = np.array(y, dtype=float, copy=True)
    if arr.ndim == 2 and arr.shape[1] == 1 and k == 1:
        arr = arr[:, 0]
    expected = "(n_samples,)" if k == 1 else f"(n_samples, {k})"
    if (k == 1 and arr.ndim != 1) or (k > 1 and (arr.ndim != 2 or arr.shape[1] != k)):
        raise ValueError(f"y must have shape {expected} for target={labels}; got {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(f"y has {arr.shape[0]} rows for {n_samples} spectra")
    check_finite(arr, "y")
    return arr if k > 1 else arr.reshape(-1)


def target_shaped(values: np.ndarray, target) -> np.ndarray:
    """Predictions of shape (n, k) as the target asks: (n,) for one label given as a str.

    The inverse of :func:`check_target_y`'s shaping: a tuple target, even of one
    label, keeps its label axis. Extra leading axes (e.g. quantile levels) are kept.

    Examples
    --------
    >>> target_shaped(np.zeros((4, 1)), "log_g").shape
    (4,)
    >>> target_shaped(np.zeros((4, 2)), ("T_eff", "log_g")).shape
    (4, 2)
    """
    return values[..., 0] if isinstance(target, str) else values


def renamed(
    value,
    old_value,
    *,
    old: str,
    new: str,
    default=None,
    unset=None,
    convert=None,
    stacklevel: int = 2,
):
    """The value of a renamed parameter: ``old_value``, with a FutureWarning, if it was set.

    scikit-learn's convention: the old name keeps working for two releases and
    warns. Setting both names is an error.

    Parameters
    ----------
    value
        The value passed under the new name ``new``.
    old_value
        The value passed under the old name ``old``; ``unset`` when not given.
    old, new : str
        The parameter's old and new names.
    default : object, default=None
        The new parameter's default: another ``value`` with ``old_value`` set is
        a conflict (``TypeError``).
    unset : object, default=None
        The old parameter's default (it means "not given").
    convert : callable, optional
        Turns an old value into the new parameter's value (when the meaning of
        the values changed with the name); it may raise ``ValueError``.
    stacklevel : int, default=2
        Of the warning, counted from the caller of this function (2: the
        caller's caller, the user's code).

    Returns
    -------
    object
        ``old_value`` (converted) if it was given, else ``value``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     renamed(None, 3, old="grid", new="model")
    3
    >>> print(w[0].message)
    'grid' was renamed 'model' in 0.1 and will be removed in 0.3; use model=3 instead
    """
    # by value for string markers: a pickled estimator's "deprecated" default is
    # another str object (a process-parallel cross_validate copies estimators)
    if old_value is unset or (isinstance(unset, str) and old_value == unset):
        return value
    if value is not default and value != default:
        raise TypeError(f"pass {new!r} only: {old!r} is its deprecated old name")
    if convert is not None:
        old_value = convert(old_value)
    import warnings

    warnings.warn(
        f"{old!r} was renamed {new!r} in 0.1 and will be removed in 0.3; "
        f"use {new}={old_value!r} instead",
        FutureWarning,
        stacklevel=stacklevel + 1,
    )
    return old_value
