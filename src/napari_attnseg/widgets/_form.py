"""Form parts the docks share: the collapsed *Advanced* section and the precision picker.

Expert settings sit in a section that starts collapsed (superqt's
``QCollapsible``), each with a tooltip saying what it does, so a first-time
user meets only the settings that matter to every run.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFormLayout, QWidget
from superqt import QCollapsible

from ..inference.device import PRECISIONS
from ._pickers import ElidingCombo

PRECISION_HELP = (
    "auto: bfloat16 where the hardware computes it natively (recent CPUs and GPUs), else "
    "float32; fp32: full precision (exact); bf16 / fp16: faster where supported, with tiny "
    "differences in the result"
)


def advanced_section(form: QFormLayout, title: str = "Advanced") -> QCollapsible:
    """A collapsed section holding ``form``."""
    box = QCollapsible(title, expandedIcon="▾", collapsedIcon="▸")
    box.setDuration(0)  # no animation: the dock resizes at once
    inner = QWidget()
    form.setContentsMargins(0, 0, 0, 0)
    inner.setLayout(form)
    box.addWidget(inner)
    box.collapse(animate=False)
    return box


def precision_picker(help_text: str = PRECISION_HELP) -> QComboBox:
    """auto / fp32 / bf16 / fp16 (``InferenceSettings.precision``, ``TrainConfig.precision``)."""
    combo = ElidingCombo()
    combo.addItems(PRECISIONS)
    combo.setToolTip(help_text)
    return combo
