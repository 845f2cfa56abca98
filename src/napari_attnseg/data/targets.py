"""Training targets that teach a network where one object ends and the next begins.

A *separation head* is a softmax over a few classes derived from instance
labels, so that touching objects can be told apart from the network's output
alone (:func:`~napari_attnseg.objects.instances.instances_from_head`):

``"bands"`` — four classes per pixel, from the distance ``d`` of each object
pixel to the nearest pixel outside its own object (a touching neighbour counts
as outside), relative to the largest such distance ``D`` in the object:

* 0 background;
* 2 *boundary*: the object's rim, ``d <= 1`` px (``d <= 2`` px for objects
  with ``D >= 8``), so that between two touching objects lies a band of
  boundary pixels — the three-class target of the 2018 DSB winners
  (Caicedo et al., Nature Methods 16, 2019, "top solutions");
* 3 *centre*: ``d >= D / 2`` (the inner half of the distance map), one blob per
  object, far from its neighbours — a quantised energy level in the sense of
  the Deep Watershed Transform (Bai & Urtasun, CVPR 2017, section 3);
* 1 *interior*: the rest of the object.

The classes are kept in this order (0 background, 1 interior, 2 boundary)
so that the first three are those of :func:`instances_from_classes`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..models.card import HEADS as CARD_HEADS

#: the separation heads a model card may name, and their class names (the card's vocabulary:
#: ``models.card.HEADS``)
HEADS = CARD_HEADS
BACKGROUND, INTERIOR, BOUNDARY, CENTRE = 0, 1, 2, 3
#: objects whose largest inner distance reaches this many pixels get a 2-px rim
WIDE_RIM_FROM = 8.0
#: the centre class is the part of an object at least this fraction of its depth inside
CENTRE_DEPTH = 0.5


def check_head(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"unknown separation head {head!r}; known: {', '.join(HEADS)}")
    return head


def band_targets(instances: np.ndarray) -> np.ndarray:
    """``int64`` classes (0 background, 1 interior, 2 boundary, 3 centre) of ``(H, W)`` labels.

    ``instances``: integer labels, 0 = background, each other value one object
    (ids need not be consecutive). Pixels outside every object are background.
    """
    labels = np.asarray(instances)
    if labels.ndim != 2:
        raise ValueError(f"instance labels must be 2D (H, W), got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"instance labels must be integers, got dtype {labels.dtype}")
    out = np.zeros(labels.shape, dtype=np.int64)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        # one pixel of margin so that the object's own edge counts as outside
        padded = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, labels.shape)
        )
        window = labels[padded]
        inside = window == index
        if not inside.any():
            continue
        framed = np.pad(inside, 1)
        depth = ndi.distance_transform_edt(framed)[1:-1, 1:-1]
        deepest = float(depth[inside].max())
        rim = 2.0 if deepest >= WIDE_RIM_FROM else 1.0
        classes = np.full(inside.shape, INTERIOR, dtype=np.int64)
        classes[depth >= CENTRE_DEPTH * deepest] = CENTRE
        classes[depth <= rim] = BOUNDARY
        view = out[padded]
        view[inside] = classes[inside]
    return out


def head_targets(head: str, instances: np.ndarray) -> np.ndarray:
    """The class map of ``head`` for ``(H, W)`` instance labels."""
    check_head(head)
    return band_targets(instances)


def instances_of_mask(labels: np.ndarray) -> np.ndarray:
    """Instance labels of an annotation: integer labels as they are, a bool mask by its
    connected components (a mask painted with one label value is one object per blob)."""
    labels = np.asarray(labels)
    if labels.dtype == bool or (labels.size and np.unique(labels[labels != 0]).size <= 1):
        components, _ = ndi.label(labels != 0)
        return components
    return labels.astype(np.int64, copy=False)


__all__ = [
    "BACKGROUND",
    "BOUNDARY",
    "CENTRE",
    "HEADS",
    "INTERIOR",
    "band_targets",
    "check_head",
    "head_targets",
    "instances_of_mask",
]
