"""Accuracy of the 5-D response design against direct syntheses at off-node labels.

For every validation spectrum of a response build (``gridbuild/5d/validation``) whose
enclosing response cell is complete, the model ``base(T, g, M) x response(T, g, M, a, c)``
is compared with the spectrum Turbospectrum gives at that label: the RMS of the
difference of the two median-normalised spectra. ``--a-nodes`` / ``--c-nodes`` evaluate
a coarser design from the same build (a subset of the nodes), which is how the design's
axis spacing was chosen. Writes ``benchmarks/results/response_accuracy.json``.

    python benchmarks/bench_response_accuracy.py gridbuild/5d
    python benchmarks/bench_response_accuracy.py gridbuild/5d --c-nodes -0.5 0 0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from specreg.datasets import load_grid
from specreg.grids._builder import node_filename
from specreg.grids._response import read_node
from specreg.spectra import SpectralGrid


def _bracket(nodes: np.ndarray, v: float) -> np.ndarray:
    i = int(np.clip(np.searchsorted(nodes, v, side="right") - 1, 0, nodes.size - 2))
    return nodes[i : i + 2]


def _cell_model(build: Path, axes: dict, label: np.ndarray, method: str):
    """The response SpectralGrid on the cell around ``label`` (None if incomplete)."""
    names = list(axes)
    record = json.loads((build / "build.json").read_text())
    cell = {n: _bracket(np.asarray(axes[n], float), v) for n, v in zip(names[:3], label)}
    cell.update({n: np.asarray(axes[n], float) for n in names[3:]})
    shape = tuple(a.size for a in cell.values())
    cube = None
    for idx in np.ndindex(*shape):
        p = [float(cell[n][i]) for n, i in zip(names, idx)]
        if p[3] == 0.0 and p[4] == 0.0:
            ratio = 1.0
        else:
            f = build / "nodes" / f"{node_filename(*p)}.npz"
            if not f.exists():
                return None
            ratio = np.exp(read_node(f, record)[0][0])
        if cube is None:
            cube = np.ones((*shape, np.size(ratio) if np.ndim(ratio) else 1))
        cube[idx] = ratio
    return SpectralGrid(cell, cube, np.arange(cube.shape[-1], dtype=float), method=method)


def _norm_rms(model: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((model / np.median(model) - truth / np.median(truth)) ** 2)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("--a-nodes", type=float, nargs="+")
    parser.add_argument("--c-nodes", type=float, nargs="+")
    parser.add_argument("--method", choices=("linear", "cubic"), default="linear")
    parser.add_argument(
        "--model",
        help="evaluate this model instead (e.g. 5d: the shipped one; not with --a/c-nodes)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/response_accuracy.json")
    )
    args = parser.parse_args(argv)
    record = json.loads((args.build / "build.json").read_text())
    axes = dict(record["axes"])
    if args.a_nodes:
        axes["a_M"] = sorted(args.a_nodes)
    if args.c_nodes:
        axes["C_M"] = sorted(args.c_nodes)
    base = load_grid(normalize=False)
    shipped = load_grid(args.model, normalize=False) if args.model else None
    from specreg.grids._response import RESPONSE_AXES, validation_labels

    box = {k: (min(v), max(v)) for k, v in RESPONSE_AXES.items()}
    uniform = validation_labels(40, 7, box)  # the build's 40 labels uniform over the box
    rows = []
    for f in sorted((args.build / "validation").glob("*.npz")):
        with np.load(f) as d:
            truth = d["spectrum"][0].astype(float)
            label = np.array(json.loads(str(d["meta"]))["params"], float)
        flux3 = base.flux(label[None, :3])[0].astype(float)
        if shipped is not None:
            model = shipped.flux(label[None])[0].astype(float)
        else:
            grid = _cell_model(args.build, axes, label, args.method)
            if grid is None:
                continue
            model = flux3 * grid.flux(label[None])[0]
        rows.append(
            {
                "label": label.tolist(),
                "rms_model": _norm_rms(model, truth),
                "rms_ignoring": _norm_rms(flux3, truth),
                "uniform_over_box": bool(np.isclose(uniform, label).all(axis=1).any()),
            }
        )
    rms = np.array([r["rms_model"] for r in rows])
    ign = np.array([r["rms_ignoring"] for r in rows])
    summary = {
        "n": len(rows),
        "axes": axes,
        "method": args.method,
        "rms_model_median": float(np.median(rms)) if rows else None,
        "rms_model_p90": float(np.percentile(rms, 90)) if rows else None,
        "rms_model_max": float(rms.max()) if rows else None,
        "rms_ignoring_median": float(np.median(ign)) if rows else None,
        "rms_ignoring_p90": float(np.percentile(ign, 90)) if rows else None,
    }
    sel = np.array([r["uniform_over_box"] for r in rows], dtype=bool)
    if sel.any():
        summary["uniform_over_box"] = {
            "n": int(sel.sum()),
            "rms_model_median": float(np.median(rms[sel])),
            "rms_model_p90": float(np.percentile(rms[sel], 90)),
            "rms_ignoring_median": float(np.median(ign[sel])),
            "rms_ignoring_p90": float(np.percentile(ign[sel], 90)),
        }
    summary["model"] = args.model or "cell models from the build's node files"
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "spectra": rows}, indent=1))
    return summary


if __name__ == "__main__":
    main()
