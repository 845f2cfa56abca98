"""What users paint → class indices: the one label convention of the package.

A mask holds class indices (binary: 0/1) and ``-1`` marks an ignored pixel.
:func:`labels_from_annotation` turns napari-painted labels — a whole
corrected mask ("dense") or scribbles ("sparse") — into that convention.
"""

from __future__ import annotations

import numpy as np

IGNORE = -1
ANNOTATION_MODES = ("dense", "sparse")


def labels_from_annotation(
    labels: np.ndarray, mode: str, n_classes: int, head: str | None = None
) -> np.ndarray:
    """Convert painted labels to class indices (int64, ``-1`` = ignore).

    For a model with a separation ``head`` (``"bands"``, :mod:`.targets`) the painted
    labels are *objects*: dense labels are instance labels (each value one object; a
    mask painted with a single value is split into its connected blobs) and become
    the head's classes; sparse labels mark background with 1 and objects with 2, 3, …
    (each value, or each blob of one value, an object), the rest is ignored.

    * ``"dense"``: every pixel is labelled; the value is the class index. For a
      binary model (``n_classes`` 1 or 2) any nonzero value is foreground, so
      0/255 masks work as they are.
    * ``"sparse"``: only painted pixels count — 0 is unlabelled (→ −1),
      1 is background (→ 0) and 2, 3, … are classes 1, 2, …
    """
    if mode not in ANNOTATION_MODES:
        raise ValueError(f"annotation mode must be one of {ANNOTATION_MODES}, got {mode!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.array_equal(
            labels, np.round(labels)
        ):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if head is not None:
        return _head_labels(labels, mode, head)
    classes = max(n_classes, 2)  # a single-logit model still has background + foreground
    if mode == "dense":
        if n_classes <= 2:
            return (labels != 0).astype(np.int64)
        _check_range(labels, 0, classes - 1, f"dense labels for {n_classes} classes")
        return labels
    if not np.any(labels != 0):
        raise ValueError(
            "no labelled pixels: paint background with label 1 and objects with label 2"
            + (f"..{classes}" if classes > 2 else "")
        )
    _check_range(labels, 0, classes, f"sparse labels for {n_classes} class(es)")
    return labels - 1  # 0 → −1 (ignore), 1 → 0, k → k − 1


def _head_labels(labels: np.ndarray, mode: str, head: str) -> np.ndarray:
    from .targets import head_targets, instances_of_mask

    if mode == "dense":
        if labels.min(initial=0) < 0:
            raise ValueError("instance labels must be >= 0 (0 = background)")
        return head_targets(head, instances_of_mask(labels))
    if not np.any(labels != 0):
        raise ValueError("no labelled pixels: paint background with label 1 and objects with 2, 3…")
    if labels.min() < 0:
        raise ValueError("scribble labels must be >= 0 (0 = unlabelled, 1 = background)")
    objects = np.where(labels >= 2, labels - 1, 0)
    classes = head_targets(head, instances_of_mask(objects))
    return np.where(labels == 0, IGNORE, classes)


def _check_range(labels: np.ndarray, low: int, high: int, what: str) -> None:
    bad = np.unique(labels[(labels < low) | (labels > high)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise ValueError(f"{what} must be in {low}..{high}, found {shown}")
