"""Spatial gates: the additive Attention Gate and a plain sigmoid gate.

:class:`AttentionGate` is Oktay/Schlemper's additive gate (Schlemper et al.,
MedIA 2019), with the Focal layer of Yeung et al. (ISBI 2022, §II-B): the skip
``x`` is compared with a coarser gating signal ``g``; the map is produced at
``g``'s resolution, passed through the Focal layer *before* being upsampled
(as in mlyg's Focus Gate), then multiplies ``x``.

:class:`SigmoidGate` is FocusNet's gate (Kaul, Manandhar & Pears, ISBI 2019,
§2, eq. 3): ``x * sigmoid(D)`` where ``D``
comes from another branch; its map has as many channels as ``x``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionModule
from .layers import norm_layer


class AttentionGate(AttentionModule):
    """Additive attention gate; ``coefficients`` are (N, 1, h, w) at ``g``'s scale.

    theta_x: conv 2×2 stride 2 on ``x`` (no bias) -> F_int channels;
    phi_g: conv 1×1 on ``g`` (bias) -> F_int; resample phi_g to theta_x's
    size; add; ReLU; psi: conv 1×1 -> 1 channel; sigmoid; (Focal); bilinear
    upsampling to ``x``'s size; multiply ``x``.

    ``output_conv=True`` adds Oktay's output conv 1×1 + norm after the
    product; it is off by default so that a map of ones passes ``x`` through
    unchanged (the Focal ``w = 0`` probe and pruning rely on that).
    """

    kind = "spatial"

    def __init__(
        self,
        channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        *,
        focal: float | None = None,
        output_conv: bool = False,
        norm: str = "batch",
    ) -> None:
        super().__init__(focal)
        inter = inter_channels or max(1, channels // 2)
        self.theta = nn.Conv2d(channels, inter, 2, stride=2, bias=False)
        self.phi = nn.Conv2d(gating_channels, inter, 1, bias=True)
        self.psi = nn.Conv2d(inter, 1, 1, bias=True)
        self.output = (
            nn.Sequential(nn.Conv2d(channels, channels, 1), norm_layer(norm, channels))
            if output_conv
            else None
        )

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        theta = self.theta(x)
        phi = self.phi(g)
        if phi.shape[-2:] != theta.shape[-2:]:  # in the U-Nets g is already at theta's scale
            phi = F.interpolate(phi, size=theta.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.psi(torch.relu_(theta + phi)))

    def recalibrate(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        if a.shape[-2:] != x.shape[-2:]:
            a = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)
        y = x * a
        return y if self.output is None else self.output(y)


class SigmoidGate(AttentionModule):
    """``x * sigmoid(d)``: a gate computed elsewhere (FocusNet's sigma(D_l))."""

    kind = "spatial"

    def coefficients(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(d)
