"""Which networks are benchmarked, and at what size.

Our architectures are measured at their *compact default* (the widths the zoo
ships); MONAI's ``AttentionUnet`` and ``BasicUNet`` are built with the same
stage widths, so that ours / MONAI ratios compare equal-width networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models import compact_architectures, compact_options, list_models

#: architecture -> the options of its compact default (the size the zoo ships), as
#: registered beside each architecture (``register_model(..., compact=...)``)
COMPACT_DEFAULTS: dict[str, dict[str, Any]] = {
    name: compact_options(name) for name in compact_architectures()
}
#: the model the end-to-end and sliding-window measurements use (fresh weights)
DEFAULT_MODEL = "focal_use_net"
MONAI_ATTENTION_UNET = "monai.AttentionUnet"
MONAI_BASIC_UNET = "monai.BasicUNet"
MONAI_REFERENCES = (MONAI_ATTENTION_UNET, MONAI_BASIC_UNET)
#: (ours, MONAI reference) pairs whose per-image time ratio is reported
RATIO_PAIRS = (("attention_unet", MONAI_ATTENTION_UNET), ("unet", MONAI_BASIC_UNET))


def default_architectures() -> list[str]:
    """Every registered architecture except the paper-size presets."""
    return compact_architectures()


def resolve_architectures(archs: list[str] | None) -> list[str]:
    """``archs`` (None: :func:`default_architectures`), each checked to be registered."""
    names = list(archs) if archs else default_architectures()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise ValueError(
            f"unknown architecture(s) {unknown}; available: {', '.join(list_models())}"
        )
    return names


def reference_width(arch: str) -> int:
    """First-stage width of our compact U-Net variant that a MONAI reference is matched to."""
    return int(compact_options(arch).get("width", 16))


def _stage_widths(arch: str) -> list[int]:
    """The five encoder stage widths (w, 2w, 4w, 8w, 16w) of our compact ``arch``."""
    w = reference_width(arch)
    return [w * 2**stage for stage in range(5)]


def build_network(
    name: str, in_channels: int = 3, out_channels: int = 1
) -> tuple[nn.Module, dict[str, Any]]:
    """``(network, how it was built)`` for an architecture name or a MONAI reference name.

    MONAI references get the stage widths of our compact U-Net (w, 2w, 4w, 8w, 16w),
    so that the comparison is at equal width. ``out_channels``: the classes (1: one
    binary logit).
    """
    if name in MONAI_REFERENCES:
        from monai.networks.nets import AttentionUnet, BasicUNet

        options: dict[str, Any] = dict(spatial_dims=2, in_channels=in_channels,
                                       out_channels=out_channels)
        if name == MONAI_ATTENTION_UNET:
            options.update(channels=_stage_widths("attention_unet"), strides=[2, 2, 2, 2])
            return AttentionUnet(**options), options
        widths = _stage_widths("unet")
        options.update(features=[*widths, widths[0]])
        return BasicUNet(**options), options
    from ..models import create_model

    options = compact_options(name)
    model = create_model(name, in_channels=in_channels, n_classes=out_channels, **options)
    return model, options


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def forward_gflops(model: nn.Module, in_channels: int, size: int, device: torch.device) -> float:
    """Forward GFLOPs for one image (PyTorch's counter: a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, in_channels, size, size, device=device))
    return counter.get_total_flops() / 1e9
