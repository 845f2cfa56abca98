"""The Segment dock widget: an image layer and a model in, an aligned Labels layer out.

The widget only translates: it reads the image layer's array (the current
slice or the whole Z/T stack, grey or RGB), hands it to
:class:`~napari_attnseg.inference.Predictor` in a thread worker, and puts the
labels (and optionally the foreground probability) back as layers with the
image's placement. Running again with the same image and model rewrites the
same layers — for labels through napari's undo history — instead of adding
new ones; cancelling or failing changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._jobs import JobContext, JobPanel
from ._layers import (
    check_image_layer,
    current_index,
    find_layer,
    is_rgb_layer,
    layer_array,
    output_metadata,
    output_name,
    placement,
    spatial_shape,
    write_labels,
)
from ._models import ModelChoice, session
from ._notifications import notify_error
from ._pickers import DevicePicker, LayerPicker, ModelPicker

WHOLE_STACK, CURRENT_SLICE = "whole stack", "current slice"


@dataclass
class SegmentRequest:
    """Everything a segmentation job needs, captured on the GUI thread."""

    image_name: str
    data: Any  # the layer's array (not copied)
    rgb: bool
    shape: tuple[int, ...]  # spatial shape (*stack, H, W)
    index: tuple[int, ...] | None  # a stack slice, or None for everything
    placement: dict[str, Any]
    choice: ModelChoice
    settings: dict[str, Any]
    probability: bool
    split_objects: bool


@dataclass
class SegmentResult:
    request: SegmentRequest
    labels: np.ndarray  # shaped like the request: (H, W) for a slice, else ``shape``
    probability: np.ndarray | None
    messages: list[str] = field(default_factory=list)


def run_segmentation(request: SegmentRequest, ctx: JobContext) -> SegmentResult:
    """The worker's job: load the model, predict, optionally split objects."""
    from ..inference import InferenceSettings, Predictor

    model = session().load(request.choice)
    predictor = Predictor(InferenceSettings(**request.settings), on_message=ctx.message)
    image = np.asarray(request.data[request.index or ()])
    prediction = predictor.predict(model, image, rgb=request.rgb, progress=ctx.progress,
                                   cancel=ctx.cancel)
    labels, foreground = prediction.labels, prediction.foreground
    if request.split_objects:
        labels = split_objects(labels, ctx)
    probability = foreground.astype(np.float32) if request.probability else None
    return SegmentResult(request, labels, probability, list(prediction.messages))


def split_objects(labels: np.ndarray, ctx: JobContext | None = None) -> np.ndarray:
    """Number the connected foreground regions of each 2D slice 1, 2, … (instance labels)."""
    from skimage.measure import label

    flat = labels.reshape((-1, *labels.shape[-2:]))
    out = np.zeros(flat.shape, dtype=np.uint32)
    for i, plane in enumerate(flat):
        if ctx is not None:
            ctx.cancel.raise_if_cancelled()
        out[i] = label(plane > 0, connectivity=1)
    top = int(out.max()) if out.size else 0
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    return out.reshape(labels.shape).astype(dtype)


class SegmentWidget(QWidget):
    """Plugins ▸ napari-attnseg ▸ Segment."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.image_picker = LayerPicker(napari_viewer, Image)
        self.model_picker = ModelPicker()
        self.device_picker = DevicePicker()
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setSpecialValueText("model default")
        self.threshold.setToolTip("foreground probability threshold of binary models")
        self.tile_size = QSpinBox()
        self.tile_size.setRange(0, 8192)
        self.tile_size.setSingleStep(64)
        self.tile_size.setValue(512)
        self.tile_size.setSpecialValueText("no tiling")
        self.tile_size.setToolTip(
            "larger images are predicted in overlapping tiles of this size, so memory stays "
            "bounded; smaller tiles use less GPU memory"
        )
        self.tta = QCheckBox("test-time augmentation (flips)")
        self.tta.setToolTip("average the predictions of the image and its flips: 4× slower")
        self.scope = QComboBox()
        self.scope.addItems([WHOLE_STACK, CURRENT_SLICE])
        self.scope.setToolTip("for Z/T stacks: segment every slice or only the one shown")
        self.add_probability = QCheckBox("add probability layer")
        self.split = QCheckBox("number objects separately")
        self.split.setToolTip("give each connected object its own label (instance labels)")
        self.run_button = QPushButton("Segment")
        self.run_button.clicked.connect(self.segment)
        self.jobs = JobPanel()
        self.jobs.finished.connect(self._on_finished)

        form = QFormLayout()
        form.addRow("image", self.image_picker)
        form.addRow("model", self.model_picker)
        form.addRow("device", self.device_picker)
        form.addRow("threshold", self.threshold)
        form.addRow("tile size", self.tile_size)
        form.addRow("stack", self.scope)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.tta, self.add_probability, self.split, self.run_button, self.jobs):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.image_picker.layer_changed.connect(self._update_scope)
        self._update_scope()

    # -- actions -----------------------------------------------------------
    def segment(self) -> bool:
        """Start segmenting; False (with a notification) when the inputs are unusable."""
        try:
            request = self._request()
        except ValueError as exc:
            notify_error(str(exc))
            return False
        started = self.jobs.start(
            lambda ctx: run_segmentation(request, ctx),
            on_success=self._show_result,
            label=f"segmenting {request.image_name} with {request.choice.name}",
        )
        if started:
            self.run_button.setEnabled(False)
        return started

    def _request(self) -> SegmentRequest:
        layer = self.image_picker.layer()
        check_image_layer(layer)
        choice = self.model_picker.required()
        shape = spatial_shape(layer)
        index = None
        if len(shape) > 2 and self.scope.currentText() == CURRENT_SLICE:
            index = current_index(self.viewer, layer)
        threshold = self.threshold.value()
        tile = self.tile_size.value()
        return SegmentRequest(
            image_name=layer.name,
            data=layer_array(layer),
            rgb=is_rgb_layer(layer),
            shape=shape,
            index=index,
            placement=placement(layer),
            choice=choice,
            settings={
                "device": self.device_picker.device(),
                "tta": self.tta.isChecked(),
                "threshold": threshold if threshold > 0 else None,
                "tile_size": tile if tile > 0 else None,
            },
            probability=self.add_probability.isChecked(),
            split_objects=self.split.isChecked(),
        )

    def _show_result(self, result: SegmentResult) -> None:
        request = result.request
        name = output_name(request.image_name, request.choice.name)
        meta = output_metadata(request.image_name, request.choice.name, "labels")
        labels = write_labels(self.viewer, name, request.shape,
                              [(request.index or (), result.labels)],
                              placement=request.placement, metadata=meta)
        labels.metadata.update(meta)  # a rewritten layer now comes from this run too
        if result.probability is not None:
            self._show_probability(result, name + " probability")

    def _show_probability(self, result: SegmentResult, name: str) -> None:
        request = result.request
        index = request.index or ()
        layer = find_layer(self.viewer, name, Image, request.shape)
        if layer is not None:
            data = np.array(layer.data, dtype=np.float32)
            data[index] = result.probability
            layer.data = data
            return
        data = np.zeros(request.shape, dtype=np.float32)
        data[index] = result.probability
        self.viewer.add_image(
            data, name=name, colormap="magma", blending="additive", contrast_limits=(0.0, 1.0),
            opacity=0.6,
            metadata=output_metadata(request.image_name, request.choice.name, "probability"),
            **request.placement,
        )

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)

    def _update_scope(self) -> None:
        layer = self.image_picker.layer()
        stack = layer is not None and len(spatial_shape(layer)) > 2
        self.scope.setEnabled(stack)
