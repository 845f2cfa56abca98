"""Objects of a stack: link each plane's instance labels to the next plane's by overlap.

The instance functions (:mod:`.instances`) label a stack plane by plane, so a
nucleus that spans five planes comes out as five objects. :func:`stitch_planes`
joins them, as Cellpose's ``stitch3D`` does: going up the stack, an object of
plane ``z + 1`` takes the id of the object of plane ``z`` it overlaps most —
by intersection over union, if that IoU is at least ``threshold`` — and every
object of plane ``z`` lends its id to at most one object of plane ``z + 1``
(pairs are taken greedily, highest IoU first). Objects left unlinked start a
new id. An object that appears, vanishes for a plane and reappears is two
objects: only consecutive planes are compared.

Overlaps are counted for all pairs of a plane at once (``np.unique`` of the
paired object indices), so the cost is a few passes over each plane plus a
Python step per overlapping pair of objects, never per pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..progress import CancelToken, check
from .instances import LABEL_DTYPE, relabel_raster

#: the default overlap (IoU) at which objects of consecutive planes are one object
DEFAULT_STITCH = 0.25


def _check(labels: Any, threshold: Any) -> tuple[np.ndarray, float]:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integer instance labels, got dtype {labels.dtype} "
            "(a mask must be labelled into objects first)"
        )
    if labels.ndim < 3:
        raise ValueError(
            "labels must be a stack of instance labels (Z, H, W) or (..., Z, H, W) to link "
            f"across planes, got shape {labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels hold negative values ({labels.min()}); 0 is background")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"threshold must be an overlap (IoU) in [0, 1), got {threshold!r}")
    threshold = float(threshold)
    if not 0.0 <= threshold < 1.0:  # NaN fails too
        raise ValueError(f"threshold must be an overlap (IoU) in [0, 1), got {threshold!r}")
    return labels, threshold


def _objects(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each pixel's object index 0..n-1 with -1 for background, pixels per object)."""
    ids, index = np.unique(plane.ravel(), return_inverse=True)
    index = index.astype(np.int64, copy=False)
    if ids.size and ids[0] == 0:
        index -= 1  # background becomes -1, objects 0..n-1
        ids = ids[1:]
    areas = np.bincount(index[index >= 0], minlength=ids.size)
    return index, areas


def _links(
    below: np.ndarray,
    below_areas: np.ndarray,
    above: np.ndarray,
    above_areas: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (object below, object above) that are one object: IoU >= threshold (> 0),
    each object in at most one pair, highest IoU first."""
    both = (below >= 0) & (above >= 0)
    n_above = above_areas.size
    if not both.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs, overlap = np.unique(below[both] * n_above + above[both], return_counts=True)
    a, b = pairs // n_above, pairs % n_above
    iou = overlap / (below_areas[a] + above_areas[b] - overlap)
    keep = iou >= threshold  # overlap > 0 always: only pairs that share pixels are counted
    a, b, iou = a[keep], b[keep], iou[keep]
    # highest IoU first; ties by the lower object indices, so the result is deterministic
    order = np.lexsort((b, a, -iou))
    used_below = np.zeros(below_areas.size, bool)
    used_above = np.zeros(n_above, bool)
    chosen = []
    for i in order.tolist():
        if not used_below[a[i]] and not used_above[b[i]]:
            used_below[a[i]] = used_above[b[i]] = True
            chosen.append(i)
    chosen = np.asarray(chosen, dtype=np.int64)
    return a[chosen], b[chosen]


def stitch_planes(
    labels: np.ndarray, threshold: float = DEFAULT_STITCH, *, cancel: CancelToken | None = None
) -> np.ndarray:
    """One id per object of a stack whose planes were labelled one by one.

    ``labels``: integer instance labels ``(Z, H, W)`` — or ``(..., Z, H, W)``,
    each index of the leading axes a stack of its own (a time series of
    stacks: objects are linked along Z, never across time) — with 0 as
    background. Each plane's objects are its distinct ids (an id found in two
    planes counts as two objects there, linked only if they overlap). An object
    takes the id of the object of the plane below it with which it has the
    highest IoU, if that is at least ``threshold`` (0 links any overlap); each
    object below is used at most once. Returns ``uint32`` labels of the same
    shape numbered 1..N without gaps in raster order of the whole array
    (:func:`~napari_attnseg.objects.relabel_raster`). ``cancel`` is checked
    before every plane.
    """
    labels, threshold = _check(labels, threshold)
    shape = labels.shape
    if labels.size == 0:
        return np.zeros(shape, dtype=LABEL_DTYPE)
    stacks = labels.reshape(-1, *shape[-3:])
    out = np.zeros(stacks.shape, dtype=LABEL_DTYPE)  # ids count objects: they fit
    next_id = 1
    for s, stack in enumerate(stacks):
        below = below_areas = below_ids = None
        for z, plane in enumerate(stack):
            check(cancel)
            index, areas = _objects(plane)
            # the id of every object of this plane, and 0 last for the background's index -1
            ids = np.zeros(areas.size + 1, dtype=np.int64)
            fresh = np.ones(areas.size, bool)
            if below is not None and areas.size and below_areas.size:
                a, b = _links(below, below_areas, index, areas, threshold)
                ids[b] = below_ids[a]
                fresh[b] = False
            count = int(fresh.sum())
            ids[:-1][fresh] = np.arange(next_id, next_id + count, dtype=np.int64)
            next_id += count
            out[s, z] = ids[index].reshape(plane.shape)
            below, below_areas, below_ids = index, areas, ids
    return relabel_raster(out.reshape(shape))


__all__ = ["DEFAULT_STITCH", "stitch_planes"]
