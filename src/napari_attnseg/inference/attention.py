"""Attention maps of one 2D image, aligned with that image — what the Attention widget shows.

:func:`attention_maps` prepares the image exactly as :class:`~.predictor.Predictor`
does for a prediction (the card's channels and normalisation via
``prepare_image``, then its ``input_scale``/``input_size`` via
``Predictor.working_size``), records every attention module during one forward
pass (``models.introspection.capture``) and resizes each spatial map back to
the *original* image's H×W, so a map can be laid over the image pixel for pixel.

:func:`most_informative` picks the spatial map with the most spatial contrast
(highest standard deviation): a gate that is nearly constant says little about
*where* the network looked, so it is the one worth showing first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.base import SegmentationModel
from ..models.introspection import AttentionMap, capture
from .predictor import Predictor, is_rgb


def attention_maps(
    model: SegmentationModel,
    image: np.ndarray,
    *,
    rgb: bool | None = None,
    device: str = "cpu",
) -> list[AttentionMap]:
    """Every attention module's coefficients for one (H, W) or (H, W, 3|4) image.

    Spatial maps come back as ``resized`` (1, 1, H, W) tensors on the CPU at the
    image's own H×W (``native`` keeps the module's resolution); channel maps as
    (1, C) weights. Modules the forward pass did not reach are left out.
    """
    image = np.asarray(image)
    rgb = is_rgb(image) if rgb is None else rgb
    if image.ndim != (3 if rgb else 2):
        raise ValueError(
            f"attention maps need one 2D {'RGB ' if rgb else ''}image, got shape {image.shape}; "
            "pick a single slice of a stack"
        )
    predictor = Predictor(model, device=device, tile_size=None)
    x = torch.as_tensor(predictor.prepare(image, rgb))[None]
    height, width = x.shape[-2:]
    x = predictor.to_working_size(x)
    _, maps = capture(predictor.model, x.to(predictor.device))
    for m in maps:
        m.native = m.native.cpu()
        if m.kind == "spatial":
            resized = m.resized
            if resized.shape[-2:] != (height, width):
                resized = F.interpolate(
                    resized, size=(height, width), mode="bilinear", align_corners=False
                ).clamp(0.0, 1.0)
            m.resized = resized.cpu()
        else:
            m.resized = m.resized.cpu()
    return maps


def map_contrast(m: AttentionMap) -> float:
    """Spatial standard deviation of a spatial map (0 for channel maps)."""
    if m.kind != "spatial":
        return 0.0
    return float(m.resized.float().std())


def most_informative(maps: list[AttentionMap]) -> str | None:
    """The spatial map with the highest spatial standard deviation (None: no spatial map)."""
    spatial = [m for m in maps if m.kind == "spatial"]
    if not spatial:
        return None
    return max(spatial, key=map_contrast).name
