"""Block-wise prediction of one large image or stack into a zarr store, chunk by chunk, resumable.

An image too large for memory — a zarr / OME-Zarr store, a TIFF read piece
by piece (:mod:`napari_attnseg.data.lazy`), a Dask array (a lazily loaded
napari layer) — is cut into blocks of ``chunk``×``chunk`` pixels per plane.
Each block is one task: read the block plus a halo, run
``Predictor.predict`` on it, crop the halo, write the block into the output
zarr (``labels``, optionally ``probabilities``; chunked like the blocks, so
every task writes its own chunks) and set the block's flag in ``done``. A
stopped run **resumes**: blocks whose flag is set are skipped; the output's
attributes record the model hash, settings, input and block size, and a run
with other ones is refused unless ``overwrite=True``. Memory per task is
bounded by the block and its halo, never the image.

Why the blocks show no seams, and how close they are to one whole-image call:

* **Normalisation.** Most cards normalise per image (z-score, percentile,
  min-max); computed per block it would jump from block to block. So the
  statistics are computed once per plane over the whole plane — for planes up
  to :data:`EXACT_STATISTICS_PIXELS` by reading the plane in one task and
  running exactly what ``normalize`` runs (NaN/Inf filled with the same
  median first); for larger planes with Dask reductions (mean, std, min, max
  exact up to float64 rounding, percentiles and the NaN fill approximate) —
  stored in the output's attributes (a resumed run reuses them), and every
  block is normalised with them before the network, whose card normalisation
  is then switched off (:func:`~.distributed.with_card`; the caller's model is
  never changed).
* **Tiles.** MONAI's sliding window lays windows on a grid that starts at 0
  with step ``tile·(1−overlap)``, the last window flush with the edge. A block
  is predicted from the region covered by every window of the *whole plane's*
  grid that touches the block. That region starts and ends on window edges,
  so MONAI lays exactly those windows in it and blends them with the same
  Gaussian weights in the same order: the block's pixels get the values the
  whole-plane prediction gives them. Test-time flips are passes of their own
  (:class:`Pass`), each on the grid the flipped plane has (laid from the far
  edge), averaged in ``Predictor``'s order. The result is bit for bit the
  whole-plane prediction with ``batch_size=1``; with larger batches the
  backend's convolution kernels round differently for different batch
  compositions (~1e-5, as they do within one process). The halo is thus
  between ``tile·overlap`` and one tile on each side.
* Where that grid cannot be followed — a card whose working scale is not 1
  (the plane is resized before tiling) — the region is the block plus one tile
  (at the working scale) on each side and is predicted as is; results then
  match the whole-image prediction up to tiles meeting at other places.

Cards that resize every image to a fixed size, or normalise with CLAHE (a
per-image adaptive histogram), cannot be predicted block by block; they are
refused with a message.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from ..data.input_spec import InputSpec, Layout, layout_of
from ..data.lazy import LazyFile, open_lazy
from ..data.normalization import _affine, normalize
from ..models.base import SegmentationModel
from ..models.card import ModelCard
from ..progress import CancelToken, check, report
from .distributed import (
    Client,
    ModelRef,
    ModelSpec,
    Progress,
    cached_model,
    limit_threads,
    model_identity,
    raise_failures,
    require_reference,
    run_futures,
    settings_fingerprint,
    with_card,
)
from .fov_scale import uses_fov
from .objects import uses_diameter
from .predictor import TTA_FLIPS, InferenceSettings, Predictor, uses_tta
from .tiles import window_starts

#: default block edge (pixels); also the output's zarr chunk
DEFAULT_CHUNK = 2048
#: planes up to this many pixels get their normalisation statistics exactly as ``normalize``
EXACT_STATISTICS_PIXELS = 4096 * 4096
FORMAT = "napari-attnseg-blockwise"
FORMAT_VERSION = 1
_NO_NORMALIZATION = {"mode": "none"}


# -- blocks and regions ------------------------------------------------------------
@dataclass(frozen=True)
class Pass:
    """One sliding-window pass of a block: which axes are flipped, and the span it covers."""

    flip_rows: bool
    flip_cols: bool
    rows: tuple[int, int]
    cols: tuple[int, int]

    @property
    def axes(self) -> tuple[int, ...]:
        """The flipped axes of a ``(C, h, w)`` array."""
        return tuple(a for a, f in ((1, self.flip_rows), (2, self.flip_cols)) if f)


@dataclass(frozen=True)
class Block:
    """One output block of one plane, the input region it is predicted from, and its passes."""

    plane: tuple[int, ...]
    #: (row, column) of the block in its plane's block grid
    grid: tuple[int, int]
    rows: tuple[int, int]
    cols: tuple[int, int]
    #: what is read: the union of the passes' spans
    region_rows: tuple[int, int]
    region_cols: tuple[int, int]
    #: one per flip of the whole-plane prediction, on the plane's own window grid;
    #: empty where that grid cannot be followed (the region is then predicted as is)
    passes: tuple[Pass, ...] = ()

    @property
    def flag(self) -> tuple[int, ...]:
        """Index of this block's flag in the ``done`` array."""
        return (*self.plane, *self.grid)

    @property
    def output(self) -> tuple[Any, ...]:
        """Index of this block in the output arrays."""
        return (*self.plane, slice(*self.rows), slice(*self.cols))

    def within(self, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[slice, slice]:
        """The block inside a span that starts at ``(rows[0], cols[0])``."""
        (y0, y1), (x0, x1) = self.rows, self.cols
        return slice(y0 - rows[0], y1 - rows[0]), slice(x0 - cols[0], x1 - cols[0])


def covering_span(
    size: int,
    tile: int,
    overlap: float,
    lo: int,
    hi: int,
    *,
    flipped: bool = False,
    more: bool = False,
) -> tuple[int, int]:
    """The span of every window of an axis's grid that touches ``[lo, hi)``.

    ``flipped``: the grid of the flipped axis (laid from the far end), as the
    flipped passes of test-time augmentation see it. ``more``: one
    neighbouring window more (it changes none of the pixels in ``[lo, hi)``).
    """
    if flipped:
        a, b = covering_span(size, tile, overlap, size - hi, size - lo, more=more)
        return size - b, size - a
    starts = window_starts(size, tile, overlap)
    touching = [i for i, s in enumerate(starts) if s < hi and s + tile > lo]
    first, last = touching[0], touching[-1]
    if more:
        first, last = (first - 1, last) if first > 0 else (first, last + 1)
    return starts[first], min(starts[last] + tile, size)


def plan_blocks(
    stack_shape: Sequence[int],
    height: int,
    width: int,
    *,
    chunk: int,
    tile: int,
    overlap: float,
    flips: Sequence[tuple[int, ...]] | None = ((),),
    halo: int = 0,
) -> list[Block]:
    """Every block of every plane, with its region and passes (see the module docstring).

    ``flips`` are the whole-plane prediction's flips (``Predictor``'s
    ``TTA_FLIPS`` dims of an ``(N, C, H, W)`` tensor); ``None`` when its grid
    cannot be followed, and the region is then the block plus ``halo``.
    """
    tiled = max(height, width) > tile
    blocks = []
    for plane in np.ndindex(*stack_shape):
        for by, y0 in enumerate(range(0, height, chunk)):
            for bx, x0 in enumerate(range(0, width, chunk)):
                y1, x1 = min(y0 + chunk, height), min(x0 + chunk, width)
                passes: list[Pass] = []
                for dims in flips or ():
                    fr, fc = 2 in dims, 3 in dims
                    if not tiled:  # the plane is one window: predict it whole
                        passes.append(Pass(fr, fc, (0, height), (0, width)))
                        continue
                    ry = covering_span(height, tile, overlap, y0, y1, flipped=fr)
                    rx = covering_span(width, tile, overlap, x0, x1, flipped=fc)
                    if max(ry[1] - ry[0], rx[1] - rx[0]) <= tile:
                        # a single window: the predictor would not tile (nor blend) it
                        if height > tile:
                            ry = covering_span(height, tile, overlap, y0, y1, flipped=fr, more=True)
                        else:
                            rx = covering_span(width, tile, overlap, x0, x1, flipped=fc, more=True)
                    passes.append(Pass(fr, fc, ry, rx))
                if passes:
                    ry = min(p.rows[0] for p in passes), max(p.rows[1] for p in passes)
                    rx = min(p.cols[0] for p in passes), max(p.cols[1] for p in passes)
                else:
                    ry = max(0, y0 - halo), min(height, y1 + halo)
                    rx = max(0, x0 - halo), min(width, x1 + halo)
                blocks.append(
                    Block(tuple(plane), (by, bx), (y0, y1), (x0, x1), ry, rx, tuple(passes))
                )
    return blocks


# -- reading regions -----------------------------------------------------------------
def region_key(layout: Layout, plane: Sequence[int], rows, cols) -> tuple[Any, ...]:
    """The index of ``(plane, rows, cols)`` (all channels) in the image's own axes."""
    key: list[Any] = [*plane, slice(*rows), slice(*cols)]
    if layout.channel_axis is not None:
        key.insert(layout.channel_axis, slice(None))
    return tuple(key)


def as_hwc(cut: np.ndarray, layout: Layout) -> np.ndarray:
    """A region cut with :func:`region_key` as ``(h, w, C)``."""
    cut = np.asarray(cut)
    if layout.channel_axis is None:
        return cut[..., None]
    stack_axes_before = min(layout.channel_axis, len(layout.stack_shape))
    return np.moveaxis(cut, layout.channel_axis - stack_axes_before, -1)


def read_region(image: Any, layout: Layout, plane: Sequence[int], rows, cols) -> np.ndarray:
    """``(h, w, C)`` of one region of any array-like, reading only that region."""
    return as_hwc(image[region_key(layout, plane, rows, cols)], layout)


# -- normalisation statistics -----------------------------------------------------------
def plane_statistics(chw: np.ndarray, normalization: dict[str, Any]) -> dict[str, np.ndarray]:
    """What ``normalize`` and the NaN clean-up compute from a whole ``(C, H, W)`` plane.

    Mirrors ``InputSpec.network_input`` (``replace_nonfinite`` then
    ``normalize``) so :func:`apply_statistics` on any part of the plane gives
    what the whole-plane call gives there (``tests/test_distributed.py`` holds
    them together).
    """
    fill = np.zeros(chw.shape[0])
    finite = np.isfinite(chw)
    if not finite.all():
        chw = chw.copy()
        for c in range(chw.shape[0]):
            bad = ~finite[c]
            if bad.any():
                values = chw[c][finite[c]]
                fill[c] = float(np.median(values)) if values.size else 0.0
                chw[c][bad] = fill[c]
    mode = normalization["mode"]
    stats: dict[str, np.ndarray] = {"fill": fill}
    if mode == "zscore":
        stats["mean"] = chw.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        stats["std"] = chw.std(axis=(1, 2), keepdims=True, dtype=np.float64)
    elif mode == "percentile":
        low, high = float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))
        stats["low"], stats["high"] = np.percentile(chw, [low, high], axis=(1, 2), keepdims=True)
    elif mode == "minmax":
        stats["low"] = chw.min(axis=(1, 2), keepdims=True)
        stats["high"] = chw.max(axis=(1, 2), keepdims=True)
    return stats


def apply_statistics(
    chw: np.ndarray, normalization: dict[str, Any], stats: dict[str, np.ndarray]
) -> np.ndarray:
    """Fill non-finite pixels and normalise a ``(C, h, w)`` part of a plane with its statistics."""
    finite = np.isfinite(chw)
    if not finite.all():
        chw = chw.copy()
        for c in range(chw.shape[0]):
            chw[c][~finite[c]] = stats["fill"][c]
    mode = normalization["mode"]
    if mode == "zscore":
        return _affine(chw, stats["mean"], stats["std"])
    if mode == "percentile":
        return np.clip(_affine(chw, stats["low"], stats["high"] - stats["low"]), 0.0, 1.0)
    if mode == "minmax":
        return _affine(chw, stats["low"], stats["high"] - stats["low"])
    return normalize(chw, normalization)  # "dataset" and "none" need nothing from the image


def _channels(block: np.ndarray, spec: InputSpec, rgb: bool) -> np.ndarray:
    """``spec.channels`` on every plane of a ``(*stack, h, w, C)`` block (Dask ``map_blocks``)."""
    out = np.empty((*block.shape[:-1], spec.in_channels), np.float32)
    for index in np.ndindex(*block.shape[:-3]):
        out[index] = np.moveaxis(spec.channels(block[index], rgb=rgb), 0, -1)
    return np.where(np.isfinite(out), out, np.nan)


def dask_statistics(
    image: da.Array,
    layout: Layout,
    spec: InputSpec,
    compute: Callable[[Any], Any],
) -> list[dict[str, np.ndarray]]:
    """Per-plane statistics of planes too large to read whole, by Dask reductions.

    ``compute`` evaluates Dask collections (here, or on a cluster). Mean,
    std, minimum and maximum are exact up to rounding; percentiles (and the
    median that fills NaN/Inf pixels, computed in a second pass only where
    there are any) are Dask's approximate percentiles.
    """
    canon = (
        image[..., None]
        if layout.channel_axis is None
        else da.moveaxis(image, layout.channel_axis, -1)
    )
    canon = canon.rechunk({-1: -1})
    view = da.map_blocks(
        _channels,
        canon,
        spec=spec,
        rgb=layout.rgb,
        dtype=np.float32,
        chunks=(*canon.chunks[:-1], (spec.in_channels,)),
    )
    normalization = spec.normalization
    planes = [tuple(p) for p in np.ndindex(*layout.stack_shape)]
    channels = range(spec.in_channels)

    def finite(plane, c):
        values = view[(*plane, Ellipsis, c)].ravel()
        return values[~da.isnan(values)]

    axes = (-3, -2)
    lazy: dict[str, Any] = {"bad": da.isnan(view).sum(axis=axes)}
    mode = normalization["mode"]
    if mode == "zscore":
        lazy["mean"] = da.nanmean(view, axis=axes, dtype=np.float64)
        lazy["std"] = da.nanstd(view, axis=axes, dtype=np.float64)
    elif mode == "minmax":
        lazy["low"], lazy["high"] = da.nanmin(view, axis=axes), da.nanmax(view, axis=axes)
    elif mode == "percentile":
        q = [float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))]
        lazy["quantiles"] = [da.percentile(finite(p, c), q) for p in planes for c in channels]
    done = compute(lazy)
    bad = np.asarray(done["bad"])
    where = [(p, c) for p in planes for c in channels if bad[p][c]]
    medians = {}
    if where:
        found = compute([da.percentile(finite(*pc), [50.0]) for pc in where])
        medians = dict(zip(where, found, strict=True))
    out = []
    for n, plane in enumerate(planes):
        shape = (spec.in_channels, 1, 1)
        stats = {
            "fill": np.array(
                [float(medians[plane, c][0]) if (plane, c) in medians else 0.0 for c in channels]
            )
        }
        for name in ("mean", "std", "low", "high"):
            if name in done:
                stats[name] = np.asarray(done[name])[plane].reshape(shape)
        if "quantiles" in done:
            pairs = done["quantiles"][n * len(channels) : (n + 1) * len(channels)]
            stats["low"] = np.array([q[0] for q in pairs], np.float64).reshape(shape)
            stats["high"] = np.array([q[1] for q in pairs], np.float64).reshape(shape)
        out.append(stats)
    return out


def _pack(stats: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON for the output's attributes (dtype kept, so restored values are bit-identical)."""
    return {k: {"dtype": str(v.dtype), "values": np.ravel(v).tolist()} for k, v in stats.items()}


def _unpack(packed: dict[str, Any], channels: int) -> dict[str, np.ndarray]:
    out = {}
    for k, v in packed.items():
        array = np.asarray(v["values"], dtype=v["dtype"])
        out[k] = array if k == "fill" else array.reshape(channels, 1, 1)
    return out


def _exact_statistics(
    source: Any, layout: Layout, spec: InputSpec, plane: tuple[int, ...], cut: bool
) -> dict[str, Any]:
    """Task: read one whole plane and compute its statistics exactly (packed for JSON)."""
    height, width = layout.spatial_shape[-2:]
    region = (
        as_hwc(source, layout)
        if cut
        else read_region(source, layout, plane, (0, height), (0, width))
    )
    chw = spec.channels(region, rgb=layout.rgb)
    return _pack(plane_statistics(chw, spec.normalization))


# -- the task ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs for a block besides the block (small; pickled per task)."""

    model: ModelRef | None
    settings: InferenceSettings
    spec: InputSpec
    layout: Layout
    out: str
    run_id: str
    torch_threads: int | None = None


@functools.lru_cache(maxsize=8)
def _outputs(out: str, run_id: str) -> tuple[zarr.Array, zarr.Array | None, zarr.Array]:
    """The output arrays, opened once per process and run."""
    group = zarr.open_group(out, mode="r+")
    if group.attrs.get(FORMAT, {}).get("run_id") != run_id:
        raise ValueError(f"{out} was replaced by another run; start again")
    probs = group["probabilities"] if "probabilities" in set(group.array_keys()) else None
    return group["labels"], probs, group["done"]


def predict_block(
    source: Any,
    job: BlockJob,
    block: Block,
    stats: dict[str, Any],
    model: SegmentationModel | None = None,
    cancel: CancelToken | None = None,
    cut: bool = False,
) -> list[str]:
    """Predict one block from its region and write it (the task each worker runs).

    ``source`` is the image (read here, only the region), or with ``cut=True``
    the region already cut with :func:`region_key` (a Dask array's piece).
    """
    limit_threads(job.torch_threads)
    predictor = Predictor(job.settings)
    network = model if model is not None else cached_model(job.model, predictor.device)
    network = with_card(network, normalization=dict(_NO_NORMALIZATION))
    if cut:
        region = as_hwc(source, job.layout)
    else:
        region = read_region(source, job.layout, block.plane, block.region_rows, block.region_cols)
    chw = job.spec.channels(region, rgb=job.layout.rgb)
    x = apply_statistics(chw, job.spec.normalization, _unpack(stats, job.spec.in_channels))
    region_span = block.region_rows, block.region_cols
    if not block.passes:  # the region as it is, with the settings' own flips
        prediction = predictor.predict(
            network, np.moveaxis(x, 0, -1), channel_axis=-1, cancel=cancel
        )
        ys, xs = block.within(*region_span)
        probs, messages = prediction.probabilities[:, ys, xs], prediction.messages
    else:  # each flip on the plane's own window grid, averaged as Predictor does
        predictor = Predictor(replace(job.settings, tta=False))
        probs, messages = None, []
        for one in block.passes:
            sub = x[(slice(None), *_shift(one.rows, one.cols, region_span))]
            sub = np.flip(sub, one.axes) if one.axes else sub
            prediction = predictor.predict(
                network, np.moveaxis(sub, 0, -1), channel_axis=-1, cancel=cancel
            )
            out = prediction.probabilities
            out = np.flip(out, one.axes) if one.axes else out
            out = out[(slice(None), *block.within(one.rows, one.cols))]
            probs = out if probs is None else probs + out
            messages += prediction.messages
        probs = probs / len(block.passes)
    labels = predictor.labels(network, probs)
    labels_out, probabilities, done = _outputs(job.out, job.run_id)
    labels_out[block.output] = labels
    if probabilities is not None:
        probabilities[block.output] = 1.0 - probs[0]
    done[block.flag] = 1
    return list(dict.fromkeys(messages))


def _shift(rows, cols, region) -> tuple[slice, slice]:
    """A span of the plane as slices of the region read for it."""
    (ry, _), (rx, _) = region
    return slice(rows[0] - ry, rows[1] - ry), slice(cols[0] - rx, cols[1] - rx)


# -- the plan ---------------------------------------------------------------------------
class BlockwisePrediction:
    """A block-wise prediction bound to its zarr output: created (or reopened) now, run later.

    The output exists as soon as this object does, filled with 0 where no
    block is done yet, so a viewer can show :attr:`labels` (e.g. as a napari
    Labels layer backed by the zarr array) and refresh it as blocks finish.
    """

    def __init__(
        self,
        *,
        image: Any,
        layout: Layout,
        job: BlockJob,
        blocks: list[Block],
        group: zarr.Group,
        network: SegmentationModel | None,
        statistics: list[dict[str, Any]],
        name: str,
        notes: Sequence[str] = (),
    ) -> None:
        self.image = image
        self.layout = layout
        self.job = job
        self.blocks = blocks
        self.group = group
        self.network = network
        self.statistics = statistics
        self.name = name
        #: what the settings asked for that a block-wise run cannot do (see blockwise_settings)
        self.notes = list(notes)
        self.messages: list[str] = []
        self._plane_index = {p: i for i, p in enumerate(np.ndindex(*layout.stack_shape))}

    @property
    def path(self) -> Path:
        return Path(self.job.out)

    @property
    def labels(self) -> zarr.Array:
        return self.group["labels"]

    @property
    def probabilities(self) -> zarr.Array | None:
        return self.group["probabilities"] if "probabilities" in self.group else None

    def pending(self) -> list[Block]:
        """Blocks not done yet (by their flags in the output)."""
        done = np.asarray(self.group["done"][...])
        return [b for b in self.blocks if not done[b.flag]]

    def stats_for(self, block: Block) -> dict[str, Any]:
        """The packed normalisation statistics of the block's plane."""
        return self.statistics[self._plane_index[block.plane]]

    def run(
        self,
        *,
        client: Client | None = None,
        progress: Progress = None,
        cancel: CancelToken | None = None,
    ) -> zarr.Array:
        """Predict every pending block (here, or as Dask tasks on ``client``); the labels."""
        require_reference(self.job.model, client)
        pending = self.pending()
        if client is None:
            self._run_here(pending, progress, cancel)
        else:
            futures = self._submit(client, pending)
            names = [f"block {b.flag}" for b in pending]
            messages, errors = run_futures(
                client, futures, names, progress=progress, cancel=cancel, unit="block"
            )
            self.messages += [m for notes in messages if notes for m in notes]
            raise_failures(errors, len(pending), "blocks")
        self.messages = list(dict.fromkeys(self.messages))
        return self.labels

    def _run_here(self, pending: list[Block], progress: Progress, cancel) -> None:
        callback = None if isinstance(progress, str) else progress
        for n, block in enumerate(pending):
            check(cancel)
            report(callback, n, len(pending), f"block {n + 1}/{len(pending)}")
            self.messages += predict_block(
                self.image, self.job, block, self.stats_for(block), self.network, cancel
            )
        report(callback, len(pending), len(pending), "done")

    def _submit(self, client: Client, pending: list[Block]) -> list[Any]:
        token = uuid.uuid4().hex[:8]  # keys of this call only: a resumed run recomputes
        if isinstance(self.image, (da.Array, np.ndarray)):
            image = self.image if isinstance(self.image, da.Array) else da.from_array(self.image)
            tasks = [
                dask.delayed(predict_block, pure=False)(
                    image[region_key(self.layout, b.plane, b.region_rows, b.region_cols)],
                    self.job,
                    b,
                    self.stats_for(b),
                    None,
                    None,
                    True,
                    dask_key_name=f"attnseg-block-{token}-{n}",
                )
                for n, b in enumerate(pending)
            ]
            return client.compute(tasks)
        return [
            client.submit(
                predict_block,
                self.image,
                self.job,
                b,
                self.stats_for(b),
                key=f"attnseg-block-{token}-{n}",
                pure=False,
            )
            for n, b in enumerate(pending)
        ]


def blockwise_settings(
    settings: InferenceSettings, card: ModelCard
) -> tuple[InferenceSettings, list[str]]:
    """The settings a block-wise run can honour, and a note for each one it drops.

    Instances, matching the object diameter or the field of view and the card's
    automatic region need the whole image (each block would otherwise measure,
    resample or find its own), so a block-wise run predicts at the trained scale, everywhere, class labels.
    """
    notes = []
    if settings.instances:
        notes.append("instances and their table skipped: splitting objects needs the whole image; "
                     "the block-wise result is the class mask")
    if uses_diameter(card) and settings.diameter is not None:
        notes.append("object diameter not matched (no resampling): block-wise prediction "
                     "runs at the scale the model was trained at")
    if uses_fov(card) and settings.fov_diameter is not None:
        notes.append("field of view not matched (no resampling): block-wise prediction "
                     "runs at the scale the model was trained at")
    if settings.roi == "auto" and card.roi:
        notes.append(f"the model's own region ({card.roi.get('method', 'automatic')}) not "
                     "applied: it is found on the whole image")
    return replace(settings, instances=False, diameter=None, fov_diameter=None,
                   roi="none"), notes


def prepare_blockwise(
    model: ModelSpec,
    image: Any,
    out: str | os.PathLike,
    settings: InferenceSettings | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    client: Client | None = None,
    torch_threads: int | None = None,
) -> BlockwisePrediction:
    """Create (or reopen, to resume) the zarr output of a block-wise prediction of ``image``.

    ``image`` is a path (zarr / OME-Zarr store or TIFF, read lazily), a Dask
    array, a zarr array or a NumPy array; its layout follows ``Predictor``
    (``rgb``, ``channel_axis``; OME-Zarr's ``c`` axis by default). New
    outputs get the image's normalisation statistics first (one pass over
    it, on ``client`` when given).
    """
    settings = settings or InferenceSettings()
    ref, network, digest = model_identity(model)
    require_reference(ref, client)
    if ref is not None:
        document = ref.card()
        card, in_channels = ModelCard.from_dict(document), int(document["in_channels"])
    else:
        card = network.card if network.card is not None else ModelCard(name=network.name)
        in_channels = network.in_channels
    spec = InputSpec.from_card(card, in_channels)
    settings, notes = blockwise_settings(settings, card)
    tile = settings.tile_size
    if tile is None:
        raise ValueError("block-wise prediction needs a tile size (tile_size=None never tiles)")
    if chunk < tile:
        raise ValueError(f"the block size ({chunk}) must be at least the tile size ({tile})")
    if spec.size is not None:
        raise ValueError(
            f"model {card.name or '?'} resizes every image to {spec.size[0]}x{spec.size[1]}; "
            "it cannot be predicted block by block (predict the image whole)"
        )
    if spec.normalization.get("clahe"):
        raise ValueError(
            f"model {card.name or '?'} normalises with CLAHE over the whole image, which "
            "block-wise prediction cannot reproduce; predict the image whole"
        )
    source, identity, name = _source(image)
    if channel_axis is None and isinstance(source, LazyFile):
        channel_axis = source.channel_axis
    layout = layout_of(source.shape, rgb=rgb, channel_axis=channel_axis)
    height, width = layout.spatial_shape[-2:]
    out = Path(out).expanduser().resolve()
    if isinstance(source, LazyFile) and (
        out == Path(source.path).resolve() or Path(source.path).resolve() in out.parents
    ):
        raise ValueError(f"the output {out} would overwrite the input {source.path}")
    # the plane's window grid can be followed at the native scale (see the module docstring)
    tta = uses_tta(settings.tta, card)
    settings = replace(settings, tta=tta)  # the blocks' predictors: the card's choice, decided
    flips = (TTA_FLIPS if tta else ((),)) if spec.scale == 1.0 else None
    blocks = plan_blocks(
        layout.stack_shape,
        height,
        width,
        chunk=chunk,
        tile=tile,
        overlap=settings.overlap,
        flips=flips,
        halo=math.ceil(tile / spec.scale),
    )
    n_classes = int(document["n_classes"]) if ref is not None else network.n_classes
    labels_dtype = "uint8" if max(2, n_classes) <= 256 else "uint16"
    fingerprint = {
        "model": digest,
        "settings": settings_fingerprint(settings),
        "input": identity,
        "shape": list(source.shape),
        "layout": {"rgb": layout.rgb, "channel_axis": layout.channel_axis},
        "chunk": chunk,
        "probabilities": probabilities,
    }
    fingerprint = json.loads(json.dumps(fingerprint))
    group = _reopen(out, fingerprint, overwrite)
    if group is None:
        statistics = _statistics(source, layout, spec, client)
        group = _create(out, fingerprint, statistics, layout, chunk, labels_dtype, probabilities)
    meta = group.attrs[FORMAT]
    job = BlockJob(ref, settings, spec, layout, str(out), meta["run_id"], torch_threads)
    statistics = meta["statistics"]
    return BlockwisePrediction(
        image=source,
        layout=layout,
        job=job,
        blocks=blocks,
        group=group,
        network=network,
        statistics=statistics,
        name=name,
        notes=notes,
    )


def predict_blockwise(
    model: ModelSpec,
    image: Any,
    out: str | os.PathLike,
    settings: InferenceSettings | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
    rgb: bool | None = None,
    channel_axis: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    client: Client | None = None,
    torch_threads: int | None = None,
    progress: Progress = None,
    cancel: CancelToken | None = None,
    on_message: Callable[[str], None] | None = None,
) -> zarr.Array:
    """Predict ``image`` block by block into the zarr group ``out``; its ``labels`` array.

    See :func:`prepare_blockwise` for the arguments and the module docstring
    for how blocks match the whole-image prediction. A stopped run resumes
    where it stopped (done blocks are skipped). ``on_message`` gets a note for
    each setting a block-wise run cannot honour (:func:`blockwise_settings`).
    """
    plan = prepare_blockwise(
        model,
        image,
        out,
        settings,
        chunk=chunk,
        rgb=rgb,
        channel_axis=channel_axis,
        probabilities=probabilities,
        overwrite=overwrite,
        client=client,
        torch_threads=torch_threads,
    )
    for note in plan.notes if on_message is not None else ():
        on_message(note)
    return plan.run(client=client, progress=progress, cancel=cancel)


# -- internals ------------------------------------------------------------------------------
def _source(image: Any) -> tuple[Any, dict[str, Any], str]:
    """The array-like to read, what identifies it for resuming, and its name."""
    if isinstance(image, (str, os.PathLike)):
        image = open_lazy(image)
    if isinstance(image, LazyFile):
        identity = {"path": image.path, "component": image.component, "stamp": list(image.stamp)}
        return image, identity, image.name
    if isinstance(image, zarr.Array):
        return image, {"zarr": str(image.store_path)}, Path(str(image.path) or "image").name
    if isinstance(image, da.Array):
        return image, {"dask": image.name}, "image"
    if isinstance(image, np.ndarray):
        return image, {"numpy": tokenize(image)}, "image"
    raise ValueError(
        f"cannot predict a {type(image).__name__} block by block; give a path, a Dask, "
        "zarr or NumPy array"
    )


def _statistics(
    source: Any, layout: Layout, spec: InputSpec, client: Client | None
) -> list[dict[str, Any]]:
    """Packed normalisation statistics of every plane (exact, or by Dask reductions)."""
    height, width = layout.spatial_shape[-2:]
    planes = [tuple(p) for p in np.ndindex(*layout.stack_shape)]
    if height * width <= EXACT_STATISTICS_PIXELS:
        if client is None:
            return [_exact_statistics(source, layout, spec, p, False) for p in planes]
        if isinstance(source, (da.Array, np.ndarray)):
            image = source if isinstance(source, da.Array) else da.from_array(source)
            tasks = [
                dask.delayed(_exact_statistics)(
                    image[region_key(layout, p, (0, height), (0, width))], layout, spec, p, True
                )
                for p in planes
            ]
            futures = client.compute(tasks)
        else:
            futures = [
                client.submit(_exact_statistics, source, layout, spec, p, False, pure=False)
                for p in planes
            ]
        results, errors = run_futures(client, futures, [str(p) for p in planes])
        raise_failures(errors, len(planes), "planes")
        return results
    if isinstance(source, da.Array):
        image = source
    else:
        chunks = _chunks_for(source.shape, layout)
        image = da.from_array(source, chunks=chunks, asarray=True)

    def compute(collections):
        if client is None:
            return dask.compute(collections, scheduler="threads")[0]
        return client.compute(collections, sync=True)

    return [_pack(s) for s in dask_statistics(image, layout, spec, compute)]


def _chunks_for(shape: Sequence[int], layout: Layout) -> tuple[int, ...]:
    """Dask chunks for reading an image: one plane, DEFAULT_CHUNK² pixels, all channels."""
    spatial = [i for i in range(len(shape)) if i != layout.channel_axis]
    out = []
    for i, size in enumerate(shape):
        if i == layout.channel_axis:
            out.append(size)
        elif i in spatial[-2:]:
            out.append(min(size, DEFAULT_CHUNK))
        else:
            out.append(1)
    return tuple(out)


def _reopen(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> zarr.Group | None:
    """The existing output to resume, or None to create one (refusing to touch others)."""
    if not out.exists():
        return None
    try:
        group = zarr.open_group(str(out), mode="r+")
        meta = dict(group.attrs).get(FORMAT)
    except Exception:  # not a zarr group at all
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{out} exists and is not a napari-attnseg block-wise prediction; choose another output"
        )
    if meta.get("fingerprint") == fingerprint:
        return group
    if overwrite:
        shutil.rmtree(out)
        return None
    differ = sorted(
        k
        for k in set(fingerprint) | set(meta.get("fingerprint", {}))
        if fingerprint.get(k) != meta.get("fingerprint", {}).get(k)
    )
    raise ValueError(
        f"{out} holds a prediction made differently ({', '.join(differ)} differ); "
        "use overwrite (--overwrite) to replace it or choose another output"
    )


def _create(
    out: Path,
    fingerprint: dict[str, Any],
    statistics: list[dict[str, Any]],
    layout: Layout,
    chunk: int,
    labels_dtype: str,
    probabilities: bool,
) -> zarr.Group:
    """The empty output, built under a temporary name and renamed into place."""
    shape = layout.spatial_shape
    stack = layout.stack_shape
    chunks = (*([1] * len(stack)), chunk, chunk)
    grid = (*stack, math.ceil(shape[-2] / chunk), math.ceil(shape[-1] / chunk))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=2)
        group.create_array("labels", shape=shape, chunks=chunks, dtype=labels_dtype, fill_value=0)
        if probabilities:
            group.create_array(
                "probabilities", shape=shape, chunks=chunks, dtype="float32", fill_value=0.0
            )
        group.create_array("done", shape=grid, chunks=(1,) * len(grid), dtype="uint8", fill_value=0)
        group.attrs[FORMAT] = {
            "version": FORMAT_VERSION,
            "run_id": uuid.uuid4().hex,
            "fingerprint": fingerprint,
            "statistics": statistics,
        }
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return zarr.open_group(str(out), mode="r+")


__all__ = [
    "DEFAULT_CHUNK",
    "Block",
    "BlockwisePrediction",
    "apply_statistics",
    "plan_blocks",
    "plane_statistics",
    "predict_blockwise",
    "prepare_blockwise",
    "window_starts",
]
