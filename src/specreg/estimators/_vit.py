"""SpecViTRegressor: a scikit-learn estimator around a skorch net around :class:`SpecViT`.

Layering (compose, don't rebuild):

* :class:`SpecViTRegressor` is a plain sklearn estimator. ``fit`` validates the data,
  standardises the labels, seeds torch, and builds a fresh :class:`_SpecViTNet`.
  Composition rather than subclassing keeps ``get_params``/``clone`` limited to our own
  constructor parameters (a skorch subclass would expose dozens of extra ones). Its
  architecture parameters (patch_size, hidden_size, depth, heads, ...) are passed on to the
  torch module as they are.
* :class:`_SpecViTNet` is a ``skorch.NeuralNetRegressor`` that adds what skorch does not do,
  through skorch's own override points: per-batch noise drawn on the device (``infer``),
  autocast and a grad scaler (``train_step_single``, ``_step_optimizer``),
  ``inference_mode`` for prediction, and optional DDP.
* Callbacks (:mod:`specreg.estimators._vit_callbacks`): warm-up + cosine learning rate per
  batch, an atomic per-epoch checkpoint that ``resume=True`` continues from; skorch's
  GradientNormClipping, EarlyStopping and ProgressBar. Batches are cut from whole tensors
  (:mod:`specreg.estimators._vit_batches`).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import warnings
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import deprecated
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNetRegressor
from skorch.callbacks import Callback, EarlyStopping, ProgressBar
from skorch.dataset import ValidSplit, unpack_data
from skorch.history import History
from skorch.utils import to_tensor

from .._checks import ODD_WIDTH_CHECKS
from ..spectra._validation import (
    check_int,
    check_noise_model,
    check_real,
    check_seed,
    split_stacked,
)
from ._truncnorm import (
    clip_to_box,
    truncated_cdf,
    truncated_location,
    truncated_moments,
    truncated_ppf,
)
from ._vit_batches import _TensorBatches
from ._vit_callbacks import (
    CHECKPOINT_NAME,
    FINGERPRINT_NAME,
    _EpochCheckpoint,
    _noop,
    _SeparateVarianceClipping,
    _WarmupCosineLR,
)
from ._vit_module import (
    ARCHITECTURE_PARAMS,
    BetaNLLLoss,
    DetachedVarianceLoss,
    SpecViT,
    TruncatedBetaNLLLoss,
    check_architecture,
    gaussian_variance,
)

#: Predictive distributions of the uncertainty head (``uncertainty=``).
_PREDICTIVES = ("gaussian", "truncated")
#: Training spectra at most that the detached variance layer is refitted on at the end.
_VARIANCE_FIT_ROWS = 65_536

__all__ = ["SpecViTRegressor", "vit_expected_failed_checks"]

# bumped when the fingerprint's content changes: older run folders then simply stop matching
_FINGERPRINT_VERSION = 2
# constructor parameters that do not change what a run trains: left out of the checkpoint
# fingerprint (every other parameter, present or future, is in it). ``max_epochs`` is out
# so that a run can be resumed to a larger ``max_epochs``; where and how the run computes
# (device, compile, DDP) and what it prints do not change the recipe.
_NOT_TRAINING_PARAMS = frozenset(
    {
        "max_epochs",
        "checkpoint_dir",
        "resume",
        "verbose",
        "progress_bar",
        "device",
        "compile",
        "distributed",
    }
)
# arrays up to this size are hashed whole (sha1 runs at ~1 GB/s); larger ones are hashed
# through two samples of about this size each (see _array_digest)
_FULL_HASH_BYTES = 256 * 2**20
_SAMPLE_BYTES = 32 * 2**20


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _resolve_device(device: str) -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a torch device, with a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available "
            "(torch.cuda.is_available() is False); use device='cpu' or device='auto'."
        )
    return dev


def _array_digest(a) -> dict:
    """Shape, dtype and a sha1 of the values of ``a``: cheap, layout-independent.

    Arrays up to ``_FULL_HASH_BYTES`` are hashed whole. Larger ones are hashed through (1)
    a flat, C-order element stride coprime with the row width, so every row and every
    column is sampled, and (2) evenly spaced whole rows, first and last included: about
    ``2 * _SAMPLE_BYTES`` in all (~0.1 s for 100k x 8192 float32, against ~2.5 s for a
    full hash). Different row sets (other data, cross-validation folds, subsets, a
    reordering) always differ; an edit confined to unsampled elements of a large array
    can go unnoticed.
    """
    a = np.asarray(a)
    h = hashlib.sha1()
    if a.nbytes <= _FULL_HASH_BYTES or a.ndim == 0:
        if a.size:
            h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
        how = "full"
    else:
        rows = a.reshape(len(a), -1)  # a view unless a is neither C- nor F-contiguous
        n, m = rows.shape
        # at most m - 1, so that every row has a sampled element (m - 1 is coprime to m)
        step = max(1, min(a.nbytes // _SAMPLE_BYTES, m - 1))
        while m > 1 and math.gcd(step, m) != 1:
            step += 1
        if rows.flags.c_contiguous:
            h.update(np.ascontiguousarray(rows.reshape(-1)[::step]).data)
        else:  # the same elements, through C-order copies of blocks of rows
            block = max(1, _SAMPLE_BYTES // (m * a.itemsize))
            for r0 in range(0, n, block):
                chunk = np.ascontiguousarray(rows[r0 : r0 + block]).reshape(-1)
                h.update(np.ascontiguousarray(chunk[(-r0 * m) % step :: step]).data)
        k = int(min(n, max(2, _SAMPLE_BYTES // max(1, m * a.itemsize))))
        picked = np.unique(np.linspace(0, n - 1, k).round().astype(np.intp))
        h.update(np.ascontiguousarray(rows[picked]).data)
        h.update(f"{step}:{picked.size}".encode())
        how = "sampled"
    return {"shape": list(a.shape), "dtype": a.dtype.str, "sha1": h.hexdigest(), "hash": how}


def _describe(value, depth: int = 0):
    """A JSON-able, process-independent description of a parameter value.

    Numbers, strings and None as themselves (numpy scalars as Python ones), arrays and
    numeric sequences as an :func:`_array_digest`, other objects (e.g. a noise model) as
    their type, their ``repr`` and a description of their attributes, so that two equal
    configurations give the same description in any process.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, numbers.Number) for v in value)
    ):
        return _array_digest(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return [_describe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v, depth + 1) for k, v in sorted(value.items(), key=str)}
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    text = repr(value)
    out = {"type": kind, "repr": None if " at 0x" in text else text}
    if depth < 3 and hasattr(value, "__dict__"):
        out["attrs"] = {
            k: _describe(v, depth + 1)
            for k, v in sorted(vars(value).items())
            if not k.startswith("_")
        }
    return out


def _differences(mine: dict, theirs: dict) -> list[str]:
    """What differs between two checkpoint fingerprints, in words."""
    if theirs.get("version") != mine.get("version"):
        return ["fingerprint versions differ"]
    out = []
    if theirs.get("data") != mine.get("data"):
        out.append("data differ")
    a, b = mine.get("params", {}), theirs.get("params", {})
    names = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if len(names) == 1:
        out.append(f"parameter {names[0]} differs")
    elif names:
        out.append(f"parameters {', '.join(names)} differ")
    return out


def _prefixed(prefix: str, params: dict) -> dict:
    """skorch's routing of ``params`` to one of its parts: ``{"<prefix>__<name>": value}``."""
    return {f"{prefix}__{name}": value for name, value in params.items()}


# --------------------------------------------------------------------------------------
# the skorch net
# --------------------------------------------------------------------------------------
class _SpecViTNet(NeuralNetRegressor):
    """skorch regressor for :class:`SpecViT` with noise augmentation, AMP and DDP.

    Extra parameters (next to skorch's): ``n_pix`` (flux width; ``X`` columns beyond it are
    the 1-sigma errors), ``noise_level``, ``amp`` (None, "bf16", "fp16"), ``world_size``
    (DDP) and ``compile_module``. Targets must be 2-D ``(batch, n_outputs)`` float32: the
    loss refuses mismatched shapes instead of broadcasting ``(N, 1)`` against ``(N,)``.

    A training step is skorch's ``train_step``: zero the gradients, run
    :meth:`train_step_single` (forward with fresh noise, loss, scaled backward, unscale),
    notify ``on_grad_computed`` (where skorch's ``GradientNormClipping`` clips the unscaled
    gradients), then :meth:`_step_optimizer` (the grad scaler's step and update).
    """

    def __init__(
        self,
        *args,
        n_pix: int | None = None,
        noise_level: float = 0.0,
        amp: str | None = None,
        world_size: int = 1,
        compile_module: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.compile_module = compile_module
        self.n_pix = n_pix
        self.noise_level = noise_level
        self.amp = amp
        self.world_size = world_size

    # --- setup -------------------------------------------------------------------------
    def initialize(self):
        super().initialize()
        # the DDP wrapper is built here, after skorch has moved the module to its device
        # (skorch does that after initialize_module); it shares the module's parameters,
        # so the optimizer built by skorch on module_ stays valid
        self._ddp_module = None
        self._compiled = None
        dev = torch.device(self.device)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dev.index if dev.index is not None else 0] if dev.type == "cuda" else None
            ddp = DistributedDataParallel(self.module_, device_ids=ids)
            # plain setattr: skorch would register the wrapper as a second module (saved,
            # moved and counted twice); it is a transient view of module_
            object.__setattr__(self, "_ddp_module", ddp)
        # loss scaling only matters for fp16 (bf16 has float32's exponent range)
        self.grad_scaler_ = torch.amp.GradScaler(
            dev.type, enabled=self.amp == "fp16" and dev.type == "cuda"
        )
        return self

    def __getstate__(self):
        state = super().__getstate__()
        # DDP wrappers hold process-group handles: never pickled (fitted copies are plain)
        state.pop("_ddp_module", None)
        state.pop("_compiled", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._ddp_module = None
        self._compiled = None

    def _forward_module(self, training: bool):
        """The callable for this step: DDP wrapper in training, compiled if requested.

        ``torch.compile`` is applied here rather than through skorch's ``compile`` option so
        that ``module_`` stays a plain module: its state_dict keys, checkpoints and pickles
        are the same with and without compilation. The compiled wrapper shares the weights
        and is rebuilt lazily (it is not pickled).
        """
        use_ddp = training and getattr(self, "_ddp_module", None) is not None
        base = self._ddp_module if use_ddp else self.module_
        if not self.compile_module:
            return base
        cache = getattr(self, "_compiled", None) or {}
        key = "ddp" if use_ddp else "plain"
        if key not in cache:
            cache[key] = torch.compile(base)
        self._compiled = cache
        return cache[key]

    def _autocast(self):
        dev_type = torch.device(self.device).type
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        return torch.autocast(dev_type, dtype=dtype, enabled=dtype is not None)

    # --- forward -----------------------------------------------------------------------
    def infer(self, x, **fit_params):
        x = to_tensor(x, device=self.device)
        flux = x[:, : self.n_pix]
        training = self.module_.training
        if training and self.noise_level > 0:
            # fresh noise for every batch, drawn where the batch lives (the GPU when there is
            # one), so augmentation costs no host-device traffic
            error = x[:, self.n_pix : 2 * self.n_pix]
            flux = flux + self.noise_level * error * torch.randn_like(flux)
        module = self._forward_module(training)
        with self._autocast():
            return module(flux, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = to_tensor(y_true, device=self.device)
        expected = y_true.shape
        if isinstance(self.criterion_, (BetaNLLLoss, DetachedVarianceLoss)):  # [mean | raw var]
            expected = torch.Size([*y_true.shape[:-1], 2 * y_true.shape[-1]])
        if y_pred.shape != expected:
            # MSELoss would silently broadcast (N, 1) against (N,) to (N, N)
            raise ValueError(
                f"prediction shape {tuple(y_pred.shape)} differs from target shape "
                f"{tuple(y_true.shape)}; refusing to broadcast in the loss."
            )
        return self.criterion_(y_pred, y_true)

    def _all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        # the recorded loss is the mean over ranks, so every rank's history (and so its
        # early-stopping decision) is identical; differing decisions would deadlock DDP
        if self.world_size > 1:
            value = value.detach().clone()
            torch.distributed.all_reduce(value)
            value /= self.world_size
        return value

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self.grad_scaler_.scale(loss).backward()
        # unscale before on_grad_computed, or gradient clipping would apply its threshold
        # to the scaled gradients
        self.grad_scaler_.unscale_(self.optimizer_)
        return {"loss": self._all_reduce_mean(loss.detach()), "y_pred": y_pred.detach()}

    def _step_optimizer(self, step_fn):
        # skorch passes the step as a closure to optimizer.step; the grad scaler takes no
        # closure, so run it first, then let the scaler step (it skips a step whose fp16
        # gradients overflowed) and update its scale
        step_fn()
        self.grad_scaler_.step(self.optimizer_)
        self.grad_scaler_.update()

    def validation_step(self, batch, **fit_params):
        step = super().validation_step(batch, **fit_params)
        step["loss"] = self._all_reduce_mean(step["loss"])
        return step

    def evaluation_step(self, batch, training=False):
        self.check_is_fitted()
        Xi, _ = unpack_data(batch)
        self._set_training(training)
        n = len(Xi) if isinstance(Xi, torch.Tensor) else None
        pad = 0 if n is None or training else max(int(self.batch_size) - n, 0)
        if pad:
            # every forward pass sees batch_size rows, so a spectrum's prediction does not
            # depend on how many others share its batch (float32 kernels block by shape)
            Xi = torch.cat([Xi, Xi.new_zeros((pad, *Xi.shape[1:]))])
        # inference_mode is stricter and cheaper than no_grad (no version counters)
        with torch.inference_mode(not training):
            out = self.infer(Xi)
        if not pad:
            return out
        if isinstance(out, torch.Tensor):
            return out[:n]
        return type(out)(o[:n] for o in out)


# --------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------
# checks of scikit-learn's estimator suite whose even-width data have negative values in the
# error half (found by running the suite with noise_level=1); see
# SpecViTRegressor._expected_failed_checks
_NEGATIVE_ERROR_CHECKS: tuple[str, ...] = (
    "check_estimators_fit_returns_self",
    "check_estimators_overwrite_params",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_regressor_data_not_an_array",
    "check_regressor_multioutput",
    "check_regressors_int",
    "check_regressors_no_decision_function",
    "check_regressors_train",
)


class SpecViTRegressor(RegressorMixin, BaseEstimator):
    """Vision Transformer regressor for 1-D spectra, with per-batch noise augmentation.

    ``X`` is the stacked ``[flux | error]`` array of shape ``(n_samples, 2 * n_pix)`` when
    ``noise_level > 0``: every training batch sees ``flux + noise_level * error * N(0, 1)``
    with noise drawn afresh on the device, while validation and ``predict`` use the flux half
    as given (test flux is already noisy). With ``noise_level=0``, ``X`` is flux only
    ``(n_samples, n_pix)``, e.g. after :class:`HeteroscedasticNoise` in a Pipeline.

    Training follows the reference recipe: AdamW, cosine schedule to ``min_lr`` with optional
    linear warm-up (stepped per batch), gradient clipping, MSE or L1 loss on standardised
    labels (mean and population std of the training labels, inverted at predict). With
    ``uncertainty="gaussian"`` the network also predicts a variance per label, trained with
    the beta-NLL loss, and ``predict(X, return_std=True)`` returns a 1-sigma error with
    every prediction.

    Parameters
    ----------
    patch_size : int, default=16
        Tokenizer window length in pixels.
    hidden_size : int, default=256
        Token dimension.
    depth : int, default=6
        Number of pre-LN encoder blocks.
    heads : int, default=8
        Attention heads; must divide ``hidden_size``.
    mlp_ratio : float, default=4.0
        MLP width relative to ``hidden_size``.
    dropout : float, default=0.1
        Dropout rate (attention, residual branches, MLP, embeddings).
    tokenizer : {"conv", "sliding"}, default="conv"
        Non-overlapping Conv1d patches, or overlapping windows (unfold + Linear).
    stride : int or None, default=None
        Window step of the sliding tokenizer (``1 <= stride <= patch_size``); ``None`` means
        ``patch_size // 2``. Ignored by ``"conv"``.
    pooling : {"cls", "mean"}, default="cls"
        Regress from the CLS token or from the mean of the patch tokens.
    pos_encoding : {"learned", "sinusoidal", "wavelength", "none"}, default="learned"
        Positional encoding; ``"wavelength"`` encodes the patch central wavelength ``wave``.
    wave : array-like of shape (n_pix,) or None, default=None
        Wavelength grid (Angstrom) for ``pos_encoding="wavelength"``; the pixel index if None.
    max_epochs : int, default=200
        Number of epochs (the schedule's length).
    batch_size : int, default=256
        Global mini-batch size (split over processes under DDP); also the predict batch.
    lr : float, default=3e-4
        Peak AdamW learning rate.
    weight_decay : float, default=0.01
        AdamW weight decay.
    warmup_epochs : float, default=0.0
        Linear warm-up length in epochs (fractions allowed).
    min_lr : float, default=1e-5
        Final learning rate of the cosine schedule.
    grad_clip : float or None, default=0.5
        Maximum global gradient norm; None disables clipping.
    loss : {"mse", "l1"}, default="mse"
        Training loss on standardised labels (with ``uncertainty=None``). ``"l1"`` cannot
        be combined with an uncertainty head, which has its own loss.
    uncertainty : {None, "gaussian", "truncated"}, default=None
        None: point predictions, trained with ``loss``. ``"gaussian"``: the head predicts a
        mean and a variance per label (in standardised label units; the variance is
        ``softplus(raw) + 1e-6``), trained as ``variance_head`` says (by default the
        network by MSE and a variance layer by the NLL; with ``"joint"`` the whole head by
        the beta-NLL loss of Seitzer et al. 2022,
        ``0.5 * (log var + (y - mu)**2 / var) * var.detach()**nll_beta`` averaged over the
        batch and the labels), and ``predict(X, return_std=True)`` returns the predicted
        standard deviation in label units with the mean. ``"truncated"``: the same head,
        but the predictive distribution is that Gaussian truncated to the range of the
        training labels (``label_range_``), trained with its NLL; for labels drawn
        from a bounded box (a grid's), whose predictive density at low SNR is the flat
        prior rather than a Gaussian. ``predict`` returns the truncated mean,
        ``return_std`` its std; `predict_quantiles` and `predict_cdf` work for both heads.
    nll_beta : float, default=1.0
        The beta of the beta-NLL loss, in ``[0, 1]`` (checked always); used only with an
        uncertainty head. 0 is the plain Gaussian NLL (which trains the mean worse: it
        down-weights the residuals of spectra it finds hard); 1 gives the mean the
        gradient of MSE training. On the embedded grid (two seeds) 1 kept the mean within
        0.006 R^2 of MSE training on average and 0.5 lost 0.018 (see the user guide).
    variance_head : {"detached", "joint"}, default="detached"
        With an uncertainty head: ``"detached"`` trains the network and its mean with
        MSE, exactly as ``uncertainty=None`` does (the same random draws, the same
        predictions), and the variance in a linear layer of its own on the pooled
        features (gradient stopped) and the log of the input's noise level, trained with
        the (beta-)NLL and refitted to convergence at the end of ``fit``
        (``variance_fit_``): the mean loses nothing. With ``uncertainty="truncated"`` the
        predictive distribution is then the truncated Gaussian whose mean is the MSE mean
        (clipped to 0.1 % of the label range inside the training labels' range): at low
        SNR it widens into the flat prior around that mean. ``"joint"`` trains mean and
        variance together through the whole network (the beta-NLL above), which costs
        the mean a little (see the user guide).
    noise_level : float, default=1.0
        Scale of the per-batch Gaussian noise in units of the error column; 0 means ``X`` is
        flux only and no noise is added.
    noise_model : PFSNoiseModel or None, default=None
        With ``noise_level > 0``: the error half of ``X`` holds this model's reported
        (reference) errors, as ``make_spectra`` writes them, and the per-batch noise is the
        model's physical noise of the flux half (photon noise of the true flux,
        :meth:`~specreg.spectra.PFSNoiseModel.true_error`, computed once per fit), the
        process the test spectra were drawn with. None: the noise sigma is the error half.
    validation_fraction : float or None, default=None
        Fraction of the training rows held out (seeded by ``random_state``) to report
        ``valid_loss`` and drive early stopping / ``best.pt``. None: no hold-out (skorch's
        silent 20 % split is never used).
    early_stopping : bool, default=False
        Stop when the monitored loss (``valid_loss``, else ``train_loss``) has not improved
        for ``patience`` epochs, and restore the best weights.
    patience : int, default=20
        Early-stopping patience in epochs.
    checkpoint_dir : str, path or None, default=None
        Directory of per-epoch checkpoints. Every run gets its own sub-folder
        ``checkpoint_dir/<digest>/`` (``last.pt`` after every epoch, ``best.pt`` with
        validation, ``fingerprint.json``), named by 12 hex digits of a hash of its
        fingerprint: a digest of the training data (shape, dtype and a sha1 of ``X`` and
        ``y``; arrays over 256 MiB are hashed through samples that cover every row, ~0.1 s
        for 100k x 8192 float32) and every constructor parameter that changes training
        (all except ``max_epochs``, ``checkpoint_dir``, ``resume``, ``verbose``,
        ``progress_bar``, ``device``, ``compile`` and ``distributed``; ``uncertainty`` and
        ``nll_beta`` only when ``uncertainty`` is not None, so that runs without an
        uncertainty head keep the run folders they had before the option). Cross-validation
        folds and grid-search candidates therefore write, and resume, separate runs in one
        ``checkpoint_dir``. The run's ``last.pt`` is ``checkpoint_path_`` after fit.
        Without ``resume``, a fit overwrites only the run folder of its own data and
        parameters.
    resume : bool, default=False
        If True and this fit's run folder holds a ``last.pt`` (same data, same training
        parameters), continue that run to ``max_epochs`` (which may be larger than the
        original one) instead of starting afresh; a finished run is loaded without
        training. Otherwise train from scratch, with a ``UserWarning`` naming the closest
        other checkpoint in ``checkpoint_dir`` and what differs (data, parameters), if
        there is one. A flat ``checkpoint_dir/last.pt`` written by an older specreg has no
        data fingerprint: it is never loaded, never deleted, and named in that warning. A
        checkpoint that has trained more epochs than ``max_epochs`` raises a
        ``ValueError`` (resuming it would ignore ``max_epochs``; retraining would
        overwrite it). Needs ``checkpoint_dir``.
    amp : {None, "bf16", "fp16"}, default=None
        Mixed precision with ``torch.autocast``; ``"fp16"`` (CUDA only) adds a grad scaler.
        Parameters, inputs and outputs stay float32.
    compile : bool, default=False
        Run the module through ``torch.compile`` (fitted weights and pickles are unchanged;
        the compiled wrapper is rebuilt lazily after unpickling).
    distributed : bool, default=False
        Data-parallel training with PyTorch DDP. Launch one process per device (``torchrun``
        or :func:`specreg.estimators.fit_distributed`); the process group is initialised
        from the ``torchrun`` environment if it is not already.
    progress_bar : bool, default=False
        Show a tqdm progress bar per epoch.
    verbose : int, default=0
        Print skorch's per-epoch table if > 0.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where to train and predict; "auto" picks CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout, noise and the validation split.
        With an int, CPU runs are bit-for-bit reproducible (same thread count). The global
        torch RNG state is restored after ``fit``.

    Attributes
    ----------
    net_ : skorch.NeuralNetRegressor
        The fitted skorch net (its ``module_`` is the :class:`SpecViT`).
    n_features_in_ : int
        Width of ``X`` seen in fit.
    n_pix_ : int
        Number of flux pixels (``n_features_in_ // 2`` when ``noise_level > 0``).
    n_outputs_ : int
        Number of targets.
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Label standardisation (population std; 1 where constant).
    history_ : list of dict
        skorch's per-epoch history (losses, lr, durations).
    n_epochs_ : int
        Epochs trained, including resumed ones.
    checkpoint_path_ : pathlib.Path or None
        This run's ``last.pt`` (``checkpoint_dir/<digest>/last.pt``); None without
        ``checkpoint_dir``.
    variance_fit_ : dict or None
        With ``variance_head="detached"``: the final refit of the variance layer
        (``n_spectra`` it used, its mean NLL per label before and after, in standardised
        units); None otherwise.
    device_ : torch.device
        Device used for training.

    See Also
    --------
    SpecViTRegressor.module_ : the fitted torch module.

    Notes
    -----
    A fitted estimator pickles (pickle, joblib) and predicts identically after loading; a
    CUDA-trained model loads on a CPU-only machine. Under DDP, every process returns the same
    fitted model; save it from rank 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> flux = 1 + 0.1 * rng.standard_normal((64, 32)).astype(np.float32)
    >>> X = np.hstack([flux, np.full_like(flux, 0.05)])   # [flux | error]
    >>> y = flux[:, :4].mean(axis=1)
    >>> reg = SpecViTRegressor(patch_size=8, hidden_size=16, depth=1, heads=2,
    ...                        max_epochs=2, batch_size=32, device="cpu",
    ...                        random_state=0)
    >>> reg.fit(X, y).predict(X).shape
    (64,)

    With a Gaussian uncertainty head, the mean and a 1-sigma error per prediction:

    >>> reg = SpecViTRegressor(patch_size=8, hidden_size=16, depth=1, heads=2,
    ...                        uncertainty="gaussian", max_epochs=2, batch_size=32,
    ...                        device="cpu", random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X, return_std=True)
    >>> mean.shape, std.shape, bool((std > 0).all())
    ((64,), (64,), True)
    """

    def __init__(
        self,
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
        max_epochs: int = 200,
        batch_size: int = 256,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        warmup_epochs: float = 0.0,
        min_lr: float = 1e-5,
        grad_clip: float | None = 0.5,
        loss: str = "mse",
        uncertainty: str | None = None,
        nll_beta: float = 1.0,
        variance_head: str = "detached",
        noise_level: float = 1.0,
        noise_model=None,
        validation_fraction: float | None = None,
        early_stopping: bool = False,
        patience: int = 20,
        checkpoint_dir=None,
        resume: bool = False,
        amp: str | None = None,
        compile: bool = False,
        distributed: bool = False,
        progress_bar: bool = False,
        verbose: int = 0,
        device: str = "auto",
        random_state=None,
    ):
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.depth = depth
        self.heads = heads
        self.mlp_ratio = mlp_ratio
        self.dropout = dropout
        self.tokenizer = tokenizer
        self.stride = stride
        self.pooling = pooling
        self.pos_encoding = pos_encoding
        self.wave = wave
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr
        self.grad_clip = grad_clip
        self.loss = loss
        self.uncertainty = uncertainty
        self.nll_beta = nll_beta
        self.variance_head = variance_head
        self.noise_level = noise_level
        self.noise_model = noise_model
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.amp = amp
        self.compile = compile
        self.distributed = distributed
        self.progress_bar = progress_bar
        self.verbose = verbose
        self.device = device
        self.random_state = random_state

    def _expected_failed_checks(self) -> dict[str, str]:
        """Checks of scikit-learn's estimator suite that this instance fails, and why.

        Pass ``expected_failed_checks=lambda est: est._expected_failed_checks()`` to
        :func:`sklearn.utils.estimator_checks.parametrize_with_checks`. With
        ``noise_level > 0``, ``X`` is ``[flux | error]``: the checks' odd-width data and
        their negative values in the error half are refused by design. With
        ``noise_level=0`` every check passes.

        Returns
        -------
        dict of str to str
            Check name -> reason; empty for ``noise_level=0``.

        Examples
        --------
        >>> SpecViTRegressor(noise_level=0)._expected_failed_checks()
        {}
        >>> len(SpecViTRegressor()._expected_failed_checks())
        22
        """
        if not getattr(self, "noise_level", 0) > 0:
            return {}
        odd = (
            "with noise_level > 0, X must be [flux | error] (an even number of columns); "
            "the check feeds an odd-width X and the estimator refuses it by design"
        )
        negative = (
            "with noise_level > 0, the second half of X is the 1-sigma error half of "
            "[flux | error]; the check's X has negative values there, which are refused by "
            "design (the noise_level=0 instance runs these checks on the same data)"
        )
        return {
            **dict.fromkeys(ODD_WIDTH_CHECKS, odd),
            **dict.fromkeys(_NEGATIVE_ERROR_CHECKS, negative),
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        # nothing is left non-deterministic once random_state is an int (CPU)
        tags.non_deterministic = False
        return tags

    # --- validation --------------------------------------------------------------------
    def _check_params(self, n_features: int) -> int:
        """Validate hyper-parameters against the data; return the flux width ``n_pix``."""
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be 'mse' or 'l1'; got {self.loss!r}.")
        head = isinstance(self.uncertainty, str) and self.uncertainty in _PREDICTIVES
        if not (self.uncertainty is None or head):
            raise ValueError(
                f"uncertainty must be None, 'gaussian' or 'truncated'; got {self.uncertainty!r}."
            )
        check_real(self.nll_beta, "nll_beta", low=0.0, high=1.0)
        if self.variance_head not in ("detached", "joint"):
            raise ValueError(
                f"variance_head must be 'detached' or 'joint'; got {self.variance_head!r}."
            )
        if head and self.loss != "mse":
            raise ValueError(
                f"loss={self.loss!r} cannot be combined with uncertainty={self.uncertainty!r}, "
                "which trains with the beta-NLL loss; use loss='mse' (the default)."
            )
        if self.amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16'; got {self.amp!r}.")
        if not (self.noise_level >= 0):
            raise ValueError(f"noise_level must be >= 0; got {self.noise_level!r}.")
        vf = self.validation_fraction
        if vf is not None and not (0.0 < vf < 1.0):
            raise ValueError(f"validation_fraction must be None or in (0, 1); got {vf!r}.")
        check_architecture(self._architecture())
        for name in ("max_epochs", "batch_size"):
            check_int(getattr(self, name), name)
        if not np.isfinite(self.noise_level):
            raise ValueError(f"noise_level must be finite; got {self.noise_level!r}.")
        check_real(self.lr, "lr", low=0.0, low_open=True)
        check_real(self.min_lr, "min_lr", low=0.0)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr!r} must be <= lr={self.lr!r}.")
        check_real(self.weight_decay, "weight_decay", low=0.0)
        check_real(self.warmup_epochs, "warmup_epochs", low=0.0)
        if self.grad_clip is not None:
            check_real(self.grad_clip, "grad_clip", low=0.0, low_open=True)
        if self.noise_level > 0:
            if n_features % 2:
                raise ValueError(
                    f"noise_level={self.noise_level} > 0 expects X = [flux | error] with an "
                    f"even number of columns, but X has {n_features} feature(s) (odd width). "
                    "Pass the stacked flux and error arrays, or use noise_level=0 for "
                    "flux-only input."
                )
            return n_features // 2
        return n_features

    def _architecture(self) -> dict:
        """The :class:`SpecViT` keywords of this estimator (``wave`` as float64 or None)."""
        arch = {name: getattr(self, name) for name in ARCHITECTURE_PARAMS}
        if arch["wave"] is not None:
            arch["wave"] = np.asarray(arch["wave"], np.float64)
        return arch

    def _noise_sigma_input(self, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """``[flux | sigma of the per-batch noise]``: the error half, or the model's noise."""
        rule = "nonnegative" if self.noise_model is None else "positive"
        flux, error = split_stacked(X, error_rule=rule)
        if self.noise_model is None:
            return X
        check_noise_model(self.noise_model)
        out = np.empty_like(X)
        out[:, : self.n_pix_] = flux
        for start in range(0, len(X), chunk):  # bounded temporaries on large sets
            rows = slice(start, start + chunk)
            out[rows, self.n_pix_ :] = self.noise_model.true_error(flux[rows], error[rows])
        return out

    # --- fit ---------------------------------------------------------------------------
    def _fingerprint(self, X: np.ndarray, y: np.ndarray, seed: int) -> dict:
        """What a checkpoint must have been written with to be resumed by this fit.

        Every constructor parameter except those in ``_NOT_TRAINING_PARAMS`` (described by
        :func:`_describe`), and a digest of the training data (:func:`_array_digest` of
        ``X`` and ``y`` as fit sees them). A ``RandomState`` instance is described by the
        seed drawn from it; ``None`` stays ``None`` (such runs are not reproducible anyway,
        and a killed one can still be resumed). JSON round-tripped, so the copies stored in
        ``last.pt`` and ``fingerprint.json`` compare equal to a fresh one.
        """
        params = {
            k: _describe(v)
            for k, v in self.get_params(deep=False).items()
            if k not in _NOT_TRAINING_PARAMS
        }
        if self.uncertainty is None:
            # without an uncertainty head nll_beta changes nothing; leaving both out keeps
            # the digests (run folders) of runs from before the option existed
            params.pop("uncertainty", None)
            params.pop("nll_beta", None)
        if self.uncertainty is None or self.variance_head == "joint":
            params.pop("variance_head", None)  # the digests of runs from before the option
        else:
            # the detached layer's inputs grew (the log noise level): its earlier run
            # folders hold a layer of another shape and are not resumed
            params["variance_layer"] = "pooled features and log noise level"
        rs = self.random_state
        if rs is not None and not isinstance(rs, numbers.Integral):
            params["random_state"] = f"drawn seed {seed}"
        data = {"X": _array_digest(X), "y": _array_digest(y)}
        fp = {"version": _FINGERPRINT_VERSION, "params": params, "data": data}
        return json.loads(json.dumps(fp, sort_keys=True))

    @staticmethod
    def _digest(fingerprint: dict) -> str:
        """The run's folder name: 12 hex digits of a sha256 of the fingerprint."""
        text = json.dumps(fingerprint, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _build_net(
        self,
        n_train: int,
        seed: int,
        rank: int,
        world_size: int,
        checkpoint: tuple[Path, dict] | None = None,
    ) -> _SpecViTNet:
        per_rank_batch = max(1, self.batch_size // world_size)
        if self.uncertainty is not None and self.variance_head == "detached":
            criterion, criterion_params = DetachedVarianceLoss, {"beta": float(self.nll_beta)}
            if self.uncertainty == "truncated":
                criterion_params["low"], criterion_params["high"] = self._box()
        elif self.uncertainty == "gaussian":
            criterion, criterion_params = BetaNLLLoss, {"beta": float(self.nll_beta)}
        elif self.uncertainty == "truncated":
            low, high = self._box()
            criterion = TruncatedBetaNLLLoss
            criterion_params = {"beta": float(self.nll_beta), "low": low, "high": high}
        else:
            criterion = torch.nn.MSELoss if self.loss == "mse" else torch.nn.L1Loss
            criterion_params = {}
        steps_per_epoch = math.ceil(math.ceil(n_train / world_size) / per_rank_batch)
        callbacks: list[tuple[str, Callback]] = [
            (
                "lr_schedule",
                _WarmupCosineLR(
                    lr=self.lr,
                    min_lr=min(self.min_lr, self.lr),
                    warmup_steps=int(round(self.warmup_epochs * steps_per_epoch)),
                    total_steps=self.max_epochs * steps_per_epoch,
                ),
            )
        ]
        if self.grad_clip is not None:
            # on_grad_computed: after train_step_single has unscaled the AMP gradients
            callbacks.append(("gradient_clipping", _SeparateVarianceClipping(self.grad_clip)))
        validate = self.validation_fraction is not None
        if self.early_stopping:
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss" if validate else "train_loss",
                        patience=self.patience,
                        load_best=True,
                        sink=print if (self.verbose and rank == 0) else _noop,
                    ),
                )
            )
        if checkpoint is not None:
            run_dir, fingerprint = checkpoint
            callbacks.append(("checkpoint", _EpochCheckpoint(str(run_dir), fingerprint, rank)))
        if self.progress_bar and rank == 0:
            callbacks.append(("progress_bar", ProgressBar()))

        train_split = (
            ValidSplit(self.validation_fraction, stratified=False, random_state=seed)
            if validate
            else None
        )
        module_params = {
            "n_pix": self.n_pix_,
            "n_outputs": self.n_outputs_,
            **self._architecture(),
            "flux_mean": self._flux_mean,
            "flux_scale": self._flux_scale,
            # the module's head is Gaussian for both predictive distributions
            "uncertainty": None if self.uncertainty is None else "gaussian",
            "detach_variance": self.uncertainty is not None and self.variance_head == "detached",
        }
        device = str(self.device_)
        train_batches = {"shuffle": True, "rank": rank, "world_size": world_size, "seed": seed}
        return _SpecViTNet(
            SpecViT,
            **_prefixed("module", module_params),
            criterion=criterion,
            **_prefixed("criterion", criterion_params),
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=per_rank_batch,
            iterator_train=_TensorBatches,
            **_prefixed("iterator_train", {**train_batches, "device": device}),
            iterator_valid=_TensorBatches,
            iterator_valid__device=device,
            train_split=train_split,
            callbacks=callbacks,
            device=device,
            compile_module=self.compile,
            verbose=self.verbose if rank == 0 else 0,
            n_pix=self.n_pix_,
            noise_level=float(self.noise_level),
            amp=self.amp,
            world_size=world_size,
        )

    def fit(self, X: ArrayLike, y: ArrayLike) -> SpecViTRegressor:
        """Train the transformer.

        Parameters
        ----------
        X : array-like of shape (n_samples, 2 * n_pix) or (n_samples, n_pix)
            ``[flux | error]`` if ``noise_level > 0``, else flux only. Cast to float32.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (e.g. log g).

        Returns
        -------
        self : SpecViTRegressor
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).random((32, 16), dtype=np.float32)
        >>> reg = SpecViTRegressor(patch_size=4, hidden_size=8, depth=1, heads=2,
        ...                        max_epochs=1, noise_level=0, device="cpu")
        >>> reg.fit(X, X[:, 0]).n_epochs_
        1
        """
        X, y = validate_data(
            self, X, y, reset=True, dtype=np.float32, multi_output=True, y_numeric=True
        )
        y = np.asarray(y, dtype=np.float32)
        self.n_pix_ = self._check_params(X.shape[1])
        if self.resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir.")
        X_given = X
        if self.noise_level > 0:
            X = self._noise_sigma_input(X)
        self.device_ = _resolve_device(self.device)
        if self.amp == "fp16" and self.device_.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; use amp='bf16' on CPU.")
        if self.amp == "bf16" and self.device_.type == "cuda":
            if not torch.cuda.is_bf16_supported():
                raise ValueError("amp='bf16' is not supported by this GPU; use amp='fp16'.")

        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        self.y_mean_ = y2.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = y2.std(axis=0, dtype=np.float64)  # population std, as in the reference
        self.y_scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        y_std = ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32)
        self.label_range_ = None
        if self.uncertainty == "truncated":
            low, high = y2.min(axis=0), y2.max(axis=0)
            if np.any(high <= low):
                raise ValueError(
                    "uncertainty='truncated' needs labels that vary: the training labels "
                    f"span [{low}, {high}]"
                )
            self.label_range_ = np.stack([low, high]).astype(np.float32)

        flux = X[:, : self.n_pix_]
        self._flux_mean = float(flux.mean(dtype=np.float64))
        flux_scale = float(flux.std(dtype=np.float64))
        self._flux_scale = flux_scale if flux_scale > 0 else 1.0

        rank, world_size = 0, 1
        if self.distributed:
            from ._ddp import setup_distributed

            rank, world_size, local_rank = setup_distributed(self.device_)
            if self.device_.type == "cuda":
                # one GPU per process; NCCL collectives run on the current device
                self.device_ = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device_)

        seed = int(check_seed(self.random_state).randint(np.iinfo(np.int32).max))
        if world_size > 1:
            # every rank must draw the same seed (the same initial weights and split)
            # (on the training device: NCCL only communicates CUDA tensors)
            seed_t = torch.tensor([seed], dtype=torch.int64, device=self.device_)
            torch.distributed.broadcast(seed_t, src=0)
            seed = int(seed_t.item())
        n_train = len(X) - (
            int(math.ceil(self.validation_fraction * len(X))) if self.validation_fraction else 0
        )
        checkpoint, state = None, None
        self.checkpoint_path_ = None
        if self.checkpoint_dir is not None:
            # each distinct (data, training parameters) pair has its own run folder, so that
            # cross-validation folds and grid-search candidates each resume their own run
            fingerprint = self._fingerprint(X_given, y, seed)
            run_dir = Path(self.checkpoint_dir) / self._digest(fingerprint)
            checkpoint = (run_dir, fingerprint)
            self.checkpoint_path_ = run_dir / CHECKPOINT_NAME
            if self.resume:
                state = self._load_checkpoint(run_dir, fingerprint)
        fork_devices = [self.device_.index or 0] if self.device_.type == "cuda" else []
        # fork_rng: seed torch for this fit without touching the caller's global RNG state
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            net = self._build_net(n_train, seed, rank, world_size, checkpoint)
            net.initialize()
            if state is not None:
                net.module_.load_state_dict(state["module"])
                net.optimizer_.load_state_dict(state["optimizer"])
                net.grad_scaler_.load_state_dict(state["grad_scaler"])
                net.history_ = History(state["history"])
                torch.set_rng_state(state["torch_rng"])
            if world_size > 1:
                # same weights everywhere, but different noise and dropout per rank
                torch.manual_seed(seed + 1 + rank)
            epochs_left = self.max_epochs - len(net.history)
            if epochs_left > 0:
                with warnings.catch_warnings():
                    # skorch warns about 1-D targets; ours are always 2-D by construction
                    warnings.filterwarnings("ignore", category=UserWarning, module="skorch")
                    net.partial_fit(X, y_std, epochs=epochs_left)
        # drop the DDP (and compiled DDP) wrappers: the fitted model is a plain module
        net._ddp_module = None
        if net._compiled:
            net._compiled.pop("ddp", None)
        self.net_ = net
        self.history_ = net.history.to_list()
        self.n_epochs_ = len(net.history)
        self.variance_fit_ = None
        if net.module_.variance_head is not None:
            self.variance_fit_ = self._fit_variance_layer(X, y_std, seed)
        return self

    def _fit_variance_layer(self, X: np.ndarray, y_std: np.ndarray, seed: int) -> dict:
        """Refit the detached variance layer to convergence on the trained features.

        The layer is a generalised linear model of fixed inputs (the trained encoder's
        pooled features and the log noise level), so it is fitted by full-batch L-BFGS on
        the NLL (``beta=0``: the mean it would protect is no longer trained) instead of
        by the SGD steps of training, whose learning-rate budget cannot carry a weight to
        the value the noise level needs. Inputs: up to ``_VARIANCE_FIT_ROWS`` training
        spectra with one fresh noise draw each, both seeded by ``seed``.
        """
        module = self.net_.module_
        rng = np.random.default_rng([seed, 1])
        rows = np.sort(rng.permutation(len(X))[:_VARIANCE_FIT_ROWS])
        flux = X[rows, : self.n_pix_]
        if self.noise_level > 0:
            sigma = X[rows, self.n_pix_ : 2 * self.n_pix_]
            noise = rng.standard_normal(flux.shape, dtype=np.float32)
            flux = flux + np.float32(self.noise_level) * sigma * noise
        features, means = [], []
        module.eval()
        with torch.inference_mode(), self.net_._autocast():
            for start in range(0, len(flux), self.batch_size):
                batch = torch.from_numpy(
                    np.ascontiguousarray(flux[start : start + self.batch_size])
                )
                batch = batch.to(self.device_)
                pooled = module.pooled(batch)
                features.append(module.variance_features(batch, pooled).double().cpu())
                means.append(module.head(pooled).double().cpu())
        inputs, mean = torch.cat(features), torch.cat(means)
        y = torch.from_numpy(np.asarray(y_std[rows], dtype=np.float64))
        box = {}
        if self.uncertainty == "truncated":
            low, high = self._box()
            box = {"low": np.atleast_1d(low), "high": np.atleast_1d(high)}
        criterion = DetachedVarianceLoss(0.0, **box)

        def nll(raw):
            return criterion.variance_nll(mean, raw, y)

        head = module.variance_head
        layer = torch.nn.Linear(head.in_features, head.out_features, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(head.weight)
            layer.bias.copy_(head.bias)
            before = float(nll(layer(inputs)))
        optimizer = torch.optim.LBFGS(
            layer.parameters(), max_iter=500, history_size=20, line_search_fn="strong_wolfe"
        )

        def closure():
            optimizer.zero_grad()
            value = nll(layer(inputs))
            value.backward()
            return value

        optimizer.step(closure)
        with torch.no_grad():
            after = float(nll(layer(inputs)))
            finite = all(bool(torch.isfinite(t).all()) for t in layer.parameters())
            if finite and after <= before:
                head.weight.copy_(layer.weight.to(head.weight.dtype))
                head.bias.copy_(layer.bias.to(head.bias.dtype))
            else:  # not expected; the layer trained with the network is kept
                warnings.warn(
                    f"the refit of the detached variance layer did not improve its NLL "
                    f"({before:.4g} -> {after:.4g}); keeping the layer trained with the network.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                after = before
        return {"n_spectra": int(len(rows)), "nll_before": before, "nll_after": after}

    def _load_checkpoint(self, run_dir: Path, fingerprint: dict) -> dict | None:
        """This run's checkpoint, or None (with a warning when other runs are there).

        Only ``run_dir/last.pt`` is ever loaded, and only if its stored fingerprint equals
        ``fingerprint``; nothing in ``checkpoint_dir`` is deleted.
        """
        path = run_dir / CHECKPOINT_NAME
        if not path.exists():
            self._warn_fresh_start(run_dir, fingerprint)
            return None
        state = torch.load(path, map_location=self.device_, weights_only=False)
        stored = state.get("fingerprint")
        if stored != fingerprint:
            # only if the folder was copied or renamed by hand (or a digest collision)
            what = "; ".join(_differences(fingerprint, stored or {})) or "settings differ"
            raise ValueError(
                f"checkpoint {path} was written for other settings ({what}); refusing to "
                "resume from it or overwrite it. Move it away or use another checkpoint_dir."
            )
        done = len(state["history"])
        if done > self.max_epochs:
            raise ValueError(
                f"checkpoint {path} has already trained {done} epochs, more than "
                f"max_epochs={self.max_epochs}; refusing to resume it (that would ignore "
                f"max_epochs). Use max_epochs >= {done} to continue it, or resume=False to "
                "train afresh (which overwrites the checkpoint)."
            )
        return state

    def _warn_fresh_start(self, run_dir: Path, fingerprint: dict) -> None:
        """Say why ``resume=True`` trains from scratch when ``checkpoint_dir`` holds other runs."""
        root = run_dir.parent
        notes = []
        legacy = root / CHECKPOINT_NAME
        if legacy.exists():
            notes.append(
                f"{legacy} is ignored (and left untouched): it was written by an older "
                "specreg without a data and parameter fingerprint, so it cannot be checked "
                "against this fit"
            )
        others = []
        for sub in root.iterdir() if root.is_dir() else ():
            meta, ckpt = sub / FINGERPRINT_NAME, sub / CHECKPOINT_NAME
            if sub == run_dir or not (meta.is_file() and ckpt.is_file()):
                continue
            try:
                theirs = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            diff = _differences(fingerprint, theirs)
            n_diff = sum(1 + d.count(",") for d in diff)
            others.append((n_diff, -ckpt.stat().st_mtime, str(ckpt), diff))
        if others:
            _, _, closest, diff = min(others)
            notes.append(
                f"the closest of its {len(others)} other checkpoint(s), {closest}, does not "
                f"match: {'; '.join(diff)}"
            )
        if notes:
            warnings.warn(
                f"resume=True, but {root} holds no checkpoint for this data and these "
                f"training parameters; training from scratch in {run_dir}. "
                + " ".join(n[:1].upper() + n[1:] + "." for n in notes),
                UserWarning,
                stacklevel=4,
            )

    # --- predict -----------------------------------------------------------------------
    def predict(
        self, X: ArrayLike, return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predict targets (and their 1-sigma errors) in batches under ``inference_mode``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ``n_features_in_``)
            Same layout as in fit; only the flux half is used when ``noise_level > 0``.
        return_std : bool, default=False
            Also return the predicted standard deviation (as scikit-learn's
            ``GaussianProcessRegressor.predict`` does). Needs a model fitted with
            ``uncertainty="gaussian"``; the mean and the std come from the same forward
            pass.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Shaped like the ``y`` seen in fit; computed in float32, returned as float64.
            The predicted mean for a Gaussian head.
        y_std : ndarray of the shape of ``y_pred``
            Only with ``return_std=True``: the predicted standard deviation, in label
            units (``sqrt(var) * y_scale_``), float64, > 0.

        Raises
        ------
        ValueError
            If ``return_std=True`` and the model was fitted with ``uncertainty=None``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).random((32, 16), dtype=np.float32)
        >>> reg = SpecViTRegressor(patch_size=4, hidden_size=8, depth=1, heads=2,
        ...                        uncertainty="gaussian", max_epochs=1,
        ...                        noise_level=0, device="cpu").fit(X, X[:, :2])
        >>> reg.predict(X).shape
        (32, 2)
        >>> mean, std = reg.predict(X, return_std=True)
        >>> std.shape, bool((std > 0).all())
        ((32, 2), True)
        """
        mean, std = self._predictive(X, need_std=return_std)
        mean = mean.astype(np.float64)
        mean = mean.ravel() if self._y_1d else mean
        if not return_std:
            return mean
        return mean, (std.ravel() if self._y_1d else std)

    def _predictive(self, X, *, need_std: bool = True, standardised: bool = False):
        """Mean and std of the predictive distribution (label units unless ``standardised``).

        For a truncated head the untruncated Gaussian's location and scale are returned
        when ``standardised`` (what the quantiles and the CDF need); otherwise its
        moments. With a detached variance the mean is the network's, clipped into the box,
        and the location is the one that gives the truncated Gaussian that mean.
        """
        check_is_fitted(self)
        # the fitted module, not the (settable) parameter, says what the head predicts
        head = getattr(self.net_.module_, "uncertainty", None) == "gaussian"
        if need_std and not head:
            raise ValueError(
                "this needs a predicted variance, but the model was fitted with "
                "uncertainty=None; fit with uncertainty='gaussian' (or 'truncated') to "
                "predict a std, quantiles or a CDF."
            )
        X = validate_data(self, X, reset=False, dtype=np.float32)
        k = self.n_outputs_
        out = self.net_.predict(X).reshape(len(X), 2 * k if head else k)
        mean = out[:, :k]
        std = None
        if head:
            # the same variance transform as in training (softplus + floor), in float32
            var = gaussian_variance(torch.from_numpy(np.ascontiguousarray(out[:, k:]))).numpy()
            std = np.sqrt(var.astype(np.float64))
        truncated = head and getattr(self, "label_range_", None) is not None
        if truncated and self.net_.module_.variance_head is not None:
            # the detached head's distribution has the network's (MSE) mean as its mean
            low, high = self._box()
            mean = clip_to_box(mean, low, high)
            if std is not None:
                location = truncated_location(mean, std, low, high)
                if standardised:
                    return location, std
                std = truncated_moments(location, std, low, high)[1]
        elif standardised:
            return mean.astype(np.float64), std
        elif truncated:
            mean, std = truncated_moments(mean.astype(np.float64), std, *self._box())
        # the Gaussian and point heads are computed in float32 and returned as float64, the
        # dtype scikit-learn's metrics and common checks expect from a regressor (an exact
        # upcast); the truncated moments are float64 throughout
        mean = (mean * self.y_scale_ + self.y_mean_).astype(np.float64)
        return mean, (None if std is None else std * self.y_scale_)

    def _box(self):
        """The standardised box of the truncated head (infinite for the Gaussian one)."""
        if getattr(self, "label_range_", None) is None:
            return -np.inf, np.inf
        low, high = (self.label_range_.astype(np.float64) - self.y_mean_) / self.y_scale_
        return low, high

    def predict_quantiles(
        self, X: ArrayLike, quantiles=(0.15865525393145707, 0.5, 0.8413447460685429)
    ) -> np.ndarray:
        """Quantiles of the predictive distribution (Gaussian, or truncated Gaussian).

        Parameters
        ----------
        X : array-like of shape (n_samples, ``n_features_in_``)
        quantiles : sequence of float, default=(0.1587, 0.5, 0.8413)
            Levels in (0, 1); the default gives the median and the central 68 % interval.

        Returns
        -------
        ndarray of shape (n_samples, n_quantiles) or (n_samples, n_quantiles, n_outputs)
            The second shape when ``y`` was 2-D in fit.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).random((32, 16), dtype=np.float32)
        >>> reg = SpecViTRegressor(patch_size=4, hidden_size=8, depth=1, heads=2,
        ...                        uncertainty="truncated", max_epochs=1,
        ...                        noise_level=0, device="cpu").fit(X, X[:, 0])
        >>> q = reg.predict_quantiles(X, [0.025, 0.975])
        >>> q.shape, bool((q >= X[:, 0].min()).all())
        ((32, 2), True)
        """
        levels = np.asarray(quantiles, dtype=float).reshape(-1)
        if levels.size == 0 or not np.all((levels > 0) & (levels < 1)):
            raise ValueError(f"quantiles must be levels in (0, 1); got {quantiles!r}.")
        mean, std = self._predictive(X, standardised=True)
        low, high = self._box()
        out = np.stack([truncated_ppf(q, mean, std, low, high) for q in levels], axis=1)
        out = out * self.y_scale_ + self.y_mean_
        return out[:, :, 0] if self._y_1d else out

    def predict_cdf(self, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """The predictive CDF at ``y``: the PIT of true labels (uniform when calibrated).

        Parameters
        ----------
        X : array-like of shape (n_samples, ``n_features_in_``)
        y : array-like shaped like ``predict(X)``
            Label values, e.g. the true labels of a test set.

        Returns
        -------
        ndarray shaped like ``y``, values in [0, 1]

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(0).random((32, 16), dtype=np.float32)
        >>> reg = SpecViTRegressor(patch_size=4, hidden_size=8, depth=1, heads=2,
        ...                        uncertainty="gaussian", max_epochs=1,
        ...                        noise_level=0, device="cpu").fit(X, X[:, 0])
        >>> pit = reg.predict_cdf(X, X[:, 0])
        >>> pit.shape, bool(((pit >= 0) & (pit <= 1)).all())
        ((32,), True)
        """
        mean, std = self._predictive(X, standardised=True)
        y = np.asarray(y, dtype=float)
        expected = (mean.shape[0],) if self._y_1d else mean.shape
        if y.shape != expected:
            raise ValueError(f"y must be shaped like predict(X), {expected}; got {y.shape}.")
        y = y.reshape(mean.shape)
        low, high = self._box()
        cdf = truncated_cdf((y - self.y_mean_) / self.y_scale_, mean, std, low, high)
        return cdf.ravel() if self._y_1d else cdf

    @property
    def module_(self) -> SpecViT:
        """The fitted :class:`SpecViT` torch module."""
        check_is_fitted(self)
        return self.net_.module_


@deprecated(
    "it will be removed in 0.2; use the estimator's own table, "
    "expected_failed_checks=lambda est: est._expected_failed_checks()."
)
def vit_expected_failed_checks(estimator: SpecViTRegressor) -> dict[str, str]:
    """Checks of ``parametrize_with_checks`` that :class:`SpecViTRegressor` fails, and why.

    .. deprecated:: 0.1
        Every specreg estimator lists its expected failures itself; pass
        ``expected_failed_checks=lambda est: est._expected_failed_checks()``.

    Parameters
    ----------
    estimator : SpecViTRegressor
        The instance under test.

    Returns
    -------
    dict
        Check name -> reason. Empty for ``noise_level=0`` instances.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", FutureWarning)
    ...     vit_expected_failed_checks(SpecViTRegressor(noise_level=0))
    {}
    """
    return estimator._expected_failed_checks()
