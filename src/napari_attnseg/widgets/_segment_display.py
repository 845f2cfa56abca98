"""How the Segment widget shows a run's result: the Labels layer, the object table, the probability.

:func:`show_result` writes the labels (through napari's undo history, a
slice's objects numbered above the other slices' ids), gives the layer its
measurements and lists them in the widget's object table; :func:`show_blockwise`
shows a block-wise result as zarr-backed layers, whose temporary store goes
when the last layer showing it is removed (:func:`_on_layer_removed`).
``widget`` is the :class:`~.segment.SegmentWidget` (its ``viewer``, ``objects``
and ``jobs``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels

from ._layers import (
    METADATA_KEY,
    find_layer,
    max_label_outside,
    output_metadata,
    output_name,
    same_object,
    write_labels,
)
from ._notifications import notify_info, notify_warning
from ._objects import attach
from ._segment_job import INSTANCES, SegmentResult, discard_store, offset_objects
from ._segment_job import status_text as describe_run


def show_result(widget, result: SegmentResult) -> None:
    """Show a finished run: its labels (and objects, probability) and its status line."""
    if result.store is not None:
        show_blockwise(widget, result)
        return
    request = result.request
    name = output_name(request.image_name, request.choice.name)
    meta = output_metadata(request.image_name, request.choice.name,
                           INSTANCES if request.instances else "labels")
    values, table = result.labels, result.table
    if request.index and request.instances:
        # one slice into the stack's layer: its objects are numbered above the ids of the
        # other slices, which name other objects (or the same objects, linked across planes)
        layer = find_layer(widget.viewer, name, Labels, request.shape)
        if layer is not None:
            values, table = offset_objects(
                values, table, max_label_outside(layer.data, request.index)
            )
    labels = write_labels(widget.viewer, name, request.shape,
                          [(request.index or (), values)],
                          placement=request.placement, metadata=meta)
    labels.metadata.update(meta)  # a rewritten layer now comes from this run too
    attach(labels, table)
    if table is not None:
        widget.objects.show_table(labels, table, request.image_name)
        n = result.n_objects
        where = f" (slice {','.join(map(str, request.index))})" if request.index else ""
        notify_info(f"found {n} object{'s' * (n != 1)} in {request.image_name}{where} "
                    f"with {request.choice.name}")
    elif same_object(widget.objects.layer, labels):
        widget.objects.clear()  # a mask replaced the objects the table listed
    if result.quality and result.quality.get("warning"):
        notify_warning(f"{request.image_name}: {result.quality['warning']}")
    if result.probability is not None:
        show_probability(widget, result, name + " probability")
    widget.jobs.status.setText(describe_run(result))


def show_probability(widget, result: SegmentResult, name: str) -> None:
    """Write the foreground probability into layer ``name`` (added on the first run)."""
    request = result.request
    index = request.index or ()
    layer = find_layer(widget.viewer, name, Image, request.shape)
    if layer is not None:
        data = np.array(layer.data, dtype=np.float32)
        data[index] = result.probability
        layer.data = data
        return
    data = np.zeros(request.shape, dtype=np.float32)
    data[index] = result.probability
    widget.viewer.add_image(
        data, name=name, colormap="magma", blending="additive", contrast_limits=(0.0, 1.0),
        opacity=0.6,
        metadata=output_metadata(request.image_name, request.choice.name, "probability"),
        **request.placement,
    )


def show_blockwise(widget, result: SegmentResult) -> None:
    """Zarr-backed layers for a block-wise result (a rerun swaps the data, not undoable)."""
    request = result.request
    name = output_name(request.image_name, request.choice.name)
    where = request.slice_placement if request.index else request.placement
    released = []
    outputs = [(name, Labels, result.labels, "labels")]
    if result.probability is not None:
        outputs.append((name + " probability", Image, result.probability, "probability"))
    for layer_name, kind, data, role in outputs:
        meta = output_metadata(request.image_name, request.choice.name, role,
                               store=str(result.store))
        layer = find_layer(widget.viewer, layer_name, kind, tuple(data.shape))
        if layer is not None:
            released.append(_store_of(layer))
            layer.data = data
            layer.metadata.update(meta)
        elif kind is Labels:
            layer = widget.viewer.add_labels(data, name=layer_name, metadata=meta, **where)
        else:
            layer = widget.viewer.add_image(
                data, name=layer_name, colormap="magma", blending="additive",
                contrast_limits=(0.0, 1.0), opacity=0.6, metadata=meta, **where,
            )
        if kind is Labels and same_object(widget.objects.layer, layer):
            widget.objects.clear()  # a mask replaced the objects the table listed
    for store in released:
        _release_store(widget.viewer, store)
    widget.viewer.layers.events.removed.connect(_on_layer_removed)
    widget.jobs.status.setText(f"{describe_run(result)} (block by block, in {result.store})")


def _store_of(layer: Any) -> str | None:
    """The temporary store a layer's data lives in (block-wise results), if any."""
    return (layer.metadata.get(METADATA_KEY) or {}).get("store")


def _release_store(viewer: Any, store: str | None) -> None:
    """Delete a block-wise result's temporary store once no layer of ``viewer`` shows it."""
    if store is not None and all(_store_of(layer) != store for layer in viewer.layers):
        discard_store(store)


def _on_layer_removed(event: Any) -> None:
    layers = event.source
    store = _store_of(event.value)
    if store is not None and all(_store_of(layer) != store for layer in layers):
        discard_store(store)
