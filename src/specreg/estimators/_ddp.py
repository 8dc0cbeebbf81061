"""Data-parallel training of :class:`SpecViTRegressor` with PyTorch DDP.

Two entry points:

* ``torchrun`` (multi-GPU, multi-node): the user script calls
  ``SpecViTRegressor(distributed=True, ...).fit(X, y)`` in every process;
  :func:`setup_distributed` initialises the process group from the environment variables
  that torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``).
* :func:`fit_distributed`: spawns ``n_procs`` local processes itself (gloo on CPU, NCCL on
  GPUs), trains, and returns rank 0's fitted estimator. Handy on one machine and in tests.

skorch's Accelerate integration is not used: ``accelerate`` is not a dependency, and
Accelerate-wrapped nets cannot be pickled (so they cannot go through joblib-parallel
cross-validation), while the model trained here is a plain module once ``fit`` returns. The
ViT user guide, "Multi-GPU and multi-node training (DDP)", shows both entry points.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from numpy.typing import ArrayLike
from sklearn.base import clone

if TYPE_CHECKING:  # the estimator imports this module lazily (only with distributed=True)
    from ._vit import SpecViTRegressor

__all__ = ["fit_distributed", "setup_distributed"]


def setup_distributed(device: torch.device) -> tuple[int, int, int]:
    """Join (or initialise) the default process group; return ``(rank, world, local_rank)``.

    Parameters
    ----------
    device : torch.device
        Training device; selects the backend (NCCL for CUDA, gloo for CPU) when the group
        has to be initialised here.

    Returns
    -------
    rank, world_size, local_rank : int
        This process's global rank, the number of processes, and its rank on this node.

    Examples
    --------
    Inside a script launched with ``torchrun --nproc_per_node=2 train.py``:

    >>> rank, world, local = setup_distributed(
    ...     torch.device("cpu"))  # doctest: +SKIP
    """
    if not dist.is_available():
        raise RuntimeError("distributed=True, but torch.distributed is not available.")
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise RuntimeError(
                "distributed=True needs an initialised torch.distributed process group or "
                "the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); "
                "launch with torchrun or use specreg.estimators.fit_distributed."
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return dist.get_rank(), dist.get_world_size(), local_rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, backend, est_path, x_path, y_path, out_dir, threads):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    if threads:
        torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        est = joblib.load(est_path)
        X = np.load(x_path, mmap_mode="r")
        y = np.load(y_path, mmap_mode="r")
        est.fit(X, y)
        # a checksum of the weights, so callers can verify the replicas stayed in sync
        flat = torch.cat([p.detach().float().cpu().ravel() for p in est.module_.parameters()])
        np.save(Path(out_dir) / f"params_rank{rank}.npy", flat.numpy())
        if rank == 0:
            joblib.dump(est, Path(out_dir) / "estimator.joblib")
    finally:
        dist.destroy_process_group()


def fit_distributed(
    estimator: SpecViTRegressor,
    X: ArrayLike,
    y: ArrayLike,
    n_procs: int = 2,
    backend: str | None = None,
    threads_per_proc: int | None = 1,
    return_replicas: bool = False,
) -> SpecViTRegressor | tuple[SpecViTRegressor, list[np.ndarray]]:
    """Fit a clone of ``estimator`` with DDP in ``n_procs`` spawned local processes.

    Each process trains on a disjoint ``1 / n_procs`` share of every epoch with a per-process
    batch of ``batch_size // n_procs`` (so the global batch equals ``batch_size``); gradients
    are averaged by DDP after every step.

    Parameters
    ----------
    estimator : SpecViTRegressor
        Unfitted template; it is cloned and fitted with ``distributed=True``.
    X : array-like of shape (n_samples, n_features)
        Training input (see :class:`SpecViTRegressor`).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    n_procs : int, default=2
        Number of processes (one per GPU with NCCL).
    backend : {"gloo", "nccl"} or None, default=None
        None: NCCL if the estimator trains on CUDA, else gloo.
    threads_per_proc : int or None, default=1
        ``torch.set_num_threads`` in each worker (avoid oversubscribing CPU cores).
    return_replicas : bool, default=False
        Also return the flattened parameters of every rank (to check they are identical).

    Returns
    -------
    estimator : SpecViTRegressor
        Rank 0's fitted estimator (a plain, picklable model).
    replicas : list of ndarray
        Only if ``return_replicas``: each rank's flattened parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from specreg.estimators import SpecViTRegressor, fit_distributed
    >>> X = np.random.default_rng(0).random((64, 32), dtype=np.float32)
    >>> reg = SpecViTRegressor(patch_size=8, hidden_size=16, depth=1, heads=2,
    ...                        max_epochs=2, noise_level=0, device="cpu",
    ...                        random_state=0)
    >>> fitted = fit_distributed(reg, X, X[:, 0], n_procs=2)  # doctest: +SKIP
    """
    est = clone(estimator).set_params(distributed=True)
    if backend is None:
        want_cuda = est.device != "cpu" and torch.cuda.is_available()
        backend = "nccl" if want_cuda else "gloo"
    with tempfile.TemporaryDirectory(prefix="specreg_ddp_") as tmp:
        tmp = Path(tmp)
        est_path, x_path, y_path = tmp / "est.joblib", tmp / "X.npy", tmp / "y.npy"
        joblib.dump(est, est_path)
        # the data go to the workers through memory-mapped files, not through pickling
        np.save(x_path, np.ascontiguousarray(X))
        np.save(y_path, np.ascontiguousarray(y))
        mp.start_processes(
            _worker,
            args=(
                n_procs,
                _free_port(),
                backend,
                est_path,
                x_path,
                y_path,
                tmp,
                threads_per_proc,
            ),
            nprocs=n_procs,
            start_method="spawn",
        )
        fitted = joblib.load(tmp / "estimator.joblib")
        fitted.distributed = False  # the returned model is used as a single-process one
        if return_replicas:
            replicas = [np.load(tmp / f"params_rank{r}.npy") for r in range(n_procs)]
            return fitted, replicas
    return fitted
