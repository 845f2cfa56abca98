"""AF-Net's dual attention (DA) block: channel and spatial attention, CBAM-style.

Both branches are :class:`AttentionModule` subclasses, so listing, capture,
Focal modulation and pruning treat them like any other attention module:

* :class:`ChannelAttention` (``kind = "channel"``):
  ``a = sigmoid(f(GAP(F)) + f(GMP(F)))``, (N, C, 1, 1), with ``f`` CBAM's
  MLP (1×1 conv C -> C/r, ReLU, 1×1 conv C/r -> C). The paper writes ``f1``
  and ``f2``, which may mean separate weights; CBAM shares one MLP between
  the two poolings. ``shared_mlp`` picks (default True, CBAM). The paper's
  "regularisation" after each pooling is optionally a BatchNorm after the
  first 1×1 (``mlp_norm``, default False: BatchNorm over a 1×1 map fails in
  training with batch size 1).
* :class:`SpatialAttention` (``kind = "spatial"``):
  ``a = sigmoid(BN(conv k×k([mean_c(F), max_c(F)])))``, (N, 1, H, W). The
  paper omits the convolution, but a 2-channel map needs one to become a
  single weight; CBAM's k = 7 (no bias) + BN is the default.

:class:`DualAttention` combines them:

* ``mode="parallel"`` (AF-Net, eq. 1): ``F_C + F_S``, two independently
  recalibrated copies of ``F`` summed. With both maps at 1 (Focal ``w = 0``
  or both branches pruned) this is ``2F``, not ``F``: acceptable because the
  block sits on a residual branch, and each branch on its own still honours
  the "a = 1 returns the input" contract.
* ``mode="serial"`` (CBAM, the paper's ablation row): channel, then spatial
  on the channel-refined feature; ``F`` when both maps are 1.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionModule

MODES = ("parallel", "serial")


def _mlp(channels: int, hidden: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)]
    return nn.Sequential(*layers)


class ChannelAttention(AttentionModule):
    """CBAM channel attention from average- and max-pooled descriptors; (N, C, 1, 1) maps."""

    kind = "channel"

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        shared_mlp: bool = True,
        mlp_norm: bool = False,
        focal: float | None = None,
    ) -> None:
        super().__init__(focal)
        if channels < 1 or reduction < 1:
            raise ValueError(
                f"channels and reduction must be >= 1, got channels={channels}, "
                f"reduction={reduction}"
            )
        hidden = max(1, channels // reduction)
        #: f1 (and f2 when shared); a second registered alias would duplicate
        #: the weights in the state dict, so a shared MLP is stored once
        self.mlp = _mlp(channels, hidden, mlp_norm)
        self.mlp_max = None if shared_mlp else _mlp(channels, hidden, mlp_norm)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        mlp_max = self.mlp if self.mlp_max is None else self.mlp_max
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        peak = mlp_max(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + peak)


class SpatialAttention(AttentionModule):
    """CBAM spatial attention from the per-pixel channel mean and max; (N, 1, H, W) maps."""

    kind = "spatial"

    def __init__(self, kernel_size: int = 7, *, focal: float | None = None) -> None:
        super().__init__(focal)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(1)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.norm(self.conv(pooled)))


class DualAttention(nn.Module):
    """AF-Net's DA module: channel and spatial attention, summed (parallel) or chained (serial)."""

    def __init__(
        self,
        channels: int,
        *,
        mode: str = "parallel",
        reduction: int = 16,
        kernel_size: int = 7,
        shared_mlp: bool = True,
        mlp_norm: bool = False,
        focal: float | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.channel = ChannelAttention(
            channels, reduction, shared_mlp=shared_mlp, mlp_norm=mlp_norm, focal=focal
        )
        self.spatial = SpatialAttention(kernel_size, focal=focal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "serial":
            return self.spatial(self.channel(x))
        return self.channel(x) + self.spatial(x)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
