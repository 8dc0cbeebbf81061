"""``specreg ceiling``: the ceiling table per magnitude, and its figure.

::

    specreg ceiling --mag 18 20 21.5 22 22.5 23 --n 2000 --out ceiling.png

For each magnitude, ``--n`` labels are drawn from the prior (uniform on the
grid box, as ``specreg simulate`` does), the spectra get PFS MR-like errors and
one noise draw, and the table reports the Bayes-optimal R2 (posterior mean on
the noisy spectra, with its Monte-Carlo error) next to the reference-style
Fisher numbers (median / p10 / p90 of pointwise R2_max, population, Schur
decay, sigma_min), all with Var(log g) of the evaluated labels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_ceiling_parser", "run_ceiling"]

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
    prior = LabelPrior(dict(grid.bounds), taper=args.taper) if args.taper else None
    ceiling = FisherCeiling(
        grid,
        prior=prior,
        n_draws=args.n_draws,
        random_state=args.seed,
        progress=not args.quiet,
    )
    table = ceiling.table(args.mag, n=args.n, random_state=args.seed)
    cols = [c for c in _COLUMNS if c in table and (c != "r2_van_trees" or args.taper)]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    reference = None
    if args.reference:
        reference = ceiling.reference_table(args.mag)
        print("\nreference procedure (grid nodes, central differences, Var of nodes, grid SNR):")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(reference.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.out:
        ax = plot_r2_vs_snr(None, table, reference=reference)
        for _, row in table.iterrows():
            ax.annotate(
                f"{row['mag']:g}",
                (row["snr"], row["r2_bayes"]),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
        ax.set_title(
            f"log g ceiling, {grid.metadata.get('name', 'grid')}, n={args.n} per mag", fontsize=9
        )
        ax.figure.tight_layout()
        ax.figure.savefig(args.out, dpi=150)
        print(f"wrote {args.out}")
    return 0 if np.all(np.isfinite(table["r2_bayes"])) else 1


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
    p.add_argument("--grid", type=Path, default=None, help="grid file (default: embedded)")
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
