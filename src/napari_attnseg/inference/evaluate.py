"""Scoring a model on a folder of images with ground-truth masks.

One engine for ``attnseg evaluate``, the zoo scripts and the benchmarks.
Images and masks are paired by file stem (``data.pair_folder``); optional
region-of-interest masks (DRIVE's field of view) restrict every metric.
Binary models are scored on the foreground probability; models with more
classes per class, with the mean over the foreground classes under the usual
metric names and ``dice_per_class`` beside it (``metrics.MetricAccumulator``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.io import read_image, read_mask, write_mask
from ..data.pairing import pair_folder
from ..metrics import MetricAccumulator
from ..models.base import SegmentationModel
from ..progress import CancelToken, ProgressCallback, check, report
from .predictor import Predictor


def evaluate_folder(
    model: SegmentationModel,
    images: str | Path,
    masks: str | Path,
    fov: str | Path | None = None,
    *,
    predictor: Predictor | None = None,
    name: str = "",
    save_dir: str | Path | None = None,
    on_image: Callable[[str, dict[str, Any]], None] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Predict every image of ``images`` and score it against its mask in ``masks``.

    Returns ``{"model", "n_images", "mean", "pooled", "per_image"}`` (see
    :meth:`~napari_attnseg.metrics.MetricAccumulator.summary`). ``save_dir``
    also receives each predicted label image as ``<stem>.tif``; ``on_image``
    is called with each image's stem and metrics as soon as it is scored.
    """
    predictor = predictor or Predictor()
    pairs = pair_folder(images, masks, fov_dir=fov)
    n_classes = max(2, model.n_classes)
    acc = MetricAccumulator(n_classes, threshold=predictor.threshold(model))
    for done, (image_path, mask_path, fov_path) in enumerate(pairs):
        check(cancel)
        stem = Path(image_path).stem
        prediction = predictor.predict(model, read_image(image_path), cancel=cancel)
        if prediction.labels.ndim != 2:
            raise ValueError(
                f"{Path(image_path).name} is a stack of shape {prediction.labels.shape}; "
                "evaluation needs one 2D image per mask"
            )
        truth = read_mask(mask_path, binary=n_classes == 2)
        if truth.shape != prediction.labels.shape:
            raise ValueError(
                f"{Path(image_path).name}: the image is {_shape(prediction.labels.shape)} but "
                f"its mask {Path(mask_path).name} is {_shape(truth.shape)}"
            )
        roi = read_mask(fov_path) > 0 if fov_path is not None else None
        scores = prediction.foreground if n_classes == 2 else prediction.probabilities
        metrics = acc.add(stem, scores, truth, roi=roi)
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            write_mask(Path(save_dir) / f"{stem}.tif", prediction.labels)
        if on_image is not None:
            on_image(stem, metrics)
        report(progress, done + 1, len(pairs), f"scored {Path(image_path).name}")
    return {"model": name, **acc.summary()}


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(int(s)) for s in shape)
