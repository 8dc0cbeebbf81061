"""Posterior means by importance sampling against closed forms."""

import numpy as np
import pytest
from scipy.stats import norm

from specreg.bounds import marginal_crlb, posterior_summary, split_X
from specreg.datasets import make_spectra
from specreg.spectra import LabelPrior, PFSNoiseModel, SpectralGrid


def _linear_grid(B, offset, lo, hi):
    """A grid whose (cubic) interpolant is exactly f(theta) = offset + B theta."""
    d = B.shape[1]
    axes = {f"p{k}": np.linspace(lo, hi, 3) for k in range(d)}
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    nodes = np.stack([m.ravel() for m in mesh], axis=1)
    flux = offset[None, :] + nodes @ B.T
    return SpectralGrid(axes, flux.reshape(*[3] * d, -1), np.arange(B.shape[0]) + 7000.0)


def test_linear_gaussian_posterior_mean_variance_and_mse_match_closed_form():
    rng = np.random.default_rng(0)
    n_pix, d = 64, 3
    B = rng.standard_normal((n_pix, d))
    B[:, 1] += 0.8 * B[:, 0]  # correlated labels: the Schur complement matters
    grid = _linear_grid(B, np.full(n_pix, 5.0), -10.0, 10.0)
    sigma = 1.5
    n = 120
    theta = rng.uniform(-4, 4, (n, d))  # >= 6 posterior sds from the box edges
    err = np.full((n, n_pix), sigma)
    x = grid.flux(theta) + sigma * rng.standard_normal((n, n_pix))
    post = posterior_summary(grid, x, err, n_draws=256, random_state=1)

    # closed form: the box is far, so the posterior is N(least squares, F^-1)
    F = B.T @ B / sigma**2
    cov = np.linalg.inv(F)
    ls = np.linalg.lstsq(B, (x - 5.0).T.astype(float), rcond=None)[0].T
    z = (post.mean - ls) / post.mean_se
    # the delta-method MC error is honest: z ~ N(0, 1) up to its own noise at ESS ~ 70
    assert np.max(np.abs(z)) < 6
    assert np.mean(z**2) < 2
    zv = (post.var - np.diag(cov)) / post.var_se
    assert np.mean(zv**2) < 4
    np.testing.assert_allclose(post.var.mean(axis=0), np.diag(cov), rtol=0.1)
    # the Fisher matrix at the ML fit is the analytic one; CRLB = posterior variance
    np.testing.assert_allclose(post.fisher_ml[0], F, rtol=1e-3)
    np.testing.assert_allclose(marginal_crlb(post.fisher_ml, 1)[0], cov[1, 1], rtol=1e-3)
    # MSE of the posterior mean over the test set: chi^2 scatter, sd ~ sqrt(2/n)
    mse = np.mean((post.mean - theta) ** 2, axis=0)
    np.testing.assert_allclose(mse / np.diag(cov), 1.0, atol=0.4)
    assert np.all(post.ess > 50)


def test_truncated_posterior_at_the_box_edge_matches_truncated_normal():
    # one label on [0, 1] with a flat prior; the likelihood is as wide as the box
    n_pix = 20
    b = np.linspace(0.5, 1.5, n_pix)
    grid = SpectralGrid(
        {"a": [0.0, 0.5, 1.0]}, np.outer([0.0, 0.5, 1.0], b), np.arange(n_pix) + 1.0
    )
    sigma = 1.0
    s = sigma / np.sqrt(np.sum(b**2))  # posterior sd before truncation ~ 0.21
    rng = np.random.default_rng(2)
    truth = np.array([[0.02], [0.1], [0.5], [0.97]])
    x = grid.flux(truth) + sigma * rng.standard_normal((4, n_pix))
    err = np.full((4, n_pix), sigma)
    post = posterior_summary(grid, x, err, n_draws=512, random_state=3)
    mu = (x.astype(float) @ b) / np.sum(b**2)
    a, c = (0.0 - mu) / s, (1.0 - mu) / s
    Z = norm.cdf(c) - norm.cdf(a)
    exact = mu + s * (norm.pdf(a) - norm.pdf(c)) / Z
    exact_var = s**2 * (
        1 + (a * norm.pdf(a) - c * norm.pdf(c)) / Z - ((norm.pdf(a) - norm.pdf(c)) / Z) ** 2
    )
    np.testing.assert_array_less(np.abs(post.mean[:, 0] - exact), 5 * post.mean_se[:, 0] + 1e-3)
    np.testing.assert_allclose(post.var[:, 0], exact_var, rtol=0.15)
    # the posterior mean shrinks into the box: never outside it, unlike an unbounded fit
    assert np.all((post.mean > 0) & (post.mean < 1))


def test_posterior_on_toy_grid_is_close_to_truth_at_high_snr(small_grid):
    theta = np.array([[4600.0, 2.2, -1.4], [5400.0, 4.3, 0.1]])
    flux = small_grid.flux(theta)
    err = np.full_like(flux, 0.002)
    post = posterior_summary(small_grid, flux, err, n_draws=128, random_state=0)
    np.testing.assert_allclose(post.theta_ml, theta, rtol=1e-3, atol=1e-3)
    assert np.all(np.abs(post.mean - theta) < np.array([20.0, 0.05, 0.05]))
    assert post.param_names == ("T_eff", "log_g", "M_H")


def test_prior_in_another_label_order_is_aligned(small_grid):
    prior = LabelPrior({"M_H": (-2.5, 0.75), "log_g": (1, 5), "T_eff": (4000, 6000)})
    theta = np.array([[5100.0, 3.3, -0.5]])
    flux = small_grid.flux(theta)
    post = posterior_summary(small_grid, flux, np.full_like(flux, 0.002), prior, random_state=0)
    assert np.all(np.abs(post.mean[0] - theta[0]) < np.array([20.0, 0.05, 0.05]))


@pytest.mark.parametrize(
    "flux, error, match",
    [
        (np.full((1, 512), np.nan), np.ones((1, 512)), "NaN"),
        (np.ones((1, 512)), np.zeros((1, 512)), "> 0"),
        (np.ones((1, 100)), np.ones((1, 100)), "pixels"),
        (np.ones((1, 512)), np.ones((2, 512)), "shape"),
    ],
)
def test_posterior_rejects_bad_spectra(small_grid, flux, error, match):
    with pytest.raises(ValueError, match=match):
        posterior_summary(small_grid, flux, error)


def test_posterior_rejects_a_bad_mixture_or_prior_box(small_grid):
    f = small_grid.flux([[5000.0, 3.0, -1.0]])
    e = np.full_like(f, 0.01)
    with pytest.raises(ValueError, match="mixture"):
        posterior_summary(small_grid, f, e, mixture=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="prior share"):
        posterior_summary(small_grid, f, e, mixture=(0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="exceeds"):
        posterior_summary(
            small_grid,
            f,
            e,
            LabelPrior({"T_eff": (3000, 6000), "log_g": (1, 5), "M_H": (-2.5, 0.75)}),
        )


def test_split_X_checks_width():
    with pytest.raises(ValueError, match="odd width"):
        split_X(np.ones((2, 5)))
    with pytest.raises(ValueError, match="4 pixels are needed"):
        split_X(np.ones((2, 6)), n_pix=4)


@pytest.fixture(scope="module")
def simulated(small_grid):
    noise = PFSNoiseModel(small_grid.wave)
    return noise, make_spectra(120, model=small_grid, mag=21.0, noisy=True, random_state=8)


def test_monte_carlo_errors_match_the_spread_between_seeds(small_grid, simulated):
    noise, s = simulated
    runs = [
        posterior_summary(small_grid, s.noisy, s.error, noise_model=noise, n_draws=64,
                          random_state=seed)
        for seed in range(6)
    ]  # fmt: skip
    k = small_grid.param_names.index("log_g")
    means = np.array([r.mean[:, k] for r in runs])
    se = np.array([r.mean_se[:, k] for r in runs])
    ratio = np.sqrt(np.mean(means.var(axis=0, ddof=1)) / np.mean(se**2))
    assert 0.8 < ratio < 1.2, ratio


def test_low_ess_spectra_are_resampled_up_to_the_floor(small_grid, simulated):
    noise, s = simulated
    kw = dict(noise_model=noise, n_draws=16, random_state=0)
    plain = posterior_summary(small_grid, s.noisy[:40], s.error[:40], min_ess=1, **kw)
    floor = posterior_summary(small_grid, s.noisy[:40], s.error[:40], min_ess=12, **kw)
    low = plain.ess < 12
    assert low.any() and np.all(plain.n_draws == 16)
    assert np.all(floor.n_draws[low] > 16) and np.all(floor.n_draws[~low] == 16)
    assert np.median(floor.ess[low]) > np.median(plain.ess[low])
    with pytest.warns(UserWarning, match="effective sample size below min_ess=1000"):
        posterior_summary(small_grid, s.noisy[:4], s.error[:4], min_ess=1000, max_resample=0,
                          **kw)  # fmt: skip
    with pytest.raises(ValueError, match="min_ess"):
        posterior_summary(small_grid, s.noisy[:4], s.error[:4], min_ess=0.5, **kw)


def test_the_likelihood_uses_the_generator_noise(small_grid, simulated):
    noise, s = simulated
    # with the physical noise the posterior is the one of the process that drew the data:
    # its standardised errors have unit variance
    post = posterior_summary(small_grid, s.noisy, s.error, noise_model=noise, random_state=1)
    k = small_grid.param_names.index("log_g")
    z = (post.mean[:, k] - s.y) / np.sqrt(post.var[:, k])
    assert 0.75 < z.std() < 1.25
    with pytest.raises(ValueError, match="reference errors"):
        posterior_summary(small_grid, s.noisy, np.full_like(s.error, 0.01), noise_model=noise)


def test_quantiles_and_pit_of_a_gaussian_posterior():
    """A linear model with a wide flat prior: the posterior is Gaussian with known sigma."""
    from scipy.stats import norm

    from specreg.bounds import posterior_summary
    from specreg.spectra import SpectralGrid

    x = np.linspace(0.0, 1.0, 40)
    grid = SpectralGrid(
        {"a": [0.0, 10.0]}, np.array([0.0 * x, 10.0 * x]), x + 1.0, method="linear"
    )
    err = np.full((200, 40), 0.5)
    truth = np.full((200, 1), 5.0)
    rng = np.random.default_rng(0)
    flux = grid.flux(truth) + err * rng.standard_normal(err.shape)
    post = posterior_summary(grid, flux, err, n_draws=512, truth=truth, random_state=1)
    sigma = 0.5 / np.sqrt(np.sum(x**2))
    np.testing.assert_allclose(np.sqrt(post.var[:, 0]), sigma, rtol=0.15)
    lo, hi = post.interval(0.68)
    np.testing.assert_allclose(hi[:, 0] - lo[:, 0], 2 * sigma, rtol=0.25)
    # the PIT of the truth is the Gaussian CDF at the truth
    expected = norm.cdf((5.0 - post.mean[:, 0]) / sigma)
    assert np.median(np.abs(post.pit[:, 0] - expected)) < 0.05
    assert 0.55 < np.mean(np.abs(post.pit[:, 0] - 0.5) <= 0.34) < 0.8
    with pytest.raises(ValueError, match="no 0.9 interval"):
        post.interval(0.9)
    for level in ("0.68", 0.0, 1.0, np.nan):
        with pytest.raises(ValueError, match="level must be"):
            post.interval(level)
    with pytest.raises(ValueError, match="truth must have shape"):
        posterior_summary(grid, flux, err, truth=truth[:3])
    with pytest.raises(ValueError, match=r"quantiles must be one or more levels in \(0, 1\)"):
        posterior_summary(grid, flux, err, quantiles=(0.5, 1.0))
    with pytest.raises(ValueError, match="truth contains 1 NaN value"):
        posterior_summary(
            grid,
            flux,
            err,
            truth=np.where(np.arange(truth.size) == 0, np.nan, truth.ravel()).reshape(truth.shape),
        )


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"df": np.nan}, "df must be a finite number > 0"),
        ({"df": 0}, "df must be a finite number > 0"),
        ({"scale": -1.0}, "scale must be a finite number > 0"),
        ({"n_starts": 0}, "n_starts must be a positive integer"),
        ({"n_starts": 2.5}, "n_starts must be a positive integer"),
        ({"max_iter": 0}, "max_iter must be a positive integer"),
        ({"quantiles": ()}, "quantiles must be one or more levels"),
        ({"quantiles": (0.9, 0.1)}, "quantiles must be increasing and distinct"),
        ({"quantiles": (0.5, 0.5)}, "quantiles must be increasing and distinct"),
        ({"lattice": 2.5}, "lattice size must be a positive integer; got 2.5"),
        ({"lattice": (4, 4)}, "lattice must be one size or 3 sizes"),
        ({"lattice": {"T_eff": 4}}, "lattice size must be a positive integer"),
    ],
)
def test_sampler_options_are_checked_not_rounded(small_grid, kw, match):
    # before: df=nan gave all-NaN posteriors, n_starts=2.5 and lattice=2.5 were truncated
    flux = small_grid.flux([[5000.0, 3.0, -1.0]])
    with pytest.raises(ValueError, match=match):
        posterior_summary(small_grid, flux, np.full_like(flux, 0.01), n_draws=16, **kw)


def test_n_samples_is_a_deprecated_alias_of_n_draws(small_grid):
    flux = small_grid.flux([[5000.0, 3.0, -1.0]])
    err = np.full_like(flux, 0.01)
    new = posterior_summary(small_grid, flux, err, n_draws=16, min_ess=1, random_state=0)
    with pytest.warns(FutureWarning, match="'n_samples' was renamed 'n_draws'"):
        old = posterior_summary(small_grid, flux, err, n_samples=16, min_ess=1, random_state=0)
    np.testing.assert_array_equal(old.mean, new.mean)
    assert old.n_draws.tolist() == [16]


def _two_basin_grid():
    """A 1-D model whose chi-square has a broad secondary basin at x = 2 (the best
    point of a 4-cell lattice) and the true, narrow minimum at x = 8.3."""
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((2, 40))
    u -= v * (u @ v) / (v @ v)
    u *= 1.0 / np.linalg.norm(u)  # chi2 = 100 at the secondary basin for sigma = 0.1
    v *= np.sqrt(6.0) / np.linalg.norm(v)
    x = np.linspace(0, 10, 201)
    a = np.exp(-0.5 * ((x - 8.3) / 0.3) ** 2)
    b = 0.6 * np.exp(-0.5 * ((x - 2.0) / 2.0) ** 2) + 0.6 * a
    return SpectralGrid({"x": x}, 1 + a[:, None] * u + b[:, None] * v, np.arange(40) + 7e3)


def test_resampling_refits_a_laplace_centre_stuck_in_a_secondary_basin():
    grid = _two_basin_grid()
    obs = grid.flux([[8.3]])
    err = np.full_like(obs, 0.1)
    kw = dict(lattice=4, n_starts=1, n_draws=512, random_state=0)
    with pytest.warns(UserWarning, match="effective sample size"):
        stuck = posterior_summary(grid, obs, err, max_resample=0, **kw)
    assert abs(stuck.theta_ml[0, 0] - 2.0) < 0.1 and stuck.ess[0] < 30
    # the best draw of the first round lies in the true basin: the fit from there
    # centres the Student-t on it, and one round reaches the ESS floor
    post = posterior_summary(grid, obs, err, **kw)
    assert abs(post.theta_ml[0, 0] - 8.3) < 0.02 and post.chi2_ml[0] < 1e-3
    assert post.ess[0] >= 30 and post.n_draws[0] == 4 * 512
    assert abs(post.mean[0, 0] - 8.3) < 3 * post.std[0, 0]


def test_the_fused_likelihood_is_the_noise_model_one(small_grid, simulated):
    from specreg.bounds._bayes import _NoiseLikelihood

    noise, s = simulated
    flux, error = s.noisy[:3].astype(np.float32), s.error[:3]
    rows = np.repeat([0, 1, 2, 1], 5)
    theta = s.params[list(small_grid.param_names)].to_numpy()[rows]
    f = small_grid.flux(theta + [30.0, 0.05, 0.02])

    def expected(model):
        x = model.collected_flux_from_error(error)
        var = model.sigma(f, x[rows]).astype(np.float64) ** 2
        return -0.5 * (((flux[rows] - f) ** 2 / var).sum(axis=1) + np.log(var).sum(axis=1))

    fused = _NoiseLikelihood(flux, error, noise)
    assert fused.slope is not None  # the variance is affine in the clipped flux
    np.testing.assert_allclose(fused(rows, f), expected(noise), rtol=0, atol=1e-3)

    class CurvedNoise(PFSNoiseModel):
        def sigma(self, flux, x):
            return super().sigma(flux, x) * (1 + 0.2 * np.clip(flux, 0, None) ** 2)

    curved = CurvedNoise(small_grid.wave)
    generic = _NoiseLikelihood(flux, error, curved)
    assert generic.slope is None  # not affine: the model's own sigma is used
    np.testing.assert_allclose(generic(rows, f), expected(curved), rtol=0, atol=1e-3)
