"""DenseUNet with joint attention on its skips (Zhang, Dong & Li, ISBI 2022, §2.2).

Registered names
================

==================  ============================================================
``denseunet``       compact DenseUNet-JA (default options below, 1.05 M parameters)
``denseunet161``    the H-DenseUNet size: DenseNet-161 encoder, decoder
                    768/384/96/96/64 (:data:`DENSENET161`, 60 M parameters)
==================  ============================================================

``attention`` switches between the paper's four models: ``"none"`` (DenseUNet),
``"sa"`` (DenseUNet-SA), ``"pwa"`` (DenseUNet-PWA) and ``"ja"`` (DenseUNet-JA,
with ``ja_structure`` 1..9; the 9 formulas are in ``blocks/joint.py``).

Topology (H-DenseUNet, after ``xmengli/H-DenseUNet/denseunet.py``)
------------------------------------------------------------------
The paper refers to H-DenseUNet (Li et al., IEEE TMI 2018, its ref. [2]) for
the DenseUNet.

Encoder, MONAI's DenseNet ``features`` (module ``encoder``):

* stem conv 7×7/2 + BN + ReLU — skip **s0** (``init_features`` at 1/2);
* max-pool 3×3/2; dense block 1 — **s1** (1/4); transition (BN-ReLU-conv 1×1
  with compression 0.5, avg-pool 2×2); block 2 — **s2** (1/8); transition;
  block 3 — **s3** (1/16); transition; block 4 (1/32) + BN + ReLU.
* Each dense layer: BN-ReLU-conv 1×1 (4k) -> BN-ReLU-conv 3×3 (k), concatenated.

Skips: ``skips.i`` is the attention on ``s_i`` (``skips.0`` finest), applied
to the encoder feature *before* it is added to the decoder; it holds
``skips.i.pwa`` and/or ``skips.i.sa`` (``nn.Identity`` for ``"none"``).

Decoder, 5 stages (``decoder.0`` deepest): nearest up-sampling ×2 -> **add**
the attended skip (``decoder.0`` adds s3, …, ``decoder.3`` adds s0; a 1×1
conv ``project`` maps the skip to the decoder's channels when they differ) ->
conv 3×3 -> BN -> ReLU. ``decoder.4`` has no skip and is conv 3×3 ->
Dropout(0.3) -> BN -> ReLU. ``head``: 1×1 conv -> ``n_classes`` logits.

Choices where the sources are silent or AMBIGUOUS
-------------------------------------------------
* **Model size** (AMBIGUOUS: the paper's supplementary DenseUNet figure is
  unavailable). ``denseunet`` is deliberately compact — growth 16, blocks
  [4, 6, 8, 6], 32 stem features — so it trains on a laptop; with the skip
  channels 32/96/144/200 and decoder 144/96/32/32/24 it has 1.05 M
  parameters and 3.2 GFLOPs (1.6 GMACs) for a 3×256×256 input with JA
  (0.90 M / 2.75 GFLOPs without attention). ``denseunet161`` is the
  H-DenseUNet configuration the design names for reproduction: 60.0 M
  parameters, 61 GFLOPs with JA (49.5 M / 48.5 GFLOPs without).
  DenseNet-121 (growth 32, [6, 12, 24, 16], 64 features) is one option set away.
* **Decoder widths** ``None`` = "auto": each stage outputs the channels of the
  next skip (as H-DenseUNet: 768 = s2, 384 = s1, 96 = s0, 96), so only s3
  needs a projection; the last stage has 2/3 of the stem width rounded to a
  multiple of 8 (96 -> 64, as H-DenseUNet; 32 -> 24).
* **Which skips** get attention: all four (s0..s3; the paper says only "the skip
  connection part", §2.2); attention acts on
  the raw skip, before any 1×1 projection.
* **Default structure** ``ja_structure = 1`` (the paper's best is in its
  unavailable ablation): structures 1, 4, 7 equal the PWA model at
  initialisation and the SA model once PWA is switched off; 1 computes both
  maps from the same skip, so they read as in the single-module ablations.
* PWA activation: sigmoid (not named in the paper; the usual choice); SA: no
  sub-sampling of φ, g (Wang et al.'s non-local block allows it).
* Up-sampling nearest (H-DenseUNet code; its paper says bilinear: ``upsample``).
* No pretrained weights; PyTorch BN defaults; Kaiming-normal conv init. The
  encoder keeps torchvision/MONAI DenseNet names (``encoder.denseblock1…``),
  so ImageNet DenseNet weights could later be mapped onto it.
* ``focal`` adds a Focal layer to every PWA map (None = plain); it is an error
  with ``attention="none"`` or ``"sa"`` — SA has no sigmoid coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..base import SegmentationModel
from ..blocks.joint import JointAttention
from ..blocks.layers import ConvNormAct, init_weights
from ..registry import register_model

ATTENTION_MODES = ("none", "sa", "pwa", "ja")
UPSAMPLE_MODES = ("nearest", "bilinear")
#: encoder children whose outputs are the skips s0..s3
SKIP_POINTS = ("relu0", "denseblock1", "denseblock2", "denseblock3")

#: H-DenseUNet (Li et al. 2018) / DenseNet-161 sizes, registered as ``denseunet161``
DENSENET161 = {
    "growth_rate": 48,
    "block_layers": [6, 12, 36, 24],
    "init_features": 96,
    "decoder_widths": [768, 384, 96, 96, 64],
}


def _positive_int(value, label: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
    return value


@dataclass
class DenseUNetConfig:
    #: skip attention: "none", "sa" (self-attention), "pwa" (point-wise), "ja" (joint)
    attention: str = "ja"
    #: joint-attention structure 1..9 (blocks/joint.py); used when attention == "ja"
    ja_structure: int = 1
    #: DenseNet growth rate k
    growth_rate: int = 16
    #: dense layers in each of the 4 dense blocks
    block_layers: list[int] = field(default_factory=lambda: [4, 6, 8, 6])
    #: channels of the 7×7 stem (= skip s0)
    init_features: int = 32
    #: bottleneck width of a dense layer, in multiples of k
    bn_size: int = 4
    #: output channels of the 5 decoder stages; None = auto (see module docstring)
    decoder_widths: list[int] | None = None
    #: dropout in the last decoder stage
    dropout: float = 0.3
    #: "nearest" (H-DenseUNet code) or "bilinear" (H-DenseUNet paper)
    upsample: str = "nearest"
    #: None = plain PWA; a float = Focal layers on the PWA maps, w initialised to it
    focal: float | None = None

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        structure = self.ja_structure
        if not isinstance(structure, int) or isinstance(structure, bool) or not 1 <= structure <= 9:
            raise ValueError(f"ja_structure must be an integer 1..9, got {self.ja_structure!r}")
        _positive_int(self.growth_rate, "growth_rate")
        _positive_int(self.init_features, "init_features")
        _positive_int(self.bn_size, "bn_size")
        layers = list(self.block_layers)
        if len(layers) != 4:
            raise ValueError(f"block_layers needs 4 entries (one per dense block), got {layers}")
        self.block_layers = [_positive_int(n, "block_layers entries") for n in layers]
        if self.decoder_widths is not None:
            widths = list(self.decoder_widths)
            if len(widths) != 5:
                raise ValueError(f"decoder_widths needs 5 entries (or None), got {widths}")
            self.decoder_widths = [_positive_int(c, "decoder_widths entries") for c in widths]
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.focal is not None:
            if self.focal < 0:
                raise ValueError(f"focal must be None or >= 0, got {self.focal}")
            if self.attention not in ("pwa", "ja"):
                raise ValueError(
                    f"focal={self.focal} applies to point-wise attention; "
                    f"attention={self.attention!r} has none (use 'pwa' or 'ja')"
                )

    def skip_channels(self) -> list[int]:
        """Channels of s0..s3 and of the deepest feature (compression 0.5 per transition)."""
        channels = [self.init_features]
        c = self.init_features
        for i, n in enumerate(self.block_layers):
            c += n * self.growth_rate
            channels.append(c)
            if i < 3:
                c //= 2
        return channels

    def resolved_decoder_widths(self) -> list[int]:
        if self.decoder_widths is not None:
            return list(self.decoder_widths)
        s0, s1, s2 = self.skip_channels()[:3]
        last = max(8, 8 * round(self.init_features * 2 / 3 / 8))
        return [s2, s1, s0, s0, last]


def _skip_attention(channels: int, cfg: DenseUNetConfig) -> nn.Module:
    if cfg.attention == "none":
        return nn.Identity()
    structure = cfg.ja_structure if cfg.attention == "ja" else cfg.attention
    return JointAttention(channels, structure, focal=cfg.focal)


class DecoderStage(nn.Module):
    """Up-sample ×2, add the (projected) skip, conv 3×3 -> [dropout] -> BN -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        skip_channels: int | None,
        *,
        upsample: str,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode=upsample)
        if skip_channels is None or skip_channels == in_channels:
            self.project = nn.Identity()
        else:
            self.project = nn.Conv2d(skip_channels, in_channels, 1)
        if dropout is None:
            self.conv = ConvNormAct(in_channels, out_channels, 3)
        else:  # H-DenseUNet's last stage: conv -> Dropout -> BN -> ReLU
            self.conv = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.Dropout(dropout),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = x + self.project(skip)
        return self.conv(x)


@register_model("denseunet", description="DenseUNet with joint attention (Zhang et al. 2022)")
@register_model(
    "denseunet161",
    paper_size=True,
    **DENSENET161,
    description="DenseUNet-JA at H-DenseUNet size (DenseNet-161 encoder)",
)
class DenseUNet(SegmentationModel):
    """DenseNet encoder, additive-skip decoder, SA / PWA / joint attention on the skips."""

    Config = DenseUNetConfig
    size_multiple = 32

    def __init__(self, in_channels: int, n_classes: int, cfg: DenseUNetConfig) -> None:
        super().__init__(in_channels, n_classes)
        # imported here: importing MONAI takes ~2 s and registering the model should not
        from monai.networks.nets import DenseNet

        densenet = DenseNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=1,
            init_features=cfg.init_features,
            growth_rate=cfg.growth_rate,
            block_config=tuple(cfg.block_layers),
            bn_size=cfg.bn_size,
        )
        self.encoder = densenet.features  # the classifier head is dropped
        *skips, deepest = cfg.skip_channels()
        self.skips = nn.ModuleList(_skip_attention(c, cfg) for c in skips)
        widths = cfg.resolved_decoder_widths()
        stages = []
        cin = deepest
        for i, cout in enumerate(widths):
            last = i == len(widths) - 1
            stages.append(
                DecoderStage(
                    cin,
                    cout,
                    None if last else skips[3 - i],
                    upsample=cfg.upsample,
                    dropout=cfg.dropout if last else None,
                )
            )
            cin = cout
        self.decoder = nn.ModuleList(stages)
        self.head = nn.Conv2d(cin, n_classes, 1)
        init_weights(self, "kaiming")  # convs only: the SA's zero-initialised BN is kept

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for name, layer in self.encoder.named_children():
            x = layer(x)
            if name in SKIP_POINTS:
                skips.append(x)
        x = torch.relu(x)  # block 4 -> BN (norm5) -> ReLU
        attended = [attention(s) for attention, s in zip(self.skips, skips, strict=True)]
        for stage, skip in zip(self.decoder, [*reversed(attended), None], strict=True):
            x = stage(x, skip)
        return self.head(x)
