"""Scoring a model on a folder of images with ground-truth masks.

One engine for ``attnseg evaluate``, the zoo scripts and the benchmarks.
Images and masks are paired by file stem (``data.pair_folder``); optional
region-of-interest masks (DRIVE's field of view) restrict every metric.
Binary models are scored on the foreground probability; models with more
classes per class, with the mean over the foreground classes under the usual
metric names and ``dice_per_class`` beside it (``metrics.MetricAccumulator``).

With ``instances=True`` the masks are instance label images (0 = background,
one id per object) and every image is also scored object by object
(``objects.InstanceAccumulator``: AP at IoU 0.5, the DSB mean AP over IoU
0.5:0.05:0.95, precision / recall / F1 at 0.5, panoptic quality) under the
key ``"instances"``. A mask holding a single foreground value (a binary mask)
is taken to hold one object per connected component.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.io import read_image, read_mask, write_mask
from ..data.pairing import pair_folder
from ..data.targets import instances_of_mask
from ..metrics import MetricAccumulator
from ..models.base import SegmentationModel
from ..models.card import ModelCard
from ..objects import InstanceAccumulator
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
    instances: bool = False,
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
    if instances:
        predictor = Predictor(
            replace(predictor.settings, instances=True), on_message=predictor.on_message
        )
    pairs = pair_folder(images, masks, fov_dir=fov)
    card = model.card or ModelCard(name=model.name)
    n_classes = card.predicted_classes(model.n_classes)
    if instances and n_classes != 2:
        raise ValueError("instance evaluation needs a binary (foreground/background) model")
    acc = MetricAccumulator(n_classes, threshold=predictor.threshold(model))
    objects = InstanceAccumulator() if instances else None
    confidence = {}
    for done, (image_path, mask_path, fov_path) in enumerate(pairs):
        check(cancel)
        stem = Path(image_path).stem
        prediction = predictor.predict(model, read_image(image_path), cancel=cancel)
        if prediction.labels.ndim != 2:
            raise ValueError(
                f"{Path(image_path).name} is a stack of shape {prediction.labels.shape}; "
                "evaluation needs one 2D image per mask"
            )
        truth = read_mask(mask_path, binary=n_classes == 2 and not instances)
        if truth.shape != prediction.labels.shape:
            raise ValueError(
                f"{Path(image_path).name}: the image is {_shape(prediction.labels.shape)} but "
                f"its mask {Path(mask_path).name} is {_shape(truth.shape)}"
            )
        roi = read_mask(fov_path) > 0 if fov_path is not None else None
        if objects is not None:
            objects.add(stem, as_instances(truth, roi), as_instances(prediction.instances, roi))
        metrics = score_sample(acc, stem, prediction.probabilities, truth, roi=roi)
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            saved = prediction.instances if objects is not None else prediction.labels
            write_mask(Path(save_dir) / f"{stem}.tif", saved)
        if prediction.quality is not None:
            confidence[stem] = prediction.quality.as_dict()
        if on_image is not None:
            on_image(stem, metrics)
        report(progress, done + 1, len(pairs), f"scored {Path(image_path).name}")
    result = {"model": name, **acc.summary()}
    if objects is not None:
        result["instances"] = objects.summary()
    if confidence:
        result["confidence"] = confidence
    return result


def score_sample(
    acc: MetricAccumulator,
    name: str,
    probabilities: np.ndarray,
    truth: np.ndarray,
    roi: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score one image's class probabilities ``(K, H, W)`` against ``truth`` into ``acc``.

    The one scoring rule of evaluation and of the trainer's validation. A
    binary accumulator scores the foreground probability 1 − p(background)
    against ``truth > 0`` (so instance labels, or a separation head's classes,
    count as foreground); a K-class one the class probabilities (arg-max labels,
    per-class AUC) against class labels. Pixels outside ``roi`` do not count.
    Returns the image's metrics (:meth:`MetricAccumulator.add`).
    """
    if acc.n_classes == 2:
        return acc.add(name, 1.0 - probabilities[0], np.asarray(truth) > 0, roi=roi)
    return acc.add(name, probabilities, truth, roi=roi)


def as_instances(labels: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """Instance ids of a label image; a single foreground value means connected components.

    Objects outside ``roi`` are dropped, as the pixel metrics ignore them.
    """
    labels = instances_of_mask(labels)
    if roi is not None:
        labels = np.where(roi, labels, 0)
    return labels


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(int(s)) for s in shape)
