"""Instance labels from a segmentation model's output.

Every function here takes numpy arrays and returns ``uint32`` instance labels
of the input's ``(H, W)`` or ``(Z, H, W)`` shape: 0 is background and the
objects are numbered 1..N without gaps. Ids follow the raster position of
each object's first pixel (row by row, then slice by slice), so the same
segmentation always gets the same ids and napari the same colours. A stack
is labelled slice by slice (objects never continue across slices) with ids
unique over the whole stack; ``cancel`` is checked before every slice.
(``napari_attnseg.data.io.write_mask`` stores labels in the smallest type
that holds them.)

Inputs are probabilities in [0, 1] (foreground where ``>= threshold``) or
masks (bool, or integers with nonzero = foreground).

Methods (:func:`instances_from_foreground`):

- ``"components"``: connected components of the mask. Touching objects stay
  merged.
- ``"watershed"``: seeded watershed (``skimage.segmentation.watershed``) of
  the Euclidean distance transform of the mask, so that touching round
  objects are cut along the neck between them. The seeds are the regional
  maxima of the Gaussian-smoothed distance transform whose *dynamic* on a
  log scale — how far it falls, as a ratio, before a higher maximum is
  reached — is large (h-maxima of ``log(1 + distance)``): two objects are
  cut apart where the distance to the background at the neck is below about
  ``1 - split`` of its value at the centre of the smaller one. The rule is
  the same at any scale; a ``diameter`` (pixels) sets the default
  ``min_size`` and, above 20 px, the smoothing (``diameter / 10``; else
  ``DEFAULT_SIGMA`` = 2 px). ``docs/objects.md`` has the measurements
  behind the defaults.

Fragments smaller than ``min_size`` pixels are merged into the neighbour
they share most border with, or dropped when they touch no other object.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from ..progress import CancelToken, check

METHODS: tuple[str, ...] = ("watershed", "components")
#: a neck narrower than this fraction of the smaller object's radius splits it
DEFAULT_SPLIT = 0.15
#: smoothing (pixels) of the distance transform; a diameter above 20 px smooths by diameter / 10
DEFAULT_SIGMA = 2.0
LABEL_DTYPE = np.uint32

_FOUR = ndi.generate_binary_structure(2, 1)
_EIGHT = ndi.generate_binary_structure(2, 2)


# -- input handling ------------------------------------------------------------
def _as_mask(array: Any, threshold: float, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.integer):
        return array != 0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{what} must be probabilities or a mask, got dtype {array.dtype}")
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(
            f"{what} must hold probabilities in [0, 1] (apply a sigmoid/softmax to logits) "
            "or be a mask (bool or integers)"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return array >= threshold


def _check_2d_or_stack(array: np.ndarray, what: str) -> None:
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{what} must be one image (H, W) or a stack (Z, H, W), got shape {array.shape}"
        )


def _check_diameter(diameter: float | None) -> float | None:
    if diameter is None:
        return None
    diameter = float(diameter)
    if not math.isfinite(diameter) or diameter <= 0:
        raise ValueError(f"diameter must be a positive number of pixels, got {diameter}")
    return diameter


def default_min_size(diameter: float | None) -> int:
    """Fragments smaller than this are merged or dropped: 1/16 of a disc of the diameter."""
    if diameter is None:
        return 4
    return max(4, int(round(math.pi * diameter**2 / 4 / 16)))


# -- relabelling ------------------------------------------------------------------
def relabel_raster(labels: np.ndarray, offset: int = 0) -> np.ndarray:
    """``uint32`` labels numbered ``offset + 1, offset + 2, …`` by each object's first pixel."""
    flat = np.asarray(labels).ravel()
    out = np.zeros(flat.shape, dtype=LABEL_DTYPE)
    nonzero = np.flatnonzero(flat)
    if nonzero.size == 0:
        return out.reshape(labels.shape)
    values = flat[nonzero]
    ids, first = np.unique(values, return_index=True)
    order = np.argsort(first, kind="stable")
    new = np.empty(ids.size, dtype=LABEL_DTYPE)
    new[order] = np.arange(offset + 1, offset + 1 + ids.size, dtype=np.uint64).astype(LABEL_DTYPE)
    out[nonzero] = new[np.searchsorted(ids, values)]
    return out.reshape(labels.shape)


def _merge_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Merge objects below ``min_size`` pixels into their main neighbour; drop isolated ones.

    Each small object joins the neighbour it shares the longest border with
    (4-neighbour edges); chains of small objects join together (connected
    components of those links), and what is still small afterwards and touches
    nothing goes.
    """
    if min_size <= 1 or labels.max() == 0:
        return labels
    for _ in range(3):
        areas = np.bincount(labels.ravel())
        small = (areas > 0) & (areas < min_size)
        small[0] = False
        if not small.any():
            break
        n = areas.size
        # adjacent pairs (small object, other object) over 4-neighbour edges
        a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
        b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
        edge = (a != b) & (a > 0) & (b > 0)
        a, b = a[edge].astype(np.int64), b[edge].astype(np.int64)
        a, b = np.concatenate([a, b]), np.concatenate([b, a])
        keep = small[a]
        pair, count = np.unique(a[keep] * n + b[keep], return_counts=True)
        src, dst = pair // n, pair % n
        # for each small object, the neighbour with the longest shared border
        order = np.lexsort((-count, src))
        src, dst = src[order], dst[order]
        first = np.concatenate([[True], src[1:] != src[:-1]]) if src.size else src.astype(bool)
        src, dst = src[first], dst[first]
        links = coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
        _, group = connected_components(links, directed=False)
        # every group holds at most one object that is not small (each small
        # object links to one neighbour): name the group after it
        target = np.arange(n, dtype=np.int64)
        big = np.flatnonzero(~small)
        head = np.full(n, -1, dtype=np.int64)
        head[group[big]] = big
        joined = small & (head[group] >= 0)
        target[joined] = head[group[joined]]
        # groups of small objects only: name them after their smallest member
        alone = small & (head[group] < 0)
        lowest = np.full(n, n, dtype=np.int64)
        np.minimum.at(lowest, group[alone], np.flatnonzero(alone))
        target[alone] = lowest[group[alone]]
        if not joined.any() and np.array_equal(target[alone], np.flatnonzero(alone)):
            break  # nothing merged: what is still small touches nothing small or large
        labels = target[labels]
    # isolated fragments (and any left after three rounds) go
    areas = np.bincount(labels.ravel())
    drop = (areas > 0) & (areas < min_size)
    drop[0] = False
    return np.where(drop[labels], 0, labels)


def _add_unseeded(labels: np.ndarray, mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    """Give every part of the mask the watershed left unlabelled an id of its own."""
    rest = mask & (labels == 0)
    if not rest.any():
        return labels
    extra, n = ndi.label(rest, structure=structure)
    labels = labels.astype(np.int64, copy=False)
    return np.where(extra > 0, extra + labels.max(), labels)


def _per_plane(stack: np.ndarray, label_one, cancel: CancelToken | None) -> np.ndarray:
    """``uint32`` labels ``(Z, H, W)``: ``label_one(plane)`` of each plane of ``stack`` (its
    first axis), ids in raster order and unique over the stack; ``cancel`` checked per plane."""
    out = np.zeros((stack.shape[0], *stack.shape[-2:]), dtype=LABEL_DTYPE)
    offset = 0
    for z, plane in enumerate(stack):
        check(cancel)
        out[z] = relabel_raster(label_one(plane), offset)
        offset = int(out[z].max()) or offset
    return out


# -- one slice --------------------------------------------------------------------
def _seeds(distance: np.ndarray, split: float) -> np.ndarray:
    # h-maxima of log(1 + distance): a dynamic above -log(1 - split) means the
    # neck is narrower than (1 - split) of the lower peak, at any scale
    return h_maxima(np.log1p(distance), -math.log(1.0 - split))


def _watershed(
    mask: np.ndarray, diameter: float | None, split: float, structure: np.ndarray
) -> np.ndarray:
    distance = ndi.distance_transform_edt(mask)
    sigma = DEFAULT_SIGMA if diameter is None else max(DEFAULT_SIGMA, diameter / 10.0)
    smooth = ndi.gaussian_filter(distance, sigma) * mask
    markers, _ = ndi.label(_seeds(smooth, split), structure=_EIGHT)
    labels = watershed(-smooth, markers, mask=mask, connectivity=structure)
    return _add_unseeded(labels, mask, structure)


def _label_slice(
    mask: np.ndarray,
    method: str,
    diameter: float | None,
    min_size: int,
    split: float,
    structure: np.ndarray,
) -> np.ndarray:
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int64)
    if method == "components":
        labels, _ = ndi.label(mask, structure=structure)
    else:
        labels = _watershed(mask, diameter, split, structure)
    return _merge_small(labels, min_size)


def _label(
    mask: np.ndarray,
    *,
    method: str,
    diameter: float | None,
    min_size: int | None,
    split: float,
    connectivity: int,
    cancel: CancelToken | None,
    what: str,
) -> np.ndarray:
    _check_2d_or_stack(mask, what)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8), got {connectivity}")
    if not 0.0 < split < 1.0:
        raise ValueError(f"split must be in (0, 1), got {split}")
    diameter = _check_diameter(diameter)
    min_size = default_min_size(diameter) if min_size is None else int(min_size)
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0 pixels, got {min_size}")
    structure = _FOUR if connectivity == 1 else _EIGHT
    slices = mask[None] if mask.ndim == 2 else mask
    out = _per_plane(
        slices,
        lambda plane: _label_slice(plane, method, diameter, min_size, split, structure),
        cancel,
    )
    return out[0] if mask.ndim == 2 else out


# -- public API ---------------------------------------------------------------------
def instances_from_foreground(
    probability_or_mask: np.ndarray,
    *,
    diameter: float | None = None,
    threshold: float = 0.5,
    min_size: int | None = None,
    method: str = "watershed",
    split: float = DEFAULT_SPLIT,
    connectivity: int = 2,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Instance labels of a foreground probability map or mask, ``(H, W)`` or ``(Z, H, W)``.

    ``diameter``: the expected object diameter in pixels of this image, if
    known; it scales the smoothing and the default ``min_size``. ``split``
    (0–1): how much narrower than the smaller object a neck must be to cut
    there, as a fraction of its radius (larger = fewer cuts). ``connectivity`` 2 joins diagonal
    neighbours into one object, 1 does not.
    """
    mask = _as_mask(probability_or_mask, threshold, "probability_or_mask")
    return _label(
        mask,
        method=method,
        diameter=diameter,
        min_size=min_size,
        split=split,
        connectivity=connectivity,
        cancel=cancel,
        what="probability_or_mask",
    )


def instances_from_classes(
    probabilities: np.ndarray,
    *,
    min_size: int | None = None,
    connectivity: int = 1,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Instances from a 3-class model: (background, interior, boundary) probabilities.

    ``probabilities``: ``(3, H, W)`` or a stack ``(Z, 3, H, W)``. Each
    connected component of the pixels whose arg-max is *interior* is a seed;
    the seeds grow by watershed on the boundary probability over all pixels
    whose arg-max is not background, so boundary pixels join the object they
    border.
    """
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim not in (3, 4) or probs.shape[-3] != 3:
        raise ValueError(
            "probabilities must be (3, H, W) or (Z, 3, H, W) for the classes "
            f"(background, interior, boundary), got shape {probs.shape}"
        )
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8), got {connectivity}")
    structure = _FOUR if connectivity == 1 else _EIGHT
    min_size = default_min_size(None) if min_size is None else int(min_size)
    def label_one(plane: np.ndarray) -> np.ndarray:
        winner = plane.argmax(axis=0)
        foreground = winner != 0
        markers, _ = ndi.label(winner == 1, structure=structure)
        labels = watershed(plane[2], markers, mask=foreground, connectivity=structure)
        return _merge_small(_add_unseeded(labels, foreground, structure), min_size)

    out = _per_plane(probs[None] if probs.ndim == 3 else probs, label_one, cancel)
    return out[0] if probs.ndim == 3 else out


#: how a separation head's classes become objects (:func:`instances_from_head`)
DECODERS: tuple[str, ...] = ("centre", "boundary", "foreground")


def _head_plane(
    plane: np.ndarray,
    decode: str,
    threshold: float,
    diameter: float | None,
    min_size: int,
    structure: np.ndarray,
) -> np.ndarray:
    """Labels of one ``(4, H, W)`` plane of a "bands" head (background, interior,
    boundary, centre)."""
    foreground = (1.0 - plane[0]) >= threshold
    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int64)
    if decode == "foreground":
        return _label_slice(foreground, "watershed", diameter, min_size, DEFAULT_SPLIT, structure)
    if decode == "boundary":
        # seeds: where the object's inside (interior or centre) beats both boundary and
        # background; they grow over the boundary band by watershed on its probability
        inside = plane[1] + plane[3]
        seeds = (inside > plane[2]) & (inside > plane[0])
        surface = plane[2]
    else:
        # seeds: the centre blobs; they grow down the expected depth (interior 1, centre 2)
        seeds = plane.argmax(axis=0) == 3
        surface = -(plane[1] + 2.0 * plane[3])
    markers, _ = ndi.label(seeds & foreground, structure=structure)
    labels = watershed(surface, markers, mask=foreground, connectivity=structure)
    return _merge_small(_add_unseeded(labels, foreground, structure), min_size)


def instances_from_head(
    probabilities: np.ndarray,
    *,
    head: str = "bands",
    decode: str = "centre",
    threshold: float = 0.5,
    diameter: float | None = None,
    min_size: int | None = None,
    connectivity: int = 1,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Instances from a separation head's class probabilities, ``(K, H, W)`` or ``(Z, K, H, W)``.

    ``head`` "bands" (:mod:`napari_attnseg.data.targets`): background,
    interior, boundary, centre. Foreground is where the background probability
    is below ``1 - threshold``; ``decode`` says how it is split:

    - ``"centre"`` (default): each connected centre blob is one object, grown by
      watershed down the expected depth (interior counts 1, centre 2) over the
      foreground — objects meet where their depth is lowest, on the boundary band;
    - ``"boundary"``: seeds are the pixels whose inside (interior + centre) beats
      both boundary and background, grown by watershed on the boundary probability
      (the three-class decoding of :func:`instances_from_classes`);
    - ``"foreground"``: the head's foreground alone, split like a binary model's
      (:func:`instances_from_foreground`: watershed of the distance transform) —
      the baseline the learned separation is measured against.
    """
    from ..data.targets import HEADS, check_head

    check_head(head)
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
    probs = np.asarray(probabilities, dtype=np.float32)
    k = len(HEADS[head])
    if probs.ndim not in (3, 4) or probs.shape[-3] != k:
        raise ValueError(
            f"probabilities of a {head!r} head must be ({k}, H, W) or (Z, {k}, H, W) for the "
            f"classes {', '.join(HEADS[head])}, got shape {probs.shape}"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8), got {connectivity}")
    diameter = _check_diameter(diameter)
    structure = _FOUR if connectivity == 1 else _EIGHT
    min_size = default_min_size(diameter) if min_size is None else int(min_size)
    out = _per_plane(
        probs[None] if probs.ndim == 3 else probs,
        lambda plane: _head_plane(plane, decode, threshold, diameter, min_size, structure),
        cancel,
    )
    return out[0] if probs.ndim == 3 else out


def cells_from_membranes(
    probability_or_mask: np.ndarray,
    *,
    foreground: str = "interior",
    threshold: float = 0.5,
    method: str = "components",
    diameter: float | None = None,
    min_size: int | None = None,
    fill_membranes: bool = False,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Cells as the regions enclosed by membranes, ``(H, W)`` or ``(Z, H, W)``.

    ``foreground`` says what the input's foreground is: ``"interior"`` (the
    default, as for the shipped ``membranes`` model and the ISBI 2012 masks,
    where 255 / label 1 is cell interior and 0 membrane) or ``"membrane"``.
    Cells are the 4-connected components of the interior (``method=
    "components"``; 4-connectivity so that a one-pixel diagonal gap in a
    membrane does not join two cells) or its watershed split
    (``"watershed"``, for membranes with gaps). ``fill_membranes=True`` grows
    the cells over the membrane pixels (watershed on the distance to the
    interior), so that the cells tile the image.
    """
    if foreground not in ("interior", "membrane"):
        raise ValueError(f"foreground must be 'interior' or 'membrane', got {foreground!r}")
    mask = _as_mask(probability_or_mask, threshold, "probability_or_mask")
    interior = mask if foreground == "interior" else ~mask
    _check_2d_or_stack(interior, "probability_or_mask")
    stack = interior[None] if interior.ndim == 2 else interior
    out = np.zeros(stack.shape, dtype=LABEL_DTYPE)
    offset = 0
    for z, plane in enumerate(stack):
        check(cancel)
        labels = _label(
            plane,
            method=method,
            diameter=diameter,
            min_size=min_size,
            split=DEFAULT_SPLIT,
            connectivity=1,
            cancel=None,
            what="probability_or_mask",
        ).astype(np.int64)
        if fill_membranes and labels.max() > 0:
            distance = ndi.distance_transform_edt(labels == 0)
            labels = watershed(distance, labels, connectivity=_FOUR)
        out[z] = relabel_raster(labels, offset)
        offset = int(out[z].max()) or offset
    return out[0] if interior.ndim == 2 else out


def smallest_unsigned(labels: np.ndarray) -> np.ndarray:
    """``labels`` in the smallest unsigned integer type that holds its largest id."""
    labels = np.asarray(labels)
    high = int(labels.max()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if high <= np.iinfo(dtype).max:
            return labels.astype(dtype, copy=False)
    raise ValueError(f"label {high} does not fit in 64 bits")


__all__ = [
    "DEFAULT_SIGMA",
    "DEFAULT_SPLIT",
    "LABEL_DTYPE",
    "METHODS",
    "cells_from_membranes",
    "default_min_size",
    "DECODERS",
    "instances_from_classes",
    "instances_from_foreground",
    "instances_from_head",
    "relabel_raster",
    "smallest_unsigned",
]
