"""Intensity normalisation of ``(C, H, W)`` images, as a model card's ``normalization`` says.

:class:`~.input_spec.InputSpec` applies it (after converting channels and
before resizing) wherever an image is fed to a network. The modes, e.g.
   ``{"mode": "zscore"}`` (per image; the default, as in Yeung et al., ISBI 2022, §II-D),
   ``{"mode": "dataset", "mean": [...], "std": [...]}`` (FocusNet),
   ``{"mode": "percentile", "low": 1, "high": 99.8}``, ``{"mode": "minmax"}``,
   ``{"mode": "none"}``, each optionally with ``"clahe": true`` (Joint Attention).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from skimage.exposure import equalize_adapthist

from ..models.card import check_spec

#: a constant channel has std 0; anything below this is treated as constant
EPS = 1e-6


def normalize(image_chw: np.ndarray, spec: Mapping[str, Any] | None) -> np.ndarray:
    """Normalise a ``(C, H, W)`` image per channel as ``spec`` says; returns float32.

    Modes: ``zscore`` (per image: (x − mean) / std, a constant channel gives 0),
    ``dataset`` (``spec["mean"]``, ``spec["std"]``: one value, or one per channel),
    ``percentile`` (``spec["low"]``/``spec["high"]`` percentiles, default 1 and
    99.8, mapped to [0, 1] and clipped), ``minmax`` (to [0, 1]) and ``none``.
    ``spec["clahe"] = True`` first rescales each channel to [0, 1] (min–max)
    and applies CLAHE (``clip_limit`` from ``spec["clahe_clip"]``, default 0.01).
    """
    spec = check_spec(spec)
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
