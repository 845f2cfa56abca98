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

import numpy as np

from ..data.annotations import IGNORE
from ..data.input_spec import InputSpec
from ..data.samples import Sample, build_sample
from ..data.splits import split_indices
from ..models.base import SegmentationModel
from .config import MAX_AUTO_PATCH, MIN_PATCH, TrainConfig

#: side of the validation grid's tiles (in working-resolution pixels) for a single pair
VAL_TILE = 128
#: Focal Distance Penalty exponent for dense labels; scribbles get 0 (their distance map is
#: meaningless: it measures the distance to the edge of a stroke, not of an object)
DENSE_EPSILON = 0.1
SPARSE_EPSILON = 0.0


@dataclass
class AnnotatedImage:
    """One 2D image and the labels painted on it (napari conventions, see ``data.input_spec``)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    rgb: bool | None = None
    channel_axis: int | None = None


def build_samples(
    pairs: Sequence[AnnotatedImage],
    spec: InputSpec,
    *,
    n_classes: int,
    mode: str = "dense",
    val_fraction: float = 0.2,
    seed: int = 0,
    val_tile: int = VAL_TILE,
    head: str | None = None,
) -> tuple[list[Sample], list[Sample]]:
    """``(train, validation)`` samples from in-memory annotated images.

    ``mode`` is "dense" (labels are the full truth) or "sparse" (0 unlabelled,
    1 background, 2… classes); see :func:`~napari_attnseg.data.labels_from_annotation`,
    which also turns objects into the classes of a separation ``head``.
    Each image is prepared by ``spec`` exactly as the predictor prepares it
    (channels, normalisation, working size); labels are resampled with it.
    """
    if not pairs:
        raise ValueError("no (image, labels) pairs given")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {val_fraction}")
    samples = [
        build_sample(
            pair.name,
            np.asarray(pair.image),
            pair.labels,
            spec,
            n_classes=n_classes,
            annotation=mode,
            head=head,
            rgb=pair.rgb,
            channel_axis=pair.channel_axis,
            stack_hint="give one 2D slice at a time",
        )[0]
        for pair in pairs
    ]
    if val_fraction == 0.0:
        return samples, []
    if len(samples) >= 2:
        train_idx, val_idx = split_indices(len(samples), val_fraction, seed)
        return [samples[i] for i in train_idx], [samples[i] for i in val_idx]
    train, val = hold_out_tiles(samples[0], val_fraction, seed=seed, tile=val_tile)
    return [train], val


def samples_for_model(
    model: SegmentationModel,
    pairs: Sequence[AnnotatedImage],
    *,
    mode: str = "dense",
    val_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[Sample], list[Sample]]:
    """:func:`build_samples` with the input handling and classes of ``model``'s card."""
    return build_samples(
        pairs,
        InputSpec.of(model),
        n_classes=model.n_classes,
        mode=mode,
        val_fraction=val_fraction,
        seed=seed,
        head=model.card.separation_head if model.card is not None else None,
    )


def class_warnings(samples: Sequence[Sample], n_classes: int) -> list[str]:
    """Messages for labels that cannot teach a model to tell classes apart.

    Training on a single class (all foreground, or scribbles without any
    background) only teaches the model to predict that class everywhere.
    """
    classes = max(2, n_classes)
    present = set()
    for sample in samples:
        present |= {int(c) for c in np.unique(sample.mask) if c >= 0}
    if not present:
        return ["no labelled pixels: paint some objects and some background first"]
    missing = sorted(set(range(classes)) - present)
    if not missing:
        return []
    names = ", ".join("background" if c == 0 else f"class {c}" for c in missing)
    return [
        f"the labels hold no {names}: the model would only learn to predict "
        f"{'background' if present == {0} else 'objects'} everywhere"
    ]


def validation_kind(n_pairs: int, val: Sequence[Sample], mode: str) -> str:
    """What a round's validation Dice is measured on (see :func:`build_samples`), in words."""
    if not val:
        return "no validation (too few labelled pixels to hold any out)"
    held = "scribbled pixels" if mode == "sparse" else "labels"
    if n_pairs == 1:
        return f"held-out {held} in {len(val)} tile(s) of the image (not trained on)"
    return f"held-out {held} of {len(val)} image(s) (not trained on)"


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
    precision: str = "auto",
) -> TrainConfig:
    """Training settings for a few interactively annotated images.

    Patches are at most 256 px (never larger than the largest image, so small
    images are not mostly padding, and never under the trainer's 16 px minimum:
    smaller images are padded); an epoch draws enough of them to cover the
    images about once (8–64 patches); half are centred on foreground so sparse
    scribbles are found; no learning-rate schedule or early stopping, since
    the user sets the length and can cancel.
    """
    if not train:
        raise ValueError("no training samples")
    largest = max(max(s.image.shape[-2:]) for s in train)
    patch = max(MIN_PATCH, min(MAX_AUTO_PATCH, largest))
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
        precision=precision,
    )
