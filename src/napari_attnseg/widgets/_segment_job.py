"""What one Segment run does off the GUI thread, and how its outcome is put in words.

:class:`SegmentRequest` is everything captured on the GUI thread (the layer's
array, not copied; the settings; a region-of-interest mask). The worker
(:func:`run_segmentation`) loads its own copy of the model, predicts through
:class:`~napari_attnseg.inference.Predictor` — which makes instance labels,
matches the object size and applies the region as the settings and the
model card say — and measures the objects (:func:`._objects.measure`), so the
GUI thread only writes layers. :func:`status_text` says what the run did:
objects found, the diameter and zoom it worked at, the region used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..inference import InferenceSettings, Predictor
from ._jobs import JobContext
from ._layers import plane_key
from ._models import ModelChoice, session
from ._objects import measure

INSTANCES, MASK = "instances", "mask"


@dataclass
class SegmentRequest:
    """Everything a segmentation job needs, captured on the GUI thread."""

    image_name: str
    data: Any  # the layer's array (not copied)
    rgb: bool
    channel_axis: int | None  # 0, -1 or None (see ChannelPicker)
    shape: tuple[int, ...]  # spatial shape (*stack, H, W)
    index: tuple[int, ...] | None  # a stack slice, or None for everything
    placement: dict[str, Any]
    choice: ModelChoice
    #: InferenceSettings fields (device, tta, threshold, tile_size, precision, diameter,
    #: instances, roi)
    settings: dict[str, Any]
    probability: bool
    #: a user region (nonzero = inside) on the image's grid, and what it was made from
    roi: np.ndarray | None = None
    roi_name: str | None = None

    @property
    def instances(self) -> bool:
        return bool(self.settings.get("instances"))


@dataclass
class SegmentResult:
    request: SegmentRequest
    labels: np.ndarray  # shaped like the request: (H, W) for a slice, else ``shape``
    probability: np.ndarray | None
    messages: list[str] = field(default_factory=list)
    #: per-object measurements (instances only)
    table: dict[str, np.ndarray] | None = None
    diameter: float | None = None
    zoom: float = 1.0
    #: whether a region restricted the prediction (the user's or the model's)
    restricted: bool = False

    @property
    def n_objects(self) -> int | None:
        return None if self.table is None else int(len(self.table["label"]))


def run_segmentation(request: SegmentRequest, ctx: JobContext) -> SegmentResult:
    """The worker's job: load a private model copy, predict, measure the objects."""
    model = session().load(request.choice)  # this job's own copy
    predictor = Predictor(InferenceSettings(**request.settings), on_message=ctx.message)
    image = np.asarray(request.data[plane_key(request.index or (), request.channel_axis)])
    roi = request.roi
    if roi is not None and request.index and roi.ndim > 2:
        roi = roi[request.index]
    prediction = predictor.predict(model, image, rgb=request.rgb,
                                   channel_axis=request.channel_axis, roi=roi,
                                   progress=ctx.progress, cancel=ctx.cancel)
    table = None
    if request.instances and prediction.instances is not None:
        labels = prediction.instances
        ctx.progress(1, 1, "measuring the objects")
        table = measure(labels, None if request.channel_axis is not None else image)
    else:
        labels = prediction.labels
    probability = prediction.foreground.astype(np.float32) if request.probability else None
    return SegmentResult(
        request, labels, probability, list(prediction.messages), table,
        prediction.diameter, float(prediction.zoom), prediction.roi is not None,
    )


def status_text(result: SegmentResult) -> str:
    """One line on what the run did (objects, diameter and zoom, region)."""
    request = result.request
    parts = []
    if result.n_objects is not None:
        n = result.n_objects
        parts.append(f"{n} object{'s' * (n != 1)}")
    else:
        parts.append("mask")
    if result.diameter is not None:
        how = request.settings.get("diameter")
        source = {"auto": "auto", None: "as trained"}.get(how, "given")
        parts.append(f"object diameter {result.diameter:.1f} px ({source}), "
                     f"zoom ×{result.zoom:.2f}")
    if request.roi_name:
        parts.append(f"inside {request.roi_name}")
    elif result.restricted:
        parts.append("inside the model's region")
    text = "done: " + "; ".join(parts)
    if result.messages:
        text += " — " + "; ".join(m.rstrip(".") for m in result.messages)
    return text
