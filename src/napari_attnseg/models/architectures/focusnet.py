"""FocusNet (Kaul, Manandhar & Pears, ISBI 2019, §2).

Two parallel branches see the same input:

1. the **attention branch** (``attention.*``), a small residual U-Net whose
   decoder outputs D7 (H), D6 (H/2) and D5 (H/4) are turned into gates;
2. the **main branch** (``main.*`` encoder, ``decoder.*``, ``head``), an
   SE-ResNet U-Net whose encoder levels 1–3 are multiplied by sigmoid(D):
   ``A_l = F_l(x) · sigmoid(D_l)`` (paper eq. 3).

Topology (widths at ``width_multiplier = 1``; authors' ``unetpolished.py``)::

    attention  stem conv3×3(32)+BN+LeakyReLU(0.3)                 H
               down1 res/2 (32) · level2 res (64)                 H/2
               down2 res/2 (64) · level3 res (128)                H/4
               down3 res/2 (128) · level4 res (256) -> dropout    H/8
               d5 up+conv2×2(256) ‖ level3 -> res (256)           H/4
               d6 up+conv2×2(128) ‖ level2 -> res (128)           H/2
               d7 up+conv2×2(64)  ‖ stem   -> res (64)            H
    main       stem conv7×7(64)+BN+ReLU                           H
               level1 res(64)  -> se1 -> gate(D7) -> se2 ; down1  H   -> H/2
               level2 res(128) -> se1 -> gate(D6) -> se2 ; down2  H/2 -> H/4
               level3 res(256) -> se1 -> gate(D5) -> se2 ; down3  H/4 -> H/8
               level4 res(512) -> se1 ; down4 (bottleneck)        H/8 -> H/16
    decoder    u1 up+conv2×2(256) ‖ down3 -> res (256)            H/8
               u2 up+conv2×2(128) ‖ down2 -> res (128)            H/4
               u3 up+conv2×2(64)  ‖ down1 -> res (64)             H/2
               u4 up+conv2×2(32)  ‖ main stem -> res 32, 16, 4    H
    head       conv1×1 -> n_classes logits

Attention modules: 7 :class:`SqueezeExcitation` (``main.level{1,2,3}.se1``,
``.se2`` and ``main.level4.se1``) and 3 spatial :class:`SigmoidGate`
(``main.level{1,2,3}.gate``), whose maps have one channel per gated feature.

Building blocks (the authors' code, ``focusnet-alpha``: ``resnet.py``,
``layers.py``): residual blocks are "no-bottleneck full
pre-activation" (BN-ReLU-conv3×3-BN-ReLU-conv3×3 + shortcut, no
post-activation). Quirk kept from the code: every stride-1 block drops its
first BN-ReLU; only the stride-2 (down-sampling) blocks are fully
pre-activated. Shortcuts are identity or a 1×1 (strided) conv without BN.
All convs have biases except the attention stem. Up-sampling is nearest ×2
-> conv 2×2 "same" (TF padding: the extra row/column at the bottom/right)
+ ReLU -> concatenation (skip first) -> residual block(s). BatchNorm uses the
Keras defaults (momentum 0.01 in PyTorch terms, eps 1e-3).

Choices where the sources are AMBIGUOUS or this port deviates (defaults first):

* **Head**: the paper's is 1 channel + sigmoid; here the 1×1 head returns
  ``n_classes`` *logits* without activation (``n_classes = 1``: one binary
  logit, apply a sigmoid; ≥ 2: softmax), as every model of this package.
* **Dropout** (``dropout_mode``): "code" (default) = one element-wise
  ``Dropout(dropout)`` on the deepest attention feature (a4), as in the
  authors' code; "paper" = ``Dropout2d(dropout)`` after every residual block
  of both branches ("dropout ... throughout"), except the last block, which
  feeds the head directly.
* **D_l**: the gate is sigmoid of the residual block *after* the
  concatenation (code), not of the concatenation itself (paper text).
* **Attention branch**: trained only through the gates; no reconstruction
  loss (code), despite the paper calling it an autoencoder.
* **SE**: the code imports an SE block it does not include; its call matches
  titu1994's keras-squeeze-excite-network, whose defaults are taken
  (inferred): reduction 16, FCs without bias.
* **Stem width** of the attention branch: 32 (TheFocusNetSeries), not 24.
* **Stride-2 3×3 convs** pad 1 on every side (PyTorch habit); Keras pads only
  bottom/right. Output sizes are equal; weights port with a one-pixel shift.
* **Width scaling**: every channel count is ``round(c · width_multiplier)``
  with a floor of 4, so compact variants never collapse to 1-channel maps;
  the last block has at least ``n_classes`` channels so a many-class head is
  not fed fewer features than classes (a no-op for the paper's setting).
* **Init**: "kaiming" (Keras he_normal, approximated by kaiming_normal_).
* **Focal** (not in FocusNet): ``focal`` adds a Focal layer to every SE block
  and gate (None = plain modules), as in Yeung et al.'s Focal networks.
* Deep supervision (TheFocusNetSeries' later variant) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import SegmentationModel
from ..blocks.gate import SigmoidGate
from ..blocks.layers import init_weights
from ..blocks.se import SqueezeExcitation
from ..registry import register_model

DROPOUT_MODES = ("code", "paper")
INITS = ("kaiming", "xavier")
#: smallest channel count a width-scaled layer gets
MIN_CHANNELS = 4
#: Keras BatchNormalization defaults in PyTorch terms
KERAS_BN = {"momentum": 0.01, "eps": 1e-3}


@dataclass
class FocusNetConfig:
    #: scales every channel count (1.0 = paper; 0.25 etc. for compact variants)
    width_multiplier: float = 1.0
    #: "code": one Dropout on the deepest attention feature;
    #: "paper": Dropout2d after every residual block but the last
    dropout_mode: str = "code"
    #: dropout rate (0 disables dropout)
    dropout: float = 0.2
    #: SE reduction ratio (titu1994 default inferred for FocusNet)
    se_reduction: int = 16
    #: None = plain SE blocks and gates; a float = Focal layers with w initialised to it
    focal: float | None = None
    #: weight init: "kaiming" (Keras he_normal, paper code) or "xavier"
    init: str = "kaiming"

    def __post_init__(self) -> None:
        if not self.width_multiplier > 0:
            raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier}")
        if self.dropout_mode not in DROPOUT_MODES:
            raise ValueError(
                f"dropout_mode must be one of {DROPOUT_MODES}, got {self.dropout_mode!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.se_reduction, int) or self.se_reduction < 1:
            raise ValueError(f"se_reduction must be a positive integer, got {self.se_reduction!r}")
        if self.focal is not None and self.focal < 0:
            raise ValueError(f"focal must be None or >= 0, got {self.focal}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

    def channels(self, paper_channels: int) -> int:
        """A paper channel count scaled by ``width_multiplier``."""
        return max(MIN_CHANNELS, int(paper_channels * self.width_multiplier + 0.5))

    @property
    def block_dropout(self) -> float:
        """Dropout2d rate after each residual block ("paper" mode only)."""
        return self.dropout if self.dropout_mode == "paper" else 0.0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, **KERAS_BN)


class ResidualBlock(nn.Module):
    """No-bottleneck pre-activation residual block (He et al. 2016), FocusNet's variant.

    Stride-1 blocks drop the first BN-ReLU (the code's "first block of first
    layer" flag is set on all of them); stride-2 blocks keep it. The output
    is the plain sum, with no activation. ``dropout > 0`` appends Dropout2d.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.preact = nn.Sequential(_bn(cin), nn.ReLU()) if stride > 1 else nn.Identity()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.act1 = nn.Sequential(_bn(cout), nn.ReLU())
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride=stride)
        )
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(self.act1(self.conv1(self.preact(x))))
        return self.dropout(self.shortcut(x) + residual)


class UpBlock(nn.Module):
    """Nearest ×2 -> conv 2×2 "same" + ReLU -> concat(skip, up) -> residual block(s)."""

    def __init__(
        self, cin: int, skip: int, up: int, widths: list[int], dropouts: list[float]
    ) -> None:
        super().__init__()
        # Keras' 2×2 "same" conv: TensorFlow puts the one padding row/column at the bottom/right
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.up_conv = nn.Conv2d(cin, up, 2)
        blocks, c = [], skip + up
        for width, p in zip(widths, dropouts, strict=True):
            blocks.append(ResidualBlock(c, width, dropout=p))
            c = width
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        up = torch.relu(self.up_conv(self.pad(up)))
        return self.blocks(torch.cat([skip, up], dim=1))


class AttentionBranch(nn.Module):
    """The residual encoder–decoder whose outputs D7, D6, D5 gate the main encoder."""

    def __init__(self, in_channels: int, cfg: FocusNetConfig) -> None:
        super().__init__()
        ch, p = cfg.channels, cfg.block_dropout
        c32, c64, c128, c256 = ch(32), ch(64), ch(128), ch(256)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c32, 3, padding=1, bias=False), _bn(c32), nn.LeakyReLU(0.3)
        )
        self.down1 = ResidualBlock(c32, c32, stride=2, dropout=p)
        self.level2 = ResidualBlock(c32, c64, dropout=p)
        self.down2 = ResidualBlock(c64, c64, stride=2, dropout=p)
        self.level3 = ResidualBlock(c64, c128, dropout=p)
        self.down3 = ResidualBlock(c128, c128, stride=2, dropout=p)
        self.level4 = ResidualBlock(c128, c256, dropout=p)
        code_dropout = cfg.dropout_mode == "code" and cfg.dropout > 0
        self.dropout = nn.Dropout(cfg.dropout) if code_dropout else nn.Identity()
        self.d5 = UpBlock(c256, c128, c256, [c256], [p])
        self.d6 = UpBlock(c256, c64, c128, [c128], [p])
        self.d7 = UpBlock(c128, c32, c64, [c64], [p])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[D7, D6, D5]``: the pre-sigmoid gates at H, H/2, H/4."""
        a0 = self.stem(x)
        a2 = self.level2(self.down1(a0))
        a3 = self.level3(self.down2(a2))
        a4 = self.dropout(self.level4(self.down3(a3)))
        d5 = self.d5(a4, a3)
        d6 = self.d6(d5, a2)
        d7 = self.d7(d6, a0)
        return [d7, d6, d5]


class EncoderLevel(nn.Module):
    """res-block -> SE -> x sigmoid(D) -> SE, or res-block -> SE where there is no gate."""

    def __init__(self, cin: int, cout: int, gated: bool, cfg: FocusNetConfig) -> None:
        super().__init__()
        self.block = ResidualBlock(cin, cout, dropout=cfg.block_dropout)
        self.se1 = SqueezeExcitation(cout, cfg.se_reduction, focal=cfg.focal, bias=False)
        if gated:
            self.gate = SigmoidGate(cfg.focal)
            self.se2 = SqueezeExcitation(cout, cfg.se_reduction, focal=cfg.focal, bias=False)
        self.gated = gated

    def forward(self, x: torch.Tensor, d: torch.Tensor | None = None) -> torch.Tensor:
        x = self.se1(self.block(x))
        if self.gated:
            x = self.se2(self.gate(x, d))
        return x


class MainEncoder(nn.Module):
    """SE-ResNet encoder; levels 1–3 are gated by the attention branch."""

    def __init__(self, in_channels: int, cfg: FocusNetConfig) -> None:
        super().__init__()
        ch, p = cfg.channels, cfg.block_dropout
        c64, c128, c256, c512 = ch(64), ch(128), ch(256), ch(512)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c64, 7, padding=3), _bn(c64), nn.ReLU())
        self.level1 = EncoderLevel(c64, c64, True, cfg)
        self.down1 = ResidualBlock(c64, c64, stride=2, dropout=p)
        self.level2 = EncoderLevel(c64, c128, True, cfg)
        self.down2 = ResidualBlock(c128, c128, stride=2, dropout=p)
        self.level3 = EncoderLevel(c128, c256, True, cfg)
        self.down3 = ResidualBlock(c256, c256, stride=2, dropout=p)
        self.level4 = EncoderLevel(c256, c512, False, cfg)
        self.down4 = ResidualBlock(c512, c512, stride=2, dropout=p)

    def forward(
        self, x: torch.Tensor, gates: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(bottleneck, skips)``; ``gates`` is ``[D7, D6, D5]``, skips fine to coarse."""
        d7, d6, d5 = gates
        m0 = self.stem(x)
        m1d = self.down1(self.level1(m0, d7))
        m2d = self.down2(self.level2(m1d, d6))
        m3d = self.down3(self.level3(m2d, d5))
        m4d = self.down4(self.level4(m3d))
        return m4d, [m0, m1d, m2d, m3d]


class MainDecoder(nn.Module):
    """u1..u4: up-sampling residual decoder ending in 32 -> 16 -> 4 channels."""

    def __init__(self, cfg: FocusNetConfig, n_classes: int) -> None:
        super().__init__()
        ch, p = cfg.channels, cfg.block_dropout
        c32, c64, c128, c256, c512 = ch(32), ch(64), ch(128), ch(256), ch(512)
        last = max(ch(4), n_classes)
        self.u1 = UpBlock(c512, c256, c256, [c256], [p])
        self.u2 = UpBlock(c256, c128, c128, [c128], [p])
        self.u3 = UpBlock(c128, c64, c64, [c64], [p])
        # no dropout on the last block: its output feeds the head directly
        self.u4 = UpBlock(c64, c64, c32, [c32, ch(16), last], [p, p, 0.0])
        self.out_channels = last

    @property
    def stages(self) -> tuple[UpBlock, ...]:
        return (self.u1, self.u2, self.u3, self.u4)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for up, skip in zip(self.stages, reversed(skips), strict=True):
            x = up(x, skip)
        return x


@register_model(
    "focusnet",
    compact={"width_multiplier": 0.25},
    description="FocusNet: SE-ResNet U-Net gated by an attention branch (ISBI 2019)",
)
class FocusNet(SegmentationModel):
    """FocusNet: an attention encoder–decoder gating an SE-ResNet U-Net."""

    Config = FocusNetConfig
    size_multiple = 16

    def __init__(self, in_channels: int, n_classes: int, cfg: FocusNetConfig) -> None:
        super().__init__(in_channels, n_classes)
        self.attention = AttentionBranch(in_channels, cfg)
        self.main = MainEncoder(in_channels, cfg)
        self.decoder = MainDecoder(cfg, n_classes)
        self.head = nn.Conv2d(self.decoder.out_channels, n_classes, 1)
        init_weights(self, cfg.init)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.attention(x)
        bottleneck, skips = self.main(x, gates)
        return self.head(self.decoder(bottleneck, skips))
