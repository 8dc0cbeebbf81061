"""Build a grid of Turbospectrum + MARCS spectra: plan, run, resume, assemble.

Layout of a build directory ``DIR``::

    DIR/build.json          the settings of the build (checked on resume)
    DIR/build.log           one line per finished/failed spectrum, with ETA
    DIR/failures.log        JSON lines: node, error
    DIR/spectra/<node>.npz  one file per finished spectrum (raw bsyn output)

Every spectrum is written atomically (through ``specreg._atomic``: a
temporary file, flushed to disk, then renamed), so a killed build loses only
the spectra in flight, and re-running skips every
node whose file exists.  The raw 0.05 Å Turbospectrum output is kept (not the
degraded spectrum), so the LSF and pixel grid are applied by
`assemble_grid` and can be changed without re-running Turbospectrum.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_json_atomic
from ._labels import PARAM_NAMES  # imported from here by _response as well
from ._marcs import PLANE_PARALLEL_MIN_LOGG, SPHERICAL_MAX_LOGG

__all__ = [
    "Component",
    "NodePlan",
    "build_grid",
    "node_filename",
    "plan_node",
    "plan_grid",
    "pending_nodes",
]


@dataclass(frozen=True)
class Component:
    """One Turbospectrum run contributing to a node spectrum.

    Attributes
    ----------
    teff, logg, mh : float
        Parameters of the model atmosphere to use.
    geometry : {"spherical", "plane-parallel", "auto"}
        Geometry family to take the model from ("auto": the family of the
        node itself).
    weight : float
        Weight of this run in the node spectrum (weights sum to 1).
    """

    teff: float
    logg: float
    mh: float
    geometry: str = "auto"
    weight: float = 1.0


@dataclass(frozen=True)
class NodePlan:
    """How to compute the spectrum of one grid node.

    Attributes
    ----------
    params : tuple of float
        (T_eff, log g, [M/H], [alpha/M], [C/M]) of the node.
    components : tuple of Component
        Runs to combine linearly (two across the geometry switch).
    """

    params: tuple[float, float, float, float, float]
    components: tuple[Component, ...]

    @property
    def name(self) -> str:
        """File stem of the node (see `node_filename`)."""
        return node_filename(*self.params)


def node_filename(teff: float, logg: float, mh: float, am: float = 0.0, cm: float = 0.0) -> str:
    """Stem of the per-spectrum result file of a node.

    Parameters
    ----------
    teff, logg, mh, am, cm : float
        Node parameters.

    Returns
    -------
    str
        Rounded labels with explicit signs, safe as a file name.

    Examples
    --------
    >>> from specreg.grids import node_filename
    >>> node_filename(4500, 2.0, -0.25)
    't4500_g+2.000_m-0.250_a+0.000_c+0.000'
    """
    return f"t{teff:.0f}_g{logg:+.3f}_m{mh:+.3f}_a{am:+.3f}_c{cm:+.3f}"


def plan_node(
    teff: float,
    logg: float,
    mh: float,
    am: float = 0.0,
    cm: float = 0.0,
    *,
    sph_max: float = SPHERICAL_MAX_LOGG,
    pp_min: float = PLANE_PARALLEL_MIN_LOGG,
) -> NodePlan:
    """Plan the Turbospectrum runs for one node, handling the geometry switch.

    MARCS offers spherical models up to log g = ``sph_max`` and plane-parallel
    ones from ``pp_min``; the interpolator cannot mix them.  Inside the gap
    the node is synthesised at both edges (spherical at ``sph_max``,
    plane-parallel at ``pp_min``) and the spectra are interpolated linearly
    in log g.

    Parameters
    ----------
    teff, logg, mh, am, cm : float
        Node parameters.
    sph_max, pp_min : float, default `SPHERICAL_MAX_LOGG`, `PLANE_PARALLEL_MIN_LOGG`
        Geometry limits of the model set.

    Returns
    -------
    NodePlan
        The runs to synthesise and the weights that combine them.

    Examples
    --------
    >>> from specreg.grids import plan_node
    >>> p = plan_node(5000, 3.2, 0.0)
    >>> [(c.logg, c.geometry, round(c.weight, 2)) for c in p.components]
    [(3.0, 'spherical', 0.6), (3.5, 'plane-parallel', 0.4)]
    >>> len(plan_node(5000, 3.5, 0.0).components)
    1
    """
    params = (float(teff), float(logg), float(mh), float(am), float(cm))
    if sph_max < logg < pp_min:
        w_hi = (logg - sph_max) / (pp_min - sph_max)
        comps = (
            Component(teff, sph_max, mh, "spherical", 1.0 - w_hi),
            Component(teff, pp_min, mh, "plane-parallel", w_hi),
        )
    else:
        geom = "spherical" if logg <= sph_max else "plane-parallel"
        comps = (Component(teff, logg, mh, geom, 1.0),)
    return NodePlan(params, comps)


def plan_grid(
    teff: Sequence[float],
    logg: Sequence[float],
    mh: Sequence[float],
    alpha: Sequence[float] = (0.0,),
    carbon: Sequence[float] = (0.0,),
    tio_below_teff: float = 4500.0,
) -> list[NodePlan]:
    """Plan all nodes of a grid, most expensive first.

    Ordering longest-first (TiO nodes, then two-component geometry-switch
    nodes) keeps all workers busy until the end instead of leaving one slow
    spectrum running alone.

    Parameters
    ----------
    teff, logg, mh, alpha, carbon : sequence of float
        Axis values.
    tio_below_teff : float, default 4500
        T_eff below which TiO lines (slow) are included.

    Returns
    -------
    list of NodePlan

    Examples
    --------
    >>> from specreg.grids import plan_grid
    >>> plans = plan_grid([4000, 5000], [2.0, 4.5], [0.0])
    >>> [p.params[0] for p in plans]
    [4000.0, 4000.0, 5000.0, 5000.0]
    """
    plans = [
        plan_node(t, g, m, a, c)
        for t, g, m, a, c in itertools.product(teff, logg, mh, alpha, carbon)
    ]

    def cost(p: NodePlan) -> float:
        per_run = 13.0 if p.params[0] < tio_below_teff else 5.0
        return per_run * len(p.components)

    # Stable sort: equal-cost nodes keep the axis order.
    return sorted(plans, key=lambda p: -cost(p))


def pending_nodes(plans: Sequence[NodePlan], out: str | os.PathLike) -> list[NodePlan]:
    """Nodes of ``plans`` without a finished result file in ``out/spectra``.

    Parameters
    ----------
    plans : sequence of NodePlan
    out : path-like
        Build directory.

    Returns
    -------
    list of NodePlan

    Examples
    --------
    >>> from specreg.grids import plan_grid, pending_nodes
    >>> len(pending_nodes(plan_grid([5000], [2.0], [0.0]), "/nonexistent"))
    1
    """
    spec_dir = Path(out) / "spectra"
    return [p for p in plans if not (spec_dir / f"{p.name}.npz").exists()]


# --------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------

_WORKER_STATE: dict = {}


def _worker_init(cache_dir: str | None, settings: dict) -> None:
    # Runs once per worker process: provisioning is already done in the
    # parent, so this only resolves paths and opens the MARCS index.
    from ._marcs import MarcsLibrary
    from ._provision import provision
    from ._turbospectrum import SynthesisSettings

    tools = provision(cache_dir, verbose=False)
    _WORKER_STATE["tools"] = tools
    _WORKER_STATE["library"] = MarcsLibrary(tools.marcs_dir)
    _WORKER_STATE["settings"] = SynthesisSettings(**settings)


def synthesize_node(plan: NodePlan) -> dict:
    """Compute the raw spectrum of one planned node with Turbospectrum.

    Must run in a process initialised by the builder (or after
    ``_worker_init``).  Components are combined linearly in absolute flux
    and in continuum; the normalised spectrum is their ratio.

    Parameters
    ----------
    plan : NodePlan

    Returns
    -------
    result : dict
        ``flux``, ``continuum`` (float32, raw 0.05 Å sampling), ``wave0``,
        ``dwave``, ``n`` (the raw wavelength grid) and ``meta`` (models used,
        fallbacks, ξ, run time).

    Examples
    --------
    >>> from specreg.grids import plan_node
    >>> from specreg.grids._builder import synthesize_node, _worker_init
    >>> _worker_init(None, {})  # doctest: +SKIP
    >>> res = synthesize_node(plan_node(5000, 2.0, 0.0))  # doctest: +SKIP
    """
    from ._interpolate import get_model
    from ._turbospectrum import microturbulence, run_turbospectrum

    tools = _WORKER_STATE["tools"]
    lib = _WORKER_STATE["library"]
    settings = _WORKER_STATE["settings"]
    t0 = time.time()
    teff, logg, mh, am, cm = plan.params
    flux = cont = wave = None
    models = []
    for comp in plan.components:
        geometry = comp.geometry
        model, info = get_model(lib, tools, comp.teff, comp.logg, comp.mh, geometry)
        spec = run_turbospectrum(
            model.text,
            model.spherical,
            teff,
            comp.logg,
            mh,
            am,
            cm,
            tools=tools,
            settings=settings,
            marcs_format=model.marcs_format,
        )
        _validate(spec["flux"], spec["norm"], plan.name)
        c = spec["flux"] / spec["norm"]
        if flux is None:
            wave, flux, cont = spec["wave"], comp.weight * spec["flux"], comp.weight * c
        else:
            if spec["wave"].shape != wave.shape:
                raise RuntimeError("components have different wavelength grids")
            flux = flux + comp.weight * spec["flux"]
            cont = cont + comp.weight * c
        models.append({**info, "weight": comp.weight, "xi": microturbulence(comp.logg)})
    _validate(flux, flux / cont, plan.name)
    return {
        "flux": flux.astype(np.float32),
        "continuum": cont.astype(np.float32),
        "wave0": float(wave[0]),
        "dwave": float((wave[-1] - wave[0]) / (wave.size - 1)),
        "n": int(wave.size),
        "meta": {"params": list(plan.params), "models": models, "seconds": time.time() - t0},
    }


def _validate(flux: np.ndarray, norm: np.ndarray, name: str) -> None:
    # Never store NaN/inf or non-positive flux: they poison interpolation.
    if not (np.all(np.isfinite(flux)) and np.all(np.isfinite(norm))):
        raise ValueError(f"{name}: non-finite values in the spectrum")
    if np.any(flux <= 0) or np.any(norm <= 0):
        raise ValueError(f"{name}: non-positive values in the spectrum")


def _save_npz(path: Path, **arrays) -> None:
    """``np.savez_compressed`` to ``path``, atomically."""
    # an open file: savez would append ".npz" to the temporary file's name
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _save_result(path: Path, res: dict) -> None:
    _save_npz(
        path,
        flux=res["flux"],
        continuum=res["continuum"],
        wave0=res["wave0"],
        dwave=res["dwave"],
        n=res["n"],
        meta=json.dumps(res["meta"]),
    )


def _task(plan: NodePlan, synth: Callable[[NodePlan], dict]) -> tuple[str, dict | None, str]:
    try:
        return plan.name, synth(plan), ""
    except Exception as exc:
        return plan.name, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def _run_in_pool(
    plans: Sequence[NodePlan],
    handle: Callable[[str, dict | None, str], None],
    *,
    jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    settings: dict | None = None,
) -> None:
    """Synthesise ``plans`` with Turbospectrum in worker processes, in order.

    Each outcome of `_task` (name, result or None, error text) goes to
    ``handle`` in the parent as soon as it is ready. The tools must be
    provisioned already (`provision`); ``settings`` are those of
    `SynthesisSettings` (default `DEFAULT_SETTINGS`).
    """
    jobs = jobs or os.cpu_count() or 1
    cache = str(cache_dir) if cache_dir else None
    settings = dict(DEFAULT_SETTINGS if settings is None else settings)
    with ProcessPoolExecutor(
        max_workers=jobs, initializer=_worker_init, initargs=(cache, settings)
    ) as pool:
        # Keep only ~2 tasks per worker queued so that a killed run
        # leaves a clean state and the order stays as planned (longest first).
        it = iter(plans)
        running = {pool.submit(_task, p, synthesize_node) for p in itertools.islice(it, 2 * jobs)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                handle(*fut.result())
                nxt = next(it, None)
                if nxt is not None:
                    running.add(pool.submit(_task, nxt, synthesize_node))


@dataclass
class BuildReport:
    """Outcome of `build_grid`.

    Attributes
    ----------
    out : Path
        Build directory.
    n_total, n_done, n_skipped, n_failed : int
        Nodes in the plan, computed now, already present, failed now.
    failed : list of str
        Names of the nodes that failed in this run.
    """

    out: Path
    n_total: int
    n_done: int
    n_skipped: int
    n_failed: int
    failed: list[str] = field(default_factory=list)


#: Synthesis settings of `build_grid` by default (they are checked on resume).
DEFAULT_SETTINGS = {
    "step": 0.05,
    "lambda_min": 7100.0,
    "lambda_max": 8850.0,
    "tio_below_teff": 4500.0,
}


def build_grid(
    teff: Sequence[float],
    logg: Sequence[float],
    mh: Sequence[float],
    alpha: Sequence[float] = (0.0,),
    carbon: Sequence[float] = (0.0,),
    *,
    out: str | os.PathLike,
    jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    step: float = DEFAULT_SETTINGS["step"],
    lambda_min: float = DEFAULT_SETTINGS["lambda_min"],
    lambda_max: float = DEFAULT_SETTINGS["lambda_max"],
    tio_below_teff: float = DEFAULT_SETTINGS["tio_below_teff"],
    progress_bar: bool = True,
    progress: bool | None = None,
) -> BuildReport:
    """Compute Turbospectrum + MARCS spectra on a parameter grid (resumable).

    Each node gets one result file ``out/spectra/<node>.npz`` with the raw
    Turbospectrum flux and continuum (0.05 Å); re-running skips finished
    nodes.  Nodes run in parallel processes, most expensive first.  Every
    spectrum is validated (finite, positive) before it is stored; failures
    go to ``out/failures.log`` and do not stop the build.  Turn the result
    into a grid file with `assemble_grid`.

    Parameters
    ----------
    teff, logg, mh : sequence of float
        Axis values: T_eff (K), log g (dex), [M/H] (dex).
    alpha, carbon : sequence of float, default (0.0,)
        [alpha/M] and [C/M] axis values (synthesis only, the atmosphere is
        the scaled-solar MARCS model).
    out : path-like
        Build directory (created).
    jobs : int, optional
        Parallel processes; default ``os.cpu_count()``.
    cache_dir : path-like, optional
        Tool cache (see `provision`).
    step : float, default 0.05
        Turbospectrum wavelength step, Å.
    lambda_min, lambda_max : float, default 7100, 8850
        Synthesis range, Å.
    tio_below_teff : float, default 4500
        Include TiO lines below this T_eff only.
    progress_bar : bool, default True
        Show a tqdm progress bar.
    progress : bool, optional
        Deprecated old name of ``progress_bar``.

        .. deprecated:: 0.1
           ``progress`` was renamed ``progress_bar``; it will be removed in 0.3.

    Returns
    -------
    BuildReport

    Examples
    --------
    >>> from specreg.grids import build_grid, assemble_grid
    >>> build_grid([4500, 4750], [2.0], [0.0], out="mygrid")  # doctest: +SKIP
    >>> assemble_grid("mygrid", "mygrid.h5")  # doctest: +SKIP
    """
    from ..spectra._validation import renamed  # not at import: it loads scipy and pandas

    progress_bar = renamed(
        progress_bar, progress, old="progress", new="progress_bar", default=True
    )
    settings = {
        "step": step,
        "lambda_min": lambda_min,
        "lambda_max": lambda_max,
        "tio_below_teff": tio_below_teff,
    }
    axes = dict(zip(PARAM_NAMES, (teff, logg, mh, alpha, carbon)))
    return _build_grid(
        axes,
        out=out,
        jobs=jobs,
        cache_dir=cache_dir,
        settings=settings,
        progress_bar=progress_bar,
    )


def _build_grid(
    axes: dict[str, Sequence[float]],
    *,
    out: str | os.PathLike,
    jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    settings: dict | None = None,
    progress_bar: bool = False,
    synthesize: Callable[[NodePlan], dict] | None = None,
) -> BuildReport:
    """The work of `build_grid`, with a replacement synthesis (the tests' entry point).

    Parameters
    ----------
    axes : dict of str -> sequence of float
        Axis values by label of `PARAM_NAMES`; ``a_M`` and ``C_M`` default to
        ``(0.0,)``.
    out, jobs, cache_dir, progress_bar
        As in `build_grid`.
    settings : dict, optional
        ``step``, ``lambda_min``, ``lambda_max``, ``tio_below_teff``; missing
        ones from `DEFAULT_SETTINGS`.
    synthesize : callable, optional
        Replacement for the Turbospectrum synthesis (``NodePlan -> dict``, the
        keys of `synthesize_node`), run in-process and serially: the builder's
        bookkeeping (resume, logs, failures) without Turbospectrum.

    Returns
    -------
    BuildReport
        Counts of nodes computed, skipped and failed, and the output folder.

    Examples
    --------
    >>> from specreg.grids._builder import _build_grid
    >>> axes = {"T_eff": [5000], "log_g": [2.0], "M_H": [0.0]}
    >>> _build_grid(axes, out="d", synthesize=fake)  # doctest: +SKIP
    """
    out = Path(out)
    spec_dir = out / "spectra"
    spec_dir.mkdir(parents=True, exist_ok=True)
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    values = [axes.get(name, (0.0,)) for name in PARAM_NAMES]
    axes = {name: [float(v) for v in vals] for name, vals in zip(PARAM_NAMES, values)}
    _write_build_json(out, axes, settings)
    plans = plan_grid(*values, tio_below_teff=settings["tio_below_teff"])
    todo = pending_nodes(plans, out)
    n_skipped = len(plans) - len(todo)
    log = _Logger(out, len(plans), n_skipped, len(todo))
    log.line(f"start: {len(plans)} nodes, {n_skipped} already done, {len(todo)} to do")

    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plans), initial=n_skipped, unit="spec", smoothing=0.05)

    failed: list[str] = []
    n_done = 0

    def handle(name: str, res: dict | None, err: str) -> None:
        nonlocal n_done
        if res is None:
            failed.append(name)
            with open(out / "failures.log", "a") as fh:
                fh.write(json.dumps({"node": name, "error": err, "time": _now()}) + "\n")
            log.result(name, ok=False, detail=err.splitlines()[0] if err else "")
        else:
            _save_result(spec_dir / f"{name}.npz", res)
            n_done += 1
            log.result(name, ok=True, detail=f"{res['meta'].get('seconds', 0.0):.1f}s")
        if bar is not None:
            bar.update(1)

    if synthesize is not None:
        for plan in todo:
            handle(*_task(plan, synthesize))
    elif todo:
        from ._provision import provision

        provision(cache_dir)  # download/compile once, in the parent
        _run_in_pool(todo, handle, jobs=jobs, cache_dir=cache_dir, settings=settings)
    if bar is not None:
        bar.close()
    log.line(f"finished: {n_done} computed, {len(failed)} failed, {n_skipped} skipped")
    return BuildReport(out, len(plans), n_done, n_skipped, len(failed), failed)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_build_json(out: Path, axes: dict, settings: dict) -> None:
    path = out / "build.json"
    record = {"axes": axes, "settings": settings}
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("settings") != settings:
            raise ValueError(
                f"{out} was built with different settings {old.get('settings')}; "
                "use a new directory"
            )
        # Axes may grow between runs (extending a grid); keep the union.
        for k, v in axes.items():
            record["axes"][k] = sorted(set(old.get("axes", {}).get(k, [])) | set(v))
    record["created"] = _now()
    write_json_atomic(path, record)


class _Logger:
    """Append-only progress log with throughput and ETA."""

    def __init__(self, out: Path, total: int, skipped: int, todo: int) -> None:
        self.path = out / "build.log"
        self.total, self.todo = total, todo
        self.count = 0
        self.t0 = time.time()
        self.skipped = skipped

    def line(self, text: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{_now()} {text}\n")

    def result(self, name: str, ok: bool, detail: str) -> None:
        self.count += 1
        elapsed = time.time() - self.t0
        rate = self.count / elapsed if elapsed > 0 else 0.0
        left = self.todo - self.count
        eta = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(
            seconds=left / rate if rate > 0 else 0.0
        )
        self.line(
            f"{'ok  ' if ok else 'FAIL'} {name} {detail} "
            f"[{self.skipped + self.count}/{self.total}] "
            f"{rate * 60:.1f}/min ETA {eta:%H:%M}Z"
        )


def _asdict(plan: NodePlan) -> dict:
    return asdict(plan)
