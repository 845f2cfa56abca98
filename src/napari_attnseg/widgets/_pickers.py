"""Combo boxes that pick what a widget works on: a model, a device, a layer.

They stay current without a refresh button: :class:`ModelPicker` follows the
shared :class:`~._models.ModelSession`, :class:`LayerPicker` follows the
viewer's layer list, and :func:`compact` lets all of them shrink so docks stay
narrow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.layers import Layer
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QWidget

from ._models import ModelChoice, session
from ._notifications import describe_error, notify_error


def compact(combo: QComboBox, characters: int = 10) -> QComboBox:
    """Let a combo box shrink below its longest entry, so docks stay narrow."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


class _RefreshingCombo(QComboBox):
    """A combo box that asks its owner to refresh the list just before it opens."""

    def __init__(self, refresh: Callable[[], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._refresh = refresh
        compact(self)

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self._refresh()
        super().showPopup()


class ModelPicker(QWidget):
    """Zoo, user, file and unsaved models, plus "Load from file…"."""

    LOAD_FILE = "Load from file…"
    #: emitted when the selected model changes
    selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = _RefreshingCombo(self.refresh)
        self.combo.setToolTip(
            "zoo models (★ = the default for a task), your saved models, models loaded "
            "from files and fine-tuned models not saved yet"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        self._choices: list[ModelChoice] = []
        self._previous: ModelChoice | None = None
        self.combo.activated.connect(self._on_activated)
        self.combo.currentIndexChanged.connect(self._emit_selection)
        session().changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        current = self.current()
        choices = session().choices()
        if choices == self._choices and self.combo.count():
            return
        self._choices = choices
        self.combo.blockSignals(True)
        self.combo.clear()
        if not choices:
            self.combo.addItem("no models yet: load one from a file")
            self.combo.model().item(0).setEnabled(False)
        for choice in choices:
            self.combo.addItem(choice.label)
        self.combo.addItem(self.LOAD_FILE)
        if current in choices:
            index = choices.index(current)
        else:
            defaults = [i for i, c in enumerate(choices) if c.is_default]
            index = defaults[0] if defaults else 0
        self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)
        self._previous = self.current()
        self.selection_changed.emit()

    def current(self) -> ModelChoice | None:
        index = self.combo.currentIndex()
        return self._choices[index] if 0 <= index < len(self._choices) else None

    def required(self, hint: str = "pick one or load a model file") -> ModelChoice:
        """The selected model; a ``ValueError`` that says what to do (``hint``) when none is."""
        choice = self.current()
        if choice is None:
            raise ValueError(f"no model selected: {hint}")
        return choice

    def select(self, choice: ModelChoice | str) -> bool:
        """Select a choice, or the model called ``choice``; False if there is none."""
        self.refresh()
        if isinstance(choice, str):
            found = session().find(choice)
            if found is None:
                return False
            choice = found
        if choice not in self._choices:
            return False
        self.combo.setCurrentIndex(self._choices.index(choice))
        self._previous = choice
        return True

    def add_model_path(self, path: str | Path) -> ModelChoice | None:
        """Offer (and select) a model file; an unreadable file gives an error notification."""
        try:
            choice = session().add_file(path)
        except (OSError, ValueError) as exc:
            notify_error(f"cannot use model file {path}: {describe_error(exc)}")
            if self._previous is not None:
                self.select(self._previous)
            return None
        self.select(choice)
        return choice

    def add_model(self, model: Any, name: str) -> ModelChoice:
        """Offer (and select) a model object, e.g. one built in a script."""
        choice = session().add_unsaved(model, name)
        self.select(choice)
        return choice

    def _emit_selection(self, *_: Any) -> None:
        self.selection_changed.emit()

    def _on_activated(self, index: int) -> None:
        if self.combo.itemText(index) != self.LOAD_FILE:
            self._previous = self.current()
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a napari-attnseg model", "", "napari-attnseg models (*.safetensors *.json)"
        )
        if path:
            self.add_model_path(path)
        elif self._previous is not None:
            self.select(self._previous)
        else:
            self.combo.setCurrentIndex(0)


class DevicePicker(QComboBox):
    """auto / each CUDA GPU by name / MPS / CPU — what PyTorch sees."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..inference import available_devices

        compact(self)
        for label, value in available_devices():
            self.addItem(label, value)
        self.setToolTip("auto uses a CUDA GPU, then Apple MPS, then the CPU")

    def device(self) -> str:
        return str(self.currentData())


class LayerPicker(QComboBox):
    """The viewer's layers of one type, kept up to date as layers come, go and are renamed."""

    #: emitted when the selected layer changes
    layer_changed = Signal()

    def __init__(self, viewer, layer_type: type[Layer], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        self._names: list[str] = []
        compact(self)
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved, events.reordered):
            emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.currentIndexChanged.connect(self._emit_layer_changed)
        self.refresh(prefer_active=True)

    def _emit_layer_changed(self, *_: Any) -> None:
        self.layer_changed.emit()

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if event is not None and getattr(event, "type", "") == "inserted" and layer is not None:
            layer.events.name.connect(self.refresh)
            if isinstance(layer, self.layer_type) and not self._names:
                self.refresh(prefer=layer.name)
                return
        self.refresh()

    def refresh(
        self, event=None, *, prefer: str | None = None, prefer_active: bool = False
    ) -> None:
        current = prefer or self.currentText()
        if prefer_active:
            active = self.viewer.layers.selection.active
            if isinstance(active, self.layer_type):
                current = active.name
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, self.layer_type)]
        if names == self._names and current == self.currentText():
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        self._names = names
        if current in names:
            self.setCurrentIndex(names.index(current))
        self.blockSignals(False)
        self.layer_changed.emit()

    def layer(self) -> Layer | None:
        name = self.currentText()
        if name and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if isinstance(layer, self.layer_type):
                return layer
        return None

    def set_layer(self, layer: Layer | str) -> None:
        name = layer if isinstance(layer, str) else layer.name
        self.refresh(prefer=name)
        index = self.findText(name)
        if index < 0:
            raise ValueError(f"no {self.layer_type.__name__} layer called {name!r}")
        self.setCurrentIndex(index)
