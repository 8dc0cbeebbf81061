"""``specreg grid build`` / ``specreg grid assemble`` command-line commands.

`add_build_parser` registers a ``grid`` subcommand with its own
sub-subcommands on an argparse ``subparsers`` object; each sets
``func=`` to a function taking the parsed Namespace.

Axis values are given as tokens, each either a number or an inclusive range
``START:STOP:STEP``; tokens can be mixed::

    specreg grid build --teff 4000:6000:250 --logg 1:5:0.5 --mh -2.5:0.75:0.25 \\
        --out gridbuild --jobs 2
    specreg grid build --teff 4500 4750 --logg 2.0 --mh 0 --alpha 0 0.4 --out small
    specreg grid assemble gridbuild --out grid.h5
    specreg grid build --response --out gridbuild/5d --jobs 2
    specreg grid assemble gridbuild/5d --out response.h5
"""

from __future__ import annotations

import argparse
import math
import re

__all__ = ["add_build_parser", "parse_axis"]


def parse_axis(tokens: list[str]) -> list[float]:
    """Parse axis tokens: numbers and inclusive ``START:STOP:STEP`` ranges.

    Parameters
    ----------
    tokens : list of str

    Returns
    -------
    list of float
        Sorted, distinct values (rounded to 6 decimals so that float
        accumulation in ranges does not create near-duplicates).

    Raises
    ------
    argparse.ArgumentTypeError
        On malformed tokens or a non-positive step.

    Examples
    --------
    >>> from specreg.grids._cli import parse_axis
    >>> parse_axis(["4000:4500:250"])
    [4000.0, 4250.0, 4500.0]
    >>> parse_axis(["0.4", "-0.2", "0"])
    [-0.2, 0.0, 0.4]
    """
    values: set[float] = set()
    for tok in tokens:
        try:
            if ":" in tok:
                start, stop, step = (float(x) for x in tok.split(":"))
                if step <= 0:
                    raise argparse.ArgumentTypeError(f"step must be > 0 in {tok!r}")
                n = int(math.floor((stop - start) / step + 1e-9)) + 1
                values.update(round(start + i * step, 6) for i in range(max(n, 0)))
            else:
                values.add(round(float(tok), 6))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad axis value {tok!r}: use numbers or START:STOP:STEP"
            ) from None
    if not values:
        raise argparse.ArgumentTypeError("empty axis")
    return sorted(values)


def _cmd_build(args: argparse.Namespace) -> int:
    from ._builder import build_grid

    if args.response:
        return _cmd_build_response(args)
    missing = [f"--{n}" for n in ("teff", "logg", "mh") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"grid build needs {', '.join(missing)} (or --response)")
    rep = build_grid(
        parse_axis(args.teff),
        parse_axis(args.logg),
        parse_axis(args.mh),
        parse_axis(args.alpha),
        parse_axis(args.carbon),
        out=args.out,
        jobs=args.jobs,
        cache_dir=args.cache,
        step=args.step,
        progress_bar=not args.no_progress,
    )
    print(
        f"{rep.n_done} computed, {rep.n_skipped} already present, {rep.n_failed} failed "
        f"(of {rep.n_total}); log: {rep.out / 'build.log'}"
    )
    return 1 if rep.n_failed else 0


def _cmd_build_response(args: argparse.Namespace) -> int:
    from ._response import build_response

    given = [f"--{n}" for n in ("teff", "logg", "mh") if getattr(args, n) is not None]
    if given or args.alpha != ["0"] or args.carbon != ["0"] or args.step != 0.05:
        raise ValueError(
            "--response builds the fixed design of the 5-D model (its axes and step are "
            f"part of it); drop {', '.join(given) or '--alpha/--carbon/--step'}"
        )
    rep = build_response(
        args.out,
        jobs=args.jobs,
        cache_dir=args.cache,
        max_nodes=args.max_spectra,
        verbose=not args.no_progress,
    )
    print(
        f"{rep['done']} computed, {rep['failed']} failed, {rep['pending']} still to do; "
        f"then: specreg grid assemble {args.out} --out response.h5"
    )
    return 1 if rep["failed"] else 0


def _is_response_build(build_dir) -> bool:
    import json
    from pathlib import Path

    record = Path(build_dir) / "build.json"
    return record.exists() and "log_ratio_scale" in json.loads(record.read_text())


def _cmd_assemble(args: argparse.Namespace) -> int:
    from ._assemble import assemble_grid

    if _is_response_build(args.build_dir):
        from ._response import assemble_response

        path = assemble_response(args.build_dir, args.out)
        print(f"wrote {path} (the 5-D response; load_grid('5d') reads the packaged one)")
        return 0
    path = assemble_grid(args.build_dir, args.out, resolution=args.resolution)
    print(f"wrote {path}")
    return 0


def add_build_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``grid build`` and ``grid assemble`` on argparse subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object returned by ``parser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The ``grid`` parser (its sub-subcommands set ``func=``, a callable
        taking the Namespace and returning an exit code).

    Examples
    --------
    >>> import argparse
    >>> from specreg.grids._cli import add_build_parser
    >>> parser = argparse.ArgumentParser(prog="specreg")
    >>> sub = parser.add_subparsers(dest="command")
    >>> _ = add_build_parser(sub)
    >>> ns = parser.parse_args(["grid", "assemble", "build_dir", "--out", "g.h5"])
    >>> ns.build_dir, ns.out
    ('build_dir', 'g.h5')
    """
    grid = subparsers.add_parser(
        "grid",
        help="build spectral grids with Turbospectrum + MARCS",
        description="Build spectral grids with Turbospectrum + MARCS (needs gfortran).",
    )
    grid_sub = grid.add_subparsers(dest="grid_command", metavar="{build,assemble}")
    grid_sub.required = True

    b = grid_sub.add_parser(
        "build",
        help="compute spectra on a parameter grid (resumable, parallel)",
        description=(
            "Compute Turbospectrum + MARCS spectra on a grid. Axis values are numbers "
            "and/or inclusive ranges START:STOP:STEP, e.g. --teff 4000:6000:250. "
            "Re-running with the same --out resumes: finished spectra are skipped."
        ),
    )
    # argparse reads "-2.5:0.75:0.25" as an option (only plain numbers count as
    # negative numbers); let negative ranges be values too, so --mh -2.5:0.75:0.25 works.
    b._negative_number_matcher = re.compile(r"^-\.?\d[\d.:eE+-]*$")
    b.add_argument("--teff", nargs="+", help="T_eff values (K)")
    b.add_argument("--logg", nargs="+", help="log g values (dex)")
    b.add_argument("--mh", nargs="+", help="[M/H] values (dex)")
    b.add_argument("--alpha", nargs="+", default=["0"], help="[alpha/M] values (default 0)")
    b.add_argument("--carbon", nargs="+", default=["0"], help="[C/M] values (default 0)")
    b.add_argument("--out", required=True, help="build directory (per-spectrum files, logs)")
    b.add_argument(
        "--jobs", type=int, default=None, help="parallel processes (default: all cores)"
    )
    b.add_argument("--step", type=float, default=0.05, help="synthesis step in Å (default 0.05)")
    b.add_argument("--cache", default=None, help="tool cache (default ~/.cache/specreg)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument(
        "--response",
        action="store_true",
        help="build the [alpha/M] x [C/M] response of the embedded 3-D grid, the 5-D "
        "model's design (2,375 spectra, about 3 h on 2 cores; no axis options)",
    )
    b.add_argument(
        "--max-spectra",
        type=int,
        default=None,
        help="with --response: stop after this many spectra (spread a build over days)",
    )
    b.set_defaults(func=_cmd_build)

    a = grid_sub.add_parser(
        "assemble",
        help="write the grid file (HDF5) from a build directory",
        description="Apply the LSF, resample to the 4096-pixel PFS MR-like grid, write HDF5.",
    )
    a.add_argument("build_dir", help="build directory from `grid build`")
    a.add_argument("--out", required=True, help="output grid file (.h5)")
    a.add_argument("--resolution", type=float, default=5000.0, help="LSF resolving power")
    a.set_defaults(func=_cmd_assemble)
    return grid
