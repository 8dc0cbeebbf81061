"""The Bayes ceiling under the snapped prior: the exact posterior by enumeration and quadrature.

``LabelPrior(snap_to=...)`` draws a free label ``j`` uniformly among the ``d``
labels, every label from its continuous prior, then replaces each label but
``j`` by its nearest node. The prior is a mixture over ``j`` of a density in
label ``j`` times point masses in the others: node ``n`` of label ``k`` weighs
the prior mass of its Voronoi cell (clipped to the box). Its posterior lives on
*lines*: label ``j`` free, the others on a combination ``c`` of nodes. The
posterior weight of a line is ``(1/d) prod_k pi_k(c_k) int p_j(t) L(c, t) dt``.

Per spectrum:

1. **screening**: chi^2 (reported errors) of the spectrum against the model at
   every node of the snapped grid (matrix products); a line scores the best
   log-likelihood of its nodes plus its log prior weight. Lines within a margin
   of the best score are kept; the margin adds, per free label, the most the
   likelihood can rise between two nodes (from the curvature of chi^2 along that
   label at the best node), and is widened until no kept line rises more. The
   nodes can hide a line whose likelihood peaks sharply between them ([C/M] in a
   cool giant at SNR ~10 is a few hundredths of a dex wide, its nodes 0.5 dex
   apart), so the lines through the nodes around the maximum-likelihood labels
   (free in every label, from the best point so far) are added, evaluated at the
   fit's value of their free label, and widen the margin in turn;
2. **quadrature**: the exact log-likelihood (the generator's noise) along each
   kept line, on the nodes of the free label and the midpoints, then adaptive
   bisection (Simpson's rule on each cell) wherever the log-likelihood is not yet
   linear to 0.1 within a cell and the cell can hold non-negligible mass;
3. **summary**: the mixture's moments, quantiles and PIT (point masses at the
   nodes of the snapped labels, a piecewise-linear CDF along the free ones).

The result is deterministic: ``mean_se`` and ``var_se`` estimate the quadrature
error (Simpson's rule against the trapezoid rule on the same nodes), ``ess`` is
the effective number of quadrature cells carrying the posterior and ``n_draws``
the number of likelihood evaluations.
"""

from __future__ import annotations

import itertools
from functools import cached_property

import numpy as np

# a kept line reaches within this of the best line (log-likelihood units, beyond the rise
# the likelihood can make between nodes): a dropped line weighs < e^-10 of the best
_SCREEN_MARGIN = 10.0
# cells whose log-likelihood stays this far below the spectrum's best are not refined
# (their mass, < e^-20 of the peak's, is still counted)
_NEGLIGIBLE = 20.0
# a cell is resolved when its midpoint's log-likelihood is within this of linear
_LINEAR_TOL = 0.1
_MAX_DEPTH = 40


def _gauss_legendre_mass(logpdf, lo: float, hi: float, n: int = 64) -> float:
    """Integral of ``exp(logpdf)`` over [lo, hi] (Gauss-Legendre)."""
    if hi <= lo:
        return 0.0
    x, w = np.polynomial.legendre.leggauss(n)
    t = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
    return float(0.5 * (hi - lo) * np.sum(w * np.exp(logpdf(t))))


class _SnapStructure:
    """The snapped prior in the model's label order: nodes, node weights, lines.

    Parameters
    ----------
    problem : _Problem
        With a prior that has ``snap_to``.
    """

    def __init__(self, problem):
        from ..spectra import LabelPrior

        prior, model = problem.prior, problem.model
        self.problem = problem
        self.d = problem.d
        self.nodes, self.log_w, self.free_priors = [], [], []
        for k, name in enumerate(problem.names):
            lo, hi = float(problem.lo[k]), float(problem.hi[k])
            # the continuous prior of this label alone (its taper included)
            self.free_priors.append(LabelPrior({name: (lo, hi)}, taper=prior.taper))

            def logpdf(t, k=k):
                return self.log_density(k, t)

            nodes = np.asarray(prior.snap_to[name], dtype=float)
            # Voronoi cells of the nodes (ties go to the lower node, as in the sampler)
            edges = np.r_[-np.inf, 0.5 * (nodes[1:] + nodes[:-1]), np.inf]
            mass = np.array(
                [
                    _gauss_legendre_mass(logpdf, max(a, lo), min(b, hi))
                    for a, b in zip(edges[:-1], edges[1:])
                ]
            )
            keep = mass > 0
            nodes, mass = nodes[keep], mass[keep] / mass[keep].sum()
            mlo, mhi = model.bounds[name]
            if nodes[0] < mlo - 1e-9 or nodes[-1] > mhi + 1e-9:
                raise ValueError(
                    f"the snapped prior puts labels {name} on nodes outside the model's box "
                    f"[{mlo:g}, {mhi:g}]: {nodes[(nodes < mlo) | (nodes > mhi)]}"
                )
            self.nodes.append(nodes)
            self.log_w.append(np.log(mass))
        self.shape = tuple(n.size for n in self.nodes)
        # the largest gap between successive level-0 points of each free label
        self.spacing = [float(np.max(np.diff(self.free_breaks(j)))) for j in range(self.d)]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("templates", None)  # a cache (up to ~170 MB), rebuilt on first use
        return state

    def log_density(self, k: int, t) -> np.ndarray:
        """Log prior density of label ``k`` alone at values ``t`` (its free density)."""
        return self.free_priors[k].logpdf(np.asarray(t, float)[:, None])

    @cached_property
    def templates(self) -> np.ndarray:
        """Model spectra at every node of the snapped grid, (n_nodes, n_pix) float32."""
        return np.asarray(self.problem.model.flux(self.grid_points), dtype=np.float32)

    @property
    def grid_points(self) -> np.ndarray:
        """All node combinations, (prod(shape), d), C order."""
        mesh = np.meshgrid(*self.nodes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def free_breaks(self, j: int) -> np.ndarray:
        """Level-0 points of free label ``j``: the box ends and the nodes inside."""
        lo, hi = self.problem.lo[j], self.problem.hi[j]
        inner = self.nodes[j][(self.nodes[j] > lo) & (self.nodes[j] < hi)]
        return np.unique(np.r_[lo, inner, hi])

    def line_prior(self, j: int) -> np.ndarray:
        """Log prior weight of every line with free label ``j`` (C order of the others)."""
        others = [self.log_w[k] for k in range(self.d) if k != j]
        if not others:
            return np.zeros(1) - np.log(self.d)
        mesh = np.meshgrid(*others, indexing="ij")
        return sum(m.ravel() for m in mesh) - np.log(self.d)

    def line_labels(self, j: int, combos: np.ndarray) -> np.ndarray:
        """Labels (m, d) of lines ``combos`` (flat indices) with free label ``j`` (NaN there)."""
        shape = [s for k, s in enumerate(self.shape) if k != j]
        idx = np.unravel_index(combos, shape) if shape else ()
        out = np.full((combos.size, self.d), np.nan)
        others = [k for k in range(self.d) if k != j]
        for k, ix in zip(others, idx):
            out[:, k] = self.nodes[k][ix]
        return out


def _node_loglik(snap: _SnapStructure, x: np.ndarray, iw: np.ndarray) -> np.ndarray:
    """-chi^2 / 2 (reported errors) of each spectrum at every snapped node, (m, *shape)."""
    from ._bayes import _template_chi2

    # the squared templates block by block (not a second 170 MB copy)
    chi2 = _template_chi2(x, iw, snap.templates, block=2048)
    return (-0.5 * chi2).reshape(x.shape[0], *snap.shape)


def _rise_between_nodes(snap: _SnapStructure, node_ll: np.ndarray) -> np.ndarray:
    """How much the log-likelihood may rise between two nodes along each label, (m, d).

    From the curvature of the node log-likelihood along each label at the best
    node (a parabola peaking half a spacing away); infinite along a label with
    fewer than 3 nodes (no curvature to read).
    """
    m = node_ll.shape[0]
    flat = node_ll.reshape(m, -1)
    best = np.unravel_index(np.argmax(flat, axis=1), snap.shape)
    out = np.full((m, snap.d), np.inf)
    for j, nodes in enumerate(snap.nodes):
        if nodes.size < 3:
            continue
        i = np.clip(best[j], 1, nodes.size - 2)
        vals = []
        for off in (-1, 0, 1):
            idx = list(best)
            idx[j] = i + off
            vals.append(node_ll[(np.arange(m), *idx)])
        x0, x1, x2 = nodes[i - 1], nodes[i], nodes[i + 1]
        d1 = (vals[1] - vals[0]) / (x1 - x0)
        d2 = (vals[2] - vals[1]) / (x2 - x1)
        curvature = np.maximum(-(d2 - d1) / (x2 - x0), 0.0)  # -l''/2 of the parabola
        out[:, j] = curvature * (0.5 * snap.spacing[j]) ** 2
    return out


def _line_scores(snap, node_ll) -> list:
    """Per free label, each line's best node log-likelihood plus its log prior, (m, n_lines)."""
    m = node_ll.shape[0]
    return [
        node_ll.max(axis=1 + j).reshape(m, -1) + snap.line_prior(j)[None, :] for j in range(snap.d)
    ]


def _select_lines(scores, rise, floor=None, top_k=None, taken=None):
    """The lines to integrate: ``(j, spec, combo, n_lines, score)`` per free label ``j``.

    A line's optimistic log posterior is its score plus the rise allowed along its
    free label. With ``top_k``, each spectrum's ``top_k`` best lines by that bound;
    otherwise the lines whose bound reaches ``floor`` (per spectrum), without the
    lines in ``taken`` (free label -> keys ``spec * n_lines + combo``).
    """
    bounds = [sc + rise[:, j, None] for j, sc in enumerate(scores)]
    if top_k is not None:
        allb = np.concatenate(bounds, axis=1)
        k = min(top_k, allb.shape[1])
        floor = -np.partition(-allb, k - 1, axis=1)[:, k - 1]
    parts = []
    for j, (sc, bd) in enumerate(zip(scores, bounds)):
        spec, combo = np.nonzero(bd >= floor[:, None])
        if taken is not None and j in taken:
            new = ~np.isin(spec * sc.shape[1] + combo, taken[j])
            spec, combo = spec[new], combo[new]
        parts.append((j, spec, combo, sc.shape[1], sc[spec, combo]))
    return parts


class _LineQuadrature:
    """Adaptive Simpson quadrature of the posterior along the kept lines of a chunk.

    Parameters
    ----------
    snap : _SnapStructure
    loglik : callable
        ``(rows, model_flux) -> log-likelihood`` (a ``_NoiseLikelihood``).
    n_spec : int
    batch : int
        Model spectra computed at once.
    """

    def __init__(self, snap, loglik, n_spec: int, batch: int):
        self.snap, self.loglik, self.batch = snap, loglik, batch
        d = snap.d
        self.spec = np.empty(0, dtype=np.int64)
        self.free = np.empty(0, dtype=np.int64)
        self.labels = np.empty((0, d))
        self.log_prior = np.empty(0)
        self.score = np.empty(0)  # screening score (node log-likelihood proxy + prior)
        self.peak = np.empty(0)  # best log-integrand of each line so far
        self.level0 = np.empty(0)  # ... at its level-0 points (the nodes and box ends)
        self.taken: dict[int, np.ndarray] = {}
        self.star = np.full(n_spec, -np.inf)  # best log posterior of each spectrum
        self.n_eval = np.zeros(n_spec, dtype=np.int64)
        self.best_ll = np.full(n_spec, -np.inf)
        self.best_theta = np.full((n_spec, d), np.nan)
        self.cells: list[tuple] = []  # finished cells: (line, a, b, la, lm, lb)
        # the rise allowed between nodes, per spectrum and free label (set by the caller)
        self.rise = np.zeros((n_spec, d))
        self.n_nodes = int(np.prod(snap.shape))
        self.strides = np.array([int(np.prod(snap.shape[k + 1 :])) for k in range(d)])
        self.node_base = np.empty(0, dtype=np.int64)  # flat node index of the fixed labels
        self.node_cache = np.full((n_spec, self.n_nodes), np.nan)

    def add(self, parts) -> np.ndarray:
        """Append the lines of ``parts`` (see `_select_lines`); their ids."""
        start = self.spec.size
        for j, spec, combo, width, score in parts:
            if spec.size == 0:
                continue
            self.score = np.r_[self.score, score]
            self.spec = np.r_[self.spec, spec]
            self.free = np.r_[self.free, np.full(spec.size, j)]
            labels = self.snap.line_labels(j, combo)
            self.labels = np.r_[self.labels, labels]
            base = sum(
                np.searchsorted(self.snap.nodes[k], labels[:, k]) * self.strides[k]
                for k in range(self.snap.d)
                if k != j
            )
            self.node_base = np.r_[self.node_base, np.zeros(spec.size, np.int64) + base]
            self.log_prior = np.r_[self.log_prior, self.snap.line_prior(j)[combo]]
            self.taken[j] = np.r_[self.taken.get(j, np.empty(0, int)), spec * width + combo]
        grown = self.spec.size - start
        self.peak = np.r_[self.peak, np.full(grown, -np.inf)]
        self.level0 = np.r_[self.level0, np.full(grown, -np.inf)]
        return np.arange(start, self.spec.size)

    def evaluate(self, which: np.ndarray, t: np.ndarray) -> np.ndarray:
        """log L + log p_free(t) at free label ``t`` on lines ``which``, shape (k,).

        Points on a node of the snapped grid (the level-0 points of every line, shared
        by the lines through that node) are evaluated once per spectrum, on the node
        spectra; the others on the model's interpolation.
        """
        theta = self.labels[which].copy()
        free = self.free[which]
        theta[np.arange(which.size), free] = t
        spec = self.spec[which]
        node = self._node_index(which, t)
        ll = np.empty(which.size)
        on = np.flatnonzero(node >= 0)
        if on.size:
            known = self.node_cache[spec[on], node[on]]
            todo = on[np.isnan(known)]
            if todo.size:
                key, first = np.unique(spec[todo] * self.n_nodes + node[todo], return_index=True)
                rows = todo[first]  # sorted by spectrum: the likelihood takes runs of one
                for s in range(0, rows.size, self.batch):
                    sel = rows[s : s + self.batch]
                    value = self.loglik(spec[sel], self.snap.templates[node[sel]])
                    self.node_cache[spec[sel], node[sel]] = value
                np.add.at(self.n_eval, spec[rows], 1)
            ll[on] = self.node_cache[spec[on], node[on]]
        off = np.flatnonzero(node < 0)
        order = off[np.argsort(spec[off], kind="stable")]
        prob = self.snap.problem
        for s in range(0, order.size, self.batch):
            sel = order[s : s + self.batch]
            ll[sel] = self.loglik(spec[sel], prob.flux(theta[sel]))
        np.add.at(self.n_eval, spec[off], 1)
        # the start of the maximum-likelihood fit: the best labels evaluated
        top = np.full(self.best_ll.size, -np.inf)
        np.maximum.at(top, spec, ll)
        improved = np.flatnonzero(top > self.best_ll)
        if improved.size:
            hit = np.flatnonzero((ll == top[spec]) & np.isin(spec, improved))
            self.best_ll[spec[hit]] = ll[hit]
            self.best_theta[spec[hit]] = theta[hit]
        logp = np.empty(which.size)
        for j in np.unique(free):
            f = free == j
            logp[f] = self.snap.log_density(j, t[f])
        out = ll + logp
        np.maximum.at(self.star, spec, out + self.log_prior[which])
        np.maximum.at(self.peak, which, out)
        return out

    def _node_index(self, which: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Flat snapped-grid index of each point, -1 where the free label is off the nodes."""
        free = self.free[which]
        out = np.full(which.size, -1, dtype=np.int64)
        for j in np.unique(free):
            f = np.flatnonzero(free == j)
            nodes = self.snap.nodes[j]
            i = np.clip(np.searchsorted(nodes, t[f]), 0, nodes.size - 1)
            hit = nodes[i] == t[f]
            out[f[hit]] = self.node_base[which[f[hit]]] + i[hit] * self.strides[j]
        return out

    def integrate(self, ids: np.ndarray, extra: np.ndarray | None = None) -> None:
        """Level 0 on the lines ``ids``, then bisection of their unresolved cells.

        ``extra`` (one value per line, NaN for none) adds a break point to a line:
        it is evaluated with the level-0 points but does not count as one (the rise
        above the nodes stays measured from the nodes).
        """
        line, a, b = [], [], []
        for j in range(self.snap.d):
            on = ids[self.free[ids] == j]
            if on.size == 0:
                continue
            br = self.snap.free_breaks(j)
            line.append(np.repeat(on, br.size - 1))
            a.append(np.tile(br[:-1], on.size))
            b.append(np.tile(br[1:], on.size))
        if not line:
            return
        line, a, b = (np.concatenate(v) for v in (line, a, b))
        is_extra = np.zeros(line.size, dtype=bool)  # marks a cell whose end is an extra point
        if extra is not None:
            t_extra = np.full(self.spec.size, np.nan)
            t_extra[ids] = extra
            t = t_extra[line]
            # a cell holding an extra point becomes two: [a, t] then [t, b]
            split = np.flatnonzero((t > a) & (t < b))
            is_extra = np.insert(is_extra, split, True)  # the first half ends at t
            line = np.insert(line, split, line[split])
            a = np.insert(a, split + 1, t[split])
            b = np.insert(b, split, t[split])
        # each break once: the first cell's start of every line, then every cell's end
        first = np.r_[True, line[1:] != line[:-1]]
        values = self.evaluate(np.r_[line[first], line], np.r_[a[first], b])
        n_first = int(first.sum())
        lb = values[n_first:]
        la = np.empty_like(lb)
        la[first] = values[:n_first]
        la[~first] = lb[np.flatnonzero(~first) - 1]
        after_extra = np.r_[False, is_extra[:-1]]
        at_level0 = np.where(is_extra, la, np.where(after_extra, lb, np.fmax(la, lb)))
        np.maximum.at(self.level0, line, at_level0)
        top = np.full(self.spec.size, -np.inf)  # the best value of each line, extras included
        np.maximum.at(top, line, np.fmax(la, lb))
        # lines whose points, plus the rise allowed between them, stay negligible next to
        # the best point so far take no midpoints: their cells count as they are
        bound = top[line] + self.rise[self.spec[line], self.free[line]]
        dropped = bound + self.log_prior[line] < self.star[self.spec[line]] - _NEGLIGIBLE
        if dropped.any():
            lm_dropped = np.fmax(la[dropped], lb[dropped])  # a flat, upper estimate
            self.cells.append(
                (line[dropped], a[dropped], b[dropped], la[dropped], lm_dropped, lb[dropped])
            )
            line, a, b, la, lb = (v[~dropped] for v in (line, a, b, la, lb))
        lm = self.evaluate(line, 0.5 * (a + b))
        for _ in range(_MAX_DEPTH):
            refine = self._unresolved(line, la, lm, lb)
            done = ~refine
            self.cells.append((line[done], a[done], b[done], la[done], lm[done], lb[done]))
            line, a, b, la, lm, lb = (v[refine] for v in (line, a, b, la, lm, lb))
            if line.size == 0:
                return
            mid = 0.5 * (a + b)
            # each half gets a new midpoint
            new = self.evaluate(np.r_[line, line], np.r_[0.5 * (a + mid), 0.5 * (mid + b)])
            line, a, b = np.r_[line, line], np.r_[a, mid], np.r_[mid, b]
            la, lb, lm = np.r_[la, lm], np.r_[lm, lb], new
        self.cells.append((line, a, b, la, lm, lb))  # the depth cap: keep them as they are

    def _unresolved(self, line, la, lm, lb) -> np.ndarray:
        """Cells whose log-integrand is not linear yet and that can hold mass."""
        with np.errstate(invalid="ignore"):
            dev = np.abs(lm - 0.5 * (la + lb))
            # the parabola through the cell's three points, in s = -1, 0, 1
            c1, c2 = 0.5 * (lb - la), 0.5 * (la + lb) - lm
            vertex = -c1 / (2 * c2)
            peak = lm - c1**2 / (4 * c2)
        top = np.fmax(np.fmax(la, lb), lm)
        inside = (c2 < 0) & (np.abs(vertex) <= 1) & np.isfinite(peak)
        bound = np.where(inside, np.fmax(peak, top), top)
        # a cell next to an edge where the prior density vanishes (log 0) is not linear
        # either: it is refined, like any other, only while it can hold mass
        dev = np.where(np.isnan(dev), np.inf, dev)
        matters = bound + self.log_prior[line] >= self.star[self.spec[line]] - _NEGLIGIBLE
        return matters & (dev > _LINEAR_TOL)

    def observed_rise(self, ids: np.ndarray, n_spec: int) -> np.ndarray:
        """Largest rise of a line's log-integrand above its level-0 points, (n, d)."""
        out = np.zeros((n_spec, self.snap.d))
        rise = np.where(np.isfinite(self.level0[ids]), self.peak[ids] - self.level0[ids], 0.0)
        np.maximum.at(out, (self.spec[ids], self.free[ids]), rise)
        return out

    def proxy_star(self, n_spec: int) -> np.ndarray:
        """Best line of each spectrum on the screening scale: score plus observed rise."""
        out = np.full(n_spec, -np.inf)
        rise = np.where(np.isfinite(self.level0), self.peak - self.level0, 0.0)
        np.maximum.at(out, self.spec, self.score + np.maximum(rise, 0.0))
        return out

    def finished(self) -> tuple:
        """The finished cells: line, a, b and the log-integrand at a, (a + b) / 2, b."""
        return tuple(np.concatenate([c[i] for c in self.cells]) for i in range(6))


def _mixed_quantiles(points, point_mass, a, b, panel_mass, levels, truth):
    """Quantiles and CDF at ``truth`` of point masses plus uniform panels.

    Parameters
    ----------
    points, point_mass : ndarrays of shape (p,)
    a, b, panel_mass : ndarrays of shape (q,)
        Panels [a, b] (a < b) carrying ``panel_mass`` uniformly.
    levels : sequence of float
    truth : float
        Where to evaluate the CDF (right-continuous; +-inf allowed).

    Returns
    -------
    quantiles : ndarray of shape (len(levels),)
        The smallest x whose CDF reaches each level.
    cdf_at_truth : float
    """
    total = point_mass.sum() + panel_mass.sum()
    slope = panel_mass / (b - a) / total
    x = np.r_[points, a, b]
    dslope = np.r_[np.zeros(points.size), slope, -slope]
    jump = np.r_[point_mass / total, np.zeros(2 * a.size)]
    order = np.argsort(x, kind="stable")
    x, dslope, jump = x[order], dslope[order], jump[order]
    run = np.cumsum(dslope)  # the CDF's slope right after each event
    # the CDF just before each event (left) and just after it, its jump included (right)
    left = np.r_[0.0, np.cumsum(run[:-1] * np.diff(x) + jump[:-1])]
    right = left + jump
    out = np.empty(len(levels))
    for i, q in enumerate(levels):
        e = min(int(np.searchsorted(right, q - 1e-12)), x.size - 1)
        if e > 0 and left[e] >= q - 1e-12 and left[e] > right[e - 1]:
            frac = (q - right[e - 1]) / (left[e] - right[e - 1])
            out[i] = x[e - 1] + np.clip(frac, 0.0, 1.0) * (x[e] - x[e - 1])
        else:
            out[i] = x[e]
    if np.isposinf(truth):
        return out, 1.0
    e = int(np.searchsorted(x, truth, side="right")) - 1
    cdf = 0.0 if e < 0 else right[e] + run[e] * (truth - x[e])
    # the masses sum to 1 up to rounding: keep the CDF inside [0, 1]
    return out, float(np.clip(cdf, 0.0, 1.0))


def _cell_rules(fa, fm, fb, h):
    """Simpson and trapezoid weights of a cell's three points, each (3, n)."""
    simpson = np.stack([fa, 4 * fm, fb]) * (h / 6)
    trapezoid = np.stack([fa, 2 * fm, fb]) * (h / 4)
    return simpson, trapezoid


def _summarise(quad: _LineQuadrature, n_spec: int, levels, truth) -> tuple:
    """Moments, quadrature errors, effective cells, quantiles and PIT of each spectrum."""
    d = quad.snap.d
    line, a, b, la, lm, lb = quad.finished()
    spec, free, shift = quad.spec[line], quad.free[line], quad.log_prior[line]
    ref = np.full(n_spec, -np.inf)
    np.maximum.at(ref, spec, np.fmax(np.fmax(la, lb), lm) + shift)
    fa, fm, fb = (np.exp(v + shift - ref[spec]) for v in (la, lm, lb))
    h, mid = b - a, 0.5 * (a + b)
    where = np.stack([a, mid, b])  # (3, n): the free label at the three points
    fixed = quad.labels[line]  # (n, d): NaN at the free label

    def per_spec(values):
        return np.bincount(spec, weights=values, minlength=n_spec)

    moments = []
    for weights in _cell_rules(fa, fm, fb, h):
        mass = weights.sum(axis=0)
        z = per_spec(mass)
        mean, var = np.empty((n_spec, d)), np.empty((n_spec, d))
        for k in range(d):
            cont = free == k
            first = np.where(
                cont, (weights * where).sum(axis=0), mass * np.nan_to_num(fixed[:, k])
            )
            mean[:, k] = per_spec(first) / z
            mu = mean[spec, k]
            second = np.where(
                cont,
                (weights * (where - mu) ** 2).sum(axis=0),
                mass * (np.nan_to_num(fixed[:, k]) - mu) ** 2,
            )
            var[:, k] = per_spec(second) / z
        moments.append((mass, mean, var))
    (mass, mean, var), (_, mean_t, var_t) = moments
    # the quadrature error: Simpson's rule against the trapezoid rule on the same points
    mean_se, var_se = np.abs(mean - mean_t), np.abs(var - var_t)
    ess = per_spec(mass) ** 2 / per_spec(mass**2)
    # quantiles and PIT: each cell's mass on two uniform panels (the trapezoid split)
    left_share = (fa + fm) / np.where(fa + 2 * fm + fb > 0, fa + 2 * fm + fb, 1.0)
    quant = np.empty((n_spec, len(levels), d))
    pit = np.full((n_spec, d), np.nan)
    by_spec = np.argsort(spec, kind="stable")
    bounds = np.searchsorted(spec[by_spec], np.arange(n_spec + 1))
    for i in range(n_spec):
        rows = by_spec[bounds[i] : bounds[i + 1]]
        for k in range(d):
            cont = free[rows] == k
            r, p = rows[cont], rows[~cont]
            panels = (
                np.r_[a[r], mid[r]],
                np.r_[mid[r], b[r]],
                np.r_[mass[r] * left_share[r], mass[r] * (1 - left_share[r])],
            )
            t = np.inf if truth is None else truth[i, k]
            quant[i, :, k], cdf = _mixed_quantiles(fixed[p, k], mass[p], *panels, levels, t)
            if truth is not None:
                pit[i, k] = cdf
    return mean, var, mean_se, var_se, ess, quant, pit


def _chunk_posterior(snap, x, iw, loglik, batch: int, levels, truth, fit_ml):
    """Screening, quadrature and summary for one chunk of spectra.

    The most promising lines of each spectrum are integrated first; their peaks set
    the floor (best peak minus the margin) that the optimistic bound of any other line
    must reach. A line that rose above its nodes by more than allowed widens that
    label's allowance (twice what was seen), and the lines it admits follow. Then
    the same from the lines around the maximum-likelihood labels (``fit_ml``, called
    with the best labels evaluated so far, (n, d)).

    Returns
    -------
    summary : tuple
        ``mean, var, mean_se, var_se, ess, quantiles, pit`` as in `_weighted_summary`.
    quad : _LineQuadrature
        Its ``best_theta`` (the best labels evaluated) and ``n_eval``.
    fit : tuple
        What ``fit_ml`` returned.
    """
    n = x.shape[0]
    node_ll = _node_loglik(snap, x, iw)
    rise = _rise_between_nodes(snap, node_ll)
    scores = _line_scores(snap, node_ll)
    quad = _LineQuadrature(snap, loglik, n, batch)
    parts = _select_lines(scores, rise, top_k=2 * snap.d)
    rise = _integrate_and_widen(quad, scores, rise, parts)
    # the screening reads the likelihood at the nodes only, and a label whose likelihood
    # peaks sharply between two nodes (e.g. [C/M] at SNR ~10, nodes 0.5 dex apart) can
    # hide the best line: its nodes lie thousands below its peak. The maximum-likelihood
    # fit, free in every label, finds that peak; the lines through the nodes around it
    # are integrated too, through the fit's labels, and the allowances widen from there
    fit = fit_ml(quad.best_theta)
    parts, extra = _lines_around(snap, fit[0], scores, quad.taken)
    _integrate_and_widen(quad, scores, rise, parts, extra)
    return _summarise(quad, n, levels, truth), quad, fit


def _integrate_and_widen(quad, scores, rise, parts, extra=None) -> np.ndarray:
    """Integrate ``parts``, then the lines admitted as the floor and allowances move.

    A line that rose above its nodes by more than allowed widens that label's
    allowance (twice what was seen). ``extra``: labels (n, d) whose free value is a
    break point of the first lines (see `_LineQuadrature.integrate`). Returns the
    allowances.
    """
    n = quad.star.size
    for _ in range(20):  # the floor only rises and the allowances only grow
        ids = quad.add(parts)
        if ids.size == 0:
            break
        quad.rise = rise
        t = None if extra is None else extra[quad.spec[ids], quad.free[ids]]
        quad.integrate(ids, t)
        extra = None
        seen = quad.observed_rise(ids, n)
        rise = np.where(seen > rise + 0.5, 2.0 * seen, rise)
        floor = quad.proxy_star(n) - _SCREEN_MARGIN
        parts = _select_lines(scores, rise, floor=floor, taken=quad.taken)
    return rise


def _lines_around(snap, theta, scores, taken):
    """The lines through the nodes that bracket ``theta`` (n, d), not yet in ``taken``.

    Per spectrum and free label ``j``: every combination of the two nodes around
    each other label's value (the two end nodes outside their range), in
    `_select_lines`' format, with ``theta`` clipped into the box for the break points.
    """
    ok = np.all(np.isfinite(theta), axis=1)
    theta = np.clip(theta, snap.problem.lo, snap.problem.hi)
    brackets = []
    for k, nodes in enumerate(snap.nodes):
        hi = np.clip(np.searchsorted(nodes, theta[:, k]), 1, max(nodes.size - 1, 1))
        lo = np.where(nodes.size > 1, hi - 1, 0)
        hi = np.where(nodes.size > 1, hi, 0)
        brackets.append(np.stack([lo, hi], axis=1))  # (n, 2) node indices
    parts = []
    for j in range(snap.d):
        others = [k for k in range(snap.d) if k != j]
        shape = [snap.shape[k] for k in others]
        # (len(others), 2 ** len(others)): which of the two nodes, per other label
        choice = np.array(list(itertools.product((0, 1), repeat=len(others))), int)
        choice = choice.reshape(2 ** len(others), len(others)).T
        spec = np.repeat(np.flatnonzero(ok), choice.shape[1])
        idx = [brackets[k][spec, np.tile(choice[i], ok.sum())] for i, k in enumerate(others)]
        combo = np.ravel_multi_index(idx, shape) if shape else np.zeros(spec.size, int)
        key = np.unique(spec * scores[j].shape[1] + combo)
        if j in taken:
            key = key[~np.isin(key, taken[j])]
        spec, combo = np.divmod(key, scores[j].shape[1])
        parts.append((j, spec, combo, scores[j].shape[1], scores[j][spec, combo]))
    return parts, theta


def snapped_posterior(
    prob, flux, error, settings, *, noise_model=None, truth=None, progress=False
):
    """The posterior summary of each spectrum under the snapped prior of ``prob``.

    The functional core of the snapped path of :func:`._bayes._posterior` (inputs
    checked there).

    Returns
    -------
    PosteriorSummary
    """
    from tqdm.auto import tqdm

    from ._bayes import (
        _SUMMARY_KEYS,
        PosteriorSummary,
        _empty_summary,
        _max_likelihood,
        _model_batch,
        _NoiseLikelihood,
    )

    snap = prob.snap
    n, d = flux.shape[0], prob.d
    levels = settings.quantiles
    out = _empty_summary(n, d, len(levels))
    iw_all = 1.0 / error
    batch = _model_batch(flux.shape[1])
    with tqdm(total=n, disable=not progress, unit="spectra", desc="posterior") as bar:
        for start in range(0, n, settings.chunk_size):
            sl = slice(start, min(start + settings.chunk_size, n))
            x, iw = flux[sl], iw_all[sl]
            loglik = _NoiseLikelihood(x, error[sl], noise_model)
            true_sl = None if truth is None else truth[sl]

            # the maximum-likelihood labels in the box, from the best labels evaluated
            def fit_ml(best, x=x, iw=iw):
                return _max_likelihood(prob, x, iw, best[:, None, :], settings.max_iter)

            summary, quad, fit = _chunk_posterior(
                snap, x, iw, loglik, batch, levels, true_sl, fit_ml
            )
            for key, val in zip(_SUMMARY_KEYS, summary):
                out[key][sl] = val
            out["theta_ml"][sl], out["chi2_ml"][sl], out["fisher_ml"][sl] = fit
            out["n_draws"][sl] = quad.n_eval
            bar.update(x.shape[0])
    return PosteriorSummary(param_names=prob.names, quantile_levels=levels, **out)
