"""What one fine-tuning round does off the GUI thread, and what its model card says.

:func:`run_finetune` is the Fine-tune widget's worker job: the labelled
slices captured on the GUI thread (:class:`FinetuneRequest`) become training
samples prepared exactly as the model's card says, degenerate labels are
reported before any training (``training.class_warnings``), a copy of the
model is trained (``training.finetune``; each epoch's record streams back to
the live chart) and the images are re-segmented with the result.

:func:`finetuned_card` makes the card honest: the tuned model says what it
was tuned from, on how many images and labelled pixels, with which settings,
what its validation was measured on (``training.validation_kind``) — and its
``metrics`` hold that round's own validation, or nothing (and say so), never
the base model's numbers.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..inference import Predictor
from ..models.card import ModelCard
from ..progress import part
from ..training import (
    AnnotatedImage,
    class_warnings,
    finetune,
    finetune_config,
    finetune_metrics,
    samples_for_model,
    validation_kind,
)
from ._jobs import JobContext
from ._layers import plane_key
from ._models import ModelChoice, session
from ._objects import measure
from ._segment_job import offset_objects

#: the share of a round's progress bar that training fills (re-segmenting fills the rest)
TRAINING_SHARE = 0.9


@dataclass
class PairData:
    """One (image, labels) pair captured on the GUI thread."""

    image_name: str
    labels_name: str
    data: Any  # the image layer's array (not copied)
    rgb: bool
    channel_axis: int | None
    shape: tuple[int, ...]  # spatial shape (*stack, H, W)
    placement: dict[str, Any]
    #: annotated slices: (stack index, copied labels of that slice)
    slices: list[tuple[tuple[int, ...], np.ndarray]]
    #: pixels that carry a label (every pixel of a dense slice; the painted ones if sparse)
    labelled_pixels: int


@dataclass
class FinetuneSettings:
    """The round's training settings, as the user set them."""

    mode: str
    loss: str
    epsilon: float
    epochs: int
    time_budget_s: float | None
    lr: float
    augment: bool
    val_fraction: float
    device: str
    patches_per_epoch: int | None
    precision: str = "auto"


@dataclass
class FinetuneRequest:
    pairs: list[PairData]
    choice: ModelChoice
    settings: FinetuneSettings


@dataclass
class FinetuneResult:
    request: FinetuneRequest
    tuned: Any
    history: Any
    #: re-segmented labels per pair, one array per annotated slice: instance labels (ids
    #: unique across the pair's slices) when the model makes objects, as Segment does
    outputs: list[list[np.ndarray]]
    #: what the validation Dice is measured on, in words (``training.validation_kind``)
    validation: str
    n_images: int
    n_val: int
    #: per pair, the objects' measurements (``_objects.measure``) when ``outputs`` are
    #: instances, else None
    tables: list[dict[str, np.ndarray] | None] = field(default_factory=list)

    @property
    def instances(self) -> bool:
        return any(table is not None for table in self.tables)


def run_finetune(request: FinetuneRequest, ctx: JobContext) -> FinetuneResult:
    """The worker's job: samples → class check → train a copy → re-segment the images."""
    settings = request.settings
    base = session().load(request.choice)  # this job's own copy of the model
    images = [
        # named after the labels layer: that is what a message about bad labels must point to
        AnnotatedImage(_slice_name(pair.labels_name, index),
                       np.asarray(pair.data[plane_key(index, pair.channel_axis)]),
                       labels, pair.rgb, pair.channel_axis)
        for pair in request.pairs
        for index, labels in pair.slices
    ]
    ctx.progress(0, 1, "preparing training data")
    train, val = samples_for_model(base, images, mode=settings.mode,
                                   val_fraction=settings.val_fraction)
    for warning in class_warnings([*train, *val], base.n_classes):
        ctx.message(warning)  # before training: the user can still cancel
    ctx.cancel.raise_if_cancelled()
    config = finetune_config(
        train, epochs=settings.epochs, lr=settings.lr, loss=settings.loss,
        epsilon=settings.epsilon, augment=settings.augment,
        time_budget=settings.time_budget_s, device=settings.device,
        has_validation=bool(val), patches_per_epoch=settings.patches_per_epoch,
        precision=settings.precision,
    )
    # one bar for the round: training fills most of it, re-segmenting the images the rest
    tuned, history = finetune(
        base, train, val, config, base_name=request.choice.name,
        progress=part(ctx.progress, 0.02, TRAINING_SHARE), cancel=ctx.cancel,
        on_epoch=ctx.update,
    )
    del base
    predictor = Predictor(device=settings.device, precision=settings.precision,
                          on_message=ctx.message)
    outputs, tables, done = [], [], 0
    for pair in request.pairs:
        labels, objects = [], True
        for index, _ in pair.slices:
            share = (1.0 - TRAINING_SHARE) / len(images)
            progress = part(ctx.progress, TRAINING_SHARE + done * share,
                            TRAINING_SHARE + (done + 1) * share,
                            f"re-segmenting {done + 1} of {len(images)} with the fine-tuned model")
            image = np.asarray(pair.data[plane_key(index, pair.channel_axis)])
            # the predictor's defaults are Segment's: objects when the card says they are
            # countable (auto object size, the card's separation head), else class labels
            prediction = predictor.predict(tuned, image, rgb=pair.rgb,
                                           channel_axis=pair.channel_axis, cancel=ctx.cancel,
                                           progress=progress)
            objects = objects and prediction.instances is not None
            labels.append(prediction.instances if objects else prediction.labels)
            done += 1
        outputs.append(labels)
        tables.append(_objects_of(pair, labels, image) if objects else None)
    tuned.eval()
    validation = (
        validation_kind(len(images), val, settings.mode) if settings.val_fraction > 0
        else "no validation (the validation fraction is 0)"
    )
    return FinetuneResult(request, tuned, history, outputs, validation, len(images), len(val),
                          tables)


def _objects_of(pair: PairData, labels: list[np.ndarray], image: np.ndarray):
    """Number the objects of a pair's slices 1…N across slices (in place) and measure them.

    A 2-D pair is measured with its image's intensities; the slices of a stack are
    measured in the stack's grid (planes not annotated are empty), like Segment's table.
    """
    offset = 0
    for k, values in enumerate(labels):
        labels[k], _ = offset_objects(values, None, offset)
        offset = max(offset, int(np.max(labels[k], initial=0)))
    if len(pair.shape) == 2:
        return measure(labels[0], None if pair.channel_axis is not None else image)
    stack = np.zeros(pair.shape, dtype=np.result_type(*labels))
    for (index, _), values in zip(pair.slices, labels, strict=True):
        stack[index] = values
    return measure(stack)


def _slice_name(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{','.join(map(str, index))}]" if index else name


# -- the card -------------------------------------------------------------------
def round_metrics(result: FinetuneResult) -> dict[str, Any]:
    """The round's own validation at its best epoch, as a card's ``metrics`` (may be empty):
    :func:`~napari_attnseg.training.workflows.finetune_metrics` for this round."""
    return finetune_metrics(result.history, result.n_val, result.request.settings.mode,
                            result.validation)


def finetuned_card(result: FinetuneResult, name: str) -> ModelCard:
    """The tuned model's card: lineage, data, settings, and this round's validation only."""
    request, settings = result.request, result.request.settings
    card = copy.deepcopy(result.tuned.card) or ModelCard()
    pixels = sum(pair.labelled_pixels for pair in request.pairs)
    history = result.history
    card.name = name
    card.base_model = request.choice.name
    card.metrics = round_metrics(result)
    validated = (
        f"validation: {result.validation}" if card.metrics
        else f"not evaluated ({result.validation})"
    )
    card.description = (
        f"{request.choice.name} fine-tuned in napari on {result.n_images} image(s) with "
        f"{pixels:,} labelled pixels ({settings.mode} labels); {len(history.epochs)} epoch(s), "
        f"{history.stopped}; loss {settings.loss}, learning rate {settings.lr:g}"
        f"{', augmented' if settings.augment else ''}; {validated}."
    )
    record = dict(card.metadata.get("finetune") or {})
    record.update(
        base_model=request.choice.name,
        tuned_as=name,
        images=[pair.image_name for pair in request.pairs],
        labels=[pair.labels_name for pair in request.pairs],
        annotated_slices=result.n_images,
        labelled_pixels=pixels,
        mode=settings.mode,
        settings=asdict(settings),
        validation=result.validation if card.metrics else f"none: {result.validation}",
    )
    card.metadata = {**card.metadata, "finetune": record}
    return card


def best_record(history) -> dict[str, Any]:
    if history is None or history.best_epoch is None:
        return {}
    return dict(history.epochs[history.best_epoch])


def summary(result: FinetuneResult) -> str:
    """One line on how the round went, saying what its validation is measured on."""
    history = result.history
    dice = [e["val_dice"] for e in history.epochs if not math.isnan(e.get("val_dice", math.nan))]
    text = f"{len(history.epochs)} epoch(s), {history.stopped}"
    best = best_record(history)
    if best and best.get("epoch") != history.epochs[-1].get("epoch"):
        text += f" (weights of the best epoch, {best['epoch']}, kept)"
    if dice:
        text += (f"; validation Dice {dice[0]:.3f} → {dice[-1]:.3f} (best {max(dice):.3f}) "
                 f"on {result.validation}")
    else:
        losses = history.series("train_loss")
        text += f"; train loss {losses[0]:.3f} → {losses[-1]:.3f}; {result.validation}"
    return text
