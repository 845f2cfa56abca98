"""Parameter count and FLOPs of a model at a given input size.

FLOPs come from PyTorch's own counter (``torch.utils.flop_counter``), which
counts a multiply-add as 2 FLOPs. Papers often quote multiply-accumulates
(MACs) as "FLOPs"; :class:`ModelCost` reports both (``macs = flops / 2``).
Only the operations the counter knows (convolutions, matrix products, …)
are counted; normalisation and activations are not, as is customary.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def model_cost(model: nn.Module, size: tuple[int, int] = (256, 256), batch: int = 1) -> ModelCost:
    """Parameters and forward FLOPs for a ``batch``×C×H×W input (eval mode)."""
    height, width = size
    in_channels = getattr(model, "in_channels", 1)
    device = next(model.parameters()).device
    x = torch.zeros(batch, in_channels, height, width, device=device)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return ModelCost(
        params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        flops=int(counter.get_total_flops()),
        height=height,
        width=width,
        in_channels=in_channels,
    )
