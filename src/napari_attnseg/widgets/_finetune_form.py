"""The Fine-tune widget's inputs: (image, labels) pair rows and the training settings form.

:class:`PairRow` picks an image layer, the labels painted on it and (for a
grey image whose first or last axis is short) its channel axis.
:class:`SettingsForm` holds the training settings and turns them into a
validated :class:`~._finetune_job.FinetuneSettings`; the expert ones (loss,
FDPT ε, validation fraction, patches per epoch, precision) sit in a collapsed
*Advanced* section.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Image, Labels
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..losses import LOSSES
from ..training.interactive import DENSE_EPSILON, SPARSE_EPSILON
from ._finetune_job import FinetuneSettings
from ._form import PRECISION_HELP, advanced_section, precision_picker
from ._pickers import ChannelPicker, DevicePicker, ElidingCombo, LayerPicker

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
LOSS_HELP = (
    "training loss. Default: the asymmetric Unified Focal loss (Yeung et al.), which keeps "
    "small and rare objects from being ignored; dice, focal, tversky, … are alternatives"
)
PATCHES_HELP = (
    "random training patches per epoch; auto: enough to cover the annotated images about "
    "once (8–64)"
)
TRAIN_PRECISION_HELP = (
    PRECISION_HELP + ". Weights stay float32 and the loss is computed in float32"
)
VALIDATION_HELP = (
    "held out for the validation curve: whole pairs when there are several, else grid tiles "
    "of the single image (ignored in training). Sparse labels are validated on held-out "
    "scribbles only, which says little about whole objects."
)


class PairRow(QWidget):
    """An (image layer, labels layer) pair, its channel axis, and a remove button."""

    remove_requested = Signal(object)

    def __init__(self, viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image_picker = LayerPicker(viewer, Image)
        self.labels_picker = LayerPicker(viewer, Labels)
        self.channels = ChannelPicker()
        self.image_picker.setToolTip("image: the image that was annotated")
        self.labels_picker.setToolTip("labels: the labels painted on it (never modified)")
        self.image_picker.layer_changed.connect(self._update_channels)
        self._update_channels()
        remove = QPushButton("✕")
        remove.setFixedWidth(28)
        remove.setToolTip("remove this pair")
        remove.clicked.connect(self._request_removal)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image_picker, 1)
        layout.addWidget(self.channels)
        layout.addWidget(self.labels_picker, 1)
        layout.addWidget(remove)

    def _update_channels(self, *_: Any) -> None:
        self.channels.set_layer(self.image_picker.layer())
        self.channels.setVisible(self.channels.offered)  # rows stay narrow otherwise

    def _request_removal(self) -> None:
        self.remove_requested.emit(self)


class SettingsForm(QWidget):
    """Model-independent training settings of a round (the device included)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device_picker = DevicePicker()
        self.mode = ElidingCombo()
        self.mode.addItems(MODES)
        self.mode.setToolTip(MODE_HELP)
        self.loss = ElidingCombo()
        self.loss.addItems(LOSSES)
        self.loss.setCurrentText("unified_focal")
        self.loss.setToolTip(LOSS_HELP)
        self.epsilon = QDoubleSpinBox()
        self.epsilon.setRange(0.0, 1.0)
        self.epsilon.setSingleStep(0.05)
        self.epsilon.setValue(DENSE_EPSILON)
        self.epsilon.setToolTip(EPSILON_HELP)
        self.mode.currentTextChanged.connect(self._mode_changed)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10000)
        self.epochs.setValue(20)
        self.epochs.setToolTip("passes over the training patches; Stop and keep ends earlier")
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
        self.val_fraction.setToolTip(VALIDATION_HELP)
        self.patches = QSpinBox()
        self.patches.setRange(0, 10000)
        self.patches.setSpecialValueText("auto")
        self.patches.setToolTip(PATCHES_HELP)
        self.precision = precision_picker(TRAIN_PRECISION_HELP)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("labels", self.mode)
        form.addRow("epochs", self.epochs)
        form.addRow("time limit", self.time_budget)
        form.addRow("learning rate", self.lr)
        form.addRow("", self.augment)
        expert = QFormLayout()
        expert.addRow("device", self.device_picker)
        expert.addRow("loss", self.loss)
        expert.addRow("FDPT ε", self.epsilon)
        expert.addRow("validation", self.val_fraction)
        expert.addRow("patches/epoch", self.patches)
        expert.addRow("precision", self.precision)
        self.advanced = advanced_section(expert)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced)

    def _mode_changed(self, mode: str) -> None:
        self.epsilon.setValue(SPARSE_EPSILON if mode == "sparse" else DENSE_EPSILON)

    def settings(self) -> FinetuneSettings:
        """The settings as entered; ``ValueError`` naming the field that is not usable."""
        try:
            lr = float(self.lr.text())
        except ValueError:
            raise ValueError(f"learning rate {self.lr.text()!r} is not a number") from None
        if not 0 < lr < 1:
            raise ValueError(f"learning rate must be between 0 and 1, got {lr:g}")
        budget = self.time_budget.value()
        return FinetuneSettings(
            mode=self.mode.currentText(), loss=self.loss.currentText(),
            epsilon=self.epsilon.value(), epochs=self.epochs.value(),
            time_budget_s=budget * 60 if budget > 0 else None, lr=lr,
            augment=self.augment.isChecked(), val_fraction=self.val_fraction.value(),
            device=self.device_picker.device(), patches_per_epoch=self.patches.value() or None,
            precision=self.precision.currentText(),
        )
