"""Sample images for File ▸ Open Sample ▸ napari-attnseg (all offline).

* ``nuclei`` — a mosaic of 4 fluorescence crops of the 2018 Data Science Bowl
  (CC0) at native resolution, from our validation splits, with its ground truth
  (instance labels: one id per nucleus; hidden);
* ``nuclei_brightfield`` — 4 stained/brightfield DSB crops (RGB);
* ``fundus`` — ``skimage.data.retina()``, downscaled to about DRIVE's scale
  (the vessels model was trained at DRIVE's resolution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).parent / "samples"
FUNDUS_SIZE = 560  # DRIVE's field of view is about 540 px across


def load_sample(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(image, ground truth or None)`` of a bundled sample, as numpy arrays."""
    if name == "fundus":
        return _fundus(), None
    import tifffile

    image_path = SAMPLES / f"{name}.tif"
    if not image_path.exists():
        raise ValueError(f"unknown sample {name!r}; available: nuclei, nuclei_brightfield, fundus")
    mask_path = SAMPLES / f"{name}_mask.tif"
    mask = tifffile.imread(mask_path) if mask_path.exists() else None
    return tifffile.imread(image_path), mask


def _fundus() -> np.ndarray:
    from skimage.data import retina
    from skimage.transform import resize

    image = retina()
    scaled = resize(image, (FUNDUS_SIZE, FUNDUS_SIZE), anti_aliasing=True, preserve_range=True)
    return scaled.astype(np.uint8)


def _with_truth(name: str, title: str) -> list[tuple]:
    image, truth = load_sample(name)
    layers = [(image, {"name": title, "rgb": image.ndim == 3}, "image")]
    if truth is not None:
        layers.append((truth, {"name": f"{title} ground truth", "visible": False}, "labels"))
    return layers


def nuclei() -> list[tuple]:
    return _with_truth("nuclei", "nuclei (DSB2018)")


def nuclei_brightfield() -> list[tuple]:
    return _with_truth("nuclei_brightfield", "nuclei brightfield (DSB2018)")


def fundus() -> list[tuple]:
    return [(_fundus(), {"name": "fundus (skimage retina)", "rgb": True}, "image")]
