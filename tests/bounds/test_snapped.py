"""The Bayes ceiling under the snapped prior: exact against enumeration, calibrated."""

import itertools
import pickle

import numpy as np
import pytest

from specreg.bounds import BayesCeilingRegressor, posterior_summary
from specreg.bounds._bayes import _Problem
from specreg.datasets import make_spectra
from specreg.datasets._testing import make_toy_grid
from specreg.spectra import LabelPrior, PFSNoiseModel

_TINY_AXES = {
    "T_eff": np.array([4000.0, 5000.0, 6000.0]),
    "log_g": np.array([1.0, 3.0, 5.0]),
    "M_H": np.array([-2.5, -1.0, 0.75]),
}


@pytest.fixture(scope="module")
def tiny():
    """3 x 3 x 3 toy grid on 128 pixels, its snapped prior and its noise model."""
    grid = make_toy_grid(128, axes=_TINY_AXES)
    return grid, LabelPrior.from_grid(grid, snap=True), PFSNoiseModel(grid.wave)


@pytest.mark.parametrize("box, taper", [(None, 0.0), ({"log_g": (1.5, 4.2)}, 0.2)])
def test_node_weights_are_the_sampling_frequencies(tiny, box, taper):
    grid = tiny[0]
    prior = LabelPrior.from_grid(grid, snap=True, box=box, taper=taper)
    snap = _Problem(grid, prior, None).snap
    theta = prior.sample(200_000, random_state=0)
    for k, nodes in enumerate(snap.nodes):
        on = np.isin(theta[:, k], nodes)  # snapped: the free label never lands on a node
        freq = np.array([(theta[on, k] == v).mean() for v in nodes])
        expect = np.exp(snap.log_w[k])
        sd = np.sqrt(expect * (1 - expect) / on.sum())
        assert np.all(np.abs(freq - expect) < 4 * sd + 1e-12), (k, freq, expect)


def _brute_force(grid, prior, noise, flux, error, n_grid=4001):
    """Posterior means and variances by summing every node combination and a dense
    trapezoid rule along the free label (the generator's noise, written out)."""
    names, d = grid.param_names, grid.n_params
    x = noise.collected_flux_from_error(error)
    nodes = [prior.snap_to[n] for n in names]
    box = [prior.bounds[n] for n in names]
    # uniform prior: a node weighs its Voronoi cell clipped to the box
    weights = []
    for v, (lo, hi) in zip(nodes, box):
        edges = np.clip(np.r_[lo, 0.5 * (v[1:] + v[:-1]), hi], lo, hi)
        weights.append(np.diff(edges) / (hi - lo))
    logs, values = [[] for _ in flux], [[] for _ in flux]
    for j in range(d):
        t = np.linspace(*box[j], n_grid)
        trap = np.full(n_grid, t[1] - t[0])
        trap[[0, -1]] *= 0.5
        others = [k for k in range(d) if k != j]
        for combo in itertools.product(*[range(nodes[k].size) for k in others]):
            theta = np.empty((n_grid, d))
            theta[:, j] = t
            w = 1.0 / d / (box[j][1] - box[j][0])
            for k, c in zip(others, combo):
                theta[:, k] = nodes[k][c]
                w *= weights[k][c]
            f = grid.flux(theta)
            for i in range(len(flux)):
                var = noise.sigma(f, np.full(n_grid, x[i])).astype(float) ** 2
                ll = -0.5 * (((flux[i] - f) ** 2 / var).sum(1) + np.log(var).sum(1))
                logs[i].append(ll + np.log(w * trap))
                values[i].append(theta)
    mean, var = np.empty((len(flux), d)), np.empty((len(flux), d))
    for i in range(len(flux)):
        lw, th = np.concatenate(logs[i]), np.concatenate(values[i])
        p = np.exp(lw - lw.max())
        p /= p.sum()
        mean[i] = p @ th
        var[i] = p @ (th - mean[i]) ** 2
    return mean, var


@pytest.mark.parametrize("mag", [19.0, 22.5])
def test_posterior_equals_brute_force_enumeration(tiny, mag):
    grid, prior, noise = tiny
    s = make_spectra(6, model=grid, prior=prior, mag=mag, noisy=True, random_state=2)
    post = posterior_summary(grid, s.noisy, s.error, prior, noise_model=noise)
    mean, var = _brute_force(grid, prior, noise, s.noisy.astype(np.float32), s.error)
    sd = np.sqrt(var)
    np.testing.assert_array_less(np.abs(post.mean - mean), 0.01 * sd + 1e-9)
    np.testing.assert_allclose(post.var, var, rtol=0.02, atol=1e-12)
    # the quadrature's own error estimate (an overestimate) covers its error
    assert np.all(np.abs(post.mean - mean) <= post.mean_se + 1e-3 * sd)
    assert post.n_draws.min() > 0 and np.all(post.ess >= 1)


def test_snapped_posterior_is_calibrated(tiny):
    """On spectra drawn from the snapped prior the randomised PIT is uniform and the
    central 68 % intervals cover (more, at the jumps, never less) the truth."""
    grid, prior, noise = tiny
    s = make_spectra(300, model=grid, prior=prior, mag=(19.0, 22.5), noisy=True, random_state=5)
    truth = s.params[list(grid.param_names)].to_numpy()
    kw = dict(noise_model=noise)
    post = posterior_summary(grid, s.noisy, s.error, prior, truth=truth, **kw)
    # the CDF just below the truth (point masses sit exactly on it)
    below = posterior_summary(grid, s.noisy, s.error, prior, truth=truth - 1e-7, **kw)
    u = np.random.default_rng(0).random(truth.shape)
    pit = below.pit + u * (post.pit - below.pit)  # the randomised PIT
    for k in range(grid.n_params):
        counts = np.histogram(pit[:, k], bins=5, range=(0, 1))[0]
        chi2 = ((counts - 60) ** 2 / 60).sum()
        assert chi2 < 18.5, (k, counts)  # chi2(4) at p = 0.001
    lo, hi = post.interval(0.68)
    cover = ((truth >= lo) & (truth <= hi)).mean(axis=0)
    assert np.all((cover > 0.62) & (cover < 0.95)), cover
    # the posterior variance is the mean squared error of the posterior mean
    ratio = ((post.mean - truth) ** 2).mean(axis=0) / post.var.mean(axis=0)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


def test_estimator_takes_the_snapped_prior(tiny):
    grid, prior, _ = tiny
    s = make_spectra(8, model=grid, prior=prior, mag=19.0, noisy=True, random_state=1)
    est = BayesCeilingRegressor(grid, prior=prior, target=("T_eff", "log_g", "M_H"))
    mean, std = est.fit(s.X).predict(s.X, return_std=True)
    truth = s.params[list(grid.param_names)].to_numpy()
    assert mean.shape == (8, 3) and np.all(std >= 0)
    assert np.mean(np.abs(mean - truth) <= 3 * std + 1e-6) > 0.9
    quantiles = est.predict_quantiles(s.X)
    assert quantiles.shape == (8, 3, 3) and np.all(np.diff(quantiles, axis=1) >= 0)
    # deterministic, and picklable (the node spectra are left behind)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.predict(s.X), mean)


def test_snapped_nodes_outside_the_model_are_refused(tiny):
    grid = tiny[0]
    bounds = dict(grid.bounds)
    nodes = {n: list(a) for n, a in grid.axes.items()}
    nodes["M_H"] = [-2.5, -1.0, 0.8]  # the nearest node of labels in (-0.1, 0.75]
    with pytest.raises(ValueError, match="a snapped draw would leave the box"):
        LabelPrior(bounds, snap_to=nodes)
    # a node whose cell misses the box only has no weight
    nodes["M_H"] = [-2.5, -1.0, 0.75, 1.0]
    snap = _Problem(grid, LabelPrior(bounds, snap_to=nodes), None).snap
    assert snap.nodes[2].tolist() == [-2.5, -1.0, 0.75]


def test_a_line_hidden_between_the_nodes_is_found():
    """Noiseless spectra of carbon-rich cool giants on the 5-D model: the [C/M]
    likelihood is a few hundredths of a dex wide between nodes 0.5 dex apart, so
    the nodes alone point to the wrong line (log g 0.5 dex off, [C/M] on a node);
    the exact posterior of a noiseless spectrum sits at its labels."""
    from specreg.datasets import load_grid

    model = load_grid("5d")
    prior = LabelPrior.from_grid(model, snap=True)
    noise = PFSNoiseModel(model.wave)
    truth = np.array([[4000.0, 2.0, 0.25, 0.0, 0.296], [4000.0, 1.5, 0.25, 0.0, 0.3]])
    flux = model.flux(truth).astype(float)
    collected = noise.collected_flux(np.full(len(truth), 20.0), random_state=0)
    error = np.broadcast_to(noise.reference_error(collected), flux.shape)
    post = posterior_summary(model, flux, error, prior, noise_model=noise)
    g, c = model.param_names.index("log_g"), model.param_names.index("C_M")
    np.testing.assert_allclose(post.mean[:, g], truth[:, g], atol=0.01)
    np.testing.assert_allclose(post.mean[:, c], truth[:, c], atol=0.01)
    assert np.all(np.sqrt(post.var[:, g]) < 0.05)


def test_a_one_label_model_has_one_line():
    """With one label nothing is snapped: the line is the whole axis."""
    from specreg.spectra import SpectralGrid

    x = np.linspace(0, 1, 30)
    grid = SpectralGrid({"a": [0.0, 1.0, 2.0]}, np.outer([0.0, 1.0, 2.0], x) + 1, x + 1)
    prior = LabelPrior.from_grid(grid, snap=True)
    post = posterior_summary(grid, grid.flux([[1.3]]), np.full((1, 30), 0.05), prior)
    np.testing.assert_allclose(post.mean, [[1.3]], atol=0.01)
