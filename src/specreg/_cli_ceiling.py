"""``specreg ceiling``: the ceiling table per magnitude, and its figure.

::

    specreg ceiling --mag 18 20 21.5 22 22.5 23 --n 2000 --out ceiling.png

For each magnitude, ``--n`` labels are drawn from the prior (uniform on the
grid box, as ``specreg simulate`` does), the spectra get PFS MR-like errors and
one noise draw, and the table reports the Bayes-optimal R2 (posterior mean on
the noisy spectra, with its Monte-Carlo error) next to the reference-style
Fisher numbers (median / p10 / p90 of pointwise R2_max, population, Schur
decay, sigma_min), all with Var(log g) of the evaluated labels.

On a model with extra labels over a base grid (``--grid 5d``: the 3-D grid times
its [alpha/M] and [C/M] response), the table is computed on both and printed side
by side, as the reference study compared its 3-D and 5-D ceilings: the 3-D ceiling
knows [alpha/M] = [C/M] = 0, the 5-D one marginalises log g over them too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_ceiling_parser", "compare_tables", "run_ceiling"]

_COLUMNS = [
    "mag",
    "snr",
    "r2_bayes",
    "r2_bayes_mc_err",
    "r2_max_median",
    "r2_max_p10",
    "r2_max_p90",
    "r2_population",
    "r2_van_trees",
    "schur",
    "sigma_min",
    "ess_min",
]


def run_ceiling(args: argparse.Namespace) -> int:
    """Execute ``specreg ceiling`` from parsed arguments (prints the table, writes files)."""
    import numpy as np
    import pandas as pd

    from .bounds import FisherCeiling
    from .datasets import load_grid
    from .plotting import plot_r2_vs_snr
    from .spectra import LabelPrior

    if args.n < 2:
        raise ValueError(f"--n must be >= 2, got {args.n}")
    grid = load_grid(args.grid)

    def ceiling_table(model):
        prior = LabelPrior(dict(model.bounds), taper=args.taper) if args.taper else None
        ceiling = FisherCeiling(
            model,
            prior=prior,
            n_draws=args.n_draws,
            random_state=args.seed,
            progress=not args.quiet,
        )
        return ceiling, ceiling.table(args.mag, n=args.n, random_state=args.seed)

    ceiling, table = ceiling_table(grid)
    cols = [c for c in _COLUMNS if c in table and (c != "r2_van_trees" or args.taper)]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    base = getattr(grid, "base", None)
    side_by_side = None
    if base is not None and args.compare:
        _, base_table = ceiling_table(base)
        side_by_side = compare_tables(base_table, table, base.n_params, grid.n_params)
        print(
            f"\n{base.n_params}-D (other labels known, at 0) and {grid.n_params}-D "
            "(marginalised) side by side:"
        )
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(side_by_side.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    reference = None
    if args.reference:
        reference = ceiling.reference_table(args.mag)
        print("\nreference procedure (grid nodes, central differences, Var of nodes, grid SNR):")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(reference.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        (table if side_by_side is None else side_by_side).to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.out:
        ax = plot_r2_vs_snr(None, table, reference=reference)
        if side_by_side is not None:
            ax.plot(
                side_by_side["snr"],
                side_by_side[f"r2_bayes_{base.n_params}d"],
                "o--",
                color="0.5",
                label=f"Bayes ceiling, {base.n_params}-D",
            )
            ax.legend(fontsize=8, loc="lower right")
        for _, row in table.iterrows():
            ax.annotate(
                f"{row['mag']:g}",
                (row["snr"], row["r2_bayes"]),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
        source = "embedded" if args.grid in (None, "3d", "5d") else Path(args.grid).name
        ax.set_title(
            f"log g ceiling, {source} {grid.n_params}-D model, n={args.n} per mag", fontsize=9
        )
        ax.figure.tight_layout()
        ax.figure.savefig(args.out, dpi=150)
        print(f"wrote {args.out}")
    return 0 if np.all(np.isfinite(table["r2_bayes"])) else 1


def compare_tables(low, high, d_low: int, d_high: int):
    """Two ceiling tables (same magnitudes) side by side, with the relative change.

    Parameters
    ----------
    low, high : DataFrame
        :meth:`FisherCeiling.table` of the lower- and higher-dimensional model.
    d_low, d_high : int
        Their numbers of labels (the column suffixes).

    Returns
    -------
    DataFrame
        ``mag``, ``snr`` (of the higher-dimensional model's spectra), and per model
        ``r2_bayes``, ``r2_max_median`` and ``schur``; ``delta_r2_max`` is the
        reference's "5-D vs 3-D", ``high - low`` of the median R2_max (an absolute
        difference: the relative one is undefined where the lower one is 0).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"mag": [21.5], "snr": [7.0], "r2_bayes": [0.8],
    ...                   "r2_max_median": [0.9], "schur": [0.7]})
    >>> t5 = t.assign(r2_bayes=0.7, r2_max_median=0.81, schur=0.5)
    >>> compare_tables(t, t5, 3, 5)["delta_r2_max"].round(2).tolist()
    [-0.09]
    """
    import numpy as np

    if not np.allclose(low["mag"].to_numpy(), high["mag"].to_numpy()):
        raise ValueError("the two ceiling tables are for different magnitudes")
    out = high[["mag", "snr"]].copy()
    for name in ("r2_bayes", "r2_max_median", "schur"):
        out[f"{name}_{d_low}d"] = low[name].to_numpy()
        out[f"{name}_{d_high}d"] = high[name].to_numpy()
    out["delta_r2_max"] = high["r2_max_median"].to_numpy() - low["r2_max_median"].to_numpy()
    return out


class _DeprecatedAlias(argparse.Action):
    """An option kept under its old name: stores the value and warns (FutureWarning)."""

    def __call__(self, parser, namespace, values, option_string=None):
        import warnings

        new = "--" + self.dest.replace("_", "-")
        warnings.warn(
            f"{option_string} was renamed {new} in 0.1 and will be removed in 0.3",
            FutureWarning,
            stacklevel=2,
        )
        setattr(namespace, self.dest, values)


def _optional_path(text: str) -> Path | None:
    """A path, or None for an empty string ('' means: no figure)."""
    return Path(text) if text.strip() else None


def add_ceiling_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``ceiling`` sub-command on an argparse ``subparsers`` object.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser(); sub = p.add_subparsers()
    >>> _ = add_ceiling_parser(sub)
    >>> p.parse_args(["ceiling", "--mag", "20", "22"]).mag
    [20.0, 22.0]
    """
    p = subparsers.add_parser(
        "ceiling",
        help="Bayes-optimal and Fisher (CRLB) ceilings on log g per magnitude",
        description=(
            "Simulate spectra per magnitude from the grid and print the Bayes-optimal R2 "
            "(posterior mean) next to the reference-style Fisher/CRLB ceilings."
        ),
    )
    p.add_argument(
        "--mag",
        type=float,
        nargs="+",
        default=[18.0, 20.0, 21.5, 22.0, 22.5, 23.0],
        help="magnitudes (default 18 20 21.5 22 22.5 23)",
    )
    p.add_argument(
        "--grid",
        default=None,
        help="'3d' (default: the embedded grid), '5d' (the embedded 5-D model), or a "
        "grid or response file",
    )
    p.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="on a 5-D model, skip the 3-D ceiling printed beside it",
    )
    p.add_argument("--n", type=int, default=2000, help="spectra per magnitude (default 2000)")
    p.add_argument(
        "--n-draws", type=int, default=256, help="importance draws per spectrum (default 256)"
    )
    p.add_argument(
        "--n-samples",
        type=int,
        dest="n_draws",
        action=_DeprecatedAlias,
        help=argparse.SUPPRESS,  # the old name of --n-draws
    )
    p.add_argument(
        "--taper",
        type=float,
        default=0.0,
        help="cos^2 prior taper fraction; > 0 adds the van Trees bound",
    )
    p.add_argument(
        "--out",
        type=_optional_path,
        default=Path("ceiling.png"),
        help="figure path (default ceiling.png; '' for none)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="also print (and draw) the reference study's node-based Fisher procedure",
    )
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_ceiling)
    return p
