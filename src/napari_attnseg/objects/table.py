"""Per-object measurements of an instance label image, and writing them as CSV.

:func:`object_table` measures every object as
``skimage.measure.regionprops`` defines it and returns plain columns (a dict of
equal-length numpy arrays, one row per object in increasing label order),
which napari accepts as a Labels layer's ``features`` and :func:`write_table_csv`
writes as a CSV file. Columns, in order:

=======================  ======================================================
label                    the object's id in the label image
z                        stacks: the plane of its largest section
area                     pixels
centroid_y, centroid_x   centre of mass (pixels; row, column)
equivalent_diameter      diameter of the disc with the object's area (pixels)
perimeter                boundary length (pixels; skimage's 4-connected estimate)
eccentricity             of the ellipse with the object's second moments (0 = disc)
solidity                 area / area of the convex hull
bbox_min_y, bbox_min_x   first row and column of the bounding box
bbox_max_y, bbox_max_x   one past its last row and column (numpy slice bounds)
z_min, z_max             stacks: the first and last plane the object is in
volume                   stacks: voxels, over all its planes
=======================  ======================================================

Perimeter and solidity come from ``skimage.measure.regionprops_table``; the
other columns are the same quantities computed for all objects at once with
numpy and ``scipy.ndimage`` (regionprops takes a Python call per object and
property: seconds for thousands of objects); the tests check both agree.

A stack ``(Z, H, W)`` has one row per object — an id found in several planes
(an object linked across planes, :func:`~napari_attnseg.objects.stitch_planes`)
is one object. Its in-plane columns (``area`` to ``bbox_max_x``) measure its
largest section, in plane ``z`` (the lowest such plane on a tie); ``z_min``,
``z_max`` and ``volume`` its extent over the planes. An object of one plane
has ``z_min == z_max == z`` and ``volume == area``.

With an ``image``: ``mean_intensity``, ``min_intensity``, ``max_intensity``
for a grey image; for an RGB(A) image the same **per colour channel**
(``mean_intensity_r``, ``…_g``, ``…_b``, then min and max; alpha is ignored),
so the colour of a stain is kept rather than mixed into a luminance. In a
stack they are taken over all the object's voxels.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops_table

from .._files import atomic_write
from ..data.input_spec import colour_over

#: the shape columns, in table order (intensity columns follow when an image is given)
SHAPE_COLUMNS: tuple[str, ...] = (
    "label",
    "area",
    "centroid_y",
    "centroid_x",
    "equivalent_diameter",
    "perimeter",
    "eccentricity",
    "solidity",
    "bbox_min_y",
    "bbox_min_x",
    "bbox_max_y",
    "bbox_max_x",
)
#: the columns a stack's table adds after the shape columns: the object's extent over the planes
STACK_COLUMNS: tuple[str, ...] = ("z_min", "z_max", "volume")
#: the columns regionprops_table computes (one Python call per object); the rest are
#: the same quantities taken for all objects at once with numpy (several times faster
#: on thousands of objects; tests check they equal regionprops_table's)
_REGIONPROPS = ("label", "perimeter", "solidity")
_CHANNELS = ("r", "g", "b")
_INTEGER = (
    "label", "z", "area", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x", *STACK_COLUMNS,
)
_STATS = ("mean", "min", "max")


def _check_labels(labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be integer instance labels, got dtype {labels.dtype} "
            "(a mask must be labelled into objects first)"
        )
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be (H, W) or a stack (Z, H, W), got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels hold negative values ({labels.min()}); 0 is background")
    return labels


def _check_image(image: Any, labels: np.ndarray) -> tuple[np.ndarray, bool]:
    """(image, rgb) with an RGBA image cut to RGB."""
    image = np.asarray(image)
    rgb = colour_over(image.shape, labels.shape)
    if rgb:
        image = image[..., :3]
    elif rgb is None:
        raise ValueError(
            f"image shape {image.shape} does not match labels shape {labels.shape} "
            "(expected the same shape, or the same with a last RGB(A) axis of 3 or 4)"
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    return image.astype(np.float64) if image.dtype == bool else image, rgb


def _intensity_columns(rgb: bool | None) -> tuple[str, ...]:
    if rgb is None:
        return ()
    if not rgb:
        return tuple(f"{s}_intensity" for s in _STATS)
    return tuple(f"{s}_intensity_{c}" for s in _STATS for c in _CHANNELS)


def _columns(rgb: bool | None) -> tuple[str, ...]:
    return (*SHAPE_COLUMNS, *_intensity_columns(rgb))


def _stack_columns(rgb: bool | None) -> tuple[str, ...]:
    return ("label", "z", *SHAPE_COLUMNS[1:], *STACK_COLUMNS, *_intensity_columns(rgb))


def _empty(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {
        name: np.zeros(0, dtype=np.int64 if name in _INTEGER else np.float64) for name in names
    }


def _dense(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(object ids in increasing order, labels renumbered 1..K in that order)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size and ids[-1] == ids.size:
        return ids, labels
    dense = np.searchsorted(ids, labels) + 1
    return ids, np.where(labels > 0, dense, 0)


def _eccentricity(
    dense: np.ndarray, n: int, area: np.ndarray, cy: np.ndarray, cx: np.ndarray
) -> np.ndarray:
    """Eccentricity of the ellipse with each object's second central moments (as skimage)."""
    rows, cols = np.nonzero(dense)
    index = dense[rows, cols]
    dy, dx = rows - cy[index - 1], cols - cx[index - 1]
    a = np.bincount(index, dy * dy, n + 1)[1:] / area
    c = np.bincount(index, dx * dx, n + 1)[1:] / area
    b = np.bincount(index, dy * dx, n + 1)[1:] / area
    root = np.sqrt(((a - c) / 2) ** 2 + b**2)
    major = np.maximum((a + c) / 2 + root, 0)
    minor = np.maximum((a + c) / 2 - root, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(major > 0, np.sqrt(np.maximum(1 - minor / major, 0)), 0.0)


def _table_2d(labels: np.ndarray, image: np.ndarray | None, rgb: bool | None) -> dict:
    columns = _columns(rgb)
    ids, dense = _dense(labels)
    n = int(ids.size)
    if n == 0:
        return _empty(columns)
    area = np.bincount(dense.ravel(), minlength=n + 1)[1:]
    rows, cols = np.indices(dense.shape, sparse=True)
    flat = dense.ravel()
    cy = np.bincount(flat, np.broadcast_to(rows, dense.shape).ravel(), n + 1)[1:] / area
    cx = np.bincount(flat, np.broadcast_to(cols, dense.shape).ravel(), n + 1)[1:] / area
    boxes = ndi.find_objects(dense)
    bbox = np.array([(b[0].start, b[1].start, b[0].stop, b[1].stop) for b in boxes])
    shape = regionprops_table(labels, properties=_REGIONPROPS)
    table: dict[str, np.ndarray] = {
        "label": ids.astype(np.int64),
        "area": area.astype(np.int64),
        "centroid_y": cy,
        "centroid_x": cx,
        "equivalent_diameter": np.sqrt(4.0 * area / np.pi),
        "perimeter": np.asarray(shape["perimeter"], dtype=np.float64),
        "eccentricity": _eccentricity(dense, n, area, cy, cx),
        "solidity": np.asarray(shape["solidity"], dtype=np.float64),
        "bbox_min_y": bbox[:, 0].astype(np.int64),
        "bbox_min_x": bbox[:, 1].astype(np.int64),
        "bbox_max_y": bbox[:, 2].astype(np.int64),
        "bbox_max_x": bbox[:, 3].astype(np.int64),
    }
    if image is not None:
        table.update(_intensities(dense, n, area, image, rgb))
    return {name: table[name] for name in columns}


def _intensities(
    dense: np.ndarray, n: int, size: np.ndarray, image: np.ndarray, rgb: bool
) -> dict[str, np.ndarray]:
    """Mean, min and max of ``image`` over each object of ``dense`` (labels 1..n of ``size``
    pixels each), per colour channel for RGB."""
    flat = dense.ravel()
    index = np.arange(1, n + 1)
    channels = [image[..., c] for c in range(3)] if rgb else [image]
    suffixes = [f"_{c}" for c in _CHANNELS] if rgb else [""]
    table = {}
    for channel, suffix in zip(channels, suffixes, strict=True):
        values = channel.astype(np.float64, copy=False)
        table[f"mean_intensity{suffix}"] = np.bincount(flat, values.ravel(), n + 1)[1:] / size
        table[f"min_intensity{suffix}"] = np.asarray(ndi.minimum(values, dense, index))
        table[f"max_intensity{suffix}"] = np.asarray(ndi.maximum(values, dense, index))
    return table


def _table_stack(labels: np.ndarray, image: np.ndarray | None, rgb: bool | None) -> dict:
    """One row per object of a ``(Z, H, W)`` stack: its largest section's shape, its extent."""
    names = _stack_columns(rgb)
    parts = []
    for z in range(labels.shape[0]):
        part = _table_2d(labels[z], None, None)
        parts.append({"z": np.full(part["label"].shape, z, dtype=np.int64), **part})
    if not any(p["label"].size for p in parts):
        return _empty(names)
    sections = {name: np.concatenate([p[name] for p in parts]) for name in ("z", *SHAPE_COLUMNS)}
    # the sections of each object together, largest first (lowest plane on a tie)
    order = np.lexsort((sections["z"], -sections["area"], sections["label"]))
    label = sections["label"][order]
    starts = np.flatnonzero(np.concatenate([[True], label[1:] != label[:-1]]))
    rows = order[starts]
    table = {name: values[rows] for name, values in sections.items()}
    table["z_min"] = np.minimum.reduceat(sections["z"][order], starts)
    table["z_max"] = np.maximum.reduceat(sections["z"][order], starts)
    table["volume"] = np.add.reduceat(sections["area"][order], starts)
    if image is not None:
        ids, dense = _dense(labels)
        table.update(_intensities(dense, int(ids.size), table["volume"], image, rgb))
    return {name: table[name] for name in names}


def object_table(labels: np.ndarray, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Measurements of every object (see the module docstring for the columns).

    ``labels``: integer instance labels ``(H, W)``, or a stack ``(Z, H, W)``:
    one row per object (an id found in several planes is one object); a ``z``
    column follows ``label`` — the plane of the object's largest section,
    which the in-plane columns measure — and ``z_min``, ``z_max``, ``volume``
    follow the shape columns. ``image``: optional grey image of the same
    shape, or RGB(A) with an extra last axis. No objects give the columns
    with no rows.
    """
    labels = _check_labels(labels)
    rgb: bool | None = None
    if image is not None:
        image, rgb = _check_image(image, labels)
    if labels.ndim == 2:
        return _table_2d(labels, image, rgb)
    return _table_stack(labels, image, rgb)


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def write_table_csv(path: str | os.PathLike, table: dict[str, Any]) -> Path:
    """Write a table (column name → equal-length 1-D arrays) as CSV, atomically.

    A header row of the column names, then one row per object; integers as
    integers, floats in the shortest form that reads back exactly, NaN as an
    empty cell. A table with no rows gives the header alone.
    """
    names = list(table)
    if not names:
        raise ValueError("the table has no columns")
    columns = [np.asarray(table[name]) for name in names]
    lengths = {column.shape for column in columns}
    if len(lengths) != 1 or columns[0].ndim != 1:
        raise ValueError(
            "every column of the table must be one-dimensional with the same length, got "
            + ", ".join(f"{n}: {c.shape}" for n, c in zip(names, columns, strict=True))
        )

    def write(target: str) -> None:
        with open(target, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(names)
            for row in zip(*(column.tolist() for column in columns), strict=True):
                writer.writerow([_cell(value) for value in row])

    return atomic_write(path, write)


__all__ = ["SHAPE_COLUMNS", "STACK_COLUMNS", "object_table", "write_table_csv"]
