"""Object size: equivalent diameters, the typical diameter of an image or a training set.

The *equivalent diameter* of an object is that of the disc with its area,
``sqrt(4 · area / π)``. The typical diameter of an image is the median over
its objects; the typical diameter of a training set
(:func:`training_diameter`, recorded in the model card) is the median over
its images of those per-image medians, so that it compares like for like
with what :func:`median_diameter` measures on a user's image (and an image
crowded with small objects does not outweigh the rest).

Binary masks are split into objects with
:func:`~napari_attnseg.objects.instances.instances_from_foreground` (its
default method, without a diameter since none is known yet), so touching
objects are measured one by one — in the training masks and in a first
prediction pass alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..data.io import read_mask
from .instances import instances_from_foreground

#: fewer objects than this give no typical diameter (``None``)
MIN_OBJECTS = 5


def _is_mask(array: np.ndarray) -> bool:
    """Bool arrays, and integer arrays holding at most one nonzero value, are masks."""
    if array.dtype == bool:
        return True
    if np.issubdtype(array.dtype, np.floating):
        return True
    values = np.unique(array)
    return values.size <= 2 and (values.size < 2 or values[0] == 0)


def object_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameter (pixels) of each object of an instance label image, by id.

    ``labels``: integer instance labels of any shape (0 = background; a
    stack's objects are measured by their pixel count, i.e. as 2D objects if
    they were labelled slice by slice). Returns ``float64`` diameters of the
    objects present, in increasing id order.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer instance labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels hold negative values ({labels.min()}); 0 is background")
    if labels.size == 0:
        return np.zeros(0)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return np.sqrt(4.0 * areas / math.pi)


def _instances(mask_or_labels: Any, threshold: float) -> np.ndarray:
    array = np.asarray(mask_or_labels)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"expected an image (H, W) or a stack (Z, H, W) of masks or labels, got {array.shape}"
        )
    if _is_mask(array):
        return instances_from_foreground(array, threshold=threshold)
    return array


def median_diameter(
    mask_or_labels: np.ndarray,
    *,
    min_objects: int = MIN_OBJECTS,
    threshold: float = 0.5,
) -> float | None:
    """Median equivalent diameter (pixels) of the objects of one image, or ``None``.

    ``mask_or_labels``: instance labels (integers, several distinct ids), or a
    mask (bool; probabilities, thresholded at ``threshold``; or integers with
    a single nonzero value), which is split into objects first. Returns
    ``None`` when fewer than ``min_objects`` objects are found: too few to
    trust for rescaling.
    """
    diameters = object_diameters(_instances(mask_or_labels, threshold))
    if diameters.size < max(1, int(min_objects)):
        return None
    return float(np.median(diameters))


def _read(item: Any) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        return read_mask(item, binary=False)
    return np.asarray(item)


def training_diameters(
    masks: Iterable[str | os.PathLike | np.ndarray], *, min_objects: int = 1
) -> np.ndarray:
    """The median object diameter (pixels) of each training image that has objects.

    ``masks``: mask or instance label files (read with
    ``napari_attnseg.data.io.read_mask``) or arrays. Images with fewer than
    ``min_objects`` objects are skipped.
    """
    medians = []
    for item in masks:
        value = median_diameter(_read(item), min_objects=min_objects)
        if value is not None:
            medians.append(value)
    return np.asarray(medians, dtype=np.float64)


def training_diameter(
    masks: Iterable[str | os.PathLike | np.ndarray], *, min_objects: int = 1
) -> float | None:
    """Typical object diameter (pixels) of a training set: the median of per-image medians.

    ``None`` if no image has objects (see :func:`training_diameters`).
    """
    medians = training_diameters(masks, min_objects=min_objects)
    return float(np.median(medians)) if medians.size else None


def diameter_summary(
    masks: Iterable[str | os.PathLike | np.ndarray], *, scale: float = 1.0
) -> dict[str, Any]:
    """What a model card records about its training objects' size, in working pixels.

    ``{"object_diameter": median, "object_diameter_range": [10th, 90th percentile]}``
    of the per-image median diameters, times ``scale`` (the working scale); empty
    when the masks hold no objects.
    """
    medians = training_diameters(masks) * float(scale)
    if not medians.size:
        return {}
    low, mid, high = np.percentile(medians, [10, 50, 90])
    return {
        "object_diameter": round(float(mid), 3),
        "object_diameter_range": [round(float(low), 3), round(float(high), 3)],
    }


__all__ = [
    "MIN_OBJECTS",
    "diameter_summary",
    "median_diameter",
    "object_diameters",
    "training_diameter",
    "training_diameters",
]
