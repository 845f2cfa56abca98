"""The Attention dock widget: where the network looked, and which attention modules matter.

For the selected image (the slice shown, for a stack) and model it adds one
Image layer per spatial attention module — the map resized to the image and
placed exactly over it, in a colormap that fades to transparent where
attention is low (so the image stays readable), each map's contrast set to
its own 1st–99th percentile, only the map with the most spatial contrast
visible at first — and lists *every* attention module in a table with its
kind, Focal exponent ``w`` and whether the ``w < 0.2`` rule of Yeung et al.
would prune it. A chart shows the Focal ``w`` as bars, their per-epoch
history when the model's card recorded training (e.g. after fine-tuning), or
the channel weights of a chosen channel-attention (SE) module. The Focal
bars are labelled with short names ("gate D1"), the chart's tooltip says what
their abbreviations mean, and hovering a bar shows its plain and dotted names.

Modules carry plain names ("attention gate, decoder level 1 (coarsest)", see
:mod:`..models.attention_names`) in the table, the chart choices and the
layer names, which start with the image's name ("cells · attention gate, …"),
so maps of two images never share a name; the dotted module name
(``decoder.0.gate``) is the table cell's tooltip and the layer's metadata.
Re-running on the same image updates its layers in place.

A one-line legend says what bright means, a sentence under the table what
the maps are. A model with no spatial attention (the vessels default, a
Focal USE-Net, has only SE channel attention) gets no map layers: the widget
says so plainly and opens on the channel-weight view instead. Names are
elided in the middle, the full name in the tooltip.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QFormLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..models.attention_names import (
    FOCAL_EXPONENT,
    FOCAL_EXPONENT_HELP,
    attention_short_key,
    attention_short_label,
)
from ..models.introspection import PRUNE_THRESHOLD
from ..training.trainer import History
from ._form import advanced_section, precision_picker, scroll_body
from ._jobs import JobContext, JobPanel
from ._layers import (
    METADATA_KEY,
    check_image_layer,
    current_index,
    is_rgb_layer,
    layer_array,
    output_metadata,
    placement,
    plane_key,
    slice_placement,
)
from ._models import ModelChoice, session
from ._notifications import notify_error
from ._pickers import ChannelPicker, DevicePicker, ElidingCombo, LayerPicker, ModelPicker
from ._plot import PlotCanvas

#: Maps are drawn over the image with 'translucent' blending in magma whose alpha rises
#: from 0 at the low end to 1 at the high end: where a module suppresses, the image shows
#: through untouched; where it passes features on, the map glows purple to yellow. The
#: former additive inferno at 0.7 brightened every pixel (washing out the image where it is
#: bright), and plain magma at 0.5 would darken half of it. Opacity 0.6 keeps the
#: structures under the brightest attention visible. Magma is perceptually uniform and
#: readable with red-green colour blindness.
COLORMAP_NAME, OPACITY, BLENDING = "attnseg magma (transparent low)", 0.6, "translucent"
#: each map's contrast: its own robust range (a bright outlier does not flatten the rest)
PERCENTILES = (1.0, 99.0)
#: a map that varies less than this is shown on the absolute 0–1 scale, not stretched noise
MIN_SPAN = 1e-3
FOCAL_NOW, FOCAL_HISTORY = FOCAL_EXPONENT, f"{FOCAL_EXPONENT} per epoch"
CHANNEL_PREFIX = "channel weights · "
LEGEND = "bright = where the network looked; each map scaled to its own range"
LEGEND_HELP = (
    "Each map layer is coloured from transparent (the module suppresses this region) "
    "through purple to yellow (the module passes it on to the next layers). Its contrast "
    "runs from the map's own 1st to 99th percentile, so compare regions within one map, "
    "not the brightness of two maps (the coefficients themselves, 0–1, are the layer's "
    "values)."
)
MAPS_HELP = (
    "Each map layer shows a spatial attention module's coefficients (0–1) over the image: "
    "bright regions are passed on to the next layers of the network, dark ones are "
    "suppressed. Channel (SE) modules weight whole feature channels instead (chart below)."
)
NO_SPATIAL = (
    "{model} has no spatial attention maps: its {n} attention module(s) are channel "
    "attention (SE), which weights whole feature channels, not regions of the image. "
    "The chart shows a module's channel weights for this image."
)


def attention_colormap():
    """Magma with alpha rising from 0 (low attention: the image shows through) to 1."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    colors = np.array(ensure_colormap("magma").colors, dtype=np.float32)
    colors[:, 3] = np.linspace(0.0, 1.0, len(colors))
    return Colormap(colors, name=COLORMAP_NAME, display_name="magma, transparent low")


def map_contrast(plane: np.ndarray) -> tuple[float, float]:
    """Contrast limits from one map's own 1st–99th percentile (0–1 for a flat map)."""
    values = np.asarray(plane, dtype=np.float32)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    if high - low < MIN_SPAN:  # constant (e.g. Focal w = 0: all ones): absolute scale
        return 0.0, 1.0
    return low, high


@dataclass
class AttentionRequest:
    image_name: str
    data: Any
    rgb: bool
    channel_axis: int | None
    index: tuple[int, ...]
    placement: dict[str, Any]
    choice: ModelChoice
    device: str
    precision: str = "auto"


@dataclass
class AttentionResult:
    request: AttentionRequest
    #: every attention module of the model: name -> "spatial" | "channel"
    modules: dict[str, str]
    focal: dict[str, float]
    maps: list  # list[AttentionMap] from this image
    best: str | None
    history: dict[str, list[float]] = field(default_factory=dict)
    #: dotted name -> plain name (see models.attention_names)
    labels: dict[str, str] = field(default_factory=dict)
    #: dotted name -> contrast limits of that spatial map
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: dotted name -> short chart label (see :func:`short_labels`)
    short: dict[str, str] = field(default_factory=dict)

    def label(self, name: str) -> str:
        return self.labels.get(name, name)

    def short_label(self, name: str) -> str:
        return self.short.get(name, name)


def short_labels(model: Any, names: list[str]) -> dict[str, str]:
    """``{dotted name: short chart label}``; a label two modules share gives way to their names."""
    short = {name: attention_short_label(name, model) for name in names}
    counts = Counter(short.values())
    return {name: label if counts[label] == 1 else name for name, label in short.items()}


def focal_history(card) -> dict[str, list[float]]:
    """Per-epoch Focal ``w`` recorded in a model card (fine-tuning first, then training)."""
    records = (card.metadata.get("finetune") or {}).get("history") or card.training.get("history")
    return History(epochs=list(records or [])).focal_series()


def run_attention(request: AttentionRequest, ctx: JobContext) -> AttentionResult:
    from ..inference import attention_maps, most_informative
    from ..models import attention_modules, focal_weights
    from ..models.attention_names import attention_labels
    from ..models.persistence import card_of

    model = session().load(request.choice)  # this job's own copy
    ctx.progress(0, 1, "computing attention maps")
    image = np.asarray(request.data[plane_key(request.index, request.channel_axis)])
    maps = attention_maps(model, image, rgb=request.rgb, channel_axis=request.channel_axis,
                          device=request.device, precision=request.precision,
                          progress=ctx.progress, cancel=ctx.cancel)
    limits = {m.name: map_contrast(m.resized[0, 0].numpy()) for m in maps if m.kind == "spatial"}
    ctx.progress(1, 1, "done")
    modules = attention_modules(model)
    return AttentionResult(
        request, modules, focal_weights(model), maps, most_informative(maps),
        focal_history(card_of(model)), attention_labels(model, list(modules)), limits,
        short_labels(model, list(modules)),
    )


class AttentionWidget(QWidget):
    """Plugins ▸ napari-attnseg ▸ Attention."""

    COLUMNS = ("module", "kind", "Focal\nexponent w", "prune?")
    COLUMN_TIPS = (
        "attention module (its dotted name inside the network is the cell's tooltip)",
        "spatial: a map over the image; channel: one weight per feature channel (SE)",
        FOCAL_EXPONENT_HELP + " (— : this module has no Focal layer)",
        f"would the w < {PRUNE_THRESHOLD:g} heuristic of Yeung et al. prune this module?",
    )

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.image_picker = LayerPicker(napari_viewer, Image)
        self.channels = ChannelPicker()
        self.image_picker.layer_changed.connect(self._update_channels)
        self._update_channels()
        self.model_picker = ModelPicker()
        self.device_picker = DevicePicker()
        self.run_button = QPushButton("Show attention")
        self.run_button.clicked.connect(self.show_attention)
        self.jobs = JobPanel(owner=self)
        self.jobs.finished.connect(self._update_buttons)
        self.precision = precision_picker()
        advanced = QFormLayout()
        advanced.addRow("precision", self.precision)
        self.advanced = advanced_section(advanced)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        for column, tip in enumerate(self.COLUMN_TIPS):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(self.COLUMNS)):
            self.table.horizontalHeader().setSectionResizeMode(
                column, QHeaderView.ResizeMode.ResizeToContents
            )
        self.table.setMinimumHeight(80)
        self.table.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustToContents)
        self.table.setMaximumHeight(260)  # long lists scroll; short ones leave no gap
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.legend = QLabel(LEGEND)
        self.legend.setToolTip(LEGEND_HELP)
        self.legend.setWordWrap(True)
        self.legend.setVisible(False)
        self.explanation = QLabel(MAPS_HELP)
        self.explanation.setWordWrap(True)
        self.explanation.setVisible(False)
        self.plot_choice = ElidingCombo(characters=16)
        self.plot_choice.setToolTip("what the chart shows")
        self.plot_choice.currentTextChanged.connect(self._draw_plot)
        self.plot = PlotCanvas(theme=str(napari_viewer.theme))
        self.plot.show_message("click “Show attention”")
        self.result: AttentionResult | None = None
        self._channel_views: dict[str, str] = {}  # chart choice -> dotted module name

        form = QFormLayout()
        form.addRow("image", self.image_picker)
        form.addRow("channels", self.channels)
        form.addRow("model", self.model_picker)
        form.addRow("device", self.device_picker)
        layout = scroll_body(self)
        layout.addLayout(form)
        layout.addWidget(self.advanced)
        layout.addWidget(self.run_button)
        layout.addWidget(self.jobs)
        layout.addWidget(self.summary)
        layout.addWidget(self.legend)
        layout.addWidget(self.table)
        layout.addWidget(self.explanation)
        chart = QFormLayout()
        chart.addRow("chart", self.plot_choice)
        layout.addLayout(chart)
        layout.addWidget(self.plot)
        self.image_picker.layer_changed.connect(self._update_buttons)
        self.model_picker.selection_changed.connect(self._update_buttons)
        self._update_buttons()

    # -- actions -------------------------------------------------------------
    def show_attention(self) -> bool:
        """Start computing the maps; False (with a notification) when the inputs are unusable."""
        try:
            layer = self.image_picker.layer()
            self.channels.set_layer(layer)
            axis = self.channels.axis()
            check_image_layer(layer, axis)
            choice = self.model_picker.required()
        except ValueError as exc:
            self.jobs.reject(str(exc))
            notify_error(str(exc))
            return False
        index = current_index(self.viewer, layer, axis)
        request = AttentionRequest(
            layer.name, layer_array(layer), is_rgb_layer(layer), axis, index,
            slice_placement(layer, index, axis) if index else placement(layer, axis), choice,
            self.device_picker.device(), self.precision.currentText(),
        )
        started = self.jobs.start(
            lambda ctx: run_attention(request, ctx), on_success=self._show_result,
            label=f"attention of {choice.name} on {layer.name}",
        )
        self._update_buttons()
        return started

    def layer_name(self, image_name: str, label: str) -> str:
        """``"<image> · <plain module name>"``: maps of two images never share a name."""
        # the image comes first, so an image's maps sort together and a long name elided in
        # the middle keeps both the image and the level
        return f"{image_name} · {label}"

    # -- results ---------------------------------------------------------------
    def _show_result(self, result: AttentionResult) -> None:
        self.result = result
        self._update_layers(result)
        self._fill_table(result)
        spatial = [m for m in result.maps if m.kind == "spatial"]
        pruned = [n for n, w in result.focal.items() if w < PRUNE_THRESHOLD]
        text = (
            f"{len(result.modules)} attention module(s), {len(spatial)} spatial map layer(s)"
            + (f"; shown: {result.label(result.best)}" if result.best else "")
        )
        if result.focal:
            text += (
                f"; {len(pruned)} of {len(result.focal)} Focal module(s) with "
                f"{FOCAL_EXPONENT} below {PRUNE_THRESHOLD:g}"
            )
        if not result.modules:
            text = f"{result.request.choice.name} has no attention modules"
        elif not spatial:
            text = NO_SPATIAL.format(model=result.request.choice.name, n=len(result.modules))
        self.summary.setText(text)
        self.explanation.setVisible(bool(spatial))
        self.legend.setVisible(bool(spatial))
        self._fill_plot_choices(result)

    def _update_layers(self, result: AttentionResult) -> None:
        request = result.request
        lead = (1,) * len(request.index)
        made = set()
        for m in (m for m in result.maps if m.kind == "spatial"):
            label = result.label(m.name)
            name = self.layer_name(request.image_name, label)
            plane = m.resized[0, 0].numpy().astype(np.float32)
            data = plane.reshape(lead + plane.shape)
            limits = result.limits.get(m.name) or map_contrast(plane)
            meta = output_metadata(request.image_name, request.choice.name, "attention",
                                   module=m.name, label=label, focal_w=m.focal_w)
            visible = m.name == result.best
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
            if isinstance(layer, Image) and layer.data.shape == data.shape and not layer.rgb:
                layer.data = data  # the user's colormap, opacity etc. are kept
                layer.translate = request.placement["translate"]
                layer.visible = visible
                layer.metadata.update(meta)
            else:
                layer = self.viewer.add_image(
                    data, name=name, colormap=attention_colormap(), blending=BLENDING,
                    opacity=OPACITY, visible=visible, metadata=meta, **request.placement,
                )
            # the slider spans every possible coefficient; the limits this map's own range
            layer.contrast_limits_range = (0.0, 1.0)
            layer.contrast_limits = limits
            made.add(name)
        for layer in list(self.viewer.layers):
            info = layer.metadata.get(METADATA_KEY, {})
            if (info.get("role") == "attention" and info.get("image") == request.image_name
                    and layer.name not in made):
                self.viewer.layers.remove(layer)  # maps of a model no longer shown

    def _fill_table(self, result: AttentionResult) -> None:
        self.table.setRowCount(len(result.modules))
        for row, (name, kind) in enumerate(result.modules.items()):
            w = result.focal.get(name)
            prune = w is not None and w < PRUNE_THRESHOLD
            cells = (result.label(name), kind, "—" if w is None else f"{w:.3f}",
                     "—" if w is None else ("yes" if prune else "no"))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                # the dotted name is what the charts, the CLI and the layer metadata use
                item.setToolTip(name if column == 0 else self.COLUMN_TIPS[column])
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if prune:
                    item.setForeground(QColor("#e57373"))
                self.table.setItem(row, column, item)

    def _fill_plot_choices(self, result: AttentionResult) -> None:
        options = []
        if result.focal:
            options.append(FOCAL_NOW)
        if result.history:
            options.append(FOCAL_HISTORY)
        self._channel_views = {
            CHANNEL_PREFIX + result.label(m.name): m.name
            for m in result.maps if m.kind == "channel"
        }
        options += list(self._channel_views)
        self.plot_choice.blockSignals(True)
        previous = self.plot_choice.currentText()
        self.plot_choice.clear()
        self.plot_choice.addItems(options)
        for index, option in enumerate(options):
            tip = (FOCAL_EXPONENT_HELP if option in (FOCAL_NOW, FOCAL_HISTORY)
                   else self._channel_views[option])
            self.plot_choice.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        channel_views = list(self._channel_views)
        if previous in options:
            self.plot_choice.setCurrentText(previous)
        elif channel_views and not any(m.kind == "spatial" for m in result.maps):
            self.plot_choice.setCurrentText(channel_views[0])  # no maps: the channel view
        self.plot_choice.blockSignals(False)
        self._draw_plot(self.plot_choice.currentText())

    def _draw_plot(self, choice: str) -> None:
        result = self.result
        if result is None:
            return
        self.plot.setToolTip(FOCAL_EXPONENT_HELP if choice in (FOCAL_NOW, FOCAL_HISTORY) else "")
        if choice == FOCAL_NOW:
            self._draw_focal(result)
        elif choice == FOCAL_HISTORY:
            self.plot.lines(result.history, title=f"{FOCAL_EXPONENT} during training",
                            ylabel="w", threshold=PRUNE_THRESHOLD)
        elif choice in self._channel_views:
            name = self._channel_views[choice]
            m = next(m for m in result.maps if m.name == name)
            weights = m.resized[0].numpy()
            self.plot.bars([str(i) for i in range(len(weights))], weights,
                           title=f"channel weights · {result.label(name)}", ylabel="weight")
        elif not result.modules:
            self.plot.show_message("this model has no attention modules")
        else:
            self.plot.show_message("no Focal layers or channel attention in this model")

    def _draw_focal(self, result: AttentionResult) -> None:
        """Focal ``w`` bars under short names; a bar's tooltip has its plain and dotted names."""
        names = list(result.focal)
        values = [result.focal[n] for n in names]
        shown = [result.short_label(n) for n in names]
        tips = [f"{result.label(n)}\n{n} · w = {result.focal[n]:.3g}" for n in names]
        self.plot.bars(names, values, shown=shown, tips=tips,
                       title=f"{FOCAL_EXPONENT} per module (dashed: {PRUNE_THRESHOLD:g})",
                       ylabel="w", threshold=PRUNE_THRESHOLD,
                       highlight=[v < PRUNE_THRESHOLD for v in values])
        if key := attention_short_key(shown):
            self.plot.setToolTip(f"{FOCAL_EXPONENT_HELP}\n\nBar names: {key}.")

    def _update_buttons(self, *_: Any) -> None:
        reason = ""
        if self.image_picker.layer() is None:
            reason = "open an image first (File ▸ Open, or File ▸ Open Sample)"
        elif self.model_picker.current() is None:
            reason = "no model: load one from a file"
        self.run_button.setEnabled(not self.jobs.busy and not reason)
        self.run_button.setToolTip(reason or (
            "add each spatial attention map as a layer over the image (the slice shown, "
            "for a stack) and list every attention module"
        ))

    def _update_channels(self, *_: Any) -> None:
        self.channels.set_layer(self.image_picker.layer())
