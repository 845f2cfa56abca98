"""AF-Net (Hou et al., CMC 69(2), 2021, §3): ResNet34 + dual attention, MFF centre, GFF decoder.

Topology (widths for the default ``width=64``; all scale with ``width``)::

    x ─ stem: conv7×7/2 (64) + BN + ReLU, maxpool 3×3/2            1/4
      ─ layer1: 3 BasicBlocks, 64                         -> e1    1/4
      ─ layer2: 4 BasicBlocks, 128, stride 2              -> e2    1/8
      ─ layer3: 6 BasicBlocks, 256, stride 2              -> e3    1/16
      ─ layer4: 3 BasicBlocks, 512, stride 2              -> e4    1/32
      ─ centre: MFF(e4)                                   -> c     1/32
      ─ up.0: DecoderBlock 512->256 (×2); fuse.0 = GFF(F_H=·, F_L=e3)
      ─ up.1: DecoderBlock 256->128 (×2); fuse.1 = GFF(·, e2)
      ─ up.2: DecoderBlock 128->64  (×2); fuse.2 = GFF(·, e1)
      ─ up.3: DecoderBlock 64->64   (×2)                           1/2
      ─ head: ConvTranspose 4×4/2 (32) -> ReLU -> conv3×3 (32) -> ReLU -> conv3×3 -> n_classes

* **BasicBlock with DA** (§3.1): ``ReLU(DA(BN(conv3×3(ReLU(BN(conv3×3(x)))))) +
  shortcut(x))``; the shortcut is conv1×1/stride + BN where the shape changes.
  DA is :class:`~..blocks.dual_attention.DualAttention` (channel + spatial
  attention modules named ``encoder.layerK.J.da.channel`` / ``.da.spatial``).
* **MFF** (§3.2): branches d1 = dilated 3×3 r1 -> r3 -> r5, d2 = r1 -> r3,
  d3 = r1, each ending in a 1×1 conv back to C; concatenate [F_in, d1, d2, d3]
  (4C) -> 1×1 -> C. ReLU after every conv (CE-Net's DAC habit).
* **GFF** (§3.3): ``out = sigmoid(BN(conv1×1(GAP(F_H)))) ⊗ BN(conv3×3(F_L)) + F_H``.
  The channel gate is an attention module (``fuse.K.gate``, kind "channel")
  whose input ``x`` is the multiplied tensor BN(conv3×3(F_L)) and whose
  context is ``F_H``; a map of ones returns ``x``, so Focal ``w = 0`` and
  pruning leave ``BN(conv3×3(F_L)) + F_H``.
* **Decoder blocks and head** are CE-Net's (``Guzaiwang/CE-Net``): 1×1 C_in -> C_in/4
  + BN + ReLU, ConvTranspose 3×3/2 + BN + ReLU, 1×1 -> C_out + BN + ReLU.

Ablation switches (Table 4 of the paper): ``da=False`` builds plain
BasicBlocks (no DA modules at all), ``mff=False`` leaves the centre empty,
``gff=False`` uses CE-Net's plain "decoder output + skip" addition;
``da=mff=gff=False`` is the paper's "ResNet34" baseline (a CE-Net without
DAC/RMP). ``attention="serial"`` is the "serial attention" row (CBAM order).

AMBIGUOUS choices (the paper's §3 leaves them open and no code is published)
and the defaults taken here:

* **Encoder weights**: CE-Net starts from ImageNet weights; here the encoder is
  written out (no torchvision) and randomly initialised (``init``, default
  Kaiming), since no pretrained download is available offline.
* **Stem**: ResNet34's conv7×7/2 + maxpool (layer1 at 1/4), matching the
  paper's cost being close to CE-Net's.
* **DA placement** ``da_placement``: ``"block"`` (default; every BasicBlock,
  16 DA modules, the CBAM-ResNet convention) or ``"stage"`` (one per stage, on
  the residual branch of the stage's last block, so it still filters the
  feature passed to the skip).
* **DA channel MLP** ``da_shared_mlp``: True (default; CBAM shares one MLP
  between GAP and GMP) or False (separate f1, f2 as the paper's notation
  suggests); reduction ``da_reduction`` = 16; ``da_mlp_norm`` adds BN after
  the first 1×1 (the paper's "regularisation"; default off, since BN over a
  1×1 map cannot train with batch size 1).
* **DA spatial conv**: the paper writes none; CBAM's conv k×k (2 -> 1, no bias)
  + BN, ``spatial_kernel`` = 7 (3 is the "small kernel" alternative).
* **DA combination** ``attention``: "parallel" (default, the paper: F_C + F_S;
  2F when both maps are 1) or "serial" (CBAM: spatial(channel(F))).
* **MFF**: CE-Net DAC dilation rates 1/3/5; the undefined F_d4 is left out;
  every branch has its own weights (CE-Net's DAC shares them; the paper draws
  separate branches); convs with bias and no norm as in CE-Net
  (``mff_norm=True`` adds BN after each conv); ReLU after the fusion 1×1 too.
* **GFF**: upsampling by CE-Net DecoderBlocks before the fusion (PAN's GAU
  would upsample inside); BN after the conv3×3 on F_L (as in GAU); the
  gate's BN (``gff_norm``, default True, as the paper) sits on a 1×1 map and
  therefore needs batch size >= 2 in training; switch it off for batch 1.
* ``focal``: None builds plain attention modules; a float gives every DA
  branch and every GFF gate a Focal layer with ``w`` initialised to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..base import SegmentationModel
from ..blocks.attention import AttentionModule
from ..blocks.dual_attention import MODES, DualAttention
from ..blocks.layers import ConvNormAct, init_weights
from ..registry import register_model

PLACEMENTS = ("block", "stage")
#: ResNet34's BasicBlocks per stage
RESNET34_LAYERS = [3, 4, 6, 3]
#: CE-Net DAC dilation rates of the three MFF branches (longest first)
MFF_BRANCH_RATES = ((1, 3, 5), (1, 3), (1,))


@dataclass
class AFNetConfig:
    #: channels of the stem and layer1; layer k has width·2^(k-1) (64 = ResNet34)
    width: int = 64
    #: BasicBlocks per stage (ResNet34: [3, 4, 6, 3])
    layers: list[int] = field(default_factory=lambda: list(RESNET34_LAYERS))
    #: DA blocks in the encoder
    da: bool = True
    #: MFF centre block (False: e4 goes straight to the decoder)
    mff: bool = True
    #: GFF skip fusion (False: CE-Net's plain "decoder output + skip")
    gff: bool = True
    #: "parallel" (F_C + F_S, AF-Net) or "serial" (channel then spatial, CBAM)
    attention: str = "parallel"
    #: "block" (DA in every BasicBlock) or "stage" (in the last block of each stage)
    da_placement: str = "block"
    #: channel reduction of the DA channel MLP
    da_reduction: int = 16
    #: one MLP for both poolings (CBAM) instead of separate f1, f2
    da_shared_mlp: bool = True
    #: BatchNorm after the MLP's first 1×1 (needs batch >= 2 in training)
    da_mlp_norm: bool = False
    #: kernel of the DA spatial conv (odd)
    spatial_kernel: int = 7
    #: BatchNorm after each MFF conv (CE-Net's DAC has none)
    mff_norm: bool = False
    #: BatchNorm in the GFF gate, as in the paper (needs batch >= 2 in training)
    gff_norm: bool = True
    #: None = plain attention modules; a float = Focal layers with w initialised to it
    focal: float | None = None
    #: weight init: "kaiming" or "xavier"
    init: str = "kaiming"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        self.layers = list(self.layers)
        if len(self.layers) != 4 or any(int(n) != n or n < 1 for n in self.layers):
            raise ValueError(
                f"layers must be 4 positive block counts (ResNet34: {RESNET34_LAYERS}), "
                f"got {self.layers}"
            )
        if self.attention not in MODES:
            raise ValueError(f"attention must be one of {MODES}, got {self.attention!r}")
        if self.da_placement not in PLACEMENTS:
            raise ValueError(f"da_placement must be one of {PLACEMENTS}, got {self.da_placement!r}")
        if self.da_reduction < 1:
            raise ValueError(f"da_reduction must be >= 1, got {self.da_reduction}")
        if self.spatial_kernel < 1 or self.spatial_kernel % 2 == 0:
            raise ValueError(
                f"spatial_kernel must be a positive odd integer, got {self.spatial_kernel}"
            )
        if self.focal is not None and self.focal < 0:
            raise ValueError(f"focal must be None or >= 0, got {self.focal}")
        if self.init not in ("kaiming", "xavier"):
            raise ValueError(f"init must be 'kaiming' or 'xavier', got {self.init!r}")


# -- encoder ------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet BasicBlock; the optional DA module sits on the residual branch."""

    def __init__(self, cin: int, cout: int, stride: int, da: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride=stride)
        self.conv2 = ConvNormAct(cout, cout, 3, act="none")
        self.da = da if da is not None else nn.Identity()
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else ConvNormAct(cin, cout, 1, stride=stride, act="none")
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.da(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet34-style encoder (randomly initialised) returning e1..e4 at 1/4 … 1/32."""

    def __init__(self, in_channels: int, widths: list[int], cfg: AFNetConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        cin = widths[0]
        for k, (cout, count) in enumerate(zip(widths, cfg.layers, strict=True)):
            blocks = []
            for j in range(count):
                wants_da = cfg.da and (cfg.da_placement == "block" or j == count - 1)
                da = _dual_attention(cout, cfg) if wants_da else None
                blocks.append(BasicBlock(cin, cout, 2 if (k > 0 and j == 0) else 1, da))
                cin = cout
            self.add_module(f"layer{k + 1}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
            features.append(x)
        return features


def _dual_attention(channels: int, cfg: AFNetConfig) -> DualAttention:
    return DualAttention(
        channels,
        mode=cfg.attention,
        reduction=cfg.da_reduction,
        kernel_size=cfg.spatial_kernel,
        shared_mlp=cfg.da_shared_mlp,
        mlp_norm=cfg.da_mlp_norm,
        focal=cfg.focal,
    )


# -- centre -------------------------------------------------------------------


class MultiScaleFeatureFusion(nn.Module):
    """MFF: dilated 3×3 branches (receptive fields 19, 9, 3) + F_in, concatenated, 1×1 to C."""

    def __init__(self, channels: int, norm: bool) -> None:
        super().__init__()
        kind = "batch" if norm else "none"
        self.branches = nn.ModuleList(
            nn.Sequential(
                *(ConvNormAct(channels, channels, 3, dilation=r, norm=kind) for r in rates),
                ConvNormAct(channels, channels, 1, norm=kind),
            )
            for rates in MFF_BRANCH_RATES
        )
        self.fuse = ConvNormAct((len(MFF_BRANCH_RATES) + 1) * channels, channels, 1, norm=kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([x, *(branch(x) for branch in self.branches)], dim=1))


# -- decoder ------------------------------------------------------------------


class DecoderBlock(nn.Sequential):
    """CE-Net's decoder block: 1×1 squeeze, ConvTranspose 3×3/2, 1×1 expand (BN + ReLU each)."""

    def __init__(self, cin: int, cout: int) -> None:
        mid = max(1, cin // 4)
        super().__init__(
            ConvNormAct(cin, mid, 1),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            ConvNormAct(mid, cout, 1),
        )


class GlobalChannelGate(AttentionModule):
    """GFF's gate sigmoid(BN(conv1×1(GAP(F_H)))), applied to ``x`` = BN(conv3×3(F_L)).

    ``coefficients(x, high)`` are (N, C, 1, 1) computed from the high-level
    context only; ``recalibrate`` multiplies ``x``, so a map of ones returns ``x``.
    """

    kind = "channel"

    def __init__(self, channels: int, *, norm: bool = True, focal: float | None = None) -> None:
        super().__init__(focal)
        self.conv = nn.Conv2d(channels, channels, 1, bias=not norm)
        self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()

    def coefficients(self, x: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        if self.training and high.shape[0] == 1 and isinstance(self.norm, nn.BatchNorm2d):
            raise ValueError(
                "the GFF gate's BatchNorm acts on a pooled 1×1 map and cannot train with "
                "batch size 1; use a batch of >= 2 or build AF-Net with gff_norm=False"
            )
        return torch.sigmoid(self.norm(self.conv(high.mean(dim=(2, 3), keepdim=True))))


class GlobalFeatureFusion(nn.Module):
    """GFF: ``gate(F_H) ⊗ BN(conv3×3(F_L)) + F_H`` (F_H already at F_L's size and width)."""

    def __init__(self, channels: int, cfg: AFNetConfig) -> None:
        super().__init__()
        self.low = ConvNormAct(channels, channels, 3, act="none")
        self.gate = GlobalChannelGate(channels, norm=cfg.gff_norm, focal=cfg.focal)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.gate(self.low(low), high) + high


class SkipAddition(nn.Module):
    """CE-Net's plain fusion, the ``gff=False`` ablation: ``F_H + F_L``."""

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return high + low


class SegmentationHead(nn.Sequential):
    """CE-Net's head: ConvTranspose 4×4/2 -> ReLU -> conv3×3 -> ReLU -> conv3×3 -> logits."""

    def __init__(self, cin: int, mid: int, n_classes: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(cin, mid, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, n_classes, 3, padding=1),
        )


# -- the network ----------------------------------------------------------------


@register_model(
    "afnet",
    compact={"width": 16},
    description="AF-Net: ResNet34 + dual attention, MFF centre, GFF decoder",
)
class AFNet(SegmentationModel):
    """AF-Net: ResNet34 encoder with DA blocks, MFF centre and GFF decoder."""

    Config = AFNetConfig
    size_multiple = 32

    def __init__(self, in_channels: int, n_classes: int, cfg: AFNetConfig) -> None:
        super().__init__(in_channels, n_classes)
        widths = [cfg.width * 2**k for k in range(4)]
        self.encoder = ResNetEncoder(in_channels, widths, cfg)
        self.centre = MultiScaleFeatureFusion(widths[3], cfg.mff_norm) if cfg.mff else nn.Identity()
        # up.k takes the level-(4-k) feature to level (3-k); up.3 ends at 1/2 resolution
        self.up = nn.ModuleList(
            DecoderBlock(widths[3 - k], widths[max(0, 2 - k)]) for k in range(4)
        )
        self.fuse = nn.ModuleList(
            GlobalFeatureFusion(widths[2 - k], cfg) if cfg.gff else SkipAddition() for k in range(3)
        )
        self.head = SegmentationHead(widths[0], max(1, widths[0] // 2), n_classes)
        init_weights(self, cfg.init)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        e1, e2, e3, e4 = self.encoder(x)
        d = self.centre(e4)
        for up, fuse, skip in zip(self.up[:-1], self.fuse, (e3, e2, e1), strict=True):
            d = fuse(up(d), skip)
        return self.head(self.up[-1](d))
