"""Pickers of what a widget runs with: :class:`ModelPicker` and :class:`DevicePicker`.

:class:`ModelPicker` follows the shared :class:`~._models.ModelSession`: zoo,
user, file and unsaved models, plus "Load from file…".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QToolButton, QWidget

from ._models import ModelChoice, session
from ._notifications import describe_error, notify_error
from ._pickers_combo import ElidingCombo


class _RefreshingCombo(ElidingCombo):
    """A combo box that asks its owner to refresh the list just before it opens."""

    def __init__(self, refresh: Callable[[], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._refresh = refresh

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self._refresh()
        super().showPopup()


class ModelPicker(QWidget):
    """Zoo, user, file and unsaved models, plus "Load from file…".

    A file is fully loaded before it is listed (a broken one gives one
    notification and is never listed); the ✕ beside the list takes the
    selected file off it again.
    """

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
        self.remove_button = QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.setToolTip("take this model file off the list (the file is kept)")
        self.remove_button.clicked.connect(self.remove_current_file)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.remove_button)
        self._choices: list[ModelChoice] = []
        self._previous: ModelChoice | None = None
        self.combo.activated.connect(self._on_activated)
        self.combo.currentIndexChanged.connect(self._emit_selection)
        self.selection_changed.connect(self._update_remove_button)
        session().changed.connect(self.refresh)
        self.refresh()
        self._update_remove_button()

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
        """Load, offer and select a model file; a broken one gives one error notification.

        The model is loaded completely (card, and weights checked against the
        card's architecture) before it is listed, so a file that cannot be
        used never enters a picker.
        """
        try:
            choice = session().add_file(path)
        except Exception as exc:  # noqa: BLE001 - any broken file is one notification
            notify_error(f"cannot use model file {path}: {describe_error(exc)}")
            if self._previous is not None:
                self.select(self._previous)
            return None
        self.select(choice)
        return choice

    def remove_current_file(self) -> bool:
        """Take the selected model file off every list (the file itself is kept)."""
        choice = self.current()
        if choice is None or choice.kind != "file":
            return False
        return session().remove_file(choice)

    def _update_remove_button(self) -> None:
        choice = self.current()
        self.remove_button.setVisible(choice is not None and choice.kind == "file")

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
            self, "Load a napari-attnseg model", "",
            "napari-attnseg models (*.safetensors *.json *.zip)",
        )
        if path:
            self.add_model_path(path)
        elif self._previous is not None:
            self.select(self._previous)
        else:
            self.combo.setCurrentIndex(0)


class DevicePicker(ElidingCombo):
    """auto / each CUDA GPU by name / MPS / CPU — what PyTorch sees."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..inference import available_devices

        for label, value in available_devices():
            self.addItem(label, value)
        self.setToolTip("auto uses a CUDA GPU, then Apple MPS, then the CPU")

    def device(self) -> str:
        return str(self.currentData())
