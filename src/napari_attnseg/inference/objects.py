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

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.input_spec import InputSpec
from ..models.card import ModelCard
from ..objects import (
    cells_from_membranes,
    field_of_view,
    instances_from_foreground,
    instances_from_head,
    object_diameters,
)
from ..progress import CancelToken
from ..size_setting import check_size

ROI_METHODS = {"fundus": field_of_view}
#: how far an image may be resampled to match the training object size
MAX_ZOOM = 8.0
#: zoom factors this close to 1 are not worth resampling for
ZOOM_TOLERANCE = 1.2
DIAMETER_CHOICES = ("auto",)


def check_diameter(value: Any) -> float | str | None:
    """``None`` (the card's scale as trained), ``"auto"`` or a positive number of pixels
    (:func:`~napari_attnseg.size_setting.check_size`)."""
    return check_size(value, "object diameter")


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


#: foreground probabilities in this open interval count as ambiguous
AMBIGUOUS = (0.25, 0.75)
#: the measuring pass of auto size sees the image at this zoom: 0.45² ≈ 20 % of the pixels,
#: so it costs at most a fifth of the prediction it decides
MEASURING_ZOOM = 0.45
#: the smallest side worth a measuring pass (pixels as the network sees it)
MIN_MEASURING_SIDE = 48
#: objects found by a pass are credible only if there are at least this many …
MIN_CREDIBLE_OBJECTS = 5
#: … they are at least this many pixels across as the network saw them …
MIN_SEEN_DIAMETER = 3.0
#: … and the network called them confidently: mean 2p − 1 over the pixels it called object,
#: times the share of its likely pixels (p > 0.25) that it did decide (p ≥ 0.75 or below
#: 0.25) — the per-image confidence without the size term. Noise, a phase-contrast cell and
#: a blank image score 0.0–0.25 with the nuclei default, fluorescence images ≥ 0.6
#: (docs/objects.md, "Confidence")
MIN_PASS_CONFIDENCE = 0.3
#: the resampling auto size may apply when the card names no ``zoom_range``
DEFAULT_ZOOM_RANGE = (0.25, 4.0)


def foreground_confidence(foreground: np.ndarray) -> float:
    """Mean confidence ``2p - 1`` over the pixels called foreground (0 when there are none)."""
    called = np.asarray(foreground)[np.asarray(foreground) >= 0.5]
    return float(np.mean(2.0 * called - 1.0)) if called.size else 0.0


def ambiguous_share(foreground: np.ndarray) -> float:
    """Share of the likely pixels (p above :data:`AMBIGUOUS`'s low end) whose probability is
    ambiguous (inside :data:`AMBIGUOUS`); 0 when no pixel is likely."""
    low, high = AMBIGUOUS
    likely = np.asarray(foreground)[np.asarray(foreground) > low]
    return float(np.mean(likely < high)) if likely.size else 0.0


@dataclass(frozen=True)
class Measurement:
    """What one pass of the network says about the objects' size in an image."""

    #: median object diameter in pixels of the image (None: fewer than two objects)
    diameter: float | None
    objects: int
    #: mean foreground confidence (2p − 1) over the pixels called object, times the share of
    #: likely pixels that are not ambiguous
    confidence: float
    #: the zoom (× working scale) the pass saw the image at
    seen_at: float
    #: why the objects are not credible ("" when they are)
    doubt: str = ""

    @property
    def credible(self) -> bool:
        return not self.doubt

    def describe(self) -> str:
        return (
            f"{self.objects} object(s), median {self.diameter or 0:.1f} px, "
            f"confidence {self.confidence:.2f}"
        )


def measure(
    foreground: np.ndarray,
    *,
    image_pixels: float = 1.0,
    network_pixels: float = 1.0,
    labels: np.ndarray | None = None,
) -> Measurement:
    """The objects one pass found: ``foreground`` is its probability on some grid, one pixel
    of which is ``image_pixels`` pixels of the image and ``network_pixels`` pixels as the
    network saw them; ``labels`` its objects on that grid (when the model made them; else
    the watershed of the mask). Diameters come back in pixels of the image."""
    foreground = np.asarray(foreground, dtype=np.float32)
    if labels is None:
        labels = instances_from_foreground(foreground, threshold=0.5)
    diameters = object_diameters(labels)
    # sure of what it called object, and few pixels left undecided (noise: many)
    confidence = foreground_confidence(foreground) * (1.0 - ambiguous_share(foreground))
    grid = float(np.median(diameters)) if diameters.size >= 2 else None
    seen = None if grid is None else grid * network_pixels
    doubt = ""
    if diameters.size < MIN_CREDIBLE_OBJECTS:
        doubt = f"only {diameters.size} object(s) found"
    elif seen < MIN_SEEN_DIAMETER:
        doubt = f"objects only {seen:.1f} px across as the network saw them"
    elif confidence < MIN_PASS_CONFIDENCE:
        doubt = f"low confidence ({confidence:.2f} < {MIN_PASS_CONFIDENCE})"
    diameter = None if grid is None else grid * image_pixels
    return Measurement(diameter, int(diameters.size), confidence, network_pixels / image_pixels,
                       doubt)


def measuring_zoom(spec: InputSpec, size: tuple[int, int]) -> float | None:
    """The zoom of the reduced-resolution measuring pass, or None when the image is too
    small for one (its side would drop under :data:`MIN_MEASURING_SIDE`)."""
    if min(size) * spec.scale * MEASURING_ZOOM < MIN_MEASURING_SIDE:
        return None
    return MEASURING_ZOOM


def zoom_range(card: ModelCard) -> tuple[float, float]:
    """The resampling auto size may apply: the card's ``zoom_range``, else the default."""
    low, high = card.zoom_range or DEFAULT_ZOOM_RANGE
    return float(low), float(high)


def auto_zoom(card: ModelCard, spec: InputSpec, diameter: float) -> float:
    """The zoom auto size applies to objects of ``diameter`` px (measured, credible): 1 inside
    the card's trained size range, else towards the median training size, clipped to
    :func:`zoom_range`."""
    zoom = zoom_for(card, spec, diameter)
    if zoom == 1.0:
        return 1.0
    low, high = zoom_range(card)
    return float(np.clip(zoom, low, high))


def size_note(card: ModelCard, spec: InputSpec, measurement: Measurement, zoom: float) -> str:
    """What auto size tells the user about its decision."""
    low, high = card.object_diameter_range or (card.object_diameter, card.object_diameter)
    low, high = f"{low / spec.scale:.0f}", f"{high / spec.scale:.0f}"
    trained = f"trained on {low} px" if low == high else f"trained on {low}–{high} px"
    if not measurement.credible:
        return (f"object size not measured ({measurement.doubt}): predicted at the "
                "trained scale, not resampled")
    if zoom == 1.0:
        return f"objects ~{measurement.diameter:.0f} px across ({trained}): not resampled"
    return (f"objects ~{measurement.diameter:.0f} px across ({trained}): "
            f"image resampled ×{zoom:.2f}")


#: the per-image confidence below which a prediction is flagged, when the card names none
#: (``metadata.confidence_threshold``, calibrated on the model's validation images)
DEFAULT_CONFIDENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class Assessment:
    """How much to trust one image's objects: the prediction checked against the card."""

    objects: int
    #: mean confidence ``2p − 1`` over the pixels called object (1: all certain)
    certainty: float
    #: share of the pixels with p > 0.25 whose probability is ambiguous (0.25 < p < 0.75)
    ambiguous: float
    #: share of the objects whose size lies in the trained range, widened 2× either way
    #: (1 for a model without an object size)
    size_agreement: float
    #: certainty × (1 − ambiguous) × size agreement: one number in [0, 1]
    confidence: float
    threshold: float
    #: the image holds one value everywhere: whatever the network found there is an artefact
    blank: bool = False

    @property
    def low(self) -> bool:
        return self.blank or self.objects == 0 or self.confidence < self.threshold

    def warning(self, what: str = "objects") -> str:
        """"" when the image looks like the training data, else what is wrong."""
        if self.blank:
            return f"the image is blank (one value everywhere): no {what} to find"
        if self.objects == 0:
            return f"no {what} found: the image may be unlike the training data"
        if not self.low:
            return ""
        causes = {
            "uncertain": 1.0 - self.certainty,
            "ambiguous": self.ambiguous,
            "sized unlike the training objects": 1.0 - self.size_agreement,
        }
        cause = max(causes, key=causes.get)
        return (f"few confident {what} (confidence {self.confidence:.2f} < {self.threshold:.2f}, "
                f"mostly {cause}): the image may be unlike the training data")

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "confidence": round(self.confidence, 4),
            "certainty": round(self.certainty, 4),
            "ambiguous": round(self.ambiguous, 4),
            "size_agreement": round(self.size_agreement, 4),
            "threshold": self.threshold,
            "blank": self.blank,
            "warning": self.warning(),
        }


def assesses(card: ModelCard) -> bool:
    """Whether predictions of this card get an :class:`Assessment`: models that make
    countable objects from their foreground (not cells from membranes, not semantic masks)."""
    recipe = instance_recipe(card)
    return recipe is not None and recipe.get("source") != "cells"


def confidence_threshold(card: ModelCard) -> float:
    return float((card.metadata or {}).get("confidence_threshold", DEFAULT_CONFIDENCE_THRESHOLD))


def assess(
    card: ModelCard,
    spec: InputSpec,
    foreground: np.ndarray,
    labels: np.ndarray,
    zoom: float = 1.0,
    *,
    blank: bool = False,
) -> Assessment:
    """The per-image confidence of a prediction: ``foreground`` probabilities and the
    ``labels`` (instances, or a mask) made from them, on the image's grid, predicted at
    ``zoom`` × the working scale; ``blank``: the image holds a single value (confidence 0)."""
    foreground = np.asarray(foreground, dtype=np.float32)
    labels = np.asarray(labels)
    if labels.dtype == bool or labels.max(initial=0) <= 1:
        labels = instances_from_foreground(labels > 0, method="components")
    diameters = object_diameters(labels.reshape(-1, *labels.shape[-2:]))
    certainty = foreground_confidence(foreground)
    ambiguous = ambiguous_share(foreground)
    agreement = 1.0
    if uses_diameter(card) and diameters.size:
        trained_low, trained_high = card.object_diameter_range or (
            card.object_diameter, card.object_diameter)
        working = diameters * spec.scale * zoom
        agreement = float(np.mean((working >= trained_low / 2) & (working <= trained_high * 2)))
    confidence = certainty * (1.0 - ambiguous) * agreement if diameters.size else 0.0
    return Assessment(int(diameters.size), certainty, ambiguous, agreement,
                      0.0 if blank else confidence, confidence_threshold(card), blank)


def instance_recipe(card: ModelCard) -> dict[str, Any] | None:
    """How the card makes instances (``None``: a semantic model)."""
    return dict(card.instances) if card.instances else None


def separation_head(card: ModelCard | None) -> str | None:
    """The card's separation head (``"bands"``, :mod:`napari_attnseg.data.targets`), or
    None for a model whose output is the classes themselves (binary and semantic models)."""
    return card.separation_head if card is not None else None


def foreground_pair(head_maps: np.ndarray) -> np.ndarray:
    """``(*stack, 2, H, W)`` [background, nucleus] probabilities of a separation head's
    ``(*stack, K, H, W)`` maps: every class but the background is the object."""
    background = head_maps[..., :1, :, :]
    return np.concatenate([background, 1.0 - background], axis=-3).astype(np.float32)


def make_instances(
    card: ModelCard,
    foreground: np.ndarray,
    *,
    threshold: float,
    diameter: float | None,
    cancel: CancelToken | None = None,
    head_maps: np.ndarray | None = None,
    stitch: float | None = None,
) -> np.ndarray:
    """Instance labels ``(*stack, H, W)`` of a foreground probability map, as the card says.

    A card without an ``instances`` recipe splits the foreground by seeded
    watershed — what a user asking for instances of any binary model means. A
    card with a separation head (``{"method": "bands", "decode": ...}``) decodes
    ``head_maps`` (``(*stack, K, H, W)``) with
    :func:`~napari_attnseg.objects.instances_from_head`. A stack's planes are labelled
    one by one; with ``stitch`` (an IoU), objects that overlap from one plane to the next
    along the last stack axis are given one id (:func:`~napari_attnseg.objects.stitch_planes`).
    """
    recipe = instance_recipe(card) or {"method": "watershed"}
    flat = foreground.reshape(-1, *foreground.shape[-2:])
    head = separation_head(card)
    if head is not None:
        if head_maps is None:
            raise ValueError(f"model {card.name or '?'} has a {head!r} head: pass its maps")
        maps = head_maps.reshape(-1, *head_maps.shape[-3:])
        labels = instances_from_head(
            maps,
            head=head,
            decode=recipe.get("decode", "centre"),
            threshold=threshold,
            diameter=diameter,
            cancel=cancel,
        )
    elif recipe.get("source") == "cells":
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
    labels = labels.reshape(foreground.shape)
    if stitch and labels.ndim >= 3:
        from ..objects.stitch import stitch_planes

        labels = stitch_planes(labels, float(stitch), cancel=cancel)
    return labels
