"""The task of a block-wise prediction: predict one block from its region and write it.

Each worker runs :func:`predict_block` for one block (see
:mod:`.blockwise`): it reads the block's region, normalises it with its
plane's statistics (:meth:`InputSpec.apply
<napari_attnseg.data.input_spec.InputSpec.apply>`), predicts it on the whole
plane's window grid (:mod:`.blockwise_plan`) and writes the block into the
output (:mod:`.blockwise_store`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..data.input_spec import InputSpec, Layout
from ..models.base import SegmentationModel
from ..progress import CancelToken
from .blockwise_plan import Block, as_hwc, read_region
from .blockwise_store import outputs, unpack
from .distributed import ModelRef, cached_model, limit_threads, with_card
from .predictor import InferenceSettings, Predictor

_NO_NORMALIZATION = {"mode": "none"}


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
    x = job.spec.apply(chw, unpack(stats, job.spec.in_channels))
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
    labels_out, probabilities, done = outputs(job.out, job.run_id)
    labels_out[block.output] = labels
    if probabilities is not None:
        probabilities[block.output] = 1.0 - probs[0]
    done[block.flag] = 1
    return list(dict.fromkeys(messages))


def _shift(rows, cols, region) -> tuple[slice, slice]:
    """A span of the plane as slices of the region read for it."""
    (ry, _), (rx, _) = region
    return slice(rows[0] - ry, rows[1] - ry), slice(cols[0] - rx, cols[1] - rx)


__all__ = ["BlockJob", "predict_block"]
