"""What one Segment run does off the GUI thread, and how its outcome is put in words.

:class:`SegmentRequest` is everything captured on the GUI thread (the layer's
array, not copied; the settings; a region-of-interest mask). The worker
(:func:`run_segmentation`) loads its own copy of the model, predicts through
:class:`~napari_attnseg.inference.Predictor` — which makes instance labels,
matches the object size and applies the region as the settings and the
model card say — and measures the objects (:func:`._objects.measure`), so the
GUI thread only writes layers. :func:`status_text` says what the run did:
objects found, the diameter and zoom it worked at, the region used.

A lazily loaded selection (a Dask or zarr array, e.g. an OME-Zarr layer) of
more than :data:`BLOCKWISE_PIXELS` pixels is never loaded whole:
:func:`run_blockwise` predicts it block by block
(:mod:`napari_attnseg.inference.blockwise`) into a zarr store in a temporary
folder owned by this session (:func:`new_store`), and the result's arrays are
that store's (zarr-backed layers). Progress counts blocks; a cancelled or
failed run deletes its store. What block-wise prediction cannot do (instance
labels and their table, the object-diameter resampling, the model's own
automatic region) is skipped with a message saying so; a user's region is
applied block by block.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inference import InferenceSettings, Predictor
from ..models.card import ModelCard
from ..progress import check
from ._jobs import JobContext
from ._layers import plane_key
from ._models import ModelChoice, session
from ._objects import measure

try:  # the optional 'distributed' extra: without it no layer is lazy in these types
    import dask.array as _da
except ImportError:  # pragma: no cover - napari itself depends on dask
    _da = None
try:
    import zarr as _zarr
except ImportError:  # pragma: no cover - zarr comes with the 'distributed' extra
    _zarr = None

INSTANCES, MASK = "instances", "mask"
#: a lazily loaded selection (Dask or zarr array) of more pixels than this is predicted block
#: by block into a zarr store instead of being loaded whole
BLOCKWISE_PIXELS = 4096 * 4096
#: the block edge of the widget's block-wise runs (at least the tile size); also the zarr chunk
BLOCK_SIZE = 2048
#: the name prefix of the temporary folders that hold block-wise results
STORE_PREFIX = "napari-attnseg-blockwise-"


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
    #: instances, roi, stitch)
    settings: dict[str, Any]
    probability: bool
    #: a user region (nonzero = inside) on the image's grid, and what it was made from
    roi: np.ndarray | None = None
    roi_name: str | None = None
    #: the placement of a layer that holds only the ``index`` slice (block-wise results)
    slice_placement: dict[str, Any] | None = None

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
    #: the temporary zarr store of a block-wise result (``labels`` and ``probability`` are
    #: its zarr arrays, shaped like the selection: ``(1, …, 1, H, W)`` for a slice)
    store: Path | None = None
    #: how much to trust the objects (``inference.objects.Assessment.as_dict``), if assessed
    quality: dict | None = None

    @property
    def n_objects(self) -> int | None:
        return None if self.table is None else int(len(self.table["label"]))


def run_segmentation(request: SegmentRequest, ctx: JobContext) -> SegmentResult:
    """The worker's job: load a private model copy, predict, measure the objects."""
    if is_lazy(request.data) and selection_pixels(request) > BLOCKWISE_PIXELS:
        if _zarr is not None:
            return run_blockwise(request, ctx)
        ctx.message(
            f"{request.image_name} is too large to segment block by block without zarr "
            "(pip install 'napari-attnseg[distributed]'): loading it whole"
        )
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
        quality=prediction.quality.as_dict() if prediction.quality is not None else None,
    )


def offset_objects(
    labels: np.ndarray, table: dict[str, np.ndarray] | None, offset: int
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Instance labels (and their table) with every object's id raised by ``offset``.

    A slice segmented on its own numbers its objects 1..n; written into a Labels
    layer of the whole stack, they must not reuse the ids of the other slices.
    Background stays 0; the dtype grows when the ids need it.
    """
    if offset <= 0:
        return labels, table
    labels = np.asarray(labels)
    high = int(labels.max()) + offset if labels.size else offset
    dtype = np.uint32 if high <= np.iinfo(np.uint32).max else np.uint64
    shifted = np.where(labels > 0, labels.astype(dtype) + dtype(offset), 0).astype(dtype)
    if table is not None:
        table = {**table, "label": np.asarray(table["label"]) + offset}
    return shifted, table


# -- block-wise (large lazily loaded layers) ----------------------------------------------
def is_lazy(data: Any) -> bool:
    """Whether ``data`` is read on demand (a Dask or zarr array) rather than held in memory."""
    kinds = tuple(t for t in (getattr(_da, "Array", None), getattr(_zarr, "Array", None)) if t)
    return isinstance(data, kinds)


def selection_pixels(request: SegmentRequest) -> int:
    """Pixels (per channel) of what the request segments: one slice, or the whole array."""
    shape = request.shape[-2:] if request.index else request.shape
    return math.prod(int(s) for s in shape)


def lazy_selection(request: SegmentRequest) -> Any:
    """The selection as a lazy array; a slice keeps its stack axes as ones, ``(1, …, H, W)``."""
    data = request.data
    if not request.index:
        return data
    if not isinstance(data, _da.Array):
        data = _da.from_array(data, chunks=data.chunks)
    data = data[plane_key(request.index, request.channel_axis)]
    ones = (None,) * len(request.index)
    return data[(slice(None), *ones)] if request.channel_axis == 0 else data[ones]


def blockwise_settings(
    request: SegmentRequest, card: ModelCard
) -> tuple[InferenceSettings, list[str]]:
    """The settings a block-wise run can honour, and a note for each one it cannot
    (:func:`~napari_attnseg.inference.blockwise.blockwise_settings`)."""
    from ..inference import blockwise

    settings = dict(request.settings)
    if settings.get("tile_size") is None:
        raise ValueError(
            f"{request.image_name} is segmented block by block (a lazily loaded image of more "
            f"than {BLOCKWISE_PIXELS} pixels), which needs tiles: choose a tile size (Advanced)"
        )
    settings.update(instances=request.instances)
    if request.roi is not None:  # the user's region is applied block by block
        settings.update(roi="none")
    return blockwise.blockwise_settings(InferenceSettings(**settings), card)


def run_blockwise(request: SegmentRequest, ctx: JobContext) -> SegmentResult:
    """Predict a large lazy selection block by block into a new temporary zarr store."""
    from ..inference import blockwise

    model = session().load(request.choice)
    card = model.card if model.card is not None else ModelCard(name=model.name)
    settings, notes = blockwise_settings(request, card)
    notes = [f"{request.image_name} segmented block by block: {n}" for n in notes]
    for note in notes:
        ctx.message(note)
    folder = new_store()
    try:
        ctx.progress(0, 0, "normalisation statistics")
        try:
            plan = blockwise.prepare_blockwise(
                model, lazy_selection(request), folder / "segmentation.zarr", settings,
                chunk=max(BLOCK_SIZE, settings.tile_size), rgb=request.rgb,
                channel_axis=request.channel_axis, probabilities=request.probability,
            )
        except ValueError as exc:
            raise ValueError(
                f"{request.image_name} is too large to load whole ({selection_pixels(request)} "
                f"pixels) and cannot be segmented block by block: {exc}"
            ) from exc
        plan.run(progress=ctx.progress, cancel=ctx.cancel)
        if request.roi is not None:
            _keep_inside(plan, request, ctx)
    except BaseException:
        discard_store(folder)
        raise
    return SegmentResult(
        request, plan.labels, plan.probabilities, [*notes, *plan.messages],
        restricted=request.roi is not None, store=folder,
    )


def _keep_inside(plan: Any, request: SegmentRequest, ctx: JobContext) -> None:
    """Zero the labels (and foreground probability) outside the user's region, block by block."""
    roi = request.roi
    if request.index and roi.ndim > 2:
        roi = roi[request.index]
    roi = np.broadcast_to(roi, plan.labels.shape)
    outputs = [a for a in (plan.labels, plan.probabilities) if a is not None]
    for n, block in enumerate(plan.blocks):
        check(ctx.cancel)
        ctx.progress(n, len(plan.blocks), "applying the region")
        outside = roi[block.output] == 0
        if outside.any():
            for array in outputs:
                values = array[block.output]
                values[outside] = 0
                array[block.output] = values


#: the temporary stores this session made and has not deleted yet
_STORES: set[Path] = set()


def new_store() -> Path:
    """A new temporary folder for a block-wise result (deleted with its layers, or at exit)."""
    folder = Path(tempfile.mkdtemp(prefix=STORE_PREFIX))
    _STORES.add(folder)
    return folder


def discard_store(folder: Path | str) -> None:
    folder = Path(folder)
    if folder in _STORES:
        _STORES.discard(folder)
        shutil.rmtree(folder, ignore_errors=True)


@atexit.register
def _discard_all() -> None:
    for folder in list(_STORES):
        discard_store(folder)


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
