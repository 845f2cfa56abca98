"""Combo boxes that pick what a widget works on: a model, a device, a layer.

They stay current without a refresh button: :class:`ModelPicker` follows the
shared :class:`~._models.ModelSession`, :class:`LayerPicker` follows the
viewer's layer list. All are :class:`ElidingCombo` boxes: they shrink so docks
stay narrow, cut a long name *in the middle* (``nuclei (DS…) corrected`` and
``nuclei (DS…2018)`` stay apart, where cutting the end made them look alike)
to the width there is, open a list as wide as its longest entry, and show the
full name as the tooltip of the box and of every entry.

Layer pickers keep the user's layers (images, ground truth) apart from the
layers this plugin made: those come after a separator, marked
``⚙ <name> (prediction)`` (``(prediction, edited)`` once painted on,
``(probability)``, ``(attention map)``), so a prediction is not taken for the
corrected labels by mistake. The mark sits at both ends of the entry: a
narrow box cuts the name in the middle and keeps ``⚙`` and ``(prediction)``
whole while a few letters of the name fit beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.layers import Layer
from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QToolButton,
    QWidget,
)

from ._layers import channel_axis_options, layer_array, note_edit, output_info
from ._models import ModelChoice, session
from ._notifications import describe_error, notify_error


def compact(combo: QComboBox, characters: int = 10) -> QComboBox:
    """Let a combo box shrink below its longest entry, so docks stay narrow."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


class ElidingCombo(QComboBox):
    """A compact combo box that elides long entries in the middle, full text in the tooltip.

    :meth:`setToolTip` sets what the box is for; the tooltip shown is the
    current entry in full, then that text.
    """

    def __init__(self, parent: QWidget | None = None, characters: int = 10) -> None:
        super().__init__(parent)
        compact(self, characters)
        self.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._purpose = ""
        self.currentIndexChanged.connect(self._update_tooltip)
        self.model().rowsInserted.connect(self._default_item_tooltips)

    def setToolTip(self, text: str) -> None:  # noqa: N802 - Qt API
        self._purpose = text
        self._update_tooltip()

    def item_tooltip(self, index: int) -> str:
        """The tooltip of entry ``index``: its full text unless it was given one."""
        tip = self.itemData(index, Qt.ItemDataRole.ToolTipRole)
        return str(tip) if tip else self.itemText(index)

    def _default_item_tooltips(self, _parent=None, first: int = 0, last: int = -1) -> None:
        for index in range(first, last + 1):
            if self.itemText(index) and not self.itemData(index, Qt.ItemDataRole.ToolTipRole):
                self.setItemData(index, self.itemText(index), Qt.ItemDataRole.ToolTipRole)

    def _update_tooltip(self, *_: Any) -> None:
        index = self.currentIndex()
        current = self.item_tooltip(index) if index >= 0 else ""
        parts = [p for p in (current, self._purpose) if p]
        super().setToolTip("\n\n".join(parts))

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        """Open the list as wide as its longest entry (within the screen): names in full."""
        view = self.view()
        view.setMinimumWidth(0)
        metrics = view.fontMetrics()
        longest = max((metrics.horizontalAdvance(self.itemText(i)) for i in range(self.count())),
                      default=0)
        needed = longest + 4 * metrics.averageCharWidth() + 2 * view.frameWidth()
        needed += view.verticalScrollBar().sizeHint().width()
        screen = self.screen()
        limit = screen.availableGeometry().width() if screen is not None else needed
        view.setMinimumWidth(max(self.width(), min(needed, limit)))
        super().showPopup()

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            self._update_tooltip()  # entries may have changed with signals blocked
        return super().event(event)

    def _label_option(self) -> tuple[QStyleOptionComboBox, int]:
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField,
            self,
        )
        return option, field.width()

    def shown_text(self) -> str:
        """The current entry as drawn: elided in the middle to fit the box."""
        option, width = self._label_option()
        return self.fontMetrics().elidedText(
            option.currentText, Qt.TextElideMode.ElideMiddle, max(width, 0)
        )

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.isEditable():
            super().paintEvent(event)
            return
        option, _ = self._label_option()
        option.currentText = self.shown_text()
        painter = QStylePainter(self)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


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


#: marks the layers napari-attnseg made in a layer picker
MADE_BY_PLUGIN = "⚙"
#: what a layer made by the plugin is, by the ``role`` in its metadata
ROLE_WORDS = {"labels": "prediction", "instances": "prediction",
              "probability": "probability", "attention": "attention map"}


def layer_entry(layer: Layer) -> tuple[str, str]:
    """The entry of ``layer`` in a picker and its tooltip.

    The user's layers are listed by name. Layers made by this plugin (they
    carry :data:`~._layers.METADATA_KEY` metadata) read ``⚙ <name> (<what>)``;
    a prediction painted on since it was written reads ``(prediction, edited)``.
    """
    name = str(layer.name)
    info = output_info(layer)
    if info is None:
        return name, f"{name}\nyour layer (not made by napari-attnseg)"
    role = str(info.get("role", ""))
    what = ROLE_WORDS.get(role, role or "output")
    source = "".join(
        f" {word} {info[key]}" for word, key in (("from", "image"), ("by", "model"))
        if info.get(key)
    )
    if what == "prediction":
        if info.get("edited"):
            what = "prediction, edited"
            tip = (f"a prediction made{source}, painted on since: use it as ground truth only "
                   "once every error is corrected")
        else:
            tip = (f"a prediction made{source}, not edited: it is not ground truth — correct it "
                   "(or pick your corrected labels) before fine-tuning on it")
    else:
        tip = f"{what} made{source} by napari-attnseg"
    return f"{MADE_BY_PLUGIN} {name} ({what})", f"{name}\n{tip}"


class LayerPicker(ElidingCombo):
    """The viewer's layers of one type, kept up to date as layers come, go and are renamed.

    The user's own layers come first; the plugin's outputs follow after a
    separator, marked (:func:`layer_entry`). Entries hold the layer's name as
    their data: :meth:`layer`, :meth:`current_name` and :meth:`set_layer`
    work with names, whatever an entry shows.
    """

    #: emitted when the selected layer changes
    layer_changed = Signal()

    def __init__(self, viewer, layer_type: type[Layer], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        self._names: list[str] = []
        self._entries: list[list[tuple[str, str, str]]] = []
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved, events.reordered):
            emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            self._follow(layer)
        self.currentIndexChanged.connect(self._emit_layer_changed)
        self.refresh(prefer_active=True)

    def _follow(self, layer: Layer) -> None:
        """Refresh when ``layer`` is renamed, gets new metadata or is painted on."""
        layer.events.name.connect(self.refresh)
        metadata = getattr(layer.events, "metadata", None)
        if metadata is not None:
            metadata.connect(self.refresh)
        paint = getattr(layer.events, "paint", None)
        if paint is not None and isinstance(layer, self.layer_type):
            paint.connect(self._on_paint)

    def _on_paint(self, event=None) -> None:
        note_edit(getattr(event, "source", None))
        self.refresh()

    def _emit_layer_changed(self, *_: Any) -> None:
        self.layer_changed.emit()

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if event is not None and getattr(event, "type", "") == "inserted" and layer is not None:
            self._follow(layer)
            if isinstance(layer, self.layer_type) and not self._names:
                self.refresh(prefer=layer.name)
                return
        self.refresh()

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self.refresh()  # marks may have changed without an event (e.g. a rerun's metadata)
        super().showPopup()

    def _sections(self) -> list[list[tuple[str, str, str]]]:
        """``[(name, text, tooltip)]`` of the user's layers, then of the plugin's."""
        own: list[tuple[str, str, str]] = []
        made: list[tuple[str, str, str]] = []
        for layer in self.viewer.layers:
            if isinstance(layer, self.layer_type):
                text, tip = layer_entry(layer)
                (own if output_info(layer) is None else made).append((layer.name, text, tip))
        return [own, made]

    def shown_text(self) -> str:
        """The current entry as drawn; a plugin output keeps its mark whole, ``⚙ nu…ei]
        (prediction)``, while at least a few letters of its name fit beside it."""
        option, width = self._label_option()
        text, name = option.currentText, self.current_name()
        metrics = self.fontMetrics()
        prefix = f"{MADE_BY_PLUGIN} "
        if metrics.horizontalAdvance(text) <= width or not text.startswith(prefix + name):
            return super().shown_text()
        suffix = text[len(prefix) + len(name):]
        room = width - metrics.horizontalAdvance(prefix + suffix)
        if room < metrics.horizontalAdvance("ab…yz"):
            return super().shown_text()
        return prefix + metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, room) + suffix

    def current_name(self) -> str:
        """The name of the selected layer ("" when none)."""
        name = self.currentData()
        return name if isinstance(name, str) else ""

    def refresh(
        self, event=None, *, prefer: str | None = None, prefer_active: bool = False
    ) -> None:
        current = prefer or self.current_name()
        if prefer_active:
            active = self.viewer.layers.selection.active
            if isinstance(active, self.layer_type):
                current = active.name
        sections = self._sections()
        if sections == self._entries and current == self.current_name():
            return
        self.blockSignals(True)
        self.clear()
        own, made = sections
        for name, text, tip in own:
            self.addItem(text, name)
            self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        if own and made:
            self.insertSeparator(self.count())
        for name, text, tip in made:
            self.addItem(text, name)
            self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self._entries = sections
        self._names = [name for name, _, _ in own + made]
        index = self.findData(current) if current else -1
        if index >= 0:
            self.setCurrentIndex(index)
        self.blockSignals(False)
        self._update_tooltip()
        self.layer_changed.emit()

    def layer(self) -> Layer | None:
        name = self.current_name()
        if name and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if isinstance(layer, self.layer_type):
                return layer
        return None

    def set_layer(self, layer: Layer | str) -> None:
        name = layer if isinstance(layer, str) else layer.name
        self.refresh(prefer=name)
        index = self.findData(name)
        if index < 0:
            raise ValueError(f"no {self.layer_type.__name__} layer called {name!r}")
        self.setCurrentIndex(index)


class ChannelPicker(ElidingCombo):
    """Which axis of the image holds channels: none, the first or the last.

    Enabled only for a grey image whose first or last axis has at most four
    entries (:func:`~._layers.channel_axis_options`); otherwise it shows
    "none" and :meth:`axis` is None. "none" keeps napari's reading: a ``(2, H, W)``
    image is a stack of two planes.
    """

    NONE = "none (planes of a stack)"
    LABELS = {0: "first axis", -1: "last axis"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setToolTip(
            "the axis that holds the image's channels (e.g. two fluorescence channels); "
            "none: every plane is segmented on its own"
        )
        self._axes: list[int | None] = []
        self.set_layer(None)

    def set_layer(self, layer: Layer | None) -> None:
        """Offer the channel axes ``layer`` may have, keeping the choice when still offered."""
        previous = self.axis()
        axes: list[int | None] = [None, *channel_axis_options(layer)]
        labels = [self.NONE] + [
            f"{self.LABELS[axis]} ({layer_array(layer).shape[axis]})" for axis in axes[1:]
        ]
        if labels != [self.itemText(i) for i in range(self.count())]:
            self.blockSignals(True)
            self.clear()
            self.addItems(labels)
            self._axes = axes
            self.setCurrentIndex(axes.index(previous) if previous in axes else 0)
            self.blockSignals(False)
        self.setEnabled(len(axes) > 1)

    @property
    def offered(self) -> bool:
        return len(self._axes) > 1

    def axis(self) -> int | None:
        """0, -1, or None (no channel axis)."""
        index = self.currentIndex()
        return self._axes[index] if 0 <= index < len(self._axes) else None

    def set_axis(self, axis: int | None) -> None:
        if axis not in self._axes:
            raise ValueError(f"the image has no channel axis {axis} to choose")
        self.setCurrentIndex(self._axes.index(axis))
