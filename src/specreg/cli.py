"""The ``specreg`` command: simulate spectra, build grids, ceilings, the benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._version import __version__
from .grids._labels import PARAM_NAMES

__all__ = ["main", "build_parser"]


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


#: Command-line options that narrow one label's range: option -> label name (the option
#: names are short spellings of `PARAM_NAMES`, in its order).
BOX_OPTIONS = dict(zip(("teff", "logg", "mh", "am", "cm"), PARAM_NAMES, strict=True))


def _add_box_options(parser: argparse.ArgumentParser) -> None:
    """``--teff LO HI`` ... ``--cm LO HI``: the label box to draw from (default: the grid's)."""
    for option, label in BOX_OPTIONS.items():
        parser.add_argument(
            f"--{option}",
            type=float,
            nargs=2,
            metavar=("LO", "HI"),
            default=None,
            # the labels after the first three are those of the 5-D grid only
            help=f"draw {label} in [LO, HI] (default: the grid's range"
            + ("; a 5-D grid only)" if label in PARAM_NAMES[3:] else ")"),
        )


def _box(args: argparse.Namespace, model) -> dict:
    """The ranges given on the command line, checked against the grid's labels."""
    box = {}
    for option, label in BOX_OPTIONS.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        if label not in model.param_names:
            raise ValueError(
                f"--{option} sets {label}, but the grid has no {label} (its labels are "
                f"{', '.join(model.param_names)}); use a grid with it, e.g. --grid 5d"
            )
        box[label] = (float(value[0]), float(value[1]))
    return box


def _simulate_job_key(args: argparse.Namespace) -> str:
    """What identifies a seeded sharded simulation: every setting that changes the spectra."""
    import hashlib
    import json

    job = {
        "version": __version__,
        "n": args.n,
        "grid": args.grid if args.grid in (None, "3d", "5d") else str(Path(args.grid).resolve()),
        "mag": list(args.mag),
        "noise": args.noise,
        "errors": args.errors,
        "snap": args.snap,
        "box": {o: getattr(args, o) for o in BOX_OPTIONS if getattr(args, o) is not None},
        "chunk_size": args.chunk_size,
        "shard_size": args.shard_size,
        "seed": args.seed,
    }
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


def _cmd_simulate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .datasets import iter_spectra, load_grid, write_shards, write_spectra
    from .spectra import LabelPrior

    if len(args.mag) not in (1, 2):
        raise ValueError(
            f"--mag takes one magnitude or a range LO HI, got {len(args.mag)} values {args.mag}"
        )
    grid = load_grid(args.grid)
    prior = LabelPrior.from_grid(grid, box=_box(args, grid), snap=args.snap)
    chunks = iter_spectra(
        args.n,
        model=grid,
        prior=prior,
        mag=tuple(args.mag) if len(args.mag) == 2 else args.mag[0],
        noisy=args.noise == "fixed",
        errors=args.errors,
        chunk_size=args.chunk_size,
        random_state=args.seed,
    )
    meta = {"command": " ".join(sys.argv), "seed": args.seed}
    key = _simulate_job_key(args) if args.shard_size and args.seed is not None else None
    if key is not None:
        from .datasets._io import resume_progress

        if args.out.is_dir() and (already := resume_progress(args.out, key)):
            print(
                f"specreg simulate: resuming an interrupted write: {already} of {args.n} "
                f"spectra are already in {args.out}",
                file=sys.stderr,
            )
    with tqdm(total=args.n, unit="spectra", disable=args.quiet, desc="simulate") as bar:
        if args.shard_size:
            write_shards(
                chunks,
                args.out,
                shard_size=args.shard_size,
                progress_callback=bar.update,
                resume_key=key,
                metadata=meta,
            )
        else:

            def counted():
                for chunk in chunks:
                    yield chunk
                    bar.update(len(chunk))

            write_spectra(counted(), args.out, metadata=meta)
    print(f"wrote {args.n} spectra to {args.out}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import PRESETS, run_benchmark
    from .datasets import load_grid

    grid = load_grid(PRESETS[args.preset].grid if args.grid is None else args.grid)
    run_benchmark(
        args.preset,
        args.out,
        model=grid,
        box=_box(args, grid),
        snap=args.snap,
        device=args.device,
        models=tuple(args.models),
        labels=tuple(args.labels),
        learning_curve=args.learning_curve,
        seed=args.seed,
        jobs=args.jobs,
        verbose=not args.quiet,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``specreg`` command.

    Examples
    --------
    >>> build_parser().parse_args(["simulate", "--n", "10", "--out", "a.h5"]).n
    10
    """
    parser = argparse.ArgumentParser(
        prog="specreg",
        description="Stellar parameters from 1-D spectra, and the noise-limited ceiling.",
    )
    parser.add_argument("--version", action="version", version=f"specreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser(
        "simulate",
        help="simulate spectra from a grid into an HDF5 file or a sharded directory",
        description="Draw labels, interpolate the grid, add PFS MR-like errors, write HDF5.",
    )
    sim.add_argument("--n", type=_int_at_least(1), required=True, help="number of spectra")
    sim.add_argument(
        "--out", type=Path, required=True, help="output .h5 file (or directory with --shard-size)"
    )
    sim.add_argument(
        "--mag",
        type=float,
        nargs="+",
        default=[20.5, 22.5],
        help="magnitude range LO HI, or one magnitude (default 20.5 22.5)",
    )
    sim.add_argument(
        "--noise", choices=["fixed"], default=None, help="store one fixed noise draw (test sets)"
    )
    sim.add_argument(
        "--errors",
        choices=["reference", "true"],
        default="reference",
        help="reported errors: 'reference' (magnitude and conditions only, the default) or "
        "'true' (the simulated noise itself: it leaks the labels, for leakage studies only)",
    )
    sim.add_argument(
        "--snap",
        action="store_true",
        help="snap all but one label per spectrum to grid nodes (reference sampling)",
    )
    _add_box_options(sim)
    sim.add_argument(
        "--grid", default=None, help="'5d', or a grid file (default: the embedded 3-D grid)"
    )
    sim.add_argument("--seed", type=int, default=None, help="random seed")
    sim.add_argument("--chunk-size", type=_int_at_least(1), default=8192, help="spectra per chunk")
    sim.add_argument(
        "--shard-size",
        type=_int_at_least(0),
        default=0,
        help="write a sharded directory with this many spectra per shard",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    bench = sub.add_parser(
        "benchmark",
        help="the main job: Ridge, LightGBM, template fit and SpecViT vs the ceiling",
        description="Simulate training and test sets from the grid, train every model, "
        "compute the Bayes-optimal ceiling for the test spectra, and write results.json, "
        "tables and figures. Finished stages in --out are reused.",
    )
    bench.add_argument(
        "--preset",
        choices=["smoke", "cpu", "reference", "paper"],
        default="cpu",
        help="smoke: ~20 s; cpu: ~15 min on 2 cores; reference: the cpu sizes with the "
        "reference study's sampling (5-D grid, snapped labels); paper: 1M spectra, GPU",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("specreg-benchmark"),
        help="output directory (default ./specreg-benchmark)",
    )
    bench.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="device of the ViT"
    )
    bench.add_argument(
        "--models",
        nargs="+",
        default=["ridge", "lightgbm", "template_fit", "vit"],
        choices=["ridge", "lightgbm", "template_fit", "vit"],
        help="models to run",
    )
    bench.add_argument(
        "--labels",
        nargs="+",
        default=["log_g"],
        metavar="LABEL",
        help="labels every model predicts and the ceiling is computed for, e.g. "
        "--labels T_eff log_g M_H (default: log_g)",
    )
    bench.add_argument(
        "--learning-curve",
        action="store_true",
        help="also train on growing subsets (R2 vs N figure)",
    )
    _add_box_options(bench)
    bench.add_argument(
        "--snap",
        action="store_true",
        default=None,
        help="snap all but one label per spectrum to grid nodes (the reference preset does)",
    )
    bench.add_argument(
        "--grid", default=None, help="'5d', or a grid file (default: the preset's, 3-D)"
    )
    bench.add_argument("--seed", type=int, default=0, help="seed of the sets and models")
    bench.add_argument(
        "--jobs",
        type=_int_at_least(1),
        default=None,
        help="LightGBM threads and template-fit workers (default: the cores this process may use)",
    )
    bench.add_argument("--quiet", action="store_true", help="print nothing but errors")
    bench.set_defaults(func=_cmd_benchmark)

    for register in _optional_registrations():
        register(sub)
    return parser


def _optional_registrations():
    """Sub-commands living next to their subpackages (imported lazily inside)."""
    import importlib

    for module, name in [
        ("specreg.grids._cli", "add_build_parser"),
        ("specreg._cli_ceiling", "add_ceiling_parser"),
    ]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a subpackage still being written
            if exc.name != module:
                raise
            continue
        yield getattr(mod, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``specreg`` console script.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    specreg 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, argparse.ArgumentTypeError) as exc:  # user errors: one line
        print(f"specreg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
