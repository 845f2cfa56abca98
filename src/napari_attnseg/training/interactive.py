"""Training data from arrays already in memory — the Fine-tune widget's data path.

A napari user has images and the labels they painted open in the viewer, not
folders on disk. :func:`build_samples` turns such (image, labels) pairs into
the normalised train/validation :class:`~napari_attnseg.data.datasets.Sample`\\ s
the :class:`~.trainer.Trainer` takes, handling the model the same way
inference does (the card's channels, normalisation and input scale/size), and
:func:`finetune_config` picks training settings suited to a few images.

Validation: with two or more pairs whole pairs are held out, so validation
pixels are never trained on. With a single pair a seeded fraction of the
tiles of a coarse grid is held out instead: those tiles are marked ignored
(−1) in the training sample and served as separate validation crops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.datasets import IGNORE, Sample, labels_from_annotation
from ..data.normalization import prepare_image
from ..data.splits import split_indices
from .config import TrainConfig

#: side of the validation grid's tiles (in working-resolution pixels) for a single pair
VAL_TILE = 128
#: Focal Distance Penalty exponent for dense labels; scribbles get 0 (their distance map is
#: meaningless: it measures the distance to the edge of a stroke, not of an object)
DENSE_EPSILON = 0.1
SPARSE_EPSILON = 0.0


@dataclass
class AnnotatedImage:
    """One image and the labels painted on it (napari conventions: (H, W) or (H, W, 3|4))."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    rgb: bool | None = None

    def spatial_shape(self) -> tuple[int, ...]:
        image = np.asarray(self.image)
        rgb = self.rgb if self.rgb is not None else (image.ndim == 3 and image.shape[-1] in (3, 4))
        return tuple(image.shape[:-1] if rgb else image.shape)


def build_samples(
    pairs: Sequence[AnnotatedImage],
    *,
    in_channels: int,
    n_classes: int,
    normalization: dict[str, Any] | None,
    mode: str = "dense",
    val_fraction: float = 0.2,
    seed: int = 0,
    input_scale: float = 1.0,
    input_size: Sequence[int] | None = None,
    val_tile: int = VAL_TILE,
) -> tuple[list[Sample], list[Sample]]:
    """``(train, validation)`` samples from in-memory annotated images.

    ``mode`` is "dense" (labels are the full truth) or "sparse" (0 unlabelled,
    1 background, 2… classes); see :func:`~napari_attnseg.data.datasets.labels_from_annotation`.
    Images are normalised as the model card says and resized to the size the
    predictor would feed the model (``input_size``, else ``input_scale``).
    """
    if not pairs:
        raise ValueError("no (image, labels) pairs given")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {val_fraction}")
    samples = []
    for pair in pairs:
        shape = pair.spatial_shape()
        labels = np.asarray(pair.labels)
        if labels.shape != shape:
            raise ValueError(
                f"labels for {pair.name!r} are {_shape(labels.shape)} "
                f"but the image is {_shape(shape)}"
            )
        try:
            mask = labels_from_annotation(labels, mode, n_classes)
        except ValueError as exc:
            raise ValueError(f"labels for {pair.name!r}: {exc}") from exc
        image = prepare_image(pair.image, in_channels, normalization, rgb=pair.rgb)
        samples.append(Sample(pair.name, image, mask))
    samples = [_to_working_size(s, input_scale, input_size) for s in samples]
    if val_fraction == 0.0:
        return samples, []
    if len(samples) >= 2:
        train_idx, val_idx = split_indices(len(samples), val_fraction, seed)
        return [samples[i] for i in train_idx], [samples[i] for i in val_idx]
    train, val = hold_out_tiles(samples[0], val_fraction, seed=seed, tile=val_tile)
    return [train], val


def samples_for_model(
    model,
    pairs: Sequence[AnnotatedImage],
    *,
    mode: str = "dense",
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[Sample], list[Sample]]:
    """:func:`build_samples` with channels, classes, normalisation, scale from ``model``'s card."""
    from ..models.persistence import card_of

    card = card_of(model)
    return build_samples(
        pairs,
        in_channels=model.in_channels,
        n_classes=model.n_classes,
        normalization=card.normalization,
        mode=mode,
        val_fraction=val_fraction,
        seed=seed,
        input_scale=card.input_scale,
        input_size=card.input_size,
    )


def hold_out_tiles(
    sample: Sample, val_fraction: float, *, seed: int = 0, tile: int = VAL_TILE
) -> tuple[Sample, list[Sample]]:
    """Split one sample into a training sample and validation crops on a grid.

    The grid has about ``tile``-pixel cells (at least 2×2). Only cells with
    labelled pixels are candidates; a seeded ``val_fraction`` of them (at
    least one, and at least one left for training) become validation crops
    and are ignored (−1) in the returned training sample. Fewer than two
    labelled cells: no validation.
    """
    height, width = sample.mask.shape
    rows = np.linspace(0, height, max(2, round(height / tile)) + 1).astype(int)
    cols = np.linspace(0, width, max(2, round(width / tile)) + 1).astype(int)
    cells = [
        (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
        for i in range(len(rows) - 1)
        for j in range(len(cols) - 1)
        if rows[i + 1] > rows[i] and cols[j + 1] > cols[j]
    ]
    labelled = [c for c in cells if np.any(sample.mask[c] >= 0)]
    if len(labelled) < 2:
        return sample, []
    _, val_idx = split_indices(len(labelled), val_fraction, seed)
    mask = sample.mask.copy()
    val = []
    for k in val_idx:
        ys, xs = labelled[k]
        mask[ys, xs] = IGNORE
        val.append(
            Sample(
                f"{sample.name}[{ys.start}:{ys.stop},{xs.start}:{xs.stop}]",
                sample.image[:, ys, xs],
                sample.mask[ys, xs],
                None if sample.roi is None else sample.roi[ys, xs],
            )
        )
    roi = sample.roi
    return Sample(sample.name, sample.image, mask, roi), val


def finetune_config(
    train: Sequence[Sample],
    *,
    epochs: int = 20,
    lr: float = 1e-4,
    loss: str = "unified_focal",
    epsilon: float = DENSE_EPSILON,
    augment: bool = True,
    time_budget: float | None = None,
    device: str = "auto",
    has_validation: bool = True,
    batch_size: int = 4,
    patches_per_epoch: int | None = None,
    seed: int = 0,
) -> TrainConfig:
    """Training settings for a few interactively annotated images.

    Patches are at most 256 px (never larger than the largest image, so small
    images are not mostly padding); an epoch draws enough of them to cover the
    images about once (8–64 patches); half are centred on foreground so sparse
    scribbles are found; no learning-rate schedule or early stopping, since
    the user sets the length and can cancel.
    """
    if not train:
        raise ValueError("no training samples")
    largest = max(max(s.image.shape[-2:]) for s in train)
    patch = min(256, largest)
    if patches_per_epoch is None:
        area = sum(s.image.shape[-2] * s.image.shape[-1] for s in train)
        patches_per_epoch = int(np.clip(math.ceil(area / patch**2), 8, 64))
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        patch_size=patch,
        samples_per_epoch=patches_per_epoch,
        fg_fraction=0.5,
        lr=lr,
        schedule="none",
        early_stopping=None,
        monitor="dice" if has_validation else "loss",
        loss=loss,
        loss_params={"epsilon": float(epsilon)},
        augment={} if augment else None,
        device=device,
        time_budget=time_budget,
        seed=seed,
    )


# -- helpers -----------------------------------------------------------------
def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(int(s)) for s in shape)


def _to_working_size(sample: Sample, scale: float, size: Sequence[int] | None) -> Sample:
    """Resize like the predictor: to the card's fixed ``input_size``, else by ``input_scale``."""
    from ..data.resize import resize_arrays, working_size

    target = working_size(*sample.mask.shape, scale=scale, size=size)
    if target == sample.mask.shape:
        return sample
    return Sample(sample.name, *resize_arrays(sample.image, sample.mask, sample.roi, target))
