"""Optimisers and learning-rate schedules from a :class:`TrainConfig`.

Weight decay applies to convolution / linear kernels only: Focal exponents
``w`` (0-dim), normalisation scales and shifts, and biases (1-dim) are
exempt — decaying ``w`` towards 0 would bias the pruning heuristic.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim > 1 else no_decay).append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}]
    if decay:
        groups.insert(0, {"params": decay, "weight_decay": weight_decay})
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """``(scheduler, per_step)``: poly decays per step; plateau steps per epoch on val loss."""
    if config.schedule == "poly":
        power = config.poly_power

        def poly(step: int) -> float:
            return max(0.0, 1.0 - step / max(1, total_steps)) ** power

        return torch.optim.lr_scheduler.LambdaLR(optimizer, poly), True
    if config.schedule == "plateau":
        return (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=config.plateau_factor,
                patience=config.plateau_patience,
                min_lr=config.min_lr,
            ),
            False,
        )
    return None, False
