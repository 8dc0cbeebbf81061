"""The SpecViT torch module: 1-D patch tokenizers, positional encodings and a pre-LN encoder.

The module maps a batch of flux vectors ``(batch, n_pix)`` to ``(batch, n_outputs)``, or
with ``uncertainty="gaussian"`` to ``(batch, 2 * n_outputs)``: a mean and a raw variance
output per label, turned into a variance by :func:`gaussian_variance` and trained with
:class:`BetaNLLLoss`.
Everything that depends on the data (noise, label scaling, the error half of ``X``) lives
in the estimator (:mod:`specreg.estimators._vit`); this file is plain PyTorch.
:data:`ARCHITECTURE_PARAMS` names the keywords that the estimator passes on unchanged.

Why the sliding tokenizer of the reference study collapsed, and what is done here instead
(see the ViT user guide, "Architecture options"): its ``nn.Linear`` patch projection was
re-initialised by HuggingFace's ``_init_weights`` to std 0.02, so patch tokens had ~1/7 of
the scale of the Conv1d tokens, while the learned positional embedding was drawn with
std 1. The input signal was swamped by a constant, so the network learned the label mean.
Here

* both tokenizers use the same fan-in scaled initialisation for the patch projection
  (Conv1d with ``kernel == stride`` *is* a Linear on non-overlapping windows, so they start
  from the same token scale);
* the input flux is standardised (a fixed scalar shift/scale fitted on the training flux);
* the learned positional embedding and the CLS token start at std 0.02 (as in ViT/timm),
  so at initialisation the tokens are dominated by the data, not by the position code.

``test_vit_module.py`` pins the token-to-position scale ratio so the failure cannot return.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..spectra._validation import check_int, check_real, is_integer
from ._truncnorm import (
    clip_to_box,
    location_sensitivity,
    truncated_location,
    truncated_log_mass,
)

__all__ = [
    "ARCHITECTURE_PARAMS",
    "VAR_FLOOR",
    "BetaNLLLoss",
    "DetachedVarianceLoss",
    "SpecViT",
    "check_architecture",
    "count_parameters",
    "gaussian_variance",
    "n_tokens",
    "noise_level_estimate",
    "split_gaussian",
    "TruncatedBetaNLLLoss",
]

_POOLINGS = ("cls", "mean")
_TOKENIZERS = ("conv", "sliding")
_POS_ENCODINGS = ("learned", "sinusoidal", "wavelength", "none")
_UNCERTAINTIES = (None, "gaussian")

#: The architecture keywords of :class:`SpecViT`, in its signature's order.
#: :class:`~specreg.SpecViTRegressor` has a constructor parameter of the same name and
#: default for each one, checks them with :func:`check_architecture` before training and
#: passes them on to the module unchanged (``wave`` as a float64 array).
ARCHITECTURE_PARAMS: tuple[str, ...] = (
    "patch_size",
    "hidden_size",
    "depth",
    "heads",
    "mlp_ratio",
    "dropout",
    "tokenizer",
    "stride",
    "pooling",
    "pos_encoding",
    "wave",
)

#: Smallest variance of the Gaussian head (standardised label units, i.e. a floor of
#: 0.001 label standard deviations on the predicted std).
VAR_FLOOR = 1e-6


def n_tokens(n_pix: int, patch_size: int, stride: int | None = None) -> int:
    """Number of patch tokens for a spectrum of ``n_pix`` pixels.

    Short spectra are zero-padded on the right so that every pixel lies in a patch, i.e.
    ``ceil((max(n_pix, patch_size) - patch_size) / stride) + 1``.

    Parameters
    ----------
    n_pix : int
        Number of flux pixels.
    patch_size : int
        Window length in pixels.
    stride : int or None, default=None
        Step between windows; ``None`` means ``patch_size`` (non-overlapping).

    Returns
    -------
    int
        Number of tokens (without the CLS token).

    Examples
    --------
    >>> n_tokens(4096, 16)
    256
    >>> n_tokens(100, 16, stride=8)
    12
    """
    stride = patch_size if stride is None else stride
    return math.ceil(max(n_pix - patch_size, 0) / stride) + 1


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of a torch module.

    Parameters
    ----------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    int
        Sum of ``p.numel()`` over parameters with ``requires_grad``.

    Examples
    --------
    >>> count_parameters(torch.nn.Linear(4, 2))
    10
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_architecture(params: Mapping[str, object]) -> None:
    """Check the architecture keywords of :class:`SpecViT`; name the first bad one.

    Parameters
    ----------
    params : mapping of str to object
        A value for every name in :data:`ARCHITECTURE_PARAMS`. ``wave`` is checked
        against the pixel grid when the wavelength encoding is built; ``stride`` only
        with ``tokenizer="sliding"`` (the Conv1d tokenizer ignores it).

    Raises
    ------
    ValueError
        If a value is out of its range or not one of its choices.

    Examples
    --------
    >>> arch = dict(zip(ARCHITECTURE_PARAMS, (16, 32, 2, 4, 4.0, 0.1, "conv")))
    >>> arch.update(stride=None, pooling="cls", pos_encoding="learned", wave=None)
    >>> check_architecture(arch)
    >>> check_architecture({**arch, "heads": 3})
    Traceback (most recent call last):
    ...
    ValueError: hidden_size=32 must be divisible by heads=3.
    """
    for name in ("patch_size", "hidden_size", "depth", "heads"):
        check_int(params[name], name)
    if params["hidden_size"] % params["heads"]:
        raise ValueError(
            f"hidden_size={params['hidden_size']} must be divisible by heads={params['heads']}."
        )
    check_real(params["mlp_ratio"], "mlp_ratio", low=0.0, low_open=True)
    check_real(params["dropout"], "dropout", low=0.0, high=1.0)
    for name, allowed in (
        ("tokenizer", _TOKENIZERS),
        ("pooling", _POOLINGS),
        ("pos_encoding", _POS_ENCODINGS),
    ):
        if params[name] not in allowed:
            raise ValueError(f"{name} must be one of {allowed}; got {params[name]!r}.")
    stride, patch_size = params["stride"], params["patch_size"]
    if params["tokenizer"] == "sliding" and stride is not None:
        _check_stride(stride, patch_size)


def _check_stride(stride, patch_size: int) -> None:
    if not (is_integer(stride) and 1 <= stride <= patch_size):
        raise ValueError(
            f"stride must be an integer in [1, patch_size={patch_size}]; got {stride!r}."
        )


def _pad_right(x: torch.Tensor, n_pix: int, patch_size: int, stride: int) -> torch.Tensor:
    """Zero-pad the last axis so that ``unfold`` covers every pixel."""
    n = n_tokens(n_pix, patch_size, stride)
    missing = (n - 1) * stride + patch_size - x.shape[-1]
    return F.pad(x, (0, missing)) if missing > 0 else x


def gaussian_variance(raw: torch.Tensor) -> torch.Tensor:
    """Variance from the raw variance output of the Gaussian head.

    ``softplus(raw) + VAR_FLOOR``: softplus grows linearly rather than exponentially, so a
    large raw output cannot overflow and the NLL gradient stays bounded for large
    variances (an ``exp`` parametrisation makes the ``(y - mu)**2 / var`` term explode when
    the log-variance runs negative); the floor keeps ``1 / var`` finite on residuals near
    zero (noiseless training spectra can be fitted almost exactly).

    Parameters
    ----------
    raw : Tensor of any shape
        Raw head outputs.

    Returns
    -------
    Tensor of the same shape
        Variances, all ``>= VAR_FLOOR``.

    Examples
    --------
    >>> var = gaussian_variance(torch.tensor([-50.0, 0.0, 30.0]))
    >>> [round(v, 4) for v in var.tolist()], bool(var[0] > 0)
    ([0.0, 0.6931, 30.0], True)
    """
    return F.softplus(raw) + VAR_FLOOR


def split_gaussian(output: torch.Tensor, n_outputs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance halves of a Gaussian head's output.

    Parameters
    ----------
    output : Tensor of shape (batch, 2 * n_outputs)
        ``[mean | raw variance]`` as :class:`SpecViT` with ``uncertainty="gaussian"``
        returns it.
    n_outputs : int
        Number of labels ``k``.

    Returns
    -------
    mean, var : Tensor of shape (batch, n_outputs)
        Predicted mean and variance (:func:`gaussian_variance` of the second half).

    Examples
    --------
    >>> mean, var = split_gaussian(torch.zeros(3, 4), 2)
    >>> mean.shape, var.shape
    (torch.Size([3, 2]), torch.Size([3, 2]))
    """
    if output.shape[-1] != 2 * n_outputs:
        raise ValueError(
            f"a Gaussian head for {n_outputs} output(s) has {2 * n_outputs} columns; "
            f"got shape {tuple(output.shape)}."
        )
    return output[..., :n_outputs], gaussian_variance(output[..., n_outputs:])


class BetaNLLLoss(nn.Module):
    """beta-NLL loss of a Gaussian head (Seitzer et al. 2022).

    Per element ``0.5 * (log var + (y - mu)**2 / var) * var.detach()**beta``, averaged over
    the batch and the labels. ``beta=0`` is the plain Gaussian negative log-likelihood,
    whose gradient on the mean is ``(mu - y) / var``: badly fitted (high-variance) points
    are down-weighted, so the mean trains worse than with MSE. The detached factor
    ``var**beta`` undoes that weighting partly (``beta=0.5``) or wholly (``beta=1``: the
    mean's gradient is that of ``0.5 * (y - mu)**2``, as under MSE), while the variance
    still converges to the squared residual.

    Parameters
    ----------
    beta : float, default=0.5
        Exponent of the detached variance weight, in ``[0, 1]``.

    Examples
    --------
    >>> loss = BetaNLLLoss(beta=0.5)
    >>> y_pred = torch.zeros(4, 2)  # one label: mean 0, raw variance 0
    >>> near, far = loss(y_pred, torch.zeros(4, 1)), loss(y_pred, torch.ones(4, 1))
    >>> bool(near < far)
    True
    """

    def __init__(self, beta: float = 0.5):
        super().__init__()
        beta = float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1]; got {beta!r}.")
        self.beta = beta

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        mean, var = split_gaussian(y_pred, y_true.shape[-1])
        nll = 0.5 * (torch.log(var) + (y_true - mean) ** 2 / var)
        if self.beta > 0:
            nll = nll * var.detach() ** self.beta
        return nll.mean()


class TruncatedBetaNLLLoss(BetaNLLLoss):
    """beta-NLL of the head's Gaussian truncated to a label box ``[low, high]``.

    Per element ``0.5 * (log var + (y - mu)**2 / var) + log Z`` with ``Z`` the
    Gaussian's mass inside the box, times ``var.detach()**beta``. A label drawn from a
    bounded prior has a predictive density that vanishes outside the box; where the
    spectrum says little (low SNR) the fitted ``sigma`` grows and the truncated density
    becomes the flat prior, which an untruncated Gaussian cannot represent.

    Parameters
    ----------
    beta : float, default=1.0
        As in :class:`BetaNLLLoss`.
    low, high : sequence of float
        The box per label, in the standardised units the loss sees.

    Examples
    --------
    >>> loss = TruncatedBetaNLLLoss(1.0, low=[-1.0], high=[1.0])
    >>> y_pred = torch.zeros(4, 2)
    >>> y = torch.zeros(4, 1)
    >>> bool(loss(y_pred, y) < BetaNLLLoss(1.0)(y_pred, y))
    True
    """

    def __init__(self, beta: float = 1.0, low=(-1.0,), high=(1.0,)):
        super().__init__(beta)
        low = torch.as_tensor(np.asarray(low, dtype=np.float32).reshape(-1))
        high = torch.as_tensor(np.asarray(high, dtype=np.float32).reshape(-1))
        if low.shape != high.shape or not bool((high > low).all()):
            raise ValueError(f"the box needs low < high per label; got {low}, {high}.")
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        mean, var = split_gaussian(y_pred, y_true.shape[-1])
        log_mass = truncated_log_mass(mean, var.sqrt(), self.low, self.high)
        nll = 0.5 * (torch.log(var) + (y_true - mean) ** 2 / var) + log_mass
        if self.beta > 0:
            nll = nll * var.detach() ** self.beta
        return nll.mean()


class DetachedVarianceLoss(nn.Module):
    """MSE on the mean plus a negative log-likelihood that trains only the variance.

    For a ``[mean | raw variance]`` head whose variance half does not reach back into
    the network (``SpecViT(detach_variance=True)``): ``mse(mean, y) + nll(y | mean.detach(),
    var)``, so the mean gets exactly the gradient of MSE training and the variance that
    of the NLL. Without a box the NLL is the Gaussian beta-NLL of :class:`BetaNLLLoss`.
    With a box ``[low, high]`` the predictive distribution is the Gaussian truncated to
    it whose *mean* is the network's mean (clipped to :data:`MATCH_MARGIN` of the box
    width inside it): its location solves :func:`truncated_location`, and the variance
    is trained through that solution (implicit derivatives), in float64. The MSE mean
    is then the predictive mean, while at low SNR the distribution can widen into the
    flat prior.

    Parameters
    ----------
    beta : float, default=1.0
        As in :class:`BetaNLLLoss`.
    low, high : sequence of float or None, default=None
        The box per label, in the standardised units the loss sees; both or neither.

    Examples
    --------
    >>> loss = DetachedVarianceLoss(beta=0.0)
    >>> mean = torch.zeros(4, 1, requires_grad=True)
    >>> value = loss(torch.cat([mean, torch.zeros(4, 1)], 1), torch.ones(4, 1))
    >>> value.backward()
    >>> mean.grad.flatten().tolist()  # the MSE gradient 2 (mean - y) / n
    [-0.5, -0.5, -0.5, -0.5]
    """

    def __init__(self, beta: float = 1.0, low=None, high=None):
        super().__init__()
        if (low is None) != (high is None):
            raise ValueError("give both low and high, or neither.")
        # checks beta and the box, and serves as the NLL when there is no box
        self.nll = BetaNLLLoss(beta) if low is None else TruncatedBetaNLLLoss(beta, low, high)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        k = y_true.shape[-1]
        mean = y_pred[..., :k]
        mse = nn.functional.mse_loss(mean, y_true)
        return mse + self.variance_nll(mean.detach(), y_pred[..., k:], y_true).to(mse.dtype)

    def variance_nll(self, mean: torch.Tensor, raw_var: torch.Tensor, y_true: torch.Tensor):
        """The (beta-)NLL of ``y_true`` given a fixed ``mean`` and the raw variance.

        The variance's part of the loss, also what the estimator minimises when it refits
        the variance layer; float64 with a box (see the class docstring).

        Parameters
        ----------
        mean, raw_var, y_true : Tensor of shape (batch, k)
            The mean (no gradient flows into it), the raw variance outputs, the labels.

        Returns
        -------
        Tensor
            The mean over the batch and the labels.
        """
        if not isinstance(self.nll, TruncatedBetaNLLLoss):
            return self.nll(torch.cat([mean, raw_var], dim=-1), y_true)
        var = gaussian_variance(raw_var).double()
        std = var.sqrt()
        low, high = self.nll.low.double(), self.nll.high.double()
        # far from the box the two terms below are large and cancel: float64
        location = _MatchedLocation.apply(mean, std, low.expand_as(std), high.expand_as(std))
        log_mass = truncated_log_mass(location, std, low, high)
        nll = 0.5 * (torch.log(var) + (y_true.double() - location) ** 2 / var) + log_mass
        if self.nll.beta > 0:
            nll = nll * var.detach() ** self.nll.beta
        return nll.mean()


class _MatchedLocation(torch.autograd.Function):
    """:func:`truncated_location` of a mean (clipped by :func:`clip_to_box`, no gradient)
    and a scale, with the implicit derivative in the scale."""

    @staticmethod
    def forward(ctx, mean, std, low, high):
        std_, low_, high_ = (t.detach().cpu().numpy() for t in (std, low, high))
        target = clip_to_box(mean.detach().cpu().numpy(), low_, high_)
        location = truncated_location(target, std_, low_, high_)
        d_std = location_sensitivity(location, std_, low_, high_)[1]
        # a box so narrow that the mean no longer moves: no gradient, not a NaN
        d_std = np.nan_to_num(d_std, nan=0.0, posinf=0.0, neginf=0.0)
        ctx.save_for_backward(torch.from_numpy(d_std).to(std))
        return torch.from_numpy(location).to(std)

    @staticmethod
    def backward(ctx, grad):
        (d_std,) = ctx.saved_tensors
        return None, grad * d_std, None, None


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous copy of the gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous()


class ConvTokenizer(nn.Module):
    """Non-overlapping patches: ``Conv1d(1, hidden, kernel=stride=patch_size)``.

    Input ``(batch, n_pix)``, output ``(batch, n_tokens, hidden)``.
    """

    def __init__(self, n_pix: int, patch_size: int, hidden_size: int):
        super().__init__()
        self.n_pix, self.patch_size, self.stride = n_pix, patch_size, patch_size
        self.proj = nn.Conv1d(1, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_right(x, self.n_pix, self.patch_size, self.stride)
        return self.proj(x.unsqueeze(1)).transpose(1, 2)


class SlidingTokenizer(nn.Module):
    """Overlapping windows: ``x.unfold(-1, patch_size, stride)`` followed by ``Linear``.

    Input ``(batch, n_pix)``, output ``(batch, n_tokens, hidden)``. The projection keeps
    PyTorch's fan-in scaled default initialisation, the same as the Conv1d tokenizer's (the
    reference re-initialised it at std 0.02, which is what made it collapse).
    """

    def __init__(self, n_pix: int, patch_size: int, hidden_size: int, stride: int):
        super().__init__()
        _check_stride(stride, patch_size)
        self.n_pix, self.patch_size, self.stride = n_pix, patch_size, stride
        self.proj = nn.Linear(patch_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_right(x, self.n_pix, self.patch_size, self.stride)
        return self.proj(x.unfold(-1, self.patch_size, self.stride))


def sinusoidal_encoding(positions: np.ndarray, dim: int, periods: np.ndarray) -> np.ndarray:
    """Sine/cosine features of 1-D coordinates.

    Parameters
    ----------
    positions : ndarray of shape (n,)
        Coordinates (token index or wavelength).
    dim : int
        Feature dimension (the hidden size); odd sizes drop the last cosine.
    periods : ndarray of shape (ceil(dim / 2),)
        Period of each sine/cosine pair, in the units of ``positions``.

    Returns
    -------
    ndarray of shape (n, dim), float32
        ``[sin(2 pi x / P_k), cos(2 pi x / P_k)]`` interleaved.

    Examples
    --------
    >>> enc = sinusoidal_encoding(np.arange(3.0), 4, np.array([2.0, 8.0]))
    >>> enc.shape
    (3, 4)
    """
    phase = 2 * np.pi * np.asarray(positions, float)[:, None] / np.asarray(periods)[None, :]
    out = np.empty((len(positions), 2 * phase.shape[1]))
    out[:, 0::2], out[:, 1::2] = np.sin(phase), np.cos(phase)
    return out[:, :dim].astype(np.float32)


class Block(nn.Module):
    """Pre-LayerNorm transformer block with ``scaled_dot_product_attention``.

    ``x + MSA(LN(x))`` then ``x + MLP(LN(x))``; input and output ``(batch, tokens, hidden)``.
    """

    def __init__(self, hidden_size: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size={hidden_size} must be divisible by heads={heads}.")
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        hidden_mlp = max(1, int(round(mlp_ratio * hidden_size)))
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden_mlp),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_mlp, hidden_size),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, h // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (b, heads, n, d_head)
        attn = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, n, h)))
        return x + self.drop(self.mlp(self.norm2(x)))


def noise_level_estimate(flux: torch.Tensor) -> torch.Tensor:
    """Per-spectrum noise level from the flux alone (the DER_SNR estimator's noise).

    ``1.482602 / sqrt(6) * median |2 f_i - f_(i-2) - f_(i+2)|`` (Stoehr et al. 2008): the
    second difference over two pixels cancels a smooth spectrum and leaves the pixel
    noise, the median ignores the few lines and bad pixels. On the embedded grid's noisy
    spectra its log correlates with the log SNR at -0.999 and predicts log g with
    R^2 = 0.00 (a linear fit, five folds): it tells the variance how noisy a spectrum is,
    not which star it is. Zero for fewer than five pixels.

    Parameters
    ----------
    flux : Tensor of shape (batch, n_pix)

    Returns
    -------
    Tensor of shape (batch,)
        The noise's standard deviation in flux units (for white noise).

    Examples
    --------
    >>> flux = 1.0 + 0.1 * torch.randn(2, 4096, generator=torch.Generator().manual_seed(0))
    >>> [round(v, 2) for v in noise_level_estimate(flux).tolist()]
    [0.1, 0.1]
    """
    if flux.shape[-1] < 5:
        return flux.new_zeros(flux.shape[:-1])
    second = 2 * flux[..., 2:-2] - flux[..., :-4] - flux[..., 4:]
    return 1.482602 / math.sqrt(6.0) * second.abs().median(dim=-1).values


class SpecViT(nn.Module):
    """Vision Transformer for 1-D spectra (regression).

    Parameters
    ----------
    n_pix : int
        Number of flux pixels of the input.
    n_outputs : int, default=1
        Number of regression targets.
    patch_size : int, default=16
        Tokenizer window length in pixels.
    hidden_size : int, default=256
        Token dimension.
    depth : int, default=6
        Number of encoder blocks.
    heads : int, default=8
        Attention heads (must divide ``hidden_size``).
    mlp_ratio : float, default=4.0
        MLP width relative to ``hidden_size``.
    dropout : float, default=0.1
        Dropout in attention, after attention and in the MLP.
    tokenizer : {"conv", "sliding"}, default="conv"
        ``"conv"``: non-overlapping Conv1d patches; ``"sliding"``: overlapping windows.
    stride : int or None, default=None
        Window step of the sliding tokenizer; ``None`` means ``patch_size // 2``.
        Ignored by ``"conv"`` (stride = patch_size).
    pooling : {"cls", "mean"}, default="cls"
        Read the CLS token or average the patch tokens.
    pos_encoding : {"learned", "sinusoidal", "wavelength", "none"}, default="learned"
        Learned absolute embedding, fixed sinusoid of the token index, or fixed sinusoid of
        the patch's central wavelength (``wave`` in Angstrom; the pixel index if ``None``).
    wave : array-like of shape (n_pix,) or None, default=None
        Wavelength grid, used by ``pos_encoding="wavelength"``.
    flux_mean, flux_scale : float, default=0.0, 1.0
        Input standardisation ``(flux - flux_mean) / flux_scale`` (fitted by the estimator).
    uncertainty : {None, "gaussian"}, default=None
        None: the head returns ``n_outputs`` predictions. ``"gaussian"``: it returns
        ``2 * n_outputs`` columns, ``[mean | raw variance]`` (see :func:`split_gaussian`);
        the raw variance starts at the value that gives a unit variance.
    detach_variance : bool, default=False
        With ``uncertainty="gaussian"``: the variance comes from a separate linear layer
        on the pooled features with their gradient stopped and on the log of the input's
        own noise level (:func:`noise_level_estimate`; features trained for the mean
        encode the SNR only partly), with zero weights at the start, built without
        drawing random numbers; the mean head is the plain one. With
        :class:`DetachedVarianceLoss` the encoder and the mean then train exactly as
        under MSE.

    Examples
    --------
    >>> m = SpecViT(n_pix=64, patch_size=8, hidden_size=16, depth=1, heads=2)
    >>> m(torch.ones(3, 64)).shape
    torch.Size([3, 1])
    >>> g = SpecViT(n_pix=64, n_outputs=2, patch_size=8, hidden_size=16, depth=1,
    ...             heads=2, uncertainty="gaussian")
    >>> g(torch.ones(3, 64)).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        n_pix: int,
        n_outputs: int = 1,
        patch_size: int = 16,
        hidden_size: int = 256,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        tokenizer: str = "conv",
        stride: int | None = None,
        pooling: str = "cls",
        pos_encoding: str = "learned",
        wave=None,
        flux_mean: float = 0.0,
        flux_scale: float = 1.0,
        uncertainty: str | None = None,
        detach_variance: bool = False,
    ):
        super().__init__()
        arch = locals()
        check_architecture({name: arch[name] for name in ARCHITECTURE_PARAMS})
        if uncertainty not in _UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {_UNCERTAINTIES}; got {uncertainty!r}.")
        if detach_variance and uncertainty != "gaussian":
            raise ValueError("detach_variance=True needs uncertainty='gaussian'.")
        self.pooling = pooling
        self.uncertainty = uncertainty
        self.n_outputs = n_outputs
        if tokenizer == "conv":
            self.tokenizer = ConvTokenizer(n_pix, patch_size, hidden_size)
        else:
            stride = max(1, patch_size // 2) if stride is None else int(stride)
            self.tokenizer = SlidingTokenizer(n_pix, patch_size, hidden_size, stride)
        n_tok = n_tokens(n_pix, patch_size, self.tokenizer.stride)
        self.n_tokens = n_tok
        self.register_buffer("flux_mean", torch.tensor(float(flux_mean)))
        self.register_buffer("flux_scale", torch.tensor(float(flux_scale)))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size)) if pooling == "cls" else None
        n_seq = n_tok + (pooling == "cls")

        self.pos_embed = None
        if pos_encoding == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n_seq, hidden_size))
        elif pos_encoding in ("sinusoidal", "wavelength"):
            enc = self._fixed_encoding(
                pos_encoding, n_pix, n_tok, hidden_size, patch_size, self.tokenizer.stride, wave
            )
            if pooling == "cls":  # the CLS token carries no position
                enc = np.concatenate([np.zeros((1, hidden_size), np.float32), enc])
            self.register_buffer("pos_fixed", torch.from_numpy(enc)[None])
        self.pos_encoding = pos_encoding

        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [Block(hidden_size, heads, mlp_ratio, dropout) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        joint = uncertainty == "gaussian" and not detach_variance
        self.head = nn.Linear(hidden_size, n_outputs * (2 if joint else 1))
        self._init_weights()
        self.variance_head = None
        if detach_variance:
            # built and filled without touching the random stream, so that the encoder,
            # the mean head and the training batches are those of the MSE network
            with torch.random.fork_rng(devices=[]):
                self.variance_head = nn.Linear(hidden_size + 1, n_outputs)
            with torch.no_grad():
                self.variance_head.weight.zero_()
                self.variance_head.bias.fill_(math.log(math.expm1(1.0)))
        elif uncertainty == "gaussian":
            # start at unit variance, the spread of the standardised labels, instead of
            # softplus(0) = 0.69; a constant fill draws no random numbers
            with torch.no_grad():
                self.head.bias[n_outputs:] = math.log(math.expm1(1.0))

    @staticmethod
    def _fixed_encoding(kind, n_pix, n_tok, dim, patch_size, stride, wave):
        n_pair = (dim + 1) // 2
        if kind == "sinusoidal":
            # classic transformer code: periods 2*pi * 10000^(2k/d), in units of tokens
            periods = 2 * np.pi * 10000.0 ** (2 * np.arange(n_pair) / dim)
            return sinusoidal_encoding(np.arange(n_tok, dtype=float), dim, periods)
        if wave is None:  # no grid given: fall back to the pixel index
            periods = 2 * np.pi * 10000.0 ** (2 * np.arange(n_pair) / dim)
            return sinusoidal_encoding(np.arange(n_tok) * stride / patch_size, dim, periods)
        wave = np.asarray(wave, float)
        if wave.shape != (n_pix,) or not np.all(wave > 0):
            raise ValueError(
                f"wave must be positive wavelengths of shape (n_pix,) = ({n_pix},); "
                f"got shape {wave.shape}."
            )
        # extend the grid linearly over the zero-padded tail, then take patch centres
        step = wave[-1] - wave[-2] if n_pix > 1 else 1.0
        n_total = (n_tok - 1) * stride + patch_size
        extra = wave[-1] + step * np.arange(1, max(n_total - n_pix, 0) + 1)
        full = np.concatenate([wave, extra])
        starts = np.arange(n_tok) * stride
        centres = np.array([full[i : i + patch_size].mean() for i in starts])
        # absolute ln(lambda) with periods fixed in velocity space (1e-4 ~ 30 km/s up to
        # 10): the same wavelength gets the same code whatever the pixel grid or range, so
        # the code means "where in the spectrum" (which lines), not "which token"
        periods = np.geomspace(1e-4, 10.0, n_pair)
        return sinusoidal_encoding(np.log(np.maximum(centres, 1e-12)), dim, periods)

    def _init_weights(self):
        # ViT/timm initialisation for the encoder; the patch projection keeps PyTorch's
        # fan-in scaled default (see the module docstring for why).
        for name, mod in self.named_modules():
            if name.startswith("tokenizer"):
                continue
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def tokens(self, flux: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus CLS token and position code, before the encoder.

        Parameters
        ----------
        flux : Tensor of shape (batch, n_pix)

        Returns
        -------
        Tensor of shape (batch, n_tokens [+1], hidden_size)
        """
        x = self.tokenizer((flux - self.flux_mean) / self.flux_scale)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        elif self.pos_encoding in ("sinusoidal", "wavelength"):
            x = x + self.pos_fixed
        return x

    def pooled(self, flux: torch.Tensor) -> torch.Tensor:
        """The encoder's summary of each spectrum of ``flux`` (batch, n_pix): the CLS
        token or the token mean after the last block, shape (batch, hidden_size)."""
        x = self.pos_drop(self.tokens(flux))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 0] if self.pooling == "cls" else x.mean(dim=1)

    @staticmethod
    def variance_features(flux: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """What the detached variance layer reads: the stopped pooled features and the
        log of the input's noise level (:func:`noise_level_estimate`), float32.

        Returns
        -------
        Tensor of shape (batch, hidden_size + 1)
        """
        noise = torch.log(noise_level_estimate(flux.float()).clamp_min(1e-12))
        return torch.cat([pooled.detach().float(), noise[:, None]], dim=-1)

    def forward(self, flux: torch.Tensor) -> torch.Tensor:
        pooled = self.pooled(flux)
        # float32 output whatever the autocast dtype, so the loss is computed in float32
        out = self.head(pooled).float()
        if self.variance_head is None:
            return out
        # the variance reads the features without training them; the mean's gradient comes
        # back through the concatenation as a strided view, and summing a strided tensor
        # (the bias gradient) can round differently: made contiguous, it is MSE's exactly
        features = self.variance_features(flux, pooled).to(pooled.dtype)
        var = self.variance_head(features).float()
        return torch.cat([_ContiguousGrad.apply(out), var], dim=-1)
