"""split_stacked: the one validation of the stacked input [flux | error]."""

import re

import numpy as np
import pytest

from specreg.spectra import split_stacked
from specreg.spectra._validation import check_flux_error, check_int


def test_split_returns_views_and_never_writes():
    X = np.arange(8.0).reshape(2, 4) + 1
    before = X.copy()
    flux, error = split_stacked(X)
    assert np.shares_memory(flux, X) and flux.shape == error.shape == (2, 2)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize(
    "X, kw, match",
    [
        (np.ones(4), {}, "2-D"),
        (np.ones((2, 5)), {}, "odd width"),
        (np.ones((2, 6)), {"n_pix": 4}, "4 pixels are needed"),
        (np.array([[np.nan, 1.0, 0.1, 0.1]]), {}, r"flux half of X has 1 NaN .* \(0, 0\)"),
        (np.array([[1.0, 1.0, 0.1, np.inf]]), {}, r"error half of X has 1 NaN .* \(0, 1\)"),
        (np.array([[1.0, 1.0, 0.1, 0.0]]), {}, r"not > 0 at \(row, pixel\) \(0, 1\)"),
        (np.array([[1.0, 1.0, 0.1, -1.0]]), {"error_rule": "nonnegative"}, "not >= 0"),
        (np.ones((1, 4)), {"error_rule": "any"}, "error_rule"),
    ],
)
def test_bad_input_is_named(X, kw, match):
    with pytest.raises(ValueError, match=match):
        split_stacked(X, **kw)


def test_zero_errors_allowed_only_where_the_rule_says():
    X = np.array([[1.0, 1.0, 0.0, 0.1]])
    assert split_stacked(X, error_rule="nonnegative")[1][0, 0] == 0.0
    with pytest.raises(ValueError, match="> 0"):
        split_stacked(X)


def test_many_bad_pixels_are_counted_and_the_first_named():
    error = np.full((3, 10), 0.1)
    error[1, 2:9] = -1.0
    with pytest.raises(ValueError, match=r"7 value\(s\) .* \(1, 2\), \(1, 3\), \(1, 4\) \.\.\."):
        check_flux_error(np.ones((3, 10)), error)
    with pytest.raises(ValueError, match="differ in shape"):
        check_flux_error(np.ones((3, 10)), error[:2])


def test_renamed_compares_a_string_marker_by_value():
    import warnings

    from specreg.spectra._validation import renamed

    marker = "".join(["depre", "cated"])  # equal to the default, another object
    assert marker is not "deprecated"  # noqa: F632
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed(5, marker, old="grid", new="model", unset="deprecated") == 5


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_check_int_returns_a_python_int(value):
    out = check_int(value, "n")
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value, low, match",
    [
        (0, 1, "n must be a positive integer; got 0."),
        (2.0, 1, "n must be a positive integer; got 2.0."),
        (True, 0, "n must be an integer >= 0; got True."),
        ("4", 1, "n must be a positive integer; got '4'."),
        (None, 1, "n must be a positive integer; got None."),
        (-1, 0, "n must be an integer >= 0; got -1."),
        (7, 8, "n must be an integer >= 8; got 7."),
    ],
)
def test_check_int_refuses_what_it_would_have_to_round(value, low, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        check_int(value, "n", low=low)


@pytest.mark.parametrize("n_pix", [2.5, "2", 0])
def test_split_stacked_n_pix_is_a_count(n_pix):
    with pytest.raises(ValueError, match="n_pix must be a positive integer"):
        split_stacked(np.ones((2, 4)), n_pix=n_pix)
