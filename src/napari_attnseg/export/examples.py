"""The test tensors and cover of a bioimage.io package, and the checks made on them.

The test input is a crop of raw intensities (of a bundled sample that suits
the model's task, or of the image given); the test output is what our own
:class:`~napari_attnseg.inference.Predictor` computes from it. The cover
shows the input beside the prediction. :func:`check_torchscript` makes sure
the TorchScript weights give the eager network's output on inputs normalised
by the model's :class:`~napari_attnseg.data.input_spec.InputSpec`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .._sample_data import load_sample
from ..data.input_spec import InputSpec, canonical
from ..inference.predictor import Predictor
from ..models.base import SegmentationModel
from ..models.persistence import card_of
from .errors import ExportError

#: edge of the (square) test crop taken from the sample image
TEST_SIZE = 256
#: eager vs TorchScript outputs must agree to this (float32, same CPU kernels)
TORCHSCRIPT_ATOL = 1e-5
#: default test/cover image per task (bundled samples, see _sample_data)
TASK_SAMPLES = {"nuclei": "nuclei", "vessels": "fundus"}


def min_input_size(model: SegmentationModel) -> int:
    """Smallest image edge the exported network accepts (its deepest feature map is ≥ 2×2)."""
    card = card_of(model)
    if card.input_size:
        return model.size_multiple
    scale = float(card.input_scale or 1.0)
    return max(1, math.ceil((model.size_multiple + 1) / scale))


def default_image(model: SegmentationModel) -> tuple[np.ndarray, str]:
    task = str(card_of(model).metadata.get("task", ""))
    sample = TASK_SAMPLES.get(task) or (
        "nuclei_brightfield" if model.in_channels == 3 else "nuclei"
    )
    image, _ = load_sample(sample)
    return image, f"the bundled {sample} sample"


def crop_for_test(image: np.ndarray, model: SegmentationModel, source: str) -> np.ndarray:
    """A centred crop of ``image`` as (C, H, W) float32 raw intensities.

    ``image`` follows napari's layout (grey, RGB(A) last); a ``(C, H, W)``
    array whose C is the model's channel count (> 1) is taken as channels.
    """
    image = np.asarray(image)
    # a (C, H, W) array with the model's channel count is a multichannel image, not a stack
    channels_first = image.ndim == 3 and 1 < image.shape[0] == model.in_channels
    try:
        plane, layout = canonical(image, channel_axis=0 if channels_first else None)
        if layout.stack_shape:
            raise ValueError(f"it is a stack of shape {layout.shape}, not one 2D image")
        chw = InputSpec(model.in_channels, {"mode": "none"}).channels(plane, rgb=layout.rgb)
    except ValueError as exc:
        raise ExportError(f"cannot use {source} as the test image: {exc}") from exc
    low = min_input_size(model)
    height, width = chw.shape[-2:]
    if min(height, width) < low:
        raise ExportError(
            f"the test image ({source}) is {height}×{width}; the model needs at least "
            f"{low}×{low} pixels"
        )
    size = max(low, min(TEST_SIZE, height, width))
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(chw[:, top : top + size, left : left + size], dtype=np.float32)


def _display(chw: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for the cover: 1–99.8 % percentile stretch per channel."""
    channels = chw if chw.shape[0] == 3 else np.repeat(chw[:1], 3, axis=0)
    out = np.empty(channels.shape[1:] + (3,), dtype=np.uint8)
    for c, channel in enumerate(channels):
        lo, hi = np.percentile(channel, [1, 99.8])
        scaled = (channel - lo) / (hi - lo) if hi > lo else np.zeros_like(channel)
        out[..., c] = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return out


def cover(chw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Input beside input-with-prediction (filled tint and outlines): a 2:1 RGB image."""
    from skimage.segmentation import find_boundaries
    from skimage.transform import resize

    shown = _display(chw).astype(np.float32)
    overlay = shown.copy()
    colours = np.array(
        [[255, 0, 255], [0, 255, 255], [255, 255, 0], [255, 128, 0], [0, 255, 0]], np.float32
    )
    for index, value in enumerate(v for v in np.unique(labels) if v != 0):
        mask = labels == value
        colour = colours[index % len(colours)]
        overlay[mask] = 0.6 * overlay[mask] + 0.4 * colour
        overlay[find_boundaries(mask, mode="inner")] = colour
    side = 256

    def square(panel: np.ndarray) -> np.ndarray:
        return resize(panel, (side, side), order=1, preserve_range=True, anti_aliasing=True)

    both = np.concatenate([square(shown), square(overlay)], axis=1)
    return np.clip(np.round(both), 0, 255).astype(np.uint8)



def predict_like_the_package(model: SegmentationModel, chw: np.ndarray):
    """Our own prediction of a ``(C, H, W)`` test input, as the package runs the model.

    At the trained scale, in one piece, fp32, without object-size matching,
    an automatic region of interest, instance labels or flips (they stay
    outside the package).
    """
    predictor = Predictor(
        device="cpu", tile_size=None, precision="fp32", diameter=None, roi="none",
        instances=False, tta=False,
    )
    return predictor.predict(model, np.moveaxis(chw, 0, -1), channel_axis=-1)


def write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path, optimize=True)


def check_torchscript(exported, torchscript, chw, spec: InputSpec, min_size: int) -> None:
    """The TorchScript weights must give the eager model's output, at two image sizes."""
    crops = [chw]
    smaller = (chw.shape[1] - 3, chw.shape[2] - 5)
    if min(smaller) >= min_size:
        crops.append(chw[:, : smaller[0], : smaller[1]])
    with torch.no_grad():
        for crop in crops:
            x = torch.from_numpy(spec.network_input(np.moveaxis(crop, 0, -1))[0])[None]
            difference = float((exported(x) - torchscript(x)).abs().max())
            if not difference <= TORCHSCRIPT_ATOL:
                raise ExportError(
                    f"the TorchScript version of this model differs from it by {difference:.2g} "
                    f"on a {crop.shape[1]}×{crop.shape[2]} image; it cannot be exported safely"
                )


__all__ = [
    "TASK_SAMPLES",
    "TEST_SIZE",
    "TORCHSCRIPT_ATOL",
    "check_torchscript",
    "cover",
    "crop_for_test",
    "default_image",
    "min_input_size",
    "predict_like_the_package",
    "write_png",
]
