"""Pickers of what a widget works on: :class:`LayerPicker` and :class:`ChannelPicker`.

A :class:`LayerPicker` follows the viewer's layer list and keeps the user's
layers (images, ground truth) apart from the layers this plugin made: those
come after a separator, marked ``⚙ <name> (prediction)`` (see
:func:`layer_entry`).
"""

from __future__ import annotations

from typing import Any

from napari.layers import Layer
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QWidget

from ._layers import channel_axis_options, layer_array, note_edit, output_info
from ._pickers_combo import ElidingCombo

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
