"""The one parser of a size setting: ``"auto"``, ``"none"`` or a number of pixels.

The object diameter (:attr:`InferenceSettings.diameter`) and the field of view
(:attr:`InferenceSettings.fov_diameter`) take the same values, from Python, the
command line and the docks: ``"auto"`` (measure the image and match the model's
card), ``None`` or ``"none"`` (predict at the scale the model was trained at) or a
positive, finite number of pixels (given as a number or as text).
"""

from __future__ import annotations

import math
from typing import Any


def check_size(value: Any, what: str) -> float | str | None:
    """``"auto"``, ``None`` or a positive finite float; anything else is refused by name."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "none"):
            return None if text == "none" else "auto"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"{what} must be 'auto', 'none' or a number of pixels, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{what} must be 'auto', 'none' or a number of pixels > 0, got {value!r}")
    return float(value)
