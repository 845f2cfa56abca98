"""Training samples: normalised images at the network's working size, with their masks.

:func:`load_samples` reads ``(image, mask[, roi])`` files and prepares each
image through the model's :class:`~.input_spec.InputSpec` — the same path
prediction takes — so training data and inference inputs never differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..progress import CancelToken, ProgressCallback, check, report
from .annotations import labels_from_annotation
from .input_spec import InputSpec, canonical
from .io import read_image, read_mask


@dataclass
class Sample:
    """One training image, normalised and ready for patch sampling.

    ``image`` is ``(C, H, W)`` float32, ``mask`` ``(H, W)`` int64 class indices
    (``-1`` = ignore), ``roi`` an optional ``(H, W)`` bool region outside which
    nothing counts (e.g. DRIVE's field of view), ``dpt`` the cached
    ``(K, H, W)`` distance-penalty map (filled in by :class:`PatchDataset`).
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    roi: np.ndarray | None = None
    dpt: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        self.mask = np.asarray(self.mask).astype(np.int64, copy=False)
        if self.image.ndim != 3:
            raise ValueError(
                f"sample {self.name!r}: image must be (C, H, W), got {self.image.shape}"
            )
        size = self.image.shape[1:]
        if self.mask.shape != size:
            raise ValueError(
                f"sample {self.name!r}: mask shape {self.mask.shape} does not match image {size}"
            )
        if self.roi is not None:
            self.roi = np.asarray(self.roi).astype(bool, copy=False)
            if self.roi.shape != size:
                raise ValueError(
                    f"sample {self.name!r}: roi shape {self.roi.shape} does not match image {size}"
                )
        if self.dpt is not None:
            self.dpt = _checked_dpt(self.dpt, size, self.name)

    @property
    def valid(self) -> np.ndarray:
        """Pixels that count: labelled (mask ≥ 0) and inside the ROI."""
        valid = self.mask >= 0
        return valid & self.roi if self.roi is not None else valid


def load_samples(
    pairs: Iterable[Sequence[Path | str | None]],
    spec: InputSpec,
    *,
    n_classes: int = 1,
    annotation: str = "dense",
    head: str | None = None,
    rgb: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[Sample]:
    """Read ``(image, mask[, roi])`` files into :class:`Sample`\\ s prepared by ``spec``.

    Each image goes through :meth:`InputSpec.training_arrays` — channels,
    normalisation and working size exactly as prediction does it; mask and ROI
    are resampled with nearest neighbour. Masks are read as labels and
    converted with :func:`labels_from_annotation` (``annotation`` "dense" or
    "sparse"; with a separation ``head``, masks are instance labels and become the
    head's classes). NaN/Inf pixels are replaced and reported as a warning.
    """
    pairs = [tuple(pair) for pair in pairs]
    samples: list[Sample] = []
    for done, pair in enumerate(pairs):
        check(cancel)
        if len(pair) not in (2, 3):
            raise ValueError(f"expected (image, mask) or (image, mask, roi) paths, got {pair!r}")
        image_path, mask_path = Path(pair[0]), Path(pair[1])
        roi_path = Path(pair[2]) if len(pair) == 3 and pair[2] is not None else None
        raw_mask = read_mask(mask_path, binary=False)
        roi = None
        if roi_path is not None:
            roi = read_mask(roi_path, binary=True).astype(bool)
            if roi.shape != raw_mask.shape:
                raise ValueError(
                    f"ROI {roi_path} is {roi.shape}, image {image_path} is {raw_mask.shape}"
                )
        sample, replaced = build_sample(
            image_path.stem,
            read_image(image_path),
            raw_mask,
            spec,
            n_classes=n_classes,
            annotation=annotation,
            head=head,
            roi=roi,
            rgb=rgb,
            image_name=str(image_path),
            labels_name=str(mask_path),
            mismatch=partial(_mask_mismatch, mask_path, image_path),
        )
        if replaced:
            warnings.warn(
                f"{image_path}: {replaced} NaN/Inf pixel value(s) replaced by the channel median",
                stacklevel=2,
            )
        samples.append(sample)
        report(progress, done + 1, len(pairs), f"loaded {image_path.name}")
    return samples


def build_sample(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    spec: InputSpec,
    *,
    n_classes: int = 1,
    annotation: str = "dense",
    head: str | None = None,
    roi: np.ndarray | None = None,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    image_name: str | None = None,
    labels_name: str | None = None,
    stack_hint: str = "training needs 2D images (save the slices as separate files)",
    mismatch: Callable[[tuple[int, ...], tuple[int, ...]], str] | None = None,
) -> tuple[Sample, int]:
    """One :class:`Sample` from an image and its labels in memory: ``(sample, replaced)``.

    The one rule for turning annotated images into training data, for files
    (:func:`load_samples`) and for painted layers (``training.interactive``):
    the image is made canonical (``rgb``, ``channel_axis``) and must be one 2D
    plane; ``labels`` (its spatial shape) are converted by
    :func:`labels_from_annotation` (``annotation`` "dense" or "sparse", a
    separation ``head``); image, mask and ``roi`` (already the labels' shape) go
    through :meth:`InputSpec.training_arrays`. ``replaced`` counts the NaN/Inf
    pixels replaced. ``image_name`` / ``labels_name`` name the inputs in error
    messages (default ``repr(name)``), ``stack_hint`` ends the message for a
    stack, and ``mismatch(labels_shape, image_shape)`` words a shape mismatch.
    """
    image_name = repr(name) if image_name is None else image_name
    labels_name = f"labels for {name!r}" if labels_name is None else labels_name
    plane, layout = canonical(image, rgb=rgb, channel_axis=channel_axis)
    if layout.stack_shape:
        raise ValueError(f"{image_name} is a stack of shape {layout.shape}; {stack_hint}")
    labels = np.asarray(labels)
    if labels.shape != layout.spatial_shape:
        raise ValueError(
            mismatch(labels.shape, layout.spatial_shape)
            if mismatch is not None
            else f"{labels_name} are {_shape(labels.shape)} but the image is "
            f"{_shape(layout.spatial_shape)}"
        )
    try:
        mask = labels_from_annotation(labels, annotation, n_classes, head)
    except ValueError as exc:
        raise ValueError(f"{labels_name}: {exc}") from exc
    try:
        image, mask, roi, replaced = spec.training_arrays(plane, mask, roi, rgb=layout.rgb)
    except ValueError as exc:
        raise ValueError(f"{image_name}: {exc}") from exc
    return Sample(name, image, mask, roi), replaced


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def _mask_mismatch(
    mask_path: Path, image_path: Path, labels: tuple[int, ...], image: tuple[int, ...]
) -> str:
    return (
        f"mask {mask_path} is {labels[0]}x{labels[1]} but image "
        f"{image_path} is {image[0]}x{image[1]}"
    )


def _checked_dpt(
    dpt: np.ndarray, size: tuple[int, ...], name: str, n_maps: int | None = None
) -> np.ndarray:
    dpt = np.asarray(dpt, dtype=np.float32)
    if dpt.ndim == 2:
        dpt = dpt[None]
    k = "K" if n_maps is None else n_maps
    if dpt.ndim != 3 or dpt.shape[1:] != tuple(size) or dpt.shape[0] != (n_maps or dpt.shape[0]):
        raise ValueError(
            f"sample {name!r}: DPT map must be ({k}, {size[0]}, {size[1]}), got {dpt.shape}"
        )
    return dpt
