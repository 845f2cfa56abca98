"""Squeeze-and-Excitation channel attention (Hu et al.), with an optional Focal layer.

GAP over H, W -> FC(C -> C/r) + ReLU -> FC(C/r -> C) + sigmoid -> (Focal) ->
channel-wise multiply (Yeung et al., ISBI 2022, §II-B; r = 8 as in their §II-D;
FC with bias as in Hu et al.). The fully connected layers
are 1×1 convolutions so the block works on (N, C, H, W) directly.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionModule


class SqueezeExcitation(AttentionModule):
    """SE block; ``coefficients`` are (N, C, 1, 1) in [0, 1]."""

    kind = "channel"

    def __init__(
        self, channels: int, reduction: int = 8, *, focal: float | None = None, bias: bool = True
    ) -> None:
        super().__init__(focal)
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
