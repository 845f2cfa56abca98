"""The Fine-tune dock widget: retrain a model on the labels painted in the viewer.

The user picks one or more (image layer, labels layer) pairs — a corrected
prediction ("dense": the labels are the whole truth) or scribbles ("sparse":
0 unlabelled, 1 background, 2… classes) — and the model to start from. A
thread worker builds samples (``training.interactive``), trains a *copy* of
the model (``training.finetune``), streams each epoch's record back to a
live loss / validation-Dice chart, and re-segments the images so the change
is visible at once. The result becomes an unsaved model ``<model>-ftN`` that
every model picker offers; **Revert** restores the weights from before the
round exactly, **Save as…** writes it (safetensors + card) to the user model
folder. Cancelling leaves the model and all layers as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..training.interactive import DENSE_EPSILON, SPARSE_EPSILON, AnnotatedImage
from ._jobs import JobContext, JobPanel
from ._layers import (
    check_image_layer,
    is_rgb_layer,
    layer_array,
    output_metadata,
    output_name,
    placement,
    spatial_shape,
    write_labels,
)
from ._models import ModelChoice, session
from ._notifications import notify_error, notify_info
from ._pickers import DevicePicker, LayerPicker, ModelPicker
from ._plot import PlotCanvas

MODES = ("dense", "sparse")
MODE_HELP = (
    "dense: the labels layer is the full truth (e.g. a corrected prediction; any nonzero "
    "label is foreground for a binary model).\n"
    "sparse: only painted pixels count — 0 = unlabelled (ignored), 1 = background, "
    "2, 3, … = classes 1, 2, … — so a few scribbles are enough."
)
EPSILON_HELP = (
    "Focal Distance Penalty Term exponent ε of the Unified Focal loss (0 switches it off). "
    "0.1 for dense labels; sparse mode uses 0 because the distance map of scribbles measures "
    "the distance to the edge of a stroke, not of an object, and is meaningless."
)
CURVES = ("train loss", "val loss", "val Dice")


@dataclass
class PairData:
    """One (image, labels) pair captured on the GUI thread."""

    image_name: str
    labels_name: str
    data: Any  # the image layer's array (not copied)
    rgb: bool
    shape: tuple[int, ...]
    placement: dict[str, Any]
    #: annotated slices: (stack index, copied labels of that slice)
    slices: list[tuple[tuple[int, ...], np.ndarray]]


@dataclass
class FinetuneRequest:
    pairs: list[PairData]
    choice: ModelChoice
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


@dataclass
class FinetuneResult:
    request: FinetuneRequest
    base: Any
    base_state: dict[str, Any]
    tuned: Any
    history: Any
    #: re-segmented labels per pair, one array per annotated slice
    outputs: list[list[np.ndarray]]


@dataclass
class Round:
    """One fine-tuning round, remembered so it can be reverted or saved."""

    base_choice: ModelChoice
    base: Any
    base_state: dict[str, Any]
    tuned_name: str
    tuned: Any
    history: Any
    saved_path: Path | None = None
    layers: list[str] = field(default_factory=list)


def run_finetune(request: FinetuneRequest, ctx: JobContext) -> FinetuneResult:
    """The worker's job: samples → train a copy → re-segment the images."""
    from ..inference import Predictor
    from ..training import finetune, finetune_config, samples_for_model

    base = session().load(request.choice)
    base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    images = [
        # named after the labels layer: that is what a message about bad labels must point to
        AnnotatedImage(_slice_name(pair.labels_name, index), np.asarray(pair.data[index]),
                       labels, pair.rgb)
        for pair in request.pairs
        for index, labels in pair.slices
    ]
    ctx.progress(0, 1, "preparing training data")
    train, val = samples_for_model(base, images, mode=request.mode,
                                   val_fraction=request.val_fraction)
    ctx.cancel.raise_if_cancelled()
    config = finetune_config(
        train, epochs=request.epochs, lr=request.lr, loss=request.loss, epsilon=request.epsilon,
        augment=request.augment, time_budget=request.time_budget_s, device=request.device,
        has_validation=bool(val), patches_per_epoch=request.patches_per_epoch,
    )
    tuned, history = finetune(
        base, train, val, config, base_name=request.choice.name,
        progress=ctx.progress, cancel=ctx.cancel, on_epoch=ctx.update,
    )
    predictor = Predictor(device=request.device, on_message=ctx.message)
    outputs, done = [], 0
    for pair in request.pairs:
        labels = []
        for index, _ in pair.slices:
            ctx.progress(done, len(images), "re-segmenting with the fine-tuned model")
            image = np.asarray(pair.data[index])
            labels.append(predictor.predict(tuned, image, rgb=pair.rgb, cancel=ctx.cancel).labels)
            done += 1
        outputs.append(labels)
    tuned.eval()
    return FinetuneResult(request, base, base_state, tuned, history, outputs)


def _slice_name(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{','.join(map(str, index))}]" if index else name


class PairRow(QWidget):
    """An (image layer, labels layer) pair with a remove button."""

    remove_requested = Signal(object)

    def __init__(self, viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image_picker = LayerPicker(viewer, Image)
        self.labels_picker = LayerPicker(viewer, Labels)
        self.image_picker.setToolTip("the image that was annotated")
        self.labels_picker.setToolTip("the labels painted on it (never modified)")
        remove = QPushButton("✕")
        remove.setFixedWidth(28)
        remove.setToolTip("remove this pair")
        remove.clicked.connect(self._request_removal)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image_picker, 1)
        layout.addWidget(self.labels_picker, 1)
        layout.addWidget(remove)

    def _request_removal(self) -> None:
        self.remove_requested.emit(self)


class FinetuneWidget(QWidget):
    """Plugins ▸ napari-attnseg ▸ Fine-tune."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.rows: list[PairRow] = []
        self.rounds: list[Round] = []
        self.curve: dict[str, list[float]] = {name: [] for name in CURVES}

        pairs_box = QGroupBox("image ↔ labels pairs")
        self.pairs_layout = QVBoxLayout(pairs_box)
        add = QPushButton("add pair")
        add.clicked.connect(self._add_row_clicked)
        self.pairs_layout.addWidget(add)
        self.add_pair()

        self.model_picker = ModelPicker()
        self.device_picker = DevicePicker()
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.setToolTip(MODE_HELP)
        self.loss = QComboBox()
        from ..losses import LOSSES

        self.loss.addItems(LOSSES)
        self.loss.setCurrentText("unified_focal")
        self.loss.setToolTip("default: the asymmetric Unified Focal loss (Yeung et al.)")
        self.epsilon = QDoubleSpinBox()
        self.epsilon.setRange(0.0, 1.0)
        self.epsilon.setSingleStep(0.05)
        self.epsilon.setValue(DENSE_EPSILON)
        self.epsilon.setToolTip(EPSILON_HELP)
        self.mode.currentTextChanged.connect(self._mode_changed)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10000)
        self.epochs.setValue(20)
        self.time_budget = QDoubleSpinBox()
        self.time_budget.setRange(0.0, 24 * 60)
        self.time_budget.setSuffix(" min")
        self.time_budget.setSpecialValueText("no limit")
        self.time_budget.setToolTip("stop after the epoch during which this time has passed")
        self.lr = QLineEdit("1e-4")
        self.lr.setToolTip("learning rate (Adam); 1e-4 keeps a pretrained model close to itself")
        self.augment = QCheckBox("augmentation")
        self.augment.setToolTip("random flips, rotations, zoom and brightness changes of patches")
        self.augment.setChecked(True)
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.0, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        self.val_fraction.setToolTip(
            "held out for the validation curve: whole pairs when there are several, "
            "else grid tiles of the single image (ignored in training)"
        )
        self.patches = QSpinBox()
        self.patches.setRange(0, 10000)
        self.patches.setSpecialValueText("auto")
        self.patches.setToolTip("random training patches per epoch (auto: cover the images once)")
        self.run_button = QPushButton("Fine-tune")
        self.run_button.clicked.connect(self.finetune)
        self.jobs = JobPanel()
        self.jobs.finished.connect(self._on_finished)
        self.plot = PlotCanvas(theme=str(napari_viewer.theme))
        self.plot.show_message("loss and validation Dice appear here while training")
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip("restore the weights from before the last fine-tuning round")
        self.revert_button.clicked.connect(self.revert)
        self.save_name = QLineEdit()
        self.save_name.setPlaceholderText("name for the fine-tuned model")
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip("write the model (weights + card) to your model folder")
        self.save_button.clicked.connect(self.save)

        form = QFormLayout()
        form.addRow("model", self.model_picker)
        form.addRow("device", self.device_picker)
        form.addRow("labels", self.mode)
        form.addRow("loss", self.loss)
        form.addRow("FDPT ε", self.epsilon)
        form.addRow("epochs", self.epochs)
        form.addRow("time limit", self.time_budget)
        form.addRow("learning rate", self.lr)
        form.addRow("validation", self.val_fraction)
        form.addRow("patches/epoch", self.patches)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_name, 1)
        save_row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(pairs_box)
        layout.addLayout(form)
        layout.addWidget(self.augment)
        layout.addWidget(self.run_button)
        layout.addWidget(self.jobs)
        layout.addWidget(self.plot)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        layout.addWidget(self.revert_button)
        layout.addLayout(save_row)
        layout.addStretch(1)
        self._update_buttons()

    # -- pairs -----------------------------------------------------------------
    def add_pair(self, image: Any = None, labels: Any = None) -> PairRow:
        """Add a pair row (optionally choosing its layers, by layer or name)."""
        row = PairRow(self.viewer)
        row.remove_requested.connect(self._remove_row)
        self.pairs_layout.insertWidget(len(self.rows), row)
        self.rows.append(row)
        if image is not None:
            row.image_picker.set_layer(image)
        if labels is not None:
            row.labels_picker.set_layer(labels)
        return row

    def _add_row_clicked(self) -> None:
        self.add_pair()

    def _remove_row(self, row: PairRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self.pairs_layout.removeWidget(row)
            row.deleteLater()

    def _mode_changed(self, mode: str) -> None:
        self.epsilon.setValue(SPARSE_EPSILON if mode == "sparse" else DENSE_EPSILON)

    # -- fine-tuning -------------------------------------------------------------
    def finetune(self) -> bool:
        """Start a fine-tuning round; False (with a notification) when the inputs are unusable."""
        try:
            request = self._request()
        except ValueError as exc:
            notify_error(str(exc))
            return False
        self.curve = {name: [] for name in CURVES}
        started = self.jobs.start(
            lambda ctx: run_finetune(request, ctx),
            on_success=self._finished_round,
            on_update=self._on_epoch,
            on_cancelled=self._cancelled,
            label=f"fine-tuning {request.choice.name}",
        )
        if started:
            self.plot.show_message("training…")
            self._update_buttons()
        return started

    def _request(self) -> FinetuneRequest:
        pairs = [self._pair(k, row) for k, row in enumerate(self.rows)]
        if not pairs:
            raise ValueError("no image selected: add an (image, labels) pair")
        choice = self.model_picker.required("pick the model to fine-tune")
        try:
            lr = float(self.lr.text())
        except ValueError:
            raise ValueError(f"learning rate {self.lr.text()!r} is not a number") from None
        if not 0 < lr < 1:
            raise ValueError(f"learning rate must be between 0 and 1, got {lr:g}")
        budget = self.time_budget.value()
        return FinetuneRequest(
            pairs=pairs, choice=choice, mode=self.mode.currentText(),
            loss=self.loss.currentText(), epsilon=self.epsilon.value(),
            epochs=self.epochs.value(), time_budget_s=budget * 60 if budget > 0 else None,
            lr=lr, augment=self.augment.isChecked(), val_fraction=self.val_fraction.value(),
            device=self.device_picker.device(),
            patches_per_epoch=self.patches.value() or None,
        )

    def _pair(self, k: int, row: PairRow) -> PairData:
        image = row.image_picker.layer()
        if image is None:
            raise ValueError(f"no image selected in pair {k + 1}: open an image first")
        check_image_layer(image)
        labels = row.labels_picker.layer()
        if labels is None:
            raise ValueError(
                f"no labels layer in pair {k + 1}: segment {image.name!r} or add a labels layer "
                "and paint on it first"
            )
        shape = spatial_shape(image)
        data = np.asarray(layer_array(labels))
        if tuple(data.shape) != shape:
            raise ValueError(
                f"labels {labels.name!r} are {_shape(data.shape)} but image {image.name!r} is "
                f"{_shape(shape)}: they must have the same shape"
            )
        if len(shape) > 2:
            painted = np.flatnonzero(data.reshape(-1, shape[-2] * shape[-1]).any(axis=1))
            indices = [tuple(int(i) for i in np.unravel_index(p, shape[:-2])) for p in painted]
        else:
            indices = [()] if data.any() else []
        if not indices:
            raise ValueError(
                f"labels {labels.name!r} are empty: paint "
                + ("background (1) and objects (2…)" if self.mode.currentText() == "sparse"
                   else "the objects")
                + " first"
            )
        slices = [(index, np.array(data[index])) for index in indices]
        return PairData(image.name, labels.name, layer_array(image), is_rgb_layer(image), shape,
                        placement(image), slices)

    def _on_epoch(self, record: dict[str, Any]) -> None:
        self.curve["train loss"].append(float(record.get("train_loss", math.nan)))
        self.curve["val loss"].append(float(record.get("val_loss", math.nan)))
        self.curve["val Dice"].append(float(record.get("val_dice", math.nan)))
        shown = {k: v for k, v in self.curve.items() if not all(math.isnan(x) for x in v)}
        self.plot.lines(shown, title="fine-tuning", ylabel="loss / Dice")

    def _cancelled(self) -> None:
        notify_info("fine-tuning cancelled: the model and all layers are unchanged")

    def _finished_round(self, result: FinetuneResult) -> None:
        request = result.request
        name = session().unsaved_name(request.choice.name)
        result.tuned.card.name = name
        session().add_unsaved(result.tuned, name)
        round_ = Round(request.choice, result.base, result.base_state, name, result.tuned,
                       result.history)
        used = {pair.labels_name for pair in request.pairs}
        for pair, outputs in zip(request.pairs, result.outputs, strict=True):
            round_.layers.append(self._write_output(pair, outputs, name, used))
        self.rounds.append(round_)
        self.model_picker.select(name)
        self.save_name.setText(name)
        self.summary.setText(_summary(result.history))
        notify_info(f"fine-tuned {request.choice.name} → {name} (unsaved): "
                    + _summary(result.history))
        self._update_buttons()

    def _write_output(self, pair: PairData, outputs: list[np.ndarray], model_name: str,
                      protected: set[str]) -> str:
        name = output_name(pair.image_name, model_name)
        slices = [(index, labels) for (index, _), labels in zip(pair.slices, outputs, strict=True)]
        layer = write_labels(
            self.viewer, name, pair.shape, slices, placement=pair.placement,
            metadata=output_metadata(pair.image_name, model_name, "labels"),
            reuse=name not in protected,  # never overwrite the labels being trained on
        )
        return layer.name

    # -- revert / save -----------------------------------------------------------
    def revert(self) -> bool:
        """Restore the weights from before the last round; the base model is selected again."""
        if not self.rounds:
            notify_error("nothing to revert: no fine-tuning round in this widget")
            return False
        if self.jobs.busy:
            notify_error("wait for the running job to finish (or cancel it) before reverting")
            return False
        round_ = self.rounds.pop()
        round_.base.load_state_dict(round_.base_state)
        if round_.saved_path is None:
            session().remove_unsaved(round_.tuned_name)
        self.model_picker.select(round_.base_choice)
        self.summary.setText(f"reverted to {round_.base_choice.name}")
        notify_info(
            f"reverted to {round_.base_choice.name}: the weights from before fine-tuning are "
            f"restored; the layers made by {round_.tuned_name} were kept"
        )
        self._update_buttons()
        return True

    def save(self) -> Path | None:
        """Write the latest fine-tuned model to the user model folder (safetensors + card)."""
        from ..models import save_model
        from ..zoo import unique_user_path

        if not self.rounds:
            notify_error("nothing to save: fine-tune a model first")
            return None
        round_ = self.rounds[-1]
        model = round_.tuned
        name = self.save_name.text().strip() or round_.tuned_name
        try:
            path = unique_user_path(name)
            card = model.card
            card.name = path.stem
            card.description = card.description or (
                f"{round_.base_choice.name} fine-tuned in napari on "
                f"{len(card.metadata.get('finetune', {}).get('data_shapes', []))} image(s)"
            )
            best = _best_record(round_.history)
            if best:
                card.metrics = {**card.metrics, "finetune_validation": best}
            save_model(model, path)
        except (OSError, ValueError) as exc:
            notify_error(f"could not save the model as {name!r}: {exc}")
            return None
        unsaved = round_.tuned_name if round_.saved_path is None else ""
        choice = session().saved(unsaved, path, model)
        round_.saved_path = path
        self.model_picker.select(choice)
        notify_info(f"saved {path.stem} to {path.parent}; it is now in every model list")
        return path

    # -- state ---------------------------------------------------------------------
    def _on_finished(self) -> None:
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.jobs.busy
        self.run_button.setEnabled(not busy)
        self.revert_button.setEnabled(bool(self.rounds) and not busy)
        self.save_button.setEnabled(bool(self.rounds) and not busy)


def _shape(shape) -> str:
    return "×".join(str(int(s)) for s in shape)


def _best_record(history) -> dict[str, float]:
    if history is None or history.best_epoch is None:
        return {}
    record = history.epochs[history.best_epoch]
    return {k: float(v) for k, v in record.items()
            if k.startswith("val_") or k in ("train_loss", "epoch")}


def _summary(history) -> str:
    epochs = len(history.epochs)
    dice = [e["val_dice"] for e in history.epochs if "val_dice" in e]
    text = f"{epochs} epoch(s), {history.stopped}"
    if dice:
        text += f"; validation Dice {dice[0]:.3f} → {dice[-1]:.3f} (best {max(dice):.3f})"
    else:
        text += f"; train loss {history.epochs[0]['train_loss']:.3f} → " \
                f"{history.epochs[-1]['train_loss']:.3f}"
    return text
