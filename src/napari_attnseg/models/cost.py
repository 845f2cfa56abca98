"""Parameter count and FLOPs of a model at a given input size.

FLOPs come from PyTorch's own counter (``torch.utils.flop_counter``), which
counts a multiply-add as 2 FLOPs. Papers often quote multiply-accumulates
(MACs) as "FLOPs"; :class:`ModelCost` reports both (``macs = flops / 2``).
Only the operations the counter knows (convolutions, matrix products, …)
are counted; normalisation and activations are not, as is customary. The
count runs the network on PyTorch's ``meta`` device (shapes only, no data),
so it needs no memory for activations whatever the input size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelCost:
    params: int
    trainable_params: int
    flops: int
    height: int
    width: int
    in_channels: int

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def megabytes_fp32(self) -> float:
        return self.params * 4 / 2**20


#: the largest side :func:`model_cost` accepts
MAX_SIDE = 65536


def check_size(size: object) -> tuple[int, int]:
    """``size`` as ``(H, W)`` of integers in ``[1, MAX_SIDE]``, else a ``ValueError``."""
    try:
        height, width = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"size must be two integers (H, W), got {size!r}") from None
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if not 1 <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be between 1 and {MAX_SIDE} pixels, got {value}")
    return int(height), int(width)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def model_cost(model: nn.Module, size: tuple[int, int] = (256, 256), batch: int = 1) -> ModelCost:
    """Parameters and forward FLOPs for a ``batch``×C×H×W input (eval mode).

    ``size`` is two positive integers (any size works: the model pads), at most
    :data:`MAX_SIDE` each, and ``batch`` a positive integer; anything else is a
    ``ValueError`` that names the allowed range.
    """
    height, width = check_size(size)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    in_channels = getattr(model, "in_channels", 1)
    try:
        flops = _count_flops(copy.deepcopy(model).to("meta"), (batch, in_channels, height, width))
    except Exception:  # an operation without a meta kernel, a module that cannot be copied
        flops = _count_flops(model, (batch, in_channels, height, width))
    return ModelCost(
        params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        flops=flops,
        height=height,
        width=width,
        in_channels=in_channels,
    )


def _count_flops(model: nn.Module, shape: tuple[int, int, int, int]) -> int:
    """Forward FLOPs of ``model`` (eval mode) on a zero input of ``shape``, on its own device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.zeros(shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
