"""The [alpha/M] and [C/M] response around the 3-D grid: design, synthesis, storage.

The 5-D model is the 3-D grid times a response ``F(T, g, M, a, c) / F(T, g, M, 0, 0)``
computed with Turbospectrum on a coarser sub-grid of (T_eff, log g, [M/H]) nodes of the
3-D grid and a full (``a_M`` x ``C_M``) product at each of them. [alpha/M] and [C/M]
change the synthesis only (the atmosphere is the scaled-solar MARCS model), so the
response is smooth in T_eff, log g and [M/H] except where it is large (cool giants with
C/O approaching 1); the (a, c) product is complete because those two interact there
(CO formation locks carbon and oxygen together).

Layout of a response build directory ``DIR``::

    DIR/build.json                 design, synthesis settings and base-grid identity
    DIR/nodes/<node>.npz           int16 log-ratios (flux, continuum) to the 3-D node
    DIR/validation/<node>.npz      direct syntheses at random off-node labels (float32)
    DIR/failures.log               JSON lines: node, error

A node file holds ``log_ratio`` of shape (2, n_pix), ``round(ln(F / F_3d) / scale)``
as int16, and ``scale``: ``2**-15`` (a rounding error of 1.5e-5, far below the 1e-3
accuracy asked of the model) or, for the few responses too strong for that range
(carbon-rich cool giants), the smallest power of two that holds them, so a full build fits in about 30 MB and can be kept
under version control while it grows over several working days. Every file is
written atomically and a re-run skips finished nodes, so a killed build loses only
the spectra in flight.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._atomic import atomic_path, write_json_atomic
from ._builder import (
    DEFAULT_SETTINGS,
    PARAM_NAMES,
    NodePlan,
    _run_in_pool,
    _save_npz,
    node_filename,
    plan_node,
)
from ._lsf import degrade_to_grid

if TYPE_CHECKING:
    from ..spectra import ResponseGrid

__all__ = [
    "RESPONSE_AXES",
    "assemble_response",
    "build_response",
    "read_node",
    "read_response",
    "response_plan",
    "validation_labels",
]

RESPONSE_FORMAT = "specreg-response"
RESPONSE_SCHEMA_VERSION = 1

#: Sub-grid of the response: every (T_eff, log g, [M/H]) is a node of the 3-D grid.
RESPONSE_AXES: dict[str, tuple[float, ...]] = {
    "T_eff": (4000.0, 4500.0, 5000.0, 5500.0, 6000.0),
    "log_g": (1.0, 2.0, 3.0, 4.0, 5.0),
    "M_H": (-2.5, -1.5, -0.75, 0.0, 0.75),
    "a_M": (-0.2, 0.0, 0.4),
    "C_M": (-0.5, 0.0, 0.5),
}

#: What decides a node file's content; a resumed build must agree on all of it. The
#: design (which nodes) may change between runs: a node file is named by its labels.
_CONTENT_KEYS = ("settings", "log_ratio_scale", "base_grid", "lsf_resolution")

#: Quantisation step of the stored log-ratios.
LOG_RATIO_SCALE = 2.0**-15

#: Cells built (with their validation spectra) before the rest, so that the accuracy
#: of the design can be measured early: a warm dwarf-subgiant cell and a cool giant one.
EARLY_CELLS = (
    ((5000.0, 5500.0), (3.0, 4.0), (-0.75, 0.0)),
    ((4000.0, 4500.0), (1.0, 2.0), (-0.75, 0.0)),
)

#: The synthesis recipe: the 3-D grid's (the builder's defaults).
_SETTINGS = DEFAULT_SETTINGS


def _in_cell(params: Sequence[float], cell) -> bool:
    return all(lo <= v <= hi for v, (lo, hi) in zip(params[:3], cell))


def response_plan(axes: dict[str, Sequence[float]] | None = None) -> list[NodePlan]:
    """Nodes of the response sub-grid, early cells first, then most expensive first.

    The (T_eff, log g, [M/H], 0, 0) nodes are left out: they are nodes of the 3-D grid.

    Parameters
    ----------
    axes : dict, optional
        Axis values by label name; default `RESPONSE_AXES`.

    Returns
    -------
    list of NodePlan

    Examples
    --------
    >>> from specreg.grids._response import response_plan
    >>> len(response_plan())
    1000
    """
    axes = RESPONSE_AXES if axes is None else axes
    plans = [
        plan_node(*p)
        for p in itertools.product(*(axes[n] for n in PARAM_NAMES))
        if not (p[3] == 0.0 and p[4] == 0.0)
    ]

    def order(plan: NodePlan) -> tuple:
        early = next(
            (i for i, cell in enumerate(EARLY_CELLS) if _in_cell(plan.params, cell)),
            len(EARLY_CELLS),
        )
        cost = 13.0 if plan.params[0] < _SETTINGS["tio_below_teff"] else 5.0
        return (early, -cost * len(plan.components))

    return sorted(plans, key=order)


def validation_labels(n: int, seed: int, box: dict[str, tuple[float, float]]) -> np.ndarray:
    """Random labels, uniform in ``box``, rounded to what a node file name keeps.

    Parameters
    ----------
    n : int
        Number of labels.
    seed : int
        Seed of the generator.
    box : dict
        ``(low, high)`` per label of `PARAM_NAMES` (the five labels).

    Returns
    -------
    ndarray of shape (n, 5)

    Examples
    --------
    >>> from specreg.grids._response import validation_labels, RESPONSE_AXES
    >>> box = {k: (min(v), max(v)) for k, v in RESPONSE_AXES.items()}
    >>> validation_labels(3, 0, box).shape
    (3, 5)
    """
    rng = np.random.default_rng(seed)
    lo = np.array([box[k][0] for k in PARAM_NAMES])
    hi = np.array([box[k][1] for k in PARAM_NAMES])
    labels = lo + (hi - lo) * rng.random((n, 5))
    # the node file name keeps 0 decimals of T_eff and 3 of the rest
    return np.column_stack([np.round(labels[:, 0]), np.round(labels[:, 1:], 3)])


def _validation_plans(n_per_cell: int, n_box: int) -> list[NodePlan]:
    plans = []
    for i, cell in enumerate(EARLY_CELLS):
        box = dict(zip(PARAM_NAMES[:3], cell))
        box.update(a_M=(-0.2, 0.4), C_M=(-0.5, 0.5))
        plans += [plan_node(*p) for p in validation_labels(n_per_cell, 100 + i, box)]
    box = {k: (min(v), max(v)) for k, v in RESPONSE_AXES.items()}
    plans += [plan_node(*p) for p in validation_labels(n_box, 7, box)]
    return plans


#: Resolving power of the Gaussian LSF applied to every spectrum of the build.
LSF_RESOLUTION = 5000.0


def _degraded(res: dict, wave: np.ndarray) -> np.ndarray:
    """(flux, continuum) of a raw synthesis, through the LSF onto ``wave``: (2, n_pix)."""
    raw_wave = res["wave0"] + res["dwave"] * np.arange(res["n"])
    both = np.stack([res["flux"].astype(float), res["continuum"].astype(float)])
    return degrade_to_grid(raw_wave, both, wave, LSF_RESOLUTION)


def _compact(res: dict, base: np.ndarray, wave: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 log-ratios of the degraded (flux, continuum) to the 3-D node's, and their step.

    The step is `LOG_RATIO_SCALE` unless the response is too strong for it (a carbon-rich
    cool giant's C2 and CN bands): then the smallest power of two that holds it.
    """
    log_ratio = np.log(_degraded(res, wave) / base)
    if not np.all(np.isfinite(log_ratio)):
        raise ValueError("non-finite response")
    scale = LOG_RATIO_SCALE
    while np.abs(log_ratio).max() / scale > 32000:
        scale *= 2
        if scale > 2.0**-8:  # |ln ratio| > 125: not a spectrum of the same star
            raise ValueError("response outside the stored range (|ln ratio| > 125)")
    return np.round(log_ratio / scale).astype(np.int16), scale


def build_response(
    out: str | os.PathLike,
    *,
    jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_validation: tuple[int, int] = (8, 40),
    max_nodes: int | None = None,
    verbose: bool = True,
) -> dict:
    """Synthesise the missing response nodes and validation spectra (resumable).

    Parameters
    ----------
    out : path-like
        Build directory (created); see the module docstring for its layout.
    jobs : int, optional
        Parallel Turbospectrum processes; default ``os.cpu_count()``.
    cache_dir : path-like, optional
        Tool cache (see `provision`).
    n_validation : (int, int), default (8, 40)
        Direct syntheses at random labels: per early cell, and over the whole box.
    max_nodes : int, optional
        Stop after this many new spectra (to spread a build over sessions).
    verbose : bool, default True
        Print one line per spectrum (as `provision` prints one per step).

    Returns
    -------
    dict
        ``done``, ``failed``, ``pending`` counts.

    Examples
    --------
    >>> from specreg.grids._response import build_response
    >>> build_response("gridbuild/5d", jobs=2)  # doctest: +SKIP
    """
    from ..datasets import load_grid
    from ..datasets._grid_io import embedded_grid_path
    from ._provision import provision

    out = Path(out)
    record = {
        "axes": {k: list(v) for k, v in RESPONSE_AXES.items()},
        "settings": _SETTINGS,
        "log_ratio_scale": LOG_RATIO_SCALE,
        "base_grid": embedded_grid_path().name,
        "lsf_resolution": LSF_RESOLUTION,
    }
    path = out / "build.json"
    old = json.loads(path.read_text()) if path.exists() else None
    changed = [] if old is None else [k for k in _CONTENT_KEYS if old.get(k) != record[k]]
    if changed:
        raise ValueError(
            f"{out} holds a response build with other {', '.join(changed)}; use another --out"
        )
    if old != record:
        # a new build, or the same synthesis with another design: the finished node
        # files stay valid
        write_json_atomic(path, record)
    base = load_grid(normalize=False)
    wave = base.wave

    node_plans = [(p, "nodes") for p in response_plan()]
    val_plans = [(p, "validation") for p in _validation_plans(*n_validation)]
    n_cell = [sum(_in_cell(p.params, c) for p, _ in node_plans) for c in EARLY_CELLS]
    per_cell = n_validation[0]
    ordered = (
        node_plans[: n_cell[0]]
        + val_plans[:per_cell]
        + node_plans[n_cell[0] : n_cell[0] + n_cell[1]]
        + val_plans[per_cell : 2 * per_cell]
        + node_plans[n_cell[0] + n_cell[1] :]
        + val_plans[2 * per_cell :]
    )
    todo = [(p, kind) for p, kind in ordered if not (out / kind / f"{p.name}.npz").exists()]
    if max_nodes is not None:
        todo = todo[:max_nodes]
    kinds = {p.name: kind for p, kind in todo}
    t0, done, failed = time.time(), 0, 0

    def handle(name: str, res: dict | None, err: str) -> None:
        nonlocal done, failed
        if res is None:
            failed += 1
            with open(out / "failures.log", "a") as fh:
                fh.write(json.dumps({"node": name, "error": err}) + "\n")
            return
        params = np.array(res["meta"]["params"])
        meta = json.dumps(res["meta"])
        if kinds[name] == "nodes":
            theta = params[None, :3]
            ref = np.stack([base.flux(theta)[0], base.continuum(theta)[0]])
            try:
                log_ratio, scale = _compact(res, ref, wave)
            except ValueError as exc:  # logged like a failed synthesis; the build goes on
                return handle(name, None, f"{type(exc).__name__}: {exc}")
            _save_npz(out / "nodes" / f"{name}.npz", log_ratio=log_ratio, scale=scale, meta=meta)
        else:
            spec = _degraded(res, wave).astype(np.float32)
            _save_npz(out / "validation" / f"{name}.npz", spectrum=spec, meta=meta)
        done += 1
        if verbose:
            rate = done / (time.time() - t0)
            print(
                f"{kinds[name]:10s} {name} {res['meta']['seconds']:.1f}s "
                f"[{done}/{len(todo)}] {rate * 60:.1f}/min",
                flush=True,
            )

    if todo:
        provision(cache_dir, verbose=False)
        _run_in_pool(
            [p for p, _ in todo], handle, jobs=jobs, cache_dir=cache_dir, settings=_SETTINGS
        )
    n_all = len(ordered)
    n_have = sum((out / kind / f"{p.name}.npz").exists() for p, kind in ordered)
    return {"done": done, "failed": failed, "pending": n_all - n_have}


def read_node(path: str | os.PathLike, record: dict) -> tuple[np.ndarray, float]:
    """A node file's log-ratios (flux, continuum) and their quantisation step.

    Parameters
    ----------
    path : path-like
        ``DIR/nodes/<node>.npz``.
    record : dict
        The build's ``build.json``: its ``log_ratio_scale`` is the step of node
        files written before each file kept its own.

    Returns
    -------
    log_ratio : ndarray of shape (2, n_pix), float64
    step : float

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "n.npz"
    >>> np.savez(f, log_ratio=np.array([[2, -4], [0, 0]], np.int16))
    >>> read_node(f, {"log_ratio_scale": 0.5})[0][0].tolist()
    [1.0, -2.0]
    """
    with np.load(path) as d:
        step = float(d["scale"]) if "scale" in d else float(record["log_ratio_scale"])
        return d["log_ratio"].astype(np.float64) * step, step


def assemble_response(build_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the response file from a finished build directory (see `build_response`).

    Parameters
    ----------
    build_dir : path-like
        Build directory with ``build.json`` and ``nodes/``.
    path : path-like
        Output HDF5 file (written atomically).

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        If a node of the design has no spectrum yet (the file would have holes).

    Examples
    --------
    >>> from specreg.grids._response import assemble_response
    >>> assemble_response("gridbuild/5d", "response.h5")  # doctest: +SKIP
    PosixPath('response.h5')
    """
    import h5py

    build_dir = Path(build_dir)
    record = json.loads((build_dir / "build.json").read_text())
    axes = {k: np.asarray(record["axes"][k], float) for k in PARAM_NAMES}
    shape = tuple(a.size for a in axes.values())
    n_pix = None
    cube = None
    missing = []
    scales = {}
    for idx in np.ndindex(*shape):
        p = [float(axes[k][i]) for k, i in zip(PARAM_NAMES, idx)]
        if p[3] == 0.0 and p[4] == 0.0:
            continue  # the base grid's own node: ratio 1, stored as 0
        f = build_dir / "nodes" / f"{node_filename(*p)}.npz"
        if not f.exists():
            missing.append(f.stem)
            continue
        log_ratio, step = read_node(f, record)
        if cube is None:
            n_pix = log_ratio.shape[1]
            cube = np.zeros((*shape, 2, n_pix))
        cube[idx] = log_ratio
        scales[step] = scales.get(step, 0) + 1
    if missing:
        raise ValueError(
            f"{len(missing)} of {int(np.prod(shape)) - int(np.prod(shape[:3]))} response "
            f"nodes have no spectrum yet in {build_dir} (e.g. {missing[0]}); finish the "
            "build first (it resumes where it stopped)"
        )
    # one step for the file: the coarsest any node needed (a rounding error of at most
    # step / 2 in ln(ratio), 6e-5 at 2**-13, still far below the model's accuracy)
    step = max(scales)
    stored = np.round(cube / step).astype(np.int16)
    metadata = {
        "design": "3-D grid x response to [alpha/M] and [C/M] on a sub-grid of its nodes",
        "build": record,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = RESPONSE_FORMAT
        f.attrs["schema_version"] = RESPONSE_SCHEMA_VERSION
        f.attrs["param_names"] = list(PARAM_NAMES)
        f.attrs["log_ratio_scale"] = step
        f.attrs["base_grid"] = record["base_grid"]
        f.attrs["metadata"] = json.dumps(metadata)
        for name, values in axes.items():
            f.create_dataset(f"axes/{name}", data=values)
        f.create_dataset(
            "log_ratio",
            data=stored,
            chunks=(*(1,) * len(shape), 2, n_pix),
            compression="gzip",
            shuffle=True,
            fletcher32=True,
        )
    return Path(path)


def read_response(path: str | os.PathLike, base) -> ResponseGrid:
    """The 5-D model: ``base`` times the response stored in ``path``.

    Parameters
    ----------
    path : path-like
        A file written by `assemble_response`.
    base : SpectralGrid
        The 3-D grid the response was computed against, not normalised (absolute
        flux, with its continuum); normalise the result instead.

    Returns
    -------
    ResponseGrid
        A spectral model over the five labels, accepted wherever a grid is.

    Examples
    --------
    >>> from specreg.datasets import load_grid
    >>> model = load_grid("5d")
    """
    import h5py

    from ..spectra import ResponseGrid

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != RESPONSE_FORMAT:
            raise ValueError(f"{path} is not a specreg response file")
        version = int(f.attrs["schema_version"])
        if version > RESPONSE_SCHEMA_VERSION:
            raise ValueError(
                f"{path} has response schema {version}; this specreg reads up to "
                f"{RESPONSE_SCHEMA_VERSION}: upgrade specreg"
            )
        names = tuple(f.attrs["param_names"])
        axes = {n: f[f"axes/{n}"][()] for n in names}
        ratio = np.exp(f["log_ratio"][()].astype(np.float32) * float(f.attrs["log_ratio_scale"]))
        metadata = json.loads(f.attrs["metadata"])
    if "normalization" in base.metadata:
        raise ValueError("the base grid must not be normalised (load it with normalize=False)")
    return ResponseGrid(
        base,
        axes,
        ratio[..., 0, :],
        continuum_ratio=None if base.node_continuum is None else ratio[..., 1, :],
        metadata={"response": metadata},
    )


if __name__ == "__main__":  # pragma: no cover - a long build is run by hand
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m specreg.grids._response",
        description="Resume the 5-D response build (as `specreg grid build --response`).",
    )
    parser.add_argument("out", nargs="?", default="gridbuild/5d", help="build directory")
    parser.add_argument("--jobs", type=int, default=2, help="Turbospectrum processes")
    args = parser.parse_args()
    print(build_response(args.out, jobs=args.jobs))
