"""The Segment widget's form parts: the choices it offers and the diameter field.

:class:`DiameterField` takes an object (or field-of-view) diameter: *auto*,
*as trained*, or a number of pixels typed in.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QWidget

from ..inference.objects import check_diameter

WHOLE_STACK, CURRENT_SLICE = "whole stack", "current slice"
AS_TRAINED = "as trained"
LAYERS, FOLDER = "all image layers", "a folder of images…"
DIAMETER_HELP = (
    "the objects' diameter in pixels of this image. auto: measured on a first pass, then the "
    "image is rescaled so objects match the size the model was trained on; as trained: no "
    "rescaling; or type a number of pixels"
)
NO_DIAMETER_HELP = (
    "this model's card records no object size: images are segmented at the scale it was "
    "trained at"
)
FOV_HELP = (
    "fundus models: the diameter in pixels of the photograph's field of view (the bright disc "
    "of the retina). auto: measured, and the photograph is rescaled so that it matches the "
    "training photographs' (another camera shows vessels wider or narrower than the model "
    "learned); as trained: no rescaling; or type a number of pixels"
)


class DiameterField(QComboBox):
    """auto / as trained / a number of pixels (typed)."""

    def __init__(self, parent: QWidget | None = None, *, what: str = "object diameter",
                 help_text: str = DIAMETER_HELP) -> None:
        super().__init__(parent)
        self.what = what
        self.setEditable(True)
        self.addItems(["auto", AS_TRAINED])
        self.setToolTip(help_text)

    def value(self) -> float | str | None:
        """``"auto"``, None (as trained) or pixels; ``ValueError`` naming a bad entry."""
        text = self.currentText().strip()
        if text == AS_TRAINED:
            return None
        try:
            return check_diameter(text or "auto")
        except ValueError:
            raise ValueError(
                f"{self.what} must be 'auto', '{AS_TRAINED}' or a number of pixels > 0, "
                f"got {text!r}"
            ) from None
