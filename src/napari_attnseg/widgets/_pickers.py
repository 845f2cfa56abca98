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

The pickers live in :mod:`._pickers_combo` (:class:`ElidingCombo`),
:mod:`._pickers_models` (model, device) and :mod:`._pickers_layers` (layer,
channel); this module names them all.
"""

from ._pickers_combo import ElidingCombo, compact
from ._pickers_layers import MADE_BY_PLUGIN, ROLE_WORDS, ChannelPicker, LayerPicker, layer_entry
from ._pickers_models import DevicePicker, ModelPicker

__all__ = [
    "MADE_BY_PLUGIN",
    "ROLE_WORDS",
    "ChannelPicker",
    "DevicePicker",
    "ElidingCombo",
    "LayerPicker",
    "ModelPicker",
    "compact",
    "layer_entry",
]
