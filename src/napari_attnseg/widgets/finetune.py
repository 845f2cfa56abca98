"""The Fine-tune dock widget: retrain a model on the labels painted in the viewer.

The user picks one or more (image layer, labels layer) pairs — a corrected
prediction ("dense": the labels are the whole truth) or scribbles ("sparse":
0 unlabelled, 1 background, 2… classes) — and the model to start from. The
round runs in a thread worker (:mod:`._finetune_job`): labels with a single
class get a warning first, a *copy* of the model is trained while two live
charts show the losses and the validation Dice, and the images are re-segmented so the
change is visible at once. **Stop and keep** ends the round after the current
epoch with the best weights so far; **Cancel** discards it and changes
nothing; closing the widget or the viewer cancels it.

A finished round becomes an unsaved model ``<model>-ftN`` (a name nothing in
the session has used) that every model picker offers; it is selected, and the
Fine-tune button names it, so the next round visibly continues from it.
**Revert** selects again the model that was selected before the round and
drops the round's model; **Save as…** writes it (safetensors + a card that
says what it was tuned from, on what, how, and with which validation) to the
user model folder under the name typed, asking before it replaces a model of
that name. What stays in memory is described in :mod:`._rounds`.

The Fine-tune button is enabled once an image and a labels layer exist (its
tooltip says what is missing); Ctrl+Shift+R presses it (:mod:`._shortcuts`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import _shortcuts
from ._dialogs import confirm
from ._finetune_form import PairRow, SettingsForm
from ._finetune_job import (
    FinetuneRequest,
    FinetuneResult,
    PairData,
    finetuned_card,
    run_finetune,
    summary,
)
from ._form import scroll_body
from ._jobs import JobPanel
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
from ._models import session, user_model_path
from ._notifications import notify_error, notify_info, notify_warning
from ._objects import attach
from ._pickers import ModelPicker
from ._plot import PlotCanvas
from ._rounds import Round, Rounds
from ._segment_job import INSTANCES

CURVES = ("train loss", "val loss", "val Dice")
#: controls of the settings form also reachable as attributes of the widget
FORM_CONTROLS = ("device_picker", "mode", "loss", "epsilon", "epochs", "time_budget", "lr",
                 "augment", "val_fraction", "patches", "precision", "advanced")
#: the chart panels: (y label, curves on it); losses and Dice never share an axis
PANELS = (("loss", ("train loss", "val loss")), ("Dice", ("val Dice",)))


class FinetuneWidget(QWidget):
    """Plugins ▸ napari-attnseg ▸ Fine-tune."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.rows: list[PairRow] = []
        self.rounds = Rounds(session())
        self.curve: dict[str, list[float]] = {name: [] for name in CURVES}
        self.model_picker = ModelPicker()
        self.form = SettingsForm()
        for name in FORM_CONTROLS:
            setattr(self, name, getattr(self.form, name))
        self.run_button = QPushButton("Fine-tune")
        self.run_button.clicked.connect(self.finetune)
        self.jobs = JobPanel(owner=self, stop_and_keep=True)
        self.jobs.finished.connect(self._update_buttons)
        self.plot = PlotCanvas(theme=str(napari_viewer.theme), height=2.4)
        self.plot.show_message("training…")
        self.plot.setVisible(False)  # the charts appear with the first round: a compact form
        self.summary = QLabel("the loss and the validation Dice are charted here while training")
        self.summary.setWordWrap(True)
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip(
            "undo the last round: select again the model it started from and drop its model "
            "(the layers it made are kept)"
        )
        self.revert_button.clicked.connect(self.revert)
        self.save_name = QLineEdit()
        self.save_name.setPlaceholderText("name for the fine-tuned model")
        self.save_button = QPushButton("Save as…")
        self.save_button.setToolTip(
            "write the model (weights + card) to your model folder under this name; a model "
            "of that name is replaced only after you agree (Models ▸ Export… saves elsewhere)"
        )
        self.save_button.clicked.connect(self.save)
        self._lay_out()
        self.model_picker.selection_changed.connect(self._update_buttons)
        self.model_picker.selection_changed.connect(self._follow_selection)
        events = napari_viewer.layers.events
        for emitter in (events.inserted, events.removed):
            emitter.connect(self._update_buttons)
        self._update_buttons()
        _shortcuts.track(self, _shortcuts.FINETUNE)

    def _lay_out(self) -> None:
        pairs_box = QGroupBox("image ↔ labels pairs")
        self.pairs_layout = QVBoxLayout(pairs_box)
        add = QPushButton("add pair")
        add.clicked.connect(self._add_row_clicked)
        self.pairs_layout.addWidget(add)
        self.add_pair()
        model_row = QHBoxLayout()
        model_row.addWidget(QLabel("model"))
        model_row.addWidget(self.model_picker, 1)
        save_row = QHBoxLayout()
        save_row.addWidget(self.save_name, 1)
        save_row.addWidget(self.save_button)
        layout = scroll_body(self)
        layout.addWidget(pairs_box)
        layout.addLayout(model_row)
        for widget in (self.form, self.run_button, self.jobs, self.plot, self.summary,
                       self.revert_button):
            layout.addWidget(widget)
        layout.addLayout(save_row)
        layout.addStretch(1)

    # -- pairs -----------------------------------------------------------------
    def add_pair(self, image: Any = None, labels: Any = None) -> PairRow:
        """Add a pair row (optionally choosing its layers, by layer or name)."""
        row = PairRow(self.viewer)
        row.remove_requested.connect(self._remove_row)
        row.image_picker.layer_changed.connect(self._update_buttons)
        row.labels_picker.layer_changed.connect(self._update_buttons)
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
            self._update_buttons()

    # -- a round -----------------------------------------------------------------
    def finetune(self) -> bool:
        """Start a fine-tuning round; False (with a notification) when the inputs are unusable."""
        try:
            request = self._request()
        except ValueError as exc:
            self.jobs.reject(str(exc))
            notify_error(str(exc))
            return False
        dropping = self.rounds.would_drop(request.choice)
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
            self.plot.setVisible(True)
            self.summary.setText(
                f"fine-tuning {request.choice.name}"
                + (f"; when it ends, the unsaved {', '.join(dropping)} will be dropped "
                   "(save it first to keep it)" if dropping else "")
            )
            self._update_buttons()
        return started

    def _request(self) -> FinetuneRequest:
        pairs = [self._pair(k, row) for k, row in enumerate(self.rows)]
        if not pairs:
            raise ValueError("no image selected: add an (image, labels) pair")
        choice = self.model_picker.required("pick the model to fine-tune")
        return FinetuneRequest(pairs=pairs, choice=choice, settings=self.form.settings())

    def _pair(self, k: int, row: PairRow) -> PairData:
        image = row.image_picker.layer()
        if image is None:
            raise ValueError(f"no image selected in pair {k + 1}: open an image first")
        row.channels.set_layer(image)
        axis = row.channels.axis()
        check_image_layer(image, axis)
        labels = row.labels_picker.layer()
        if labels is None:
            raise ValueError(
                f"no labels layer in pair {k + 1}: segment {image.name!r} or add a labels layer "
                "and paint on it first"
            )
        shape = spatial_shape(image, axis)
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
        sparse = self.form.mode.currentText() == "sparse"
        if not indices:
            raise ValueError(
                f"labels {labels.name!r} are empty: paint "
                + ("background (1) and objects (2…)" if sparse else "the objects") + " first"
            )
        slices = [(index, np.array(data[index])) for index in indices]
        pixels = sum(int(np.count_nonzero(s)) if sparse else s.size for _, s in slices)
        return PairData(image.name, labels.name, layer_array(image), is_rgb_layer(image), axis,
                        shape, placement(image, axis), slices, pixels)

    def _on_epoch(self, record: dict[str, Any]) -> None:
        self.curve["train loss"].append(float(record.get("train_loss", math.nan)))
        self.curve["val loss"].append(float(record.get("val_loss", math.nan)))
        self.curve["val Dice"].append(float(record.get("val_dice", math.nan)))
        panels = []
        for ylabel, names in PANELS:
            shown = {name: self.curve[name] for name in names
                     if not all(math.isnan(x) for x in self.curve[name])}
            if shown:
                panels.append((ylabel, shown))
        self.plot.panels(panels, title="fine-tuning", limits={"Dice": (0.0, 1.0)})

    def _cancelled(self) -> None:
        self.summary.setText("cancelled: the model and all layers are unchanged")
        notify_info("fine-tuning cancelled: the model and all layers are unchanged")

    def _finished_round(self, result: FinetuneResult) -> None:
        request = result.request
        name = self.rounds.new_name(request.choice, taken=self._layer_taken(request))
        result.tuned.card = finetuned_card(result, name)
        round_ = Round(request.choice, name, result.tuned, result.history, summary(result))
        tables = result.tables or [None] * len(request.pairs)
        counts = []
        for pair, outputs, table in zip(request.pairs, result.outputs, tables, strict=True):
            round_.layers.append(self._write_output(pair, outputs, name, table))
            if table is not None:
                n = len(table["label"])
                counts.append(f"{n} object{'s' * (n != 1)} in {pair.image_name}")
        if counts:
            round_.summary += "; re-segmented: " + ", ".join(counts)
        dropped = self.rounds.finish(round_)
        self.model_picker.select(name)
        self._follow_selection()
        self.summary.setText(
            f"{request.choice.name} → {name} (unsaved): {round_.summary}. The next round "
            f"continues from {name}; Revert goes back to {request.choice.name}."
        )
        notify_info(f"fine-tuned {request.choice.name} → {name} (unsaved): {round_.summary}")
        if dropped:
            notify_warning(f"dropped the older unsaved round(s) {', '.join(dropped)} from memory")
        self._update_buttons()

    def _layer_taken(self, request: FinetuneRequest):
        names = {pair.image_name for pair in request.pairs}
        return lambda model: any(output_name(image, model) in self.viewer.layers
                                 for image in names)

    def _write_output(self, pair: PairData, outputs: list[np.ndarray], model_name: str,
                      table: dict[str, np.ndarray] | None = None) -> str:
        """The round's re-segmentation as a new layer: objects with their measurements as
        ``features`` (as Segment writes them) for instance models, else class labels."""
        name = output_name(pair.image_name, model_name)
        slices = [(index, labels) for (index, _), labels in zip(pair.slices, outputs, strict=True)]
        kind = INSTANCES if table is not None else "labels"
        layer = write_labels(
            self.viewer, name, pair.shape, slices, placement=pair.placement,
            metadata=output_metadata(pair.image_name, model_name, kind),
            reuse=False,  # a round's name is new: never overwrite a layer
        )
        attach(layer, table)
        return layer.name

    # -- revert / save -----------------------------------------------------------
    def revert(self) -> bool:
        """Undo the last round: select again the model it started from; drop its model."""
        if self.jobs.busy:
            notify_error("wait for the running job to finish (or cancel it) before reverting")
            return False
        try:
            round_ = self.rounds.revert()
        except ValueError as exc:
            notify_error(str(exc))
            return False
        selected = self.model_picker.select(round_.base)
        kept = f"the layers made by {round_.name} were kept"
        if round_.saved_path is not None:
            kept += f", and its saved file {round_.saved_path.name}"
        self.summary.setText(f"reverted to {round_.base.name}")
        if selected:
            notify_info(f"reverted to {round_.base.name}, the model selected before the round; "
                        f"{kept}")
        else:
            notify_warning(f"reverted: {round_.base.name}, the model the round started from, "
                           f"is no longer available; {kept}")
        self._follow_selection()
        self._update_buttons()
        return True

    def save(self) -> Path | None:
        """Write the round's model to the user model folder (safetensors + card)."""
        target = self.rounds.savable(self.model_picker.current())
        if target is None:
            notify_error("nothing to save: fine-tune a model first")
            return None
        unsaved, model = target
        name = self.save_name.text().strip() or unsaved
        path = user_model_path(name)
        if path.exists() and not confirm(
            self, "Replace a saved model?",
            f"A model called {path.stem!r} already exists in {path.parent}.",
        ):
            self.summary.setText(f"not saved: {path.stem} was kept; type another name")
            return None
        try:
            choice = session().install(model, path, name=unsaved)
        except (OSError, ValueError) as exc:
            notify_error(f"could not save the model as {name!r}: {exc}")
            return None
        self.rounds.saved(unsaved, path)
        self.model_picker.select(choice)
        notify_info(f"saved {path.stem} to {path.parent}; it is now in every model list")
        self._follow_selection()
        self._update_buttons()
        return path

    def _follow_selection(self, *_: Any) -> None:
        """The name field names the selected model when Save as… would write it, else
        nothing: a name typed for one round never labels another round's weights."""
        target = self.rounds.savable(self.model_picker.current())
        self.save_name.setText(target[0] if target is not None else "")

    # -- state ---------------------------------------------------------------------
    def missing_input(self) -> str:
        """What must exist before a round can start ("" when it can)."""
        if not any(row.image_picker.layer() is not None for row in self.rows):
            return "open an image first (File ▸ Open, or File ▸ Open Sample)"
        if not any(row.labels_picker.layer() is not None for row in self.rows):
            return "segment the image, or add a Labels layer and paint on it, first"
        if self.model_picker.current() is None:
            return "no model to fine-tune: load one from a file"
        return ""

    def _update_buttons(self, *_: Any) -> None:
        busy = self.jobs.busy
        choice = self.model_picker.current()
        self.run_button.setText(f"Fine-tune {choice.name}" if choice else "Fine-tune")
        missing = self.missing_input()
        self.run_button.setEnabled(not busy and not missing)
        self.run_button.setToolTip(
            missing or "train a copy of the model on the pairs "
            f"({_shortcuts.describe(_shortcuts.FINETUNE)})"
        )
        self.revert_button.setEnabled(self.rounds.current is not None and not busy)
        self.save_button.setEnabled(
            self.rounds.savable(choice) is not None and not busy
        )


def _shape(shape) -> str:
    return "×".join(str(int(s)) for s in shape)
