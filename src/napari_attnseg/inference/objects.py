"""What the model card says about objects: region of interest, object size, instance labels.

The predictor asks this module three questions about a model and an image;
the answers come from the card's ``roi``, ``object_diameter`` and
``instances`` fields and the functions of :mod:`napari_attnseg.objects`:

* **Where to predict** (:func:`automatic_roi`): a card with
  ``roi = {"method": "fundus"}`` finds the field of view of a fundus
  photograph (:func:`~napari_attnseg.objects.field_of_view`); nothing is
  predicted outside it.
* **At what scale** (:func:`zoom_for`): a card records the median object
  diameter the network was trained on (pixels at its working scale). Given
  the objects' diameter in the user's image — in pixels, or ``"auto"``:
  measured on first passes at a few scales (:func:`best_measurement`) — the image is
  resampled so that its objects match the training size (Cellpose's idea,
  done with the model we have), through the one
  :class:`~napari_attnseg.data.InputSpec`, and the outputs are mapped back.
* **Which objects** (:func:`make_instances`): a card with
  ``instances = {"method": "watershed"}`` (countable blobs such as nuclei) or
  ``{"source": "cells", ...}`` (cells enclosed by membranes) turns the
  prediction into instance labels (0 = background, 1..N objects).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data.input_spec import InputSpec
from ..models.card import ModelCard
from ..objects import (
    cells_from_membranes,
    field_of_view,
    instances_from_foreground,
    median_diameter,
)
from ..progress import CancelToken

ROI_METHODS = {"fundus": field_of_view}
#: how far an image may be resampled to match the training object size
MAX_ZOOM = 8.0
#: zoom factors this close to 1 are not worth resampling for
ZOOM_TOLERANCE = 1.2
DIAMETER_CHOICES = ("auto",)


def check_diameter(value: Any) -> float | str | None:
    """``None`` (the card's scale as trained), ``"auto"`` or a positive number of pixels."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"object diameter must be 'auto' or a number of pixels, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"object diameter must be 'auto' or a number of pixels > 0, got {value!r}")
    return float(value)


def automatic_roi(card: ModelCard, plane: np.ndarray, *, rgb: bool) -> np.ndarray | None:
    """The card's automatic region of interest of one ``(H, W, C)`` plane (None: everywhere)."""
    if not card.roi:
        return None
    method = card.roi.get("method")
    if method not in ROI_METHODS:
        raise ValueError(
            f"the model card asks for an unknown region-of-interest method {method!r}; "
            f"known: {', '.join(ROI_METHODS)}"
        )
    image = plane if rgb else plane[..., 0]
    return ROI_METHODS[method](np.asarray(image))


def uses_diameter(card: ModelCard) -> bool:
    """Whether the card records an object size to match (and the input is not a fixed size)."""
    return bool(card.object_diameter) and not card.input_size


def zoom_for(card: ModelCard, spec: InputSpec, diameter: float) -> float:
    """The extra resampling factor that brings objects of ``diameter`` px to the trained size.

    Objects whose size (as the network would see them) lies within the range of
    the training images' sizes (``object_diameter_range``; else within
    ``ZOOM_TOLERANCE`` of the median) are left alone: the network has seen such
    sizes. Others are resampled to the median training size.
    """
    working = float(diameter) * spec.scale
    low, high = card.object_diameter_range or (
        card.object_diameter / ZOOM_TOLERANCE,
        card.object_diameter * ZOOM_TOLERANCE,
    )
    if low <= working <= high:
        return 1.0
    return _to_median(card, working)


def _to_median(card: ModelCard, working: float) -> float:
    """The zoom that brings objects of ``working`` px (as the network sees them unresampled)
    to the median training size, within ``MAX_ZOOM`` either way."""
    return float(np.clip(float(card.object_diameter) / working, 1.0 / MAX_ZOOM, MAX_ZOOM))


def trained_diameter(card: ModelCard, spec: InputSpec) -> float | None:
    """The object diameter (pixels of the user's image) the network sees unresampled."""
    if not uses_diameter(card):
        return None
    return float(card.object_diameter) / spec.scale


def measured_diameter(foreground: np.ndarray) -> float | None:
    """Median object diameter (pixels) of a foreground probability map, None if too few."""
    return median_diameter(np.asarray(foreground) >= 0.5)


#: the scales of the measuring passes: a network shown objects several times larger than
#: it was trained on fails outright (a nuclei model's native-size pass on 4× larger nuclei
#: found fragments 2.5 px across), so one pass at the trained scale cannot be trusted
MEASURING_ZOOMS = (1.0, 0.5, 0.25, 0.125)
#: the smallest side worth a measuring pass (pixels at the working scale)
MIN_MEASURING_SIDE = 48


def measuring_zooms(spec: InputSpec, size: tuple[int, int]) -> list[float]:
    """The zooms of the measuring passes for an image of ``size`` (the trained scale first)."""
    side = min(size) * spec.scale
    return [z for z in MEASURING_ZOOMS if z == 1.0 or side * z >= MIN_MEASURING_SIDE]


#: A measuring pass is believed only if it found about as much foreground, and about as
#: confidently, as the others: a network shown objects far larger than it was trained on
#: breaks them into small, faint fragments whose size is meaningless. On resampled DSB
#: images such a pass covered 3-7 % of the image against 17-33 % at the other zooms (the
#: foreground's share of the image does not depend on the zoom), with a mean foreground
#: confidence 0.07-0.27 below the best pass's.
FOREGROUND_SHARE = 0.5
CONFIDENCE_MARGIN = 0.1


def foreground_confidence(foreground: np.ndarray) -> float:
    """Mean confidence ``2p - 1`` over the pixels called foreground (0 when there are none)."""
    called = np.asarray(foreground)[np.asarray(foreground) >= 0.5]
    return float(np.mean(2.0 * called - 1.0)) if called.size else 0.0


def believed_passes(foregrounds: dict[float, np.ndarray]) -> dict[float, float]:
    """``{zoom: median object diameter (image pixels)}`` of the measuring passes to believe.

    ``foregrounds`` maps each measuring zoom to its foreground probability on the
    image's grid. Passes that found too few objects, less than
    :data:`FOREGROUND_SHARE` of the largest foreground area, or found it much less
    confidently than the most confident pass (:data:`CONFIDENCE_MARGIN`) saw
    fragments and are left out.
    """
    found = {}
    for zoom, foreground in foregrounds.items():
        measured = measured_diameter(foreground)
        if measured is not None:
            area = float(np.mean(np.asarray(foreground) >= 0.5))
            found[zoom] = (measured, area, foreground_confidence(foreground))
    if not found:
        return {}
    area = FOREGROUND_SHARE * max(a for _, a, _ in found.values())
    confident = max(c for _, _, c in found.values()) - CONFIDENCE_MARGIN
    return {z: m for z, (m, a, c) in found.items() if a >= area and c >= confident}


def closest_pass(
    card: ModelCard, spec: InputSpec, believed: dict[float, float]
) -> tuple[float | None, float | None]:
    """``(diameter, zoom)`` of the believed pass whose objects, as the network saw them
    (diameter × scale × zoom), came closest to the trained diameter; ``(None, None)``
    when no pass is believed."""
    best, best_error = (None, None), math.inf
    for zoom, measured in believed.items():
        error = abs(math.log(measured * spec.scale * zoom / float(card.object_diameter)))
        if error < best_error:
            best, best_error = (measured, zoom), error
    return best


def best_measurement(
    card: ModelCard, spec: InputSpec, foregrounds: dict[float, np.ndarray]
) -> tuple[float | None, float | None]:
    """The objects' diameter (image pixels) and the zoom of the pass that saw them closest
    to the trained size, among the passes to believe (:func:`believed_passes`)."""
    return closest_pass(card, spec, believed_passes(foregrounds))


def measured_zoom(
    card: ModelCard, spec: InputSpec, diameter: float, *, native_believed: bool
) -> float:
    """The zoom to predict at, given objects of ``diameter`` px measured by the passes.

    As :func:`zoom_for`, except that objects within the card's range are left alone
    only if the pass at the trained scale was believed (``native_believed``); if it
    saw fragments, the image is resampled so that the objects match the median
    training size.
    """
    zoom = zoom_for(card, spec, diameter)
    if zoom == 1.0 and not native_believed:
        zoom = _to_median(card, float(diameter) * spec.scale)
    return zoom


def instance_recipe(card: ModelCard) -> dict[str, Any] | None:
    """How the card makes instances (``None``: a semantic model)."""
    return dict(card.instances) if card.instances else None


def make_instances(
    card: ModelCard,
    foreground: np.ndarray,
    *,
    threshold: float,
    diameter: float | None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Instance labels ``(*stack, H, W)`` of a foreground probability map, as the card says.

    A card without an ``instances`` recipe splits the foreground by seeded
    watershed — what a user asking for instances of any binary model means.
    """
    recipe = instance_recipe(card) or {"method": "watershed"}
    flat = foreground.reshape(-1, *foreground.shape[-2:])
    if recipe.get("source") == "cells":
        labels = cells_from_membranes(
            flat,
            foreground=recipe.get("foreground", "interior"),
            threshold=threshold,
            method=recipe.get("method", "components"),
            diameter=diameter,
            cancel=cancel,
        )
    else:
        labels = instances_from_foreground(
            flat,
            threshold=threshold,
            diameter=diameter,
            method=recipe.get("method", "watershed"),
            cancel=cancel,
        )
    return labels.reshape(foreground.shape)
