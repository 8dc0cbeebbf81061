"""The truncated Gaussian: moments against scipy, the mean-matching location and its
derivatives, and the detached head's loss built on them."""

import numpy as np
import pytest
import torch
from scipy import stats

from specreg.estimators._truncnorm import (
    MATCH_MARGIN,
    clip_to_box,
    location_sensitivity,
    truncated_location,
    truncated_moments,
)
from specreg.estimators._vit_module import DetachedVarianceLoss

LOW, HIGH = -1.7, 1.7


def test_moments_agree_with_scipy_where_scipy_is_accurate():
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(-3, 3, 200), np.exp(rng.uniform(-3, 2, 200))
    m, s = truncated_moments(mean, std, LOW, HIGH)
    a, b = (LOW - mean) / std, (HIGH - mean) / std
    np.testing.assert_allclose(m, stats.truncnorm.mean(a, b, mean, std), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(s, stats.truncnorm.std(a, b, mean, std), rtol=1e-6)


def test_location_gives_the_asked_mean_in_every_regime():
    rng = np.random.default_rng(1)
    # narrow Gaussians, the flat limit, and means next to the edges
    std = np.concatenate([np.full(50, 1e-3), np.full(50, 30.0), np.exp(rng.uniform(-5, 3, 400))])
    mean = clip_to_box(rng.uniform(LOW - 0.1, HIGH + 0.1, 500), LOW, HIGH)
    mu = truncated_location(mean, std, LOW, HIGH)
    np.testing.assert_allclose(truncated_moments(mu, std, LOW, HIGH)[0], mean, atol=1e-9)
    # a narrow Gaussian deep inside the box is its own truncation
    inside = (std < 0.01) & (np.abs(mean) < 1.5)
    np.testing.assert_allclose(mu[inside], mean[inside], atol=1e-9)
    # a wide one with its mean off-centre sits outside the box, on that side
    wide = (std > 10) & (mean > 0.5)
    assert (mu[wide] > HIGH).all()


def test_location_refuses_a_mean_on_or_outside_the_box_and_a_bad_scale():
    with pytest.raises(ValueError, match="strictly inside the box"):
        truncated_location([HIGH], [1.0], LOW, HIGH)
    with pytest.raises(ValueError, match="scales must be > 0"):
        truncated_location([0.0], [0.0], LOW, HIGH)


def test_clip_keeps_the_margin_inside_the_box():
    clipped = clip_to_box([-10.0, 0.0, 10.0], LOW, HIGH)
    margin = MATCH_MARGIN * (HIGH - LOW)
    np.testing.assert_allclose(clipped, [LOW + margin, 0.0, HIGH - margin])


def test_location_sensitivity_is_the_derivative_of_the_location():
    mean = np.array([0.0, 0.9, -1.5, 1.6, 0.3])
    std = np.array([0.5, 2.0, 1.0, 5.0, 0.8])
    mu = truncated_location(mean, std, LOW, HIGH)
    d_mean, d_std = location_sensitivity(mu, std, LOW, HIGH)
    h = 1e-4
    up = truncated_location(mean, std * (1 + h), LOW, HIGH)
    down = truncated_location(mean, std * (1 - h), LOW, HIGH)
    np.testing.assert_allclose(d_std, (up - down) / (2 * h * std), rtol=1e-4, atol=1e-6)
    up = truncated_location(mean + h, std, LOW, HIGH)
    down = truncated_location(mean - h, std, LOW, HIGH)
    np.testing.assert_allclose(d_mean, (up - down) / (2 * h), rtol=1e-4)


def test_detached_truncated_loss_trains_the_variance_through_the_matched_location():
    torch.manual_seed(0)
    loss = DetachedVarianceLoss(beta=0.0, low=[LOW], high=[HIGH])
    # inside the box, away from the edges: next to an edge a wide truncated Gaussian
    # of a given mean is an exponential whatever its scale, and the gradient vanishes
    mean = (torch.rand(32, 1) * 3 - 1.5).double()
    raw_var = (torch.randn(32, 1) * 2).double().requires_grad_(True)
    y = (torch.rand(32, 1) * (HIGH - LOW) + LOW).double()
    loss.variance_nll(mean, raw_var, y).backward()
    eps = 1e-5
    numeric = []
    for i in range(32):
        up, down = raw_var.detach().clone(), raw_var.detach().clone()
        up[i] += eps
        down[i] -= eps
        numeric.append(
            float(loss.variance_nll(mean, up, y) - loss.variance_nll(mean, down, y)) / (2 * eps)
        )
    np.testing.assert_allclose(raw_var.grad.flatten().numpy(), numeric, rtol=1e-2, atol=1e-7)
    # clipped means beyond the box still give a finite loss and gradient
    outside = torch.tensor([[-2.5], [2.5]], dtype=torch.float64)
    raw = torch.tensor([[3.0], [3.0]], dtype=torch.float64, requires_grad=True)
    value = loss.variance_nll(outside, raw, torch.zeros(2, 1, dtype=torch.float64))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(raw.grad).all()


def test_detached_truncated_loss_is_the_flat_prior_for_a_wide_variance():
    loss = DetachedVarianceLoss(beta=0.0, low=[-1.0], high=[3.0])
    y_pred = torch.cat([torch.full((5, 1), 1.0), torch.full((5, 1), 1e8)], dim=1)
    y = torch.linspace(-1, 3, 5)[:, None]
    # MSE of the mean plus the uniform density's -log 4, less log sqrt(2 pi)
    mse = float(torch.mean((y - 1.0) ** 2))
    expected = mse + np.log(4.0) - 0.5 * np.log(2 * np.pi)
    assert float(loss(y_pred, y)) == pytest.approx(expected, abs=1e-3)
