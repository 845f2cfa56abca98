"""The Segment dock widget: an image layer and a model in, an aligned Labels layer out.

The widget only translates: it reads the image layer's array (the current
slice or the whole Z/T stack; grey, RGB, or with a channel axis the user
picks), hands it to :class:`~napari_attnseg.inference.Predictor` in a thread
worker (:mod:`._segment_job`), and puts the labels (and optionally the
foreground probability) back as layers with the image's placement.

* **output** — *instances* (objects numbered 1…N in raster order, touching
  objects split; the default when the model card says its objects are
  countable) or *mask* (class labels);
* **object diameter** — *auto* (measured on a first pass, the image
  rescaled so objects match the training size), *as trained*, or pixels; only
  for models whose card records an object size;
* **restrict to** — the model's own region (*auto*), the *whole image*, or a
  Labels / Shapes layer (:mod:`._roi`);
* **stack** — segment the whole Z/T stack or only the slice shown; *link
  objects across planes* (instances of a whole stack) gives an object that
  spans planes one id (objects overlapping by an IoU of at least
  :data:`~napari_attnseg.objects.DEFAULT_STITCH` from one plane to the next,
  :func:`~napari_attnseg.objects.stitch_planes`), so it is counted once;
* *Advanced*: tile size, precision, test-time augmentation, probability layer.

Running again with the same image and model rewrites the same Labels layer
through napari's undo history (Ctrl+Z) instead of adding a new one; a slice
segmented into that layer numbers its objects above every id of the other
slices, so no id names two objects. After an
instance segmentation the layer carries the objects' measurements as
``features`` and the table below lists them (:mod:`._objects`). The status
line says what the run did (objects, diameter and zoom, region). **Batch**
segments every image layer or a folder of files into a folder
(:mod:`._batch`). Cancelling, failing or closing the widget changes nothing;
the predictor's messages become warning notifications.

A lazily loaded layer (Dask / zarr) larger than
:data:`._segment_job.BLOCKWISE_PIXELS` is segmented block by block into a
temporary zarr store and shown as zarr-backed layers (:func:`._segment_job.run_blockwise`);
the store goes when the last layer showing it is removed, or at exit
(:mod:`._segment_display` shows results; :mod:`._segment_form` holds the
diameter field and the form's choices).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.layers import Image
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..inference import InferenceSettings
from ..inference.fov_scale import uses_fov
from ..inference.predictor import uses_tta
from ..objects import DEFAULT_STITCH
from . import _shortcuts
from ._batch import (
    BatchRequest,
    check_outputs,
    folder_items,
    layer_items,
    run_batch,
    summary,
)
from ._dialogs import choose_folder, confirm_overwrite
from ._form import advanced_section, precision_picker, scroll_body, show_row
from ._jobs import JobPanel
from ._layers import (
    check_image_layer,
    current_index,
    is_rgb_layer,
    layer_array,
    placement,
    slice_placement,
    spatial_shape,
)
from ._models import ModelChoice, ModelDetails, session
from ._notifications import notify_error, notify_info, notify_warning
from ._objects import ObjectTable
from ._pickers import ChannelPicker, DevicePicker, ElidingCombo, LayerPicker, ModelPicker
from ._roi import AUTO, WHOLE, RoiPicker, roi_mask
from ._segment_display import show_blockwise, show_probability, show_result
from ._segment_form import (  # noqa: F401 - re-exported: the form's choices and help texts
    AS_TRAINED,
    CURRENT_SLICE,
    DIAMETER_HELP,
    FOLDER,
    FOV_HELP,
    LAYERS,
    NO_DIAMETER_HELP,
    WHOLE_STACK,
    DiameterField,
)
from ._segment_job import (
    INSTANCES,
    MASK,
    SegmentRequest,
    SegmentResult,
    run_segmentation,
)


class SegmentWidget(QWidget):
    """Plugins ▸ napari-attnseg ▸ Segment."""

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.details: ModelDetails | None = None
        #: the model whose card last set the defaults (False: none yet)
        self._defaults_for: ModelChoice | None | bool = False
        self.image_picker = LayerPicker(napari_viewer, Image)
        self.image_picker.setToolTip("the image to segment")
        self.channels = ChannelPicker()
        self.model_picker = ModelPicker()
        self.device_picker = DevicePicker()
        self.output = ElidingCombo()
        self.output.addItems([INSTANCES, MASK])
        self.output.setToolTip(
            "instances: each object gets its own number 1…N (touching objects are split), "
            "with a table of measurements; mask: the model's classes (0 = background). "
            "The default comes from the model card"
        )
        self.diameter = DiameterField()
        self.fov = DiameterField(what="field of view", help_text=FOV_HELP)
        self.roi = RoiPicker(napari_viewer)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setSpecialValueText("model default")
        self.threshold.setToolTip("foreground probability threshold of binary models")
        self.scope = ElidingCombo()
        self.scope.addItems([WHOLE_STACK, CURRENT_SLICE])
        self.scope.setToolTip("for Z/T stacks: segment every slice or only the one shown")
        self.link_planes = QCheckBox("link objects across planes")
        self.link_planes.setChecked(True)
        self.link_planes.setToolTip(
            "instances of a Z stack: objects are found plane by plane, then an object that "
            f"overlaps one in the plane before it (IoU at least {DEFAULT_STITCH:g}) takes its "
            "id, so a nucleus spanning planes is one object; off: every plane's objects are "
            "counted on their own"
        )
        self._make_advanced()
        self.run_button = QPushButton("Segment")
        self.run_button.clicked.connect(self.segment)
        self.jobs = JobPanel(owner=self)
        self.jobs.finished.connect(self._update_buttons)
        self.objects = ObjectTable(napari_viewer)
        self._make_batch()
        self._lay_out()
        self.image_picker.layer_changed.connect(self._update_scope)
        self.channels.currentIndexChanged.connect(self._update_scope)
        self.image_picker.layer_changed.connect(self._update_buttons)
        self.scope.currentIndexChanged.connect(self._update_link)
        self.output.currentIndexChanged.connect(self._update_link)
        self.model_picker.selection_changed.connect(self._model_changed)
        self._update_scope()
        self._model_changed()
        _shortcuts.track(self, _shortcuts.SEGMENT)

    def _make_advanced(self) -> None:
        self.tile_size = QSpinBox()
        self.tile_size.setRange(0, 8192)
        self.tile_size.setSingleStep(64)
        self.tile_size.setValue(512)
        self.tile_size.setSpecialValueText("no tiling")
        self.tile_size.setToolTip(
            "larger images are predicted in overlapping tiles of this size, so memory stays "
            "bounded; smaller tiles use less GPU memory"
        )
        self.precision = precision_picker()
        self.tta = QCheckBox("test-time augmentation (flips)")
        self.tta.setToolTip(
            "average the predictions of the image and its flips: 4× slower; selecting a model "
            "sets it as the model's card recommends"
        )
        self.add_probability = QCheckBox("add probability layer")
        self.add_probability.setToolTip("also add the foreground probability as an image layer")
        form = QFormLayout()
        form.addRow("device", self.device_picker)
        form.addRow("threshold", self.threshold)
        form.addRow("tile size", self.tile_size)
        form.addRow("precision", self.precision)
        form.addRow("", self.tta)
        form.addRow("", self.add_probability)
        self.advanced = advanced_section(form)

    def _make_batch(self) -> None:
        self.batch_source = ElidingCombo()
        self.batch_source.addItems([LAYERS, FOLDER])
        self.batch_source.setToolTip(
            "segment every image layer, or every image file of a folder, with the settings "
            "above; masks (and object tables) go to a folder you choose, named after the inputs"
        )
        self.batch_tables = QCheckBox("object tables (CSV) for instances")
        self.batch_tables.setChecked(True)
        self.batch_button = QPushButton("Segment all…")
        self.batch_button.setToolTip("choose the output folder, then segment every input")
        self.batch_button.clicked.connect(self._batch_clicked)
        row = QHBoxLayout()
        row.addWidget(self.batch_source, 1)
        row.addWidget(self.batch_button)
        form = QFormLayout()
        form.addRow(row)
        form.addRow(self.batch_tables)
        self.batch = advanced_section(form, "Batch")

    def _lay_out(self) -> None:
        form = self.form = QFormLayout()
        form.addRow("image", self.image_picker)
        form.addRow("channels", self.channels)
        form.addRow("model", self.model_picker)
        form.addRow("output", self.output)
        self.diameter_label = QLabel("object diameter")
        form.addRow(self.diameter_label, self.diameter)
        form.addRow("field of view", self.fov)
        form.addRow("restrict to", self.roi)
        form.addRow("stack", self.scope)
        form.addRow("", self.link_planes)
        layout = scroll_body(self)
        layout.addLayout(form)
        for widget in (self.advanced, self.run_button, self.jobs, self.objects, self.batch):
            layout.addWidget(widget)
        layout.addStretch(1)

    # -- actions -----------------------------------------------------------
    def segment(self) -> bool:
        """Start segmenting; False (with a notification) when the inputs are unusable."""
        try:
            request = self._request()
        except ValueError as exc:
            self.jobs.reject(str(exc))
            notify_error(str(exc))
            return False
        started = self.jobs.start(
            lambda ctx: run_segmentation(request, ctx),
            on_success=self._show_result,
            label=f"segmenting {request.image_name} with {request.choice.name}",
        )
        self._update_buttons()
        return started

    def _settings(self) -> dict[str, Any]:
        """The InferenceSettings the form describes (``ValueError`` for a bad entry)."""
        threshold = self.threshold.value()
        tile = self.tile_size.value()
        instances = self.output.currentText() == INSTANCES
        if instances and self.details is not None and not self.details.binary:
            raise ValueError(
                f"instances need a model with one foreground class; "
                f"{self.model_picker.current().name} has {self.details.n_classes} classes: "
                "choose mask"
            )
        settings = {
            "device": self.device_picker.device(),
            "tta": self.tta.isChecked(),
            "threshold": threshold if threshold > 0 else None,
            "tile_size": tile if tile > 0 else None,
            "precision": self.precision.currentText(),
            "diameter": self.diameter.value() if self.diameter.isEnabled() else "auto",
            "fov_diameter": self.fov.value(),
            "instances": instances,
            "roi": WHOLE if self.roi.value() == WHOLE else AUTO,
            "stitch": DEFAULT_STITCH if self.link_planes.isChecked() else None,
        }
        InferenceSettings(**settings)  # checked here: a bad value never starts a job
        return settings

    def _request(self) -> SegmentRequest:
        layer = self.image_picker.layer()
        self.channels.set_layer(layer)
        axis = self.channels.axis()
        check_image_layer(layer, axis)
        choice = self.model_picker.required()
        shape = spatial_shape(layer, axis)
        index = None
        if len(shape) > 2 and self.scope.currentText() == CURRENT_SLICE:
            index = current_index(self.viewer, layer, axis)
        settings = self._settings()
        region = self.roi.layer()
        mask = None
        if region is not None:
            mask = roi_mask(region, layer, self.viewer, shape, channel_axis=axis)
        return SegmentRequest(
            image_name=layer.name,
            data=layer_array(layer),
            rgb=is_rgb_layer(layer),
            channel_axis=axis,
            shape=shape,
            index=index,
            placement=placement(layer, axis),
            choice=choice,
            settings=settings,
            probability=self.add_probability.isChecked(),
            roi=mask,
            roi_name=None if region is None else region.name,
            slice_placement=slice_placement(layer, index, axis) if index else None,
        )

    def _show_result(self, result: SegmentResult) -> None:
        show_result(self, result)

    def _show_probability(self, result: SegmentResult, name: str) -> None:
        show_probability(self, result, name)

    def _show_blockwise(self, result: SegmentResult) -> None:
        """Zarr-backed layers for a block-wise result (a rerun swaps the data, not undoable)."""
        show_blockwise(self, result)

    # -- batch -------------------------------------------------------------
    def _batch_clicked(self) -> None:
        folder = None
        if self.batch_source.currentText() == FOLDER:
            folder = choose_folder(self, "Folder of images to segment")
            if folder is None:
                return
        out = choose_folder(self, "Folder for the masks")
        if out is not None:
            self.segment_batch(out, folder=folder)

    def segment_batch(self, out: str | Path, *, folder: str | Path | None = None) -> bool:
        """Segment every image layer (or every image of ``folder``) into ``out``."""
        try:
            choice = self.model_picker.required()
            settings = self._settings()
            if folder is not None:
                items = folder_items(Path(folder))
            else:
                layers = [layer for layer in self.viewer.layers if isinstance(layer, Image)]
                if not layers:
                    raise ValueError("no image layers to segment: open images first")
                items = layer_items(layers)
            out = Path(out)
            if not out.is_dir():
                raise ValueError(f"the output folder {out} does not exist")
            tables = self.batch_tables.isChecked() and bool(settings["instances"])
            outputs = check_outputs(items, out, tables)
        except ValueError as exc:
            self.jobs.reject(str(exc))
            notify_error(str(exc))
            return False
        if not confirm_overwrite(self, outputs, "They will be replaced by this batch's results."):
            self.jobs.reject("batch not started: existing files kept")
            return False
        if self.roi.layer() is not None:
            notify_warning(f"the region {self.roi.layer().name!r} belongs to one image: the "
                           "batch uses the model's own region instead")
        request = BatchRequest(items, out, choice, settings, tables)
        started = self.jobs.start(
            lambda ctx: run_batch(request, ctx),
            on_success=self._batch_done,
            on_cancelled=lambda: self._batch_done(request, cancelled=True),
            label=f"segmenting {len(items)} image(s) with {choice.name}",
        )
        self._update_buttons()
        return started

    def _batch_done(self, request: BatchRequest, *, cancelled: bool = False) -> None:
        text = summary(request, cancelled=cancelled)
        self.jobs.status.setText(text)
        if request.skipped and not cancelled:
            notify_warning(text)
        else:
            notify_info(text)

    # -- state -------------------------------------------------------------
    def _model_changed(self, *_: Any) -> None:
        """Follow the selected model's card: instances or mask, diameter, its own region.

        The output choice is reset to the card's default only when another model
        is selected (not when the session's list of models changes).
        """
        choice = self.model_picker.current()
        try:
            self.details = session().details(choice) if choice is not None else None
        except (ValueError, OSError):  # a file that went away: the run will say so
            self.details = None
        card = self.details.card if self.details is not None else None
        binary = self.details is None or self.details.binary
        if choice != self._defaults_for:
            self._defaults_for = choice
            self.output.setCurrentText(
                INSTANCES if card is not None and card.instances and binary else MASK
            )
            self.tta.setChecked(uses_tta(None, card))  # as the card recommends
        elif not binary:
            self.output.setCurrentText(MASK)
        self.output.model().item(0).setEnabled(binary)
        sized = card is not None and bool(card.object_diameter) and not card.input_size
        self.diameter.setEnabled(sized)
        self.diameter_label.setEnabled(sized)
        self.diameter.setToolTip(DIAMETER_HELP if sized else NO_DIAMETER_HELP)
        # fundus models match the field of view instead; the row is shown only for them
        show_row(self.form, self.fov, card is not None and uses_fov(card))
        region = (card.roi or {}).get("method") if card is not None else None
        self.roi.set_model_region({"fundus": "fundus field of view"}.get(region, region))
        self._update_buttons()

    def _update_buttons(self, *_: Any) -> None:
        busy = self.jobs.busy
        reason = ""
        if self.image_picker.layer() is None:
            reason = "open an image first (File ▸ Open, or File ▸ Open Sample)"
        elif self.model_picker.current() is None:
            reason = "no model: load one from a file"
        self.run_button.setEnabled(not busy and not reason)
        shortcut = _shortcuts.describe(_shortcuts.SEGMENT)
        self.run_button.setToolTip(
            reason or f"segment the image with the model ({shortcut})"
        )
        self.batch_button.setEnabled(not busy and self.model_picker.current() is not None)

    def _update_scope(self, *_: Any) -> None:
        layer = self.image_picker.layer()
        self.channels.set_layer(layer)
        stack = layer is not None and len(spatial_shape(layer, self.channels.axis())) > 2
        self.scope.setEnabled(stack)
        # rows that mean nothing for this image are hidden: a 2-D grey image shows neither
        show_row(self.form, self.channels, self.channels.isEnabled())
        show_row(self.form, self.scope, stack)
        show_row(self.form, self.link_planes, stack)
        self._update_link()

    def _update_link(self, *_: Any) -> None:
        """"link objects across planes" means something for instances of a whole stack."""
        layer = self.image_picker.layer()
        stack = layer is not None and len(spatial_shape(layer, self.channels.axis())) > 2
        self.link_planes.setEnabled(
            stack and self.scope.currentText() == WHOLE_STACK
            and self.output.currentText() == INSTANCES
        )
