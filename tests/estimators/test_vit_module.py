"""Tests of the SpecViT torch module (tokenizers, positional encodings, encoder)."""

import inspect
import re

import numpy as np
import pytest
import torch

from specreg.estimators import _vit_module
from specreg.estimators._vit_module import (
    ARCHITECTURE_PARAMS,
    VAR_FLOOR,
    BetaNLLLoss,
    SlidingTokenizer,
    SpecViT,
    check_architecture,
    count_parameters,
    gaussian_variance,
    n_tokens,
    split_gaussian,
)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # seed everything; one torch thread because another job shares the two cores (torch's
    # spinning OpenMP threads slow down ~5x under contention)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)


def small(**kw):
    params = dict(n_pix=100, patch_size=8, hidden_size=16, depth=1, heads=2)
    params.update(kw)
    return SpecViT(**params)


def test_default_is_reference_config_p16_h256_L6_a8():
    m = SpecViT(n_pix=4096)
    # reference: 4,875,521 including the unused HF pooler (65,792); used ~4.81M
    assert count_parameters(m) == 4_809_729
    assert m.n_tokens == 256
    assert len(m.blocks) == 6 and m.blocks[0].heads == 8
    assert m.blocks[0].mlp[0].out_features == 1024


@pytest.mark.parametrize("tokenizer", ["conv", "sliding"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "wavelength", "none"])
def test_forward_shapes_all_variants(tokenizer, pooling, pos_encoding):
    wave = np.linspace(5000, 5500, 100) if pos_encoding == "wavelength" else None
    m = small(
        n_outputs=3, tokenizer=tokenizer, pooling=pooling, pos_encoding=pos_encoding, wave=wave
    )
    out = m(torch.randn(5, 100))
    assert out.shape == (5, 3) and out.dtype == torch.float32
    n_seq = m.n_tokens + (pooling == "cls")
    assert m.tokens(torch.randn(5, 100)).shape == (5, n_seq, 16)


def test_n_tokens_covers_every_pixel():
    assert n_tokens(4096, 16) == 256
    assert n_tokens(100, 16) == 7  # 100 px -> padded to 112
    assert n_tokens(100, 16, stride=8) == 12  # last window starts at 88
    assert n_tokens(3, 16) == 1  # shorter than one patch: one padded patch
    for n_pix, p, s in [(100, 16, 8), (257, 16, 16), (50, 10, 3)]:
        assert (n_tokens(n_pix, p, s) - 1) * s + p >= n_pix


def test_sliding_with_stride_equal_patch_is_the_conv_tokenizer():
    conv = small(tokenizer="conv").tokenizer
    slide = SlidingTokenizer(100, 8, 16, stride=8)
    with torch.no_grad():
        slide.proj.weight.copy_(conv.proj.weight[:, 0, :])
        slide.proj.bias.copy_(conv.proj.bias)
    x = torch.randn(4, 100)
    torch.testing.assert_close(slide(x), conv(x), rtol=1e-5, atol=1e-5)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="stride"):
        small(tokenizer="sliding", stride=9)
    with pytest.raises(ValueError, match="stride must be an integer in"):
        small(tokenizer="sliding", stride=2.5)  # used to be accepted
    with pytest.raises(ValueError, match="divisible"):
        small(heads=3)
    with pytest.raises(ValueError, match="tokenizer"):
        small(tokenizer="fft")
    with pytest.raises(ValueError, match="wave"):
        small(pos_encoding="wavelength", wave=np.arange(7.0))


def test_architecture_params_are_the_signatures_keywords():
    names = list(inspect.signature(SpecViT).parameters)
    assert [n for n in names if n in ARCHITECTURE_PARAMS] == list(ARCHITECTURE_PARAMS)
    # everything else is data-dependent (set by the estimator) or the head's kind
    rest = {"n_pix", "n_outputs", "flux_mean", "flux_scale", "uncertainty", "detach_variance"}
    assert set(names) - set(ARCHITECTURE_PARAMS) == rest


def _defaults():
    sig = inspect.signature(SpecViT).parameters
    return {name: sig[name].default for name in ARCHITECTURE_PARAMS}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"patch_size": 0}, "patch_size must be a positive integer; got 0."),
        ({"hidden_size": 16.0}, "hidden_size must be a positive integer; got 16.0."),
        ({"heads": 3}, "hidden_size=256 must be divisible by heads=3."),
        ({"mlp_ratio": -1.0}, "mlp_ratio must be a finite number > 0.0; got -1.0."),
        ({"dropout": 2.0}, "dropout must be a finite number >= 0.0 and <= 1.0; got 2.0."),
        ({"pooling": "max"}, "pooling must be one of ('cls', 'mean'); got 'max'."),
        (
            {"tokenizer": "sliding", "stride": 0},
            "stride must be an integer in [1, patch_size=16]; got 0.",
        ),
    ],
)
def test_check_architecture_names_the_bad_keyword(kw, match):
    check_architecture(_defaults())
    with pytest.raises(ValueError, match=re.escape(match)):
        check_architecture({**_defaults(), **kw})
    with pytest.raises(ValueError, match=re.escape(match)):
        SpecViT(n_pix=64, **kw)


def test_conv_tokenizer_ignores_stride():
    check_architecture({**_defaults(), "stride": 1000})
    assert SpecViT(n_pix=64, patch_size=8, hidden_size=16, heads=2, stride=1000).n_tokens == 8


@pytest.mark.parametrize("tokenizer", ["conv", "sliding"])
def test_tokens_not_swamped_by_position_code_at_init(tokenizer):
    """Pins the fix of the reference's sliding-tokenizer collapse (see the ViT user guide).

    There the patch projection had std 0.02 and the positional embedding std 1, so the input
    part of each token was ~50x smaller than a data-independent constant. Here the data part
    must dominate at initialisation, for both tokenizers.
    """
    m = SpecViT(n_pix=1024, tokenizer=tokenizer)
    flux = 1 + 0.1 * torch.randn(64, 1024)
    m.flux_mean.fill_(float(flux.mean()))
    m.flux_scale.fill_(float(flux.std()))
    with torch.no_grad():
        patch = m.tokenizer((flux - m.flux_mean) / m.flux_scale)
    data_std = float(patch.std())
    pos_std = float(m.pos_embed.detach().std())
    assert data_std / pos_std > 5

    # the reference's initialisation fails this criterion by a wide margin
    ref = SpecViT(n_pix=1024, tokenizer="sliding")
    torch.nn.init.trunc_normal_(ref.tokenizer.proj.weight, std=0.02)
    torch.nn.init.normal_(ref.pos_embed, std=1.0)
    with torch.no_grad():
        ref_patch = ref.tokenizer((flux - m.flux_mean) / m.flux_scale)
    assert float(ref_patch.std()) / float(ref.pos_embed.detach().std()) < 0.5


def test_sliding_tokenizer_gets_gradient():
    m = small(tokenizer="sliding", stride=4)
    loss = m(torch.randn(8, 100)).pow(2).mean()
    loss.backward()
    assert float(m.tokenizer.proj.weight.grad.abs().sum()) > 0


def test_encoder_uses_sdpa(monkeypatch):
    calls = []
    real = _vit_module.F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dropout_p"))
        return real(*args, **kwargs)

    monkeypatch.setattr(_vit_module.F, "scaled_dot_product_attention", spy)
    m = small(depth=2, dropout=0.1)
    m.eval()
    m(torch.randn(2, 100))
    assert calls == [0.0, 0.0]  # no attention dropout in eval mode
    m.train()
    m(torch.randn(2, 100))
    assert calls[2:] == [0.1, 0.1]


def test_pre_layernorm_block_is_identity_when_branches_are_zero():
    # pre-LN: x + f(LN(x)); zeroing the output projections leaves the residual stream intact
    m = small(depth=1)
    block = m.blocks[0]
    with torch.no_grad():
        block.proj.weight.zero_()
        block.proj.bias.zero_()
        block.mlp[-1].weight.zero_()
        block.mlp[-1].bias.zero_()
    block.eval()
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(block(x), x)


def test_wavelength_encoding_depends_on_physical_wavelength():
    step = 5.0
    wave = 5000 + step * np.arange(100)
    a = small(pos_encoding="wavelength", wave=wave, pooling="mean")
    b = small(pos_encoding="wavelength", wave=wave, pooling="mean")
    torch.testing.assert_close(a.pos_fixed, b.pos_fixed)  # fixed, not learned
    assert "pos_fixed" in dict(a.named_buffers())
    assert not any("pos" in name for name, _ in a.named_parameters())
    # a grid shifted by two patches (16 px): the token at the same wavelength gets the same
    # code, i.e. the code encodes the wavelength, not the token index
    shifted = small(pos_encoding="wavelength", wave=wave + 16 * step, pooling="mean")
    torch.testing.assert_close(shifted.pos_fixed[0, :5], a.pos_fixed[0, 2:7])
    assert not torch.allclose(shifted.pos_fixed, a.pos_fixed)


def test_wavelength_encoding_without_grid_falls_back_to_index():
    m = small(pos_encoding="wavelength", wave=None, pooling="cls")
    assert m.pos_fixed.shape == (1, m.n_tokens + 1, 16)
    assert float(m.pos_fixed[0, 0].abs().sum()) == 0  # the CLS token carries no position


def test_bf16_autocast_keeps_float32_output():
    m = small()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.randn(4, 100))
    assert out.dtype == torch.float32


# --------------------------------------------------------------------------------------
# Gaussian uncertainty head and beta-NLL
# --------------------------------------------------------------------------------------
def test_gaussian_head_doubles_the_outputs_and_starts_at_unit_variance():
    plain, gauss = small(n_outputs=3), small(n_outputs=3, uncertainty="gaussian")
    assert plain.head.out_features == 3 and gauss.head.out_features == 6
    # only the head differs: 16 extra weights and 1 bias per label
    assert count_parameters(gauss) - count_parameters(plain) == 3 * (16 + 1)
    out = gauss(torch.randn(5, 100))
    mean, var = split_gaussian(out, 3)
    assert mean.shape == var.shape == (5, 3)
    # the variance bias gives the standardised labels' unit variance; the small head
    # weights (std 0.02) keep the variance near it at init
    torch.testing.assert_close(gaussian_variance(gauss.head.bias[3:]), torch.ones(3))
    assert ((var > 0.7) & (var < 1.3)).all()
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        small(uncertainty="ensemble")


def test_gaussian_variance_is_positive_and_finite_at_the_extremes():
    raw = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4])
    var = gaussian_variance(raw)
    assert torch.isfinite(var).all() and (var >= VAR_FLOOR).all()
    assert var[0] == pytest.approx(VAR_FLOOR) and var[-1] == pytest.approx(1e4)
    with pytest.raises(ValueError, match="2 columns"):
        split_gaussian(torch.zeros(4, 3), 1)


def test_beta_nll_with_beta_zero_is_the_gaussian_nll():
    g = torch.Generator().manual_seed(0)
    y_pred, y = torch.randn(64, 4, generator=g), torch.randn(64, 2, generator=g)
    mean, var = split_gaussian(y_pred, 2)
    expected = torch.nn.GaussianNLLLoss(eps=0.0)(mean, y, var)  # 0.5 (log var + r^2/var)
    torch.testing.assert_close(BetaNLLLoss(beta=0.0)(y_pred, y), expected)
    weighted = 0.5 * (var.log() + (y - mean) ** 2 / var) * var.sqrt()
    torch.testing.assert_close(BetaNLLLoss(beta=0.5)(y_pred, y), weighted.mean())


def test_beta_nll_with_beta_one_gives_the_mean_the_mse_gradient():
    # beta=1: the detached var cancels 1/var in d/dmu, whatever the predicted variance
    g = torch.Generator().manual_seed(1)
    y = torch.randn(32, 1, generator=g)
    y_pred = torch.cat([torch.randn(32, 1, generator=g), 5 * torch.randn(32, 1, generator=g)], 1)
    y_pred.requires_grad_(True)
    BetaNLLLoss(beta=1.0)(y_pred, y).backward()
    mse_grad = (y_pred[:, :1] - y).detach() / y.numel()  # d/dmu of mean(0.5 (y - mu)^2)
    torch.testing.assert_close(y_pred.grad[:, :1], mse_grad)
    # beta=0: hard (high-variance) points pull the mean less, which is what beta fixes
    y_pred.grad = None
    BetaNLLLoss(beta=0.0)(y_pred, y).backward()
    var = gaussian_variance(y_pred[:, 1:]).detach()
    torch.testing.assert_close(y_pred.grad[:, :1], mse_grad / var)


def test_beta_nll_variance_converges_to_the_squared_residual():
    # for fixed residuals r, the loss in var is minimised at var = r^2 for any beta (the
    # weight is detached): fit a free variance by gradient descent
    r = torch.tensor([[0.1], [0.5], [2.0]])
    for beta in (0.0, 0.5, 1.0):
        raw = torch.zeros(3, 1, requires_grad=True)
        opt = torch.optim.Adam([raw], lr=0.05)
        for _ in range(1500):
            opt.zero_grad()
            BetaNLLLoss(beta)(torch.cat([torch.zeros(3, 1), raw], 1), r).backward()
            opt.step()
        torch.testing.assert_close(gaussian_variance(raw).detach(), r**2, rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_nll_beta_out_of_range_is_refused(beta):
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        BetaNLLLoss(beta)


def test_noise_level_estimate_reads_the_pixel_noise_and_not_the_spectrum():
    from specreg.estimators._vit_module import noise_level_estimate
    from specreg.spectra import pfs_mr_wave

    wave = torch.from_numpy(pfs_mr_wave()).double()
    # a smooth continuum with a few absorption lines, and white noise of known sd
    smooth = 1.0 - 0.3 * torch.exp(-0.5 * ((wave - 8000.0) / 1.5) ** 2) + 1e-5 * (wave - 8000)
    gen = torch.Generator().manual_seed(0)
    sd = torch.tensor([0.01, 0.05, 0.3], dtype=torch.float64)
    flux = smooth + sd[:, None] * torch.randn(3, wave.numel(), generator=gen, dtype=torch.float64)
    torch.testing.assert_close(noise_level_estimate(flux), sd, rtol=0.05, atol=0.0)
    assert float(noise_level_estimate(smooth[None])[0]) < 1e-3
    assert noise_level_estimate(torch.ones(2, 4)).tolist() == [0.0, 0.0]


def test_detached_variance_layer_reads_the_features_and_the_noise_level():
    m = small(n_pix=64, uncertainty="gaussian", detach_variance=True)
    assert m.variance_head.in_features == 16 + 1
    with torch.no_grad():
        m.variance_head.weight.zero_()
        m.variance_head.weight[0, -1] = 1.0  # the raw variance is the log noise alone
    flux = torch.ones(2, 64)
    flux[1] += 0.1 * torch.randn(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = m(flux)[:, 1] - m.variance_head.bias
    assert float(raw[1]) > float(raw[0]) + 10  # log(0.1) against log(1e-12)
