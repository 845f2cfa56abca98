"""Synthetic inputs: cheap to make, so that the benchmark needs no data on disk."""

from __future__ import annotations

import numpy as np


def synthetic_image(size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A uint8 (H, W, C) noise image (C = 1 gives (H, W)); content does not affect timing."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def synthetic_samples(n: int, size: int, channels: int, seed: int = 0) -> list:
    """``n`` normalised training samples: bright discs on noise, with their masks."""
    from skimage.draw import disk

    from ..data.samples import Sample

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        mask = np.zeros((size, size), np.int64)
        for _ in range(max(2, size // 32)):
            centre = rng.integers(size // 8, size - size // 8, size=2)
            radius = rng.integers(size // 16 + 2, size // 8 + 3)
            mask[disk(tuple(centre), radius, shape=mask.shape)] = 1
        image = mask[None] * 1.5 + rng.normal(0.0, 1.0, (channels, size, size))
        image = (image - image.mean()) / image.std()
        samples.append(Sample(f"synthetic{i}", image.astype(np.float32), mask))
    return samples
