"""Model atmospheres for any (T_eff, log g, [M/H]): node, stand-in or interpolated.

`get_model` takes the node's own MARCS model when the shipped set has one,
borrows the nearest [M/H] at a hole, and otherwise interpolates with
Masseron's ``interpol_modeles`` (`interpolate_model`).  This module sits on
top of `_marcs` (the library of shipped models), never the other way round.

The interpolator takes the 8 corner models of a (T_eff, log g, [M/H]) cell,
all of one geometry, and writes a model in Turbospectrum's own format
(``'MARCS-FILE:' '.false.'``).  Known traps, handled here:

* it returns NaN when the target sits exactly on the *lower* bracket node, so
  a target on a node value is placed at the *upper* end of its bracket, and
  failing that nudged by 0.001;
* a corner may be missing (a hole): the cell is shifted by one step in
  [M/H] (mild extrapolation);
* some cells still give NaN (e.g. 6000-6250 K, log g 1.5-2, [M/H] 0.75-1):
  we detect it and fall back to the nearest node model, recording that.
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ._marcs import MarcsLibrary, MarcsModel, geometry_of

__all__ = ["bracket", "get_model", "interpolate_model"]


def bracket(values: np.ndarray, x: float) -> list[tuple[float, float]]:
    """Candidate bracketing pairs of grid ``values`` around ``x``, best first.

    A value equal to a grid node is put at the upper end of its pair (the
    interpolator fails at the lower end); outside the range the nearest end
    pair is used (extrapolation).

    Parameters
    ----------
    values : ndarray
        Sorted distinct grid values.
    x : float
        Target.

    Returns
    -------
    list of (lo, hi)
        Non-degenerate pairs: the natural bracket, then its neighbours.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.grids._interpolate import bracket
    >>> bracket(np.array([1.0, 2.0, 3.0, 4.0]), 2.5)[0]
    (2.0, 3.0)
    >>> bracket(np.array([1.0, 2.0, 3.0, 4.0]), 2.0)[0]
    (1.0, 2.0)
    >>> bracket(np.array([1.0, 2.0, 3.0, 4.0]), 1.0)[0]
    (1.0, 2.0)
    """
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return []
    # index of the pair (v[i], v[i+1]) with v[i] < x <= v[i+1]
    i = int(np.searchsorted(v, x - 1e-9)) - 1
    i = min(max(i, 0), v.size - 2)
    order = [i, i - 1, i + 1]
    return [(float(v[j]), float(v[j + 1])) for j in order if 0 <= j <= v.size - 2]


def _run_interpolator(
    tools, corners: list[MarcsModel], teff: float, logg: float, mh: float
) -> str | None:
    """Run interpol_modeles; return the model text, or None on NaN/failure."""
    with tempfile.TemporaryDirectory(prefix="specreg_interp_") as tmp:
        tmp = Path(tmp)
        names = []
        for k, model in enumerate(corners):
            p = tmp / f"m{k}.mod"
            p.write_text(model.text)
            names.append(p.name)
        stdin = (
            "".join(f"'{n}'\n" for n in names)
            + "'out.mod'\n'out.alt'\n"
            + f"{teff:.3f}\n{logg:.4f}\n{mh:.4f}\n.false.\n.false.\n''\n"
        )
        proc = subprocess.run(
            [str(tools.interpolator)],
            input=stdin,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = tmp / "out.mod"
        if proc.returncode != 0 or not out.exists():
            return None
        text = out.read_text()
    body = text.splitlines()[1:]
    if not body or "nan" in text.lower() or "*" in "".join(body[:-1]):
        return None  # NaN, or a Fortran field overflow (also garbage)
    return text


def interpolate_model(
    library: MarcsLibrary,
    tools,
    teff: float,
    logg: float,
    mh: float,
    geometry: str = "auto",
) -> tuple[MarcsModel, dict]:
    """Interpolate a MARCS model at (T_eff, log g, [M/H]).

    Parameters
    ----------
    library : MarcsLibrary
    tools : Toolchain
        Needs ``tools.interpolator``.
    teff, logg, mh : float
        Target parameters.
    geometry : {"auto", "spherical", "plane-parallel"}
        "auto" picks the geometry of the shipped models at ``logg``
        (`geometry_of`); inside the gap between the spherical and the
        plane-parallel models it must be given (see `plan_node`).

    Returns
    -------
    model : MarcsModel
        ``text`` in Turbospectrum format (``name`` starts with
        ``"INTERPOL"``), or the nearest node model after a fallback.
    info : dict
        ``source`` ("interpolated" or "nearest-node"), corner models,
        the target actually used (after a nudge) and any fallback reason.

    Raises
    ------
    ValueError
        If ``geometry="auto"`` inside the geometry gap.

    Examples
    --------
    >>> m, info = interpolate_model(lib, tools, 5100, 2.2, -0.6)  # doctest: +SKIP
    >>> info["source"]  # doctest: +SKIP
    'interpolated'
    """
    if geometry == "auto":
        geometry = geometry_of(logg)
        if geometry is None:
            raise ValueError(
                f"log g = {logg} lies between the spherical and the plane-parallel MARCS "
                "models: choose a geometry (see plan_node)"
            )
    slots = library.slots
    # Only slots of the wanted geometry can be corners (the interpolator stops
    # on mixed geometries).  Geometry is a function of log g in this set.
    slots = slots[np.array([geometry_of(g) == geometry for g in slots[:, 1]], dtype=bool)]
    have = {tuple(np.round(s, 2)) for s in slots}
    t_vals, g_vals, m_vals = (np.unique(slots[:, i]) for i in range(3))
    tried = []
    for (t0, t1), (g0, g1), (m0, m1) in itertools.product(
        bracket(t_vals, teff), bracket(g_vals, logg), bracket(m_vals, mh)
    ):
        corners_p = [(t, g, m) for t, g, m in itertools.product((t0, t1), (g0, g1), (m0, m1))]
        if not all(tuple(np.round(c, 2)) in have for c in corners_p):
            continue  # a hole: try the neighbouring cell
        corners = [library.get(*c) for c in corners_p]
        for dt, dg, dm in ((0, 0, 0), (0.001, 0.001, 0.001), (-0.001, -0.001, -0.001)):
            target = (teff + dt, logg + dg, mh + dm)
            tried.append({"cell": [t0, t1, g0, g1, m0, m1], "target": target})
            text = _run_interpolator(tools, corners, *target)
            if text is not None:
                name = f"INTERPOL t{teff:.1f} g{logg:.3f} m{mh:.3f} ({geometry})"
                model = MarcsModel(
                    slot=name,
                    name=name,
                    text=text,
                    filled=False,
                    geometry=geometry,
                    marcs_format=False,
                )
                return model, {
                    "source": "interpolated",
                    "model": name,
                    "corners": [c.name for c in corners],
                    "target": list(target),
                }
        if len(tried) >= 9:
            break
    # Last resort: nearest node model of the right geometry (scaled distance).
    scale = np.array([250.0, 0.5, 0.25])
    d = np.abs((slots - np.array([teff, logg, mh])) / scale).sum(axis=1)
    t, g, m = slots[int(np.argmin(d))]
    model = library.get(t, g, m)
    return model, {
        "source": "nearest-node",
        "model": model.name,
        "reason": "interpolation returned NaN or no complete cell",
        "tried": tried,
    }


def get_model(
    library: MarcsLibrary,
    tools,
    teff: float,
    logg: float,
    mh: float,
    geometry: str = "auto",
) -> tuple[MarcsModel, dict]:
    """Model atmosphere for (T_eff, log g, [M/H]) with hole handling.

    Uses the slot's own model when the index has one of the requested
    geometry; a hole (missing slot) borrows the nearest [M/H] at the same
    T_eff and log g; off-grid parameters are interpolated (see
    `interpolate_model`).

    Parameters
    ----------
    library : MarcsLibrary
    tools : Toolchain
        For the interpolator executable.
    teff, logg, mh : float
    geometry : {"auto", "spherical", "plane-parallel"}
        Required geometry family ("auto": whatever the slot has).

    Returns
    -------
    model : MarcsModel
    info : dict
        How the model was obtained: ``source`` ("node", "filled",
        "borrowed-mh", "interpolated"), ``model`` (name) and details.

    Examples
    --------
    >>> model, info = get_model(lib, tools, 5000, 2.0, 0.0)  # doctest: +SKIP
    >>> info["source"]  # doctest: +SKIP
    'node'
    """
    want_sph = {"spherical": True, "plane-parallel": False}.get(geometry)
    if library.has(teff, logg, mh):
        model = library.get(teff, logg, mh)
        if want_sph is None or model.spherical == want_sph:
            source = "filled" if model.filled else "node"
            return model, {"source": source, "model": model.name, "slot": model.slot}
    node_t = np.isin(round(float(teff), 1), library.axis_values()["teff"])
    node_g = np.isin(round(float(logg), 2), library.axis_values()["logg"])
    if node_t and node_g:
        # A hole in [M/H] at an existing (T_eff, log g): borrow the nearest
        # [M/H] model of the right geometry (abundances still follow the
        # node's own [M/H] in the synthesis).
        mhs = [s[2] for s in library.slots if abs(s[0] - teff) < 0.05 and abs(s[1] - logg) < 0.005]
        for cand in sorted(mhs, key=lambda v: (abs(v - mh), v)):
            model = library.get(teff, logg, cand)
            if want_sph is None or model.spherical == want_sph:
                return model, {
                    "source": "borrowed-mh",
                    "model": model.name,
                    "slot": model.slot,
                    "borrowed_mh": float(cand),
                }
    return interpolate_model(library, tools, teff, logg, mh, geometry)
