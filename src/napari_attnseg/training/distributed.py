"""Training on several processes with PyTorch DDP, as started by ``torchrun``.

``torchrun --nproc-per-node N -m napari_attnseg.cli train …`` starts N copies
of the command with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set.
:func:`process_group` joins them into one ``torch.distributed`` process group
(gloo on CPUs; NCCL on CUDA, each process on GPU ``LOCAL_RANK``) and
:func:`current` tells the trainer what it is part of, as a :class:`Processes`:

* the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
  (gradients averaged by PyTorch's all-reduce after every backward pass);
* a :class:`~torch.utils.data.DistributedSampler` (seeded by the run's seed,
  ``set_epoch`` every epoch) gives each process its share of every epoch's
  patches, so N processes with batch B take optimiser steps over N × B patches;
* each process's random patches and augmentations come from its own stream,
  derived from ``(seed, rank, epoch)`` (:meth:`Processes.seed`; rank 0's is
  the single-process stream), so processes do not repeat each other's crops
  and a resumed run draws what an uninterrupted one would have;
* validation images are shared out between the processes and their per-image
  results gathered on every process (:meth:`Processes.gather`), so every
  process computes the same record as one process would — the same best
  epoch, plateau schedule and early stopping everywhere;
* the main process (rank 0) alone writes checkpoints, the model and its card,
  the run folder and progress bars (:func:`is_main_process`).

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing changes: one process,
no process group. Every wait on the other processes is bounded by
``$ATTNSEG_DIST_TIMEOUT`` seconds (default 1800), after which PyTorch raises
instead of waiting for a process that died; ``torchrun`` itself stops the
other processes when one fails.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from ..inference.device import resolve_device

T = TypeVar("T")

#: seconds any process waits for the others (joining, every collective) before failing
TIMEOUT_ENV = "ATTNSEG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Processes:
    """The processes training one model together; ``Processes()`` is a single process.

    ``backend`` is None without a process group. Every method is a no-op (or
    the identity) for a single process, so the trainer has one code path.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """This process's device: ``name`` resolved alone; under NCCL GPU ``LOCAL_RANK``
        (set by :func:`process_group`); under gloo the CPU."""
        return self._group_device if self.active else resolve_device(name)

    @property
    def _group_device(self) -> torch.device:
        """Where the group's collectives take tensors: this process's GPU (NCCL) or the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def seed(self, seed: int) -> int:
        """This process's random stream for a run seeded ``seed`` (rank 0: ``seed`` itself)."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` (already on its device) in DDP; the model itself for one process."""
        if not self.active:
            return model
        device = next(model.parameters()).device
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def sampler(self, dataset: Dataset, seed: int) -> DistributedSampler | None:
        """This process's share of each epoch (shuffled by ``seed`` and the epoch), or None."""
        if not self.active:
            return None
        return DistributedSampler(
            dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed
        )

    def shard(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """``(index, item)`` for the items this process handles (every ``world_size``-th)."""
        return [(i, items[i]) for i in range(self.rank, len(items), self.world_size)]

    def gather(self, pairs: Iterable[tuple[int, T]]) -> list[T]:
        """Every process's ``(index, value)`` pairs, on every process, as values in index order."""
        pairs = list(pairs)
        if self.active:
            parts: list[Any] = [None] * self.world_size
            dist.all_gather_object(parts, pairs)
            pairs = [pair for part in parts for pair in part]
        return [value for _, value in sorted(pairs, key=lambda pair: pair[0])]

    def mean(self, total: float, count: int) -> float:
        """``sum(total) / sum(count)`` over the processes (an all-reduce)."""
        if self.active:
            both = torch.tensor([total, count], dtype=torch.float64, device=self._group_device)
            dist.all_reduce(both, op=dist.ReduceOp.SUM)
            total, count = float(both[0]), int(both[1])
        return total / max(1, count)

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every process rank 0's buffers (batch-norm running statistics).

        DDP sends them at the start of each training forward pass, and each
        process then updates its own copy; before validating and saving, all
        take the main process's, which is what the saved model holds.
        """
        if self.active:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def from_main(self, value: T) -> T:
        """Rank 0's ``value`` on every process (decisions that read clocks or stop requests)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run ``fn`` on rank 0 only (others get None); its error is raised on every process."""
        if not self.active:
            return fn(*args, **kwargs)
        result, error = None, None
        if self.is_main:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # sent to the others, then raised here as it was
                error = exc
        message = self.from_main(None if error is None else str(error) or type(error).__name__)
        if error is not None:
            raise error
        if message is not None:
            raise ValueError(message)
        return result

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def record(self, batch_size: int) -> dict[str, Any]:
        """What a model card says about the processes that trained it."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "batch_size_per_process": batch_size,
            "global_batch_size": batch_size * self.world_size,
        }


def current() -> Processes:
    """The process group this process belongs to (a single process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Processes()
    return Processes(
        world_size=dist.get_world_size(),
        rank=dist.get_rank(),
        local_rank=_env_int("LOCAL_RANK", 0),
        backend=str(dist.get_backend()),
    )


def is_main_process() -> bool:
    """True unless this is a process other than rank 0 of a process group."""
    return current().is_main


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def backend_for(device: str) -> tuple[str, torch.device]:
    """``(backend, this process's device)`` under torchrun for the ``--device`` setting.

    ``cpu`` (or ``auto`` without CUDA) is gloo on the CPU; ``cuda`` (or ``auto``
    with CUDA) is NCCL on GPU ``LOCAL_RANK``, one process per GPU. Anything else
    is an error that says what to give instead.
    """
    name = (device or "auto").strip().lower()
    local_rank = _env_int("LOCAL_RANK", 0)
    per_machine = _env_int("LOCAL_WORLD_SIZE", _env_int("WORLD_SIZE", 1))
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return "gloo", torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ValueError(
            f"--device {device} cannot be used under torchrun: each process takes GPU "
            "LOCAL_RANK (--device cuda or auto; pick the GPUs with CUDA_VISIBLE_DEVICES) "
            "or the CPU (--device cpu)"
        )
    if not torch.cuda.is_available():
        raise ValueError(
            "--device cuda under torchrun needs CUDA GPUs (NCCL), but PyTorch sees none; "
            "train on the CPU with --device cpu (gloo)"
        )
    gpus = torch.cuda.device_count()
    if per_machine > gpus or local_rank >= gpus:
        raise ValueError(
            f"torchrun started {per_machine} processes on this machine but it has {gpus} "
            f"CUDA GPU(s); give --nproc-per-node {gpus} or fewer (one process per GPU)"
        )
    return "nccl", torch.device("cuda", local_rank)


def timeout_seconds() -> float:
    """``$ATTNSEG_DIST_TIMEOUT`` (seconds, > 0) or :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds above 0, got {text!r}")
    return value


@contextmanager
def process_group(device: str = "auto") -> Iterator[Processes]:
    """Under torchrun, join the process group for the duration of the block.

    Without torchrun this yields a single :class:`Processes` and does nothing;
    a group the caller already set up is used as it is and left alone. On
    success every process waits for the others at the end and the group is
    destroyed; on an error the process leaves as it is (torchrun stops the
    others, and their waits time out after :func:`timeout_seconds` if not).
    """
    if (dist.is_available() and dist.is_initialized()) or not launched_by_torchrun():
        yield current()
        return
    if not dist.is_available():
        raise ValueError("this PyTorch has no torch.distributed; it cannot run under torchrun")
    timeout = timedelta(seconds=timeout_seconds())
    backend, where = backend_for(device)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group(
        backend, timeout=timeout, device_id=where if where.type == "cuda" else None
    )
    processes = current()
    yield processes
    processes.barrier()
    dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {text!r}") from None


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "Processes",
    "backend_for",
    "current",
    "is_main_process",
    "launched_by_torchrun",
    "process_group",
    "timeout_seconds",
]
