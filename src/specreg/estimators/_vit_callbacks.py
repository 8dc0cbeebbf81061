"""skorch callbacks of :class:`~specreg.SpecViTRegressor`.

* :class:`_WarmupCosineLR`: the learning-rate schedule, set every batch;
* :class:`_EpochCheckpoint`: the per-epoch checkpoint that ``resume=True`` continues from;
* :class:`_SeparateVarianceClipping`: skorch's ``GradientNormClipping``, with a detached
  variance head clipped on its own.

Early stopping and the progress bar are skorch's ``EarlyStopping`` and ``ProgressBar``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from skorch.callbacks import Callback, GradientNormClipping

from .._atomic import atomic_path, write_json_atomic

__all__: list[str] = []

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
FINGERPRINT_NAME = "fingerprint.json"


def _noop(*args, **kwargs):
    """A picklable sink that prints nothing (lambdas cannot be pickled)."""


class _SeparateVarianceClipping(GradientNormClipping):
    """Global gradient-norm clipping, the detached variance head's parameters apart.

    The variance head of ``SpecViT(detach_variance=True)`` sends no gradient into the
    network; clipping it together with the rest would let it rescale the network's
    gradients. Without such a head this is skorch's ``GradientNormClipping``.
    """

    def on_grad_computed(self, net, named_parameters, **kwargs):
        params = list(named_parameters)
        variance = [(n, p) for n, p in params if "variance_head." in n]
        rest = [(n, p) for n, p in params if "variance_head." not in n]
        for group in (rest, variance):
            if group:
                super().on_grad_computed(net, group, **kwargs)


class _WarmupCosineLR(Callback):
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr``, set every batch.

    The step counter is rebuilt from the history in ``on_train_begin``, so a resumed run
    continues the schedule where the checkpoint left it.
    """

    def __init__(self, lr: float, min_lr: float, warmup_steps: int, total_steps: int):
        self.lr, self.min_lr = lr, min_lr
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def on_train_begin(self, net, **kwargs):
        self.step_ = int(sum(row.get("train_batch_count", 0) for row in net.history))

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            lr = self.lr_at(self.step_)
            for group in net.optimizer_.param_groups:
                group["lr"] = lr

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.step_ += 1

    def on_epoch_end(self, net, **kwargs):
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])


class _EpochCheckpoint(Callback):
    """Write ``last.pt`` atomically at the end of every epoch (rank 0 only).

    ``dirname`` is the run's own folder, ``checkpoint_dir/<digest>``. The file holds the
    module, optimizer and grad-scaler state, the skorch history, the torch RNG state and the
    run's fingerprint (data digest and training parameters), so that a killed run restarted
    with ``resume=True`` loses at most the epoch in progress. Every file is written through
    :func:`specreg._atomic.atomic_path` (a temporary file, flushed to disk, then
    ``os.replace``), so a kill during the write leaves the previous checkpoint intact.
    ``best.pt`` (module weights only) tracks the best validation loss when there is one;
    ``fingerprint.json`` repeats the fingerprint in a form that is cheap to read.
    """

    def __init__(self, dirname: str, fingerprint: dict, rank: int = 0):
        self.dirname, self.fingerprint, self.rank = dirname, fingerprint, rank

    def on_train_begin(self, net, **kwargs):
        if self.rank == 0:
            write_json_atomic(Path(self.dirname) / FINGERPRINT_NAME, self.fingerprint)

    @staticmethod
    def _save(obj, path: Path):
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)

    def on_epoch_end(self, net, **kwargs):
        if self.rank != 0:
            return
        state = {
            "fingerprint": self.fingerprint,
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "grad_scaler": net.grad_scaler_.state_dict(),
            "history": net.history.to_list(),
            "torch_rng": torch.get_rng_state(),
        }
        self._save(state, Path(self.dirname) / CHECKPOINT_NAME)
        if net.history[-1].get("valid_loss_best", False):
            self._save(net.module_.state_dict(), Path(self.dirname) / BEST_NAME)
