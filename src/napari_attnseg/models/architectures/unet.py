"""U-Net, USE-Net and Attention U-Net, with optional Focal attention (Yeung, Rundo, Sala,
Schönlieb & Yang, ISBI 2022, §II-B).

One class, several registered presets:

========================  =========================================
``unet``                  the plain baseline
``use_net``               SE blocks at all 9 positions (reduction 8)
``attention_unet``        Attention Gates on the 4 skips
``focal_use_net``         ``use_net`` with Focal layers, w initialised to 1
``focal_attention_unet``  ``attention_unet`` with Focal layers, w = 1
========================  =========================================

Backbone (MIScnn's U-Net as the first author, mlyg, modified it; the paper's
setup is in §II-D): depth 4, widths 32·2^i, each stage two
(conv 3×3 -> ReLU -> InstanceNorm), max-pool down, transposed-conv 2×2 up,
concatenation skips, Xavier init.

Attention positions, and the order of the enable lists:

* ``se`` (2·depth + 1 entries): ``encoder.0.se`` … ``encoder.3.se`` (fine to
  coarse; SE is applied *before* pooling so the skip carries recalibrated
  features), ``bottleneck.se``, then ``decoder.0.se`` … ``decoder.3.se``
  (coarse to fine).
* ``gates`` (depth entries): ``decoder.0.gate`` (deepest skip) …
  ``decoder.3.gate`` (finest skip). Each gate is driven by the next-coarser
  decoder feature; the deepest by the bottleneck through 1×1 conv + norm + ReLU.

``focal=None`` builds plain modules; a number builds Focal modules with ``w``
initialised to it (1.0 for the Focal networks, 0.0 for the pruning probe).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..base import SegmentationModel
from ..blocks.attention import Passthrough
from ..blocks.gate import AttentionGate
from ..blocks.layers import NORMS, ConvNormAct, init_weights
from ..blocks.se import SqueezeExcitation
from ..registry import register_model


def _positions(value: bool | list[bool], count: int, label: str) -> list[bool]:
    if isinstance(value, bool):
        return [value] * count
    flags = [bool(v) for v in value]
    if len(flags) != count:
        raise ValueError(f"{label} needs {count} entries (one per position), got {len(flags)}")
    return flags


@dataclass
class UNetConfig:
    #: channels of the first stage; stage i has width·2^i
    width: int = 32
    #: number of down-sampling steps
    depth: int = 4
    #: "instance" (mlyg, batch size 1) or "batch"
    norm: str = "instance"
    #: "can" = conv -> ReLU -> norm (mlyg's MIScnn order), "cna" = conv -> norm -> ReLU
    order: str = "can"
    #: SE blocks: True (all 2·depth+1 positions), False, or one flag per position
    se: bool | list[bool] = False
    #: Attention Gates: True (all depth skips), False, or one flag per skip
    gates: bool | list[bool] = False
    #: None = plain attention modules; a float = Focal layers with w initialised to it
    focal: float | None = None
    se_reduction: int = 8
    #: F_int of each gate as a fraction of the skip's channels
    gate_inter_ratio: float = 0.5
    #: Oktay's output conv 1×1 + norm after the gate product (off: a map of ones is identity)
    gate_output_conv: bool = False
    #: weight init: "xavier" (paper) or "kaiming"
    init: str = "xavier"

    def __post_init__(self) -> None:
        if self.depth < 1 or self.width < 1:
            raise ValueError(f"depth and width must be >= 1, got {self.depth}, {self.width}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.focal is not None and self.focal < 0:
            raise ValueError(f"focal must be None or >= 0, got {self.focal}")
        self.se = _positions(self.se, 2 * self.depth + 1, "se")
        self.gates = _positions(self.gates, self.depth, "gates")


class MaxPool2x2(nn.Module):
    """2×2 max-pooling with stride 2, as two strided maxima (rows, then columns).

    Exactly ``nn.MaxPool2d(2)`` (odd trailing rows/columns are dropped alike),
    but PyTorch's CPU max-pool kernel is slow on contiguous (NCHW) tensors: on
    a 16×512² feature this is ~7× faster, and still faster channels-last
    (measured by ``attnseg bench``; see docs/benchmarks.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, cfg: UNetConfig) -> None:
        super().__init__(
            ConvNormAct(cin, cout, norm=cfg.norm, order=cfg.order),
            ConvNormAct(cout, cout, norm=cfg.norm, order=cfg.order),
        )


def _se(channels: int, enabled: bool, cfg: UNetConfig) -> nn.Module:
    if not enabled:
        return Passthrough("channel")
    return SqueezeExcitation(channels, cfg.se_reduction, focal=cfg.focal)


class EncoderStage(nn.Module):
    def __init__(self, cin: int, cout: int, se: bool, cfg: UNetConfig) -> None:
        super().__init__()
        self.conv = DoubleConv(cin, cout, cfg)
        self.se = _se(cout, se, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv(x))


class DecoderStage(nn.Module):
    """Up-sample the coarse feature, gate the skip, concatenate, double conv, SE."""

    def __init__(self, cin: int, cout: int, se: bool, gate: bool, cfg: UNetConfig) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        if gate:
            inter = max(1, int(cout * cfg.gate_inter_ratio))
            self.gate = AttentionGate(
                cout,
                cin,
                inter,
                focal=cfg.focal,
                output_conv=cfg.gate_output_conv,
                norm="batch" if cfg.norm == "batch" else "instance",
            )
        else:
            self.gate = Passthrough("spatial")
        self.conv = DoubleConv(2 * cout, cout, cfg)
        self.se = _se(cout, se, cfg)

    def forward(
        self, coarse: torch.Tensor, skip: torch.Tensor, gating: torch.Tensor
    ) -> torch.Tensor:
        skip = self.gate(skip, gating)
        x = torch.cat([skip, self.up(coarse)], dim=1)
        return self.se(self.conv(x))


#: the compact size the zoo ships (about 2 M parameters)
COMPACT = {"width": 16}


@register_model(
    "unet", compact=COMPACT, description="Plain U-Net baseline (MIScnn/mlyg style)"
)
@register_model(
    "use_net", se=True, compact=COMPACT, description="USE-Net: SE blocks at 9 positions"
)
@register_model(
    "attention_unet", gates=True, compact=COMPACT,
    description="Attention U-Net: gates on 4 skips",
)
@register_model(
    "focal_use_net", se=True, focal=1.0, compact=COMPACT,
    description="Focal USE-Net (Yeung et al. 2022)",
)
@register_model(
    "focal_attention_unet",
    gates=True,
    focal=1.0,
    compact=COMPACT,
    description="Focal Attention U-Net (Yeung et al. 2022)",
)
class UNet(SegmentationModel):
    """U-Net with optional (Focal) SE blocks and Attention Gates."""

    Config = UNetConfig

    def __init__(self, in_channels: int, n_classes: int, cfg: UNetConfig) -> None:
        super().__init__(in_channels, n_classes)
        self.size_multiple = 2**cfg.depth
        widths = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        se = cfg.se
        self.encoder = nn.ModuleList()
        cin = in_channels
        for i in range(cfg.depth):
            self.encoder.append(EncoderStage(cin, widths[i], se[i], cfg))
            cin = widths[i]
        self.pool = MaxPool2x2()
        self.bottleneck = EncoderStage(widths[-2], widths[-1], se[cfg.depth], cfg)
        # the deepest gate is driven by the bottleneck through 1×1 conv + norm + ReLU
        self.gating = (
            ConvNormAct(widths[-1], widths[-1], 1, norm=cfg.norm) if cfg.gates[0] else nn.Identity()
        )
        self.decoder = nn.ModuleList(
            DecoderStage(
                widths[cfg.depth - i],
                widths[cfg.depth - i - 1],
                se[cfg.depth + 1 + i],
                cfg.gates[i],
                cfg,
            )
            for i in range(cfg.depth)
        )
        self.head = nn.Conv2d(widths[0], n_classes, 1)
        init_weights(self, cfg.init)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        # CPU inference runs channels-last: oneDNN's convolutions are up to 10× faster on
        # it for these narrow layers, and every other op here keeps the format (measured
        # by `attnseg bench`; training keeps NCHW, where channels-last measured slower)
        channels_last = x.device.type == "cpu" and not torch.is_grad_enabled()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        gating = self.gating(x)
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip, gating)
            gating = x
        logits = self.head(x)
        return logits.contiguous() if channels_last else logits
