"""Fundus photographs of any camera: match the field of view the model was trained on.

A vessel model learns vessel widths in pixels of its training photographs.
A camera with more pixels across the retina shows the same vessels wider, and
the model misses most of them (issue 25: Dice 0.39 on ~1000-px photographs
against 0.82 on DRIVE's own test half, 0.66 once rescaled by the ratio of the
fields of view). The field of view (the bright disc of the retina,
:func:`~napari_attnseg.objects.field_of_view`) is the ruler: its diameter
says how many pixels the retina spans, whatever the camera.

The card records the training photographs' field-of-view diameter
(``ModelCard.fov_diameter``, working pixels; DRIVE: 540 px across, measured by
``scripts/card_fov.py``). At prediction, ``InferenceSettings.fov_diameter``
(``attnseg predict --fov-diameter``, the Segment dock's *field of view*):

* ``"auto"`` (default): the field of view of the image (the middle plane of a
  stack) is measured — on a copy at most :data:`MEASURE_SIDE` px across, so it
  costs little — and the image is resampled so that it matches, then the
  prediction is mapped back. An image whose field of view is within
  :data:`FOV_TOLERANCE` of the training one is left alone; the zoom is clipped
  to the card's ``zoom_range`` (default :data:`DEFAULT_FOV_ZOOM_RANGE`). An
  image with no credible disc (no dark rim around a round bright region: not a
  fundus photograph, or one cropped inside the retina) is not resampled, and
  the note says so.
* a number: the field of view's diameter in pixels of this image, as the user
  knows it (no measuring);
* ``None``: predict at the trained scale.

It is the fundus counterpart of auto object size (:mod:`.objects`), with the
same honesty: a note always says what was measured and the zoom applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.input_spec import InputSpec
from ..models.card import ModelCard
from ..objects.fov import field_of_view
from ..size_setting import check_size

#: a field of view within this factor of the training one is not resampled
FOV_TOLERANCE = 1.1
#: the resampling auto field of view may apply, unless the card says otherwise
DEFAULT_FOV_ZOOM_RANGE = (0.25, 2.0)
#: the field of view is measured on a copy of at most this many pixels across
MEASURE_SIDE = 512
#: a credible field of view covers at least this share of the image…
MIN_SHARE = 0.2
#: …and at most this share of its bounding box (a disc fills π/4 ≈ 0.79 of it, a disc cut
#: by the top and bottom edges more; a bright rectangle — no dark rim — fills all of it)
MAX_BOX_FILL = 0.93


def check_fov(value: Any) -> float | str | None:
    """``None`` (the trained scale), ``"auto"`` or a positive number of pixels
    (:func:`~napari_attnseg.size_setting.check_size`)."""
    return check_size(value, "field of view")


def uses_fov(card: ModelCard) -> bool:
    """Whether the card records a field of view to match (and the input is not a fixed size)."""
    return bool(getattr(card, "fov_diameter", None)) and not card.input_size


@dataclass
class FovMeasurement:
    """The field of view found in an image: its diameter in pixels, or why there is none."""

    diameter: float | None
    doubt: str = ""

    @property
    def credible(self) -> bool:
        return self.diameter is not None


def measure_fov(plane: np.ndarray, *, rgb: bool) -> FovMeasurement:
    """The field-of-view diameter of one ``(H, W, C)`` plane (the larger side of the disc's
    bounding box: a disc cut by the image's top and bottom keeps its full width)."""
    image = np.asarray(plane if rgb else plane[..., 0])
    step = max(1, math.ceil(max(image.shape[:2]) / MEASURE_SIDE))
    small = image[::step, ::step]
    if not np.isfinite(small).all():
        small = np.nan_to_num(small, nan=0.0, posinf=0.0, neginf=0.0)
    return fov_of_mask(field_of_view(small), step)


def fov_of_mask(mask: np.ndarray, step: int = 1) -> FovMeasurement:
    """The diameter of a field-of-view mask (found on a copy reduced ``step`` times), with
    the checks that make it credible: a large share of the image, a dark rim around it."""
    share = float(mask.mean()) if mask.size else 0.0
    if share < MIN_SHARE:
        return FovMeasurement(None, "no bright disc with a dark rim found")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if mask.sum() / float(height * width) > MAX_BOX_FILL:
        return FovMeasurement(None, "no dark rim around the retina")
    return FovMeasurement(float(max(height, width) * step))


def fov_zoom(card: ModelCard, spec: InputSpec, diameter: float) -> float:
    """The resampling that brings a field of view of ``diameter`` px to the trained one:
    1 within :data:`FOV_TOLERANCE`, else the ratio clipped to the card's zoom range."""
    ratio = float(card.fov_diameter) / (float(diameter) * spec.scale)
    if 1 / FOV_TOLERANCE <= ratio <= FOV_TOLERANCE:
        return 1.0
    low, high = card.zoom_range or DEFAULT_FOV_ZOOM_RANGE
    return float(np.clip(ratio, low, high))


def fov_note(card: ModelCard, spec: InputSpec, found: FovMeasurement, zoom: float,
             *, given: bool = False) -> str:
    """What field-of-view matching tells the user about its decision."""
    trained = f"trained on {card.fov_diameter / spec.scale:.0f} px"
    if not found.credible:
        return (f"field of view not measured ({found.doubt}): predicted at the trained scale, "
                "not resampled")
    what = "taken as" if given else "~"
    sep = " " if given else ""
    head = f"field of view {what}{sep}{found.diameter:.0f} px across ({trained})"
    return f"{head}: not resampled" if zoom == 1.0 else f"{head}: image resampled ×{zoom:.2f}"


def match_fov(card: ModelCard, spec: InputSpec, setting: float | str, plane: np.ndarray, *,
              rgb: bool, region: np.ndarray | None = None) -> tuple[float | None, str]:
    """``(zoom, note)`` that match a photograph's field of view to the card's.

    ``setting`` is ``"auto"`` or a diameter in pixels (:func:`check_fov`); ``auto`` takes
    the diameter from ``region`` (a field-of-view mask already found, e.g. the card's
    automatic region) or else measures ``plane`` (``(H, W, C)``). ``zoom`` is None when no
    credible field of view was found (predict at the trained scale); the note says what
    was decided either way.
    """
    given = setting != "auto"
    if given:
        found = FovMeasurement(float(setting))
    elif region is not None:
        found = fov_of_mask(np.asarray(region, bool))
    else:
        found = measure_fov(plane, rgb=rgb)
    zoom = fov_zoom(card, spec, found.diameter) if found.credible else None
    return zoom, fov_note(card, spec, found, 1.0 if zoom is None else zoom, given=given)
