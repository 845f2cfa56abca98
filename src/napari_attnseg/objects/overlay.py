"""Overlay pictures: an image with the outlines of its classes or objects (and region).

``attnseg predict --overlay``, ``attnseg demo`` and the engine for sets of files
(``inference.files``) write them; the outlines keep touching objects apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: outline colours: class 1 (and every instance), then further classes
OUTLINE_COLOURS = (
    (255, 200, 0),
    (0, 220, 255),
    (255, 0, 200),
    (0, 255, 110),
    (255, 110, 0),
    (170, 120, 255),
)
#: the outline of the region of interest
ROI_COLOUR = (90, 150, 255)
#: percentiles of the image mapped to black and white
STRETCH = (0.5, 99.5)


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    channel_axis: int | None = None,
    instances: bool = False,
    roi: np.ndarray | None = None,
) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture: ``image`` contrast-stretched, with outlines drawn.

    ``labels`` (``(*stack, H, W)``) are class masks — each class outlined
    around its pixels in its own colour — or, with ``instances=True``, instance
    ids, every object outlined along its own rim so touching objects stay
    apart. ``roi`` (same shape) is outlined in blue where it does not cover the
    whole image. The image is read as the predictor reads it (``channel_axis``;
    a trailing axis of 3 or 4 is colour); colour images keep their colours, other
    images show their first channel in grey, stretched so that the 0.5th and
    99.5th percentiles become black and white. A stack shows its middle plane.
    """
    from skimage.segmentation import find_boundaries

    from ..data.input_spec import canonical

    canon, layout = canonical(np.asarray(image), channel_axis=channel_axis)
    middle = tuple(size // 2 for size in layout.stack_shape)
    plane = np.asarray(canon[middle], dtype=np.float32)
    picture = plane[..., :3] if layout.rgb else np.repeat(plane[..., :1], 3, axis=-1)
    picture = _stretch(picture)
    labels = np.asarray(labels)
    labels = labels[middle] if labels.ndim > 2 else labels
    if instances:
        picture[find_boundaries(labels, mode="inner")] = OUTLINE_COLOURS[0]
    else:
        for value in np.unique(labels[labels != 0]):
            colour = OUTLINE_COLOURS[(int(value) - 1) % len(OUTLINE_COLOURS)]
            picture[find_boundaries(labels == value, mode="outer")] = colour
    if roi is not None:
        roi = np.asarray(roi)
        roi = roi[middle] if roi.ndim > 2 else roi
        if not roi.all():
            picture[find_boundaries(roi != 0, mode="inner")] = ROI_COLOUR
    return picture


def _stretch(picture: np.ndarray) -> np.ndarray:
    """uint8 of a float picture, its 0.5th-99.5th percentiles stretched to 0-255."""
    finite = np.isfinite(picture)
    values = picture[finite]
    low, high = np.percentile(values, STRETCH) if values.size else (0.0, 1.0)
    if high <= low:  # a nearly constant image: its full range instead
        low, high = (values.min(), values.max()) if values.size else (0.0, 1.0)
    scaled = (picture - low) / max(float(high - low), 1e-12)
    scaled = np.where(finite, np.clip(scaled, 0.0, 1.0), 0.0)
    return np.round(255 * scaled).astype(np.uint8)


def write_overlay(
    path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, **options: Any
) -> Path:
    """Write :func:`overlay` as a PNG, atomically."""
    from ..data.io import write_image

    return write_image(path, overlay(image, labels, **options))
