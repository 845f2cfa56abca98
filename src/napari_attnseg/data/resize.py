"""Resizing to the size a model works at — one implementation for training and inference.

A model card may ask for images to be resized before the network sees them
(``input_scale``: a factor; ``input_size``: a fixed (H, W)). Training data,
interactively painted data and images at inference all go through the
functions here, so the network always sees pixels resampled the same way:
bilinear for images (anti-aliased when shrinking), nearest for labels and
regions of interest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def working_size(
    height: int, width: int, *, scale: float = 1.0, size: Sequence[int] | None = None
) -> tuple[int, int]:
    """(H, W) an image of ``height``×``width`` is resized to: ``size`` if given, else scaled."""
    if size:
        return int(size[0]), int(size[1])
    scale = float(scale or 1.0)
    if scale <= 0:
        raise ValueError(f"input scale must be > 0, got {scale}")
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of an (N, C, H, W) tensor, anti-aliased when it shrinks."""
    size = (int(size[0]), int(size[1]))
    height, width = x.shape[-2:]
    if size == (height, width):
        return x
    shrink = size[0] * size[1] < height * width
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_labels(labels: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) label or mask array, keeping its dtype."""
    labels = np.asarray(labels)
    if tuple(labels.shape) == (int(size[0]), int(size[1])):
        return labels
    t = torch.as_tensor(labels.astype(np.float32))[None, None]
    out = F.interpolate(t, size=(int(size[0]), int(size[1])), mode="nearest")[0, 0].numpy()
    return out.astype(labels.dtype)


def resize_arrays(
    image: np.ndarray, mask: np.ndarray, roi: np.ndarray | None, size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Resize a (C, H, W) image with its (H, W) mask and optional ROI to ``size``."""
    image = resize_image(torch.as_tensor(image, dtype=torch.float32)[None], size)[0].numpy()
    mask = resize_labels(mask, size)
    roi = None if roi is None else resize_labels(roi, size)
    return image, mask, roi
