"""One training step (forward, loss, backward, optimiser step), per precision, round-robin.

What the trainer spends nearly all of an epoch on, without data loading: a
fixed batch of random patches through the network under autocast (fp32
master weights), the trainer's default loss computed in fp32 on the logits
(distance maps computed once, outside the timing), backward, and an Adam
step. fp16 uses a gradient scaler, as the trainer does on CUDA.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import numpy as np
import torch

from .execution import Variant
from .measure import synchronize, timing_fields, wants_more
from .networks import build_network
from .settings import BenchSettings, Log


def _batch(settings: BenchSettings, device: torch.device):
    """``(images, targets, distance-penalty maps)`` of a synthetic training batch."""
    from ..losses import distance_penalty_map
    from .synthetic import synthetic_samples

    size, n = settings.train_patch_size, settings.train_batch
    samples = synthetic_samples(n, size, settings.in_channels, settings.seed)
    x = torch.as_tensor(np.stack([s.image for s in samples]), device=device)
    target = torch.as_tensor(np.stack([s.mask for s in samples]), device=device)
    dpt = torch.as_tensor(
        np.stack([distance_penalty_map(s.mask, 2) for s in samples]), device=device
    )
    return x, target, dpt


def measure_train_steps(
    archs: list[str],
    settings: BenchSettings,
    device: torch.device,
    variants: list[Variant],
    log: Log,
) -> list[dict[str, Any]]:
    """One record per (architecture, variant): seconds per training step, round-robin.

    Only the precision (and the channels-last flag) of each variant applies.
    """
    from ..losses import build_loss, loss_needs_dpt
    from ..training import TrainConfig

    config = TrainConfig()
    loss_fn = build_loss(config.loss, **config.loss_params)
    x, target, dpt = _batch(settings, device)
    extra = {"dpt": dpt} if loss_needs_dpt(loss_fn) else {}
    jobs: dict[tuple[str, str], Any] = {}
    for arch in archs:
        torch.manual_seed(settings.seed)
        model, options = build_network(arch, settings.in_channels)
        model.to(device)
        for variant in variants:
            net = copy.deepcopy(model).train()
            if variant.channels_last:
                net = net.to(memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
            scaler = torch.amp.GradScaler(device.type, enabled=variant.precision == "fp16")
            jobs[arch, variant.name] = (net, optimizer, scaler, variant, options)

    def step(key: tuple[str, str]) -> float:
        net, optimizer, scaler, variant, _ = jobs[key]
        xx = x.contiguous(memory_format=variant.memory_format)
        dtype = variant.dtype
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = net(xx)
        loss = loss_fn(logits.float(), target, **extra)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    log(
        f"training step {settings.train_batch}x{settings.train_patch_size}²: "
        f"{', '.join(archs)} x {', '.join(v.name for v in variants)}"
    )
    losses: dict[tuple[str, str], float] = {}
    for key in jobs:
        for _ in range(max(1, settings.warmup)):
            losses[key] = step(key)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in jobs}
    rounds = 0
    while wants_more(
        rounds,
        min(sum(t) for t in times.values()),
        repeats=settings.repeats,
        min_time=settings.min_time,
        max_repeats=settings.max_repeats,
    ):
        for key in jobs:
            synchronize(device)
            start = time.perf_counter()
            losses[key] = step(key)
            synchronize(device)
            times[key].append(time.perf_counter() - start)
        rounds += 1
    records = []
    for (arch, name), t in times.items():
        variant, options = jobs[arch, name][3], jobs[arch, name][4]
        records.append(
            {
                "model": arch,
                "options": options,
                "variant": name,
                "precision": variant.precision,
                "batch": settings.train_batch,
                "patch_size": settings.train_patch_size,
                "loss": config.loss,
                "seconds_per_step": statistics.median(t),
                "min_seconds_per_step": min(t),
                "last_loss": losses[arch, name],
                **timing_fields(t),
            }
        )
    return records


def train_step_speedups(records: list[dict[str, Any]], baseline: str = "fp32") -> list[dict]:
    """Per architecture and variant: step time of ``baseline`` / step time of the variant."""
    base = {r["model"]: r["seconds_per_step"] for r in records if r["variant"] == baseline}
    return [
        {
            "model": r["model"],
            "variant": r["variant"],
            "baseline": baseline,
            "speedup": base[r["model"]] / r["seconds_per_step"],
        }
        for r in records
        if r["variant"] != baseline and r["model"] in base
    ]
