"""Turning any 2D image into the ``(C, H, W)`` float32 input a model expects.

The same two steps run in training, in the widgets and in the command line
(:func:`prepare_image`), driven by the ``normalization`` dict stored in each
model card, so a model always sees its inputs the way it was trained:

1. :func:`to_channels_first` — channel layout and count (grey ↔ RGB);
2. :func:`normalize` — intensities, per the card's spec, e.g.
   ``{"mode": "zscore"}`` (per image; the default, as in Focal Attention §2.8),
   ``{"mode": "dataset", "mean": [...], "std": [...]}`` (FocusNet),
   ``{"mode": "percentile", "low": 1, "high": 99.8}``, ``{"mode": "minmax"}``,
   ``{"mode": "none"}``, each optionally with ``"clahe": true`` (Joint Attention).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from skimage.exposure import equalize_adapthist

NORMALIZATION_MODES = ("zscore", "dataset", "percentile", "minmax", "none")
DEFAULT_NORMALIZATION: dict[str, Any] = {"mode": "zscore"}
#: luminance weights used by ``skimage.color.rgb2gray`` (ITU-R BT.709)
RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
#: a constant channel has std 0; anything below this is treated as constant
EPS = 1e-6


def to_channels_first(
    image: np.ndarray, in_channels: int, *, rgb: bool | None = None
) -> np.ndarray:
    """Return ``image`` as ``(in_channels, H, W)`` float32 in its original value range.

    Accepted layouts: ``(H, W)``; ``(H, W, 3|4)`` RGB(A), alpha dropped
    (``rgb=True``, or ``rgb=None`` and a last axis of 3 or 4); ``(C, H, W)``
    (``rgb=False``, or ``rgb=None`` and a first axis of at most 4). Grey
    becomes RGB by repetition when the model wants 3 channels and RGB becomes
    grey by luminance when it wants 1; other mismatches raise ``ValueError``.
    """
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    array = np.asarray(image)
    if array.ndim == 2:
        chw = array[None]
    elif array.ndim == 3:
        chw = _channels_first_3d(array, in_channels, rgb)
    else:
        raise ValueError(
            f"expected a 2D image (H, W), (H, W, 3|4) or (C, H, W), got shape {array.shape}"
        )
    chw = chw.astype(np.float32, copy=False)
    channels = chw.shape[0]
    if channels == in_channels:
        return np.ascontiguousarray(chw)
    if channels == 1 and in_channels == 3:
        return np.repeat(chw, 3, axis=0)
    if channels == 3 and in_channels == 1:
        return np.tensordot(RGB_TO_GREY, chw, axes=1)[None].astype(np.float32)
    raise ValueError(f"the image has {channels} channel(s) but the model expects {in_channels}")


def normalize(image_chw: np.ndarray, spec: Mapping[str, Any] | None) -> np.ndarray:
    """Normalise a ``(C, H, W)`` image per channel as ``spec`` says; returns float32.

    Modes: ``zscore`` (per image: (x − mean) / std, a constant channel gives 0),
    ``dataset`` (``spec["mean"]``, ``spec["std"]``: one value, or one per channel),
    ``percentile`` (``spec["low"]``/``spec["high"]`` percentiles, default 1 and
    99.8, mapped to [0, 1] and clipped), ``minmax`` (to [0, 1]) and ``none``.
    ``spec["clahe"] = True`` first rescales each channel to [0, 1] (min–max)
    and applies CLAHE (``clip_limit`` from ``spec["clahe_clip"]``, default 0.01).
    """
    spec = _check_spec(spec)
    image = np.asarray(image_chw)
    if image.ndim != 3:
        raise ValueError(f"normalize expects a (C, H, W) image, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ValueError(f"normalize expects a numeric image, got dtype {image.dtype}")
    image = image.astype(np.float32)
    if spec.get("clahe", False):
        image = apply_clahe(image, clip_limit=float(spec.get("clahe_clip", 0.01)))
    mode = spec["mode"]
    if mode == "zscore":
        mean = image.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        std = image.std(axis=(1, 2), keepdims=True, dtype=np.float64)
        return _affine(image, mean, std)
    if mode == "dataset":
        mean = _per_channel(spec, "mean", image.shape[0])
        std = _per_channel(spec, "std", image.shape[0])
        return _affine(image, mean, std)
    if mode == "percentile":
        low, high = float(spec.get("low", 1.0)), float(spec.get("high", 99.8))
        lo, hi = np.percentile(image, [low, high], axis=(1, 2), keepdims=True)
        return np.clip(_affine(image, lo, hi - lo), 0.0, 1.0)
    if mode == "minmax":
        lo = image.min(axis=(1, 2), keepdims=True)
        hi = image.max(axis=(1, 2), keepdims=True)
        return _affine(image, lo, hi - lo)
    return image  # "none"


def apply_clahe(image_chw: np.ndarray, clip_limit: float = 0.01) -> np.ndarray:
    """Per-channel CLAHE (``skimage.exposure.equalize_adapthist``) on [0, 1] min–max data."""
    out = np.empty(image_chw.shape, dtype=np.float32)
    for c, channel in enumerate(np.asarray(image_chw, dtype=np.float32)):
        low, high = float(channel.min()), float(channel.max())
        if high - low <= EPS:
            out[c] = 0.0
            continue
        out[c] = equalize_adapthist((channel - low) / (high - low), clip_limit=clip_limit)
    return out


def dataset_statistics(
    images: Iterable[np.ndarray], spec: Mapping[str, Any] | None = None
) -> dict[str, list[float]]:
    """Per-channel mean and std pooled over all pixels of ``(C, H, W)`` images.

    Pass the normalisation ``spec`` when it has ``"clahe": true`` so the
    statistics describe what ``mode="dataset"`` will actually see.
    """
    clahe = bool(spec and spec.get("clahe", False))
    clip = float(spec.get("clahe_clip", 0.01)) if spec else 0.01
    total = total_sq = None
    count = 0
    for index, image in enumerate(images):
        image = np.asarray(image, dtype=np.float64)
        if image.ndim != 3:
            raise ValueError(f"image {index} must be (C, H, W), got shape {image.shape}")
        if clahe:
            image = apply_clahe(image, clip).astype(np.float64)
        if total is not None and image.shape[0] != total.shape[0]:
            raise ValueError(
                f"image {index} has {image.shape[0]} channels, earlier ones {total.shape[0]}"
            )
        sums, sums_sq = image.sum(axis=(1, 2)), np.square(image).sum(axis=(1, 2))
        total = sums if total is None else total + sums
        total_sq = sums_sq if total_sq is None else total_sq + sums_sq
        count += image.shape[1] * image.shape[2]
    if total is None or count == 0:
        raise ValueError("dataset_statistics needs at least one non-empty image")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def prepare_image(
    image: np.ndarray,
    in_channels: int,
    spec: Mapping[str, Any] | None,
    *,
    rgb: bool | None = None,
) -> np.ndarray:
    """:func:`to_channels_first` then :func:`normalize`: what a model gets as input."""
    return normalize(to_channels_first(image, in_channels, rgb=rgb), spec)


# -- internals ---------------------------------------------------------------
def _channels_first_3d(array: np.ndarray, in_channels: int, rgb: bool | None) -> np.ndarray:
    channels_last = array.shape[-1] in (3, 4)
    if rgb is None:
        rgb = channels_last  # napari's convention: a last axis of 3 or 4 is colour
    if rgb:
        if not channels_last:
            raise ValueError(
                f"an RGB image must be (H, W, 3) or (H, W, 4), got shape {array.shape}"
            )
        return np.moveaxis(array[..., :3], -1, 0)
    if array.shape[0] > max(4, in_channels):
        raise ValueError(
            f"shape {array.shape} looks like a stack of {array.shape[0]} images, not a "
            f"(C, H, W) image with {in_channels} channel(s); pass one 2D slice at a time"
        )
    return array


def _check_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    spec = dict(DEFAULT_NORMALIZATION if spec is None else spec)
    spec.setdefault("mode", "zscore")
    if spec["mode"] not in NORMALIZATION_MODES:
        raise ValueError(
            f"unknown normalization mode {spec['mode']!r}; use one of {NORMALIZATION_MODES}"
        )
    if spec["mode"] == "percentile":
        low, high = float(spec.get("low", 1.0)), float(spec.get("high", 99.8))
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(
                f"percentile normalization needs 0 <= low < high <= 100, got {low}, {high}"
            )
    return spec


def _per_channel(spec: Mapping[str, Any], key: str, channels: int) -> np.ndarray:
    if key not in spec:
        raise ValueError(
            f'normalization mode "dataset" needs spec["{key}"] (one value per channel)'
        )
    values = np.atleast_1d(np.asarray(spec[key], dtype=np.float64))
    if values.ndim != 1 or values.size not in (1, channels):
        raise ValueError(
            f'spec["{key}"] has {values.size} value(s) but the image has {channels} channel(s)'
        )
    return np.broadcast_to(values, (channels,)).reshape(channels, 1, 1)


def _affine(image: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(image − offset) / scale, with a (near-)zero scale mapping the channel to 0."""
    scale = np.asarray(scale, dtype=np.float64)
    safe = np.where(scale > EPS, scale, np.inf)
    return ((image - offset) / safe).astype(np.float32)
