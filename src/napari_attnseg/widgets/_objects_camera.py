"""Bringing an object of the object table into view: its plane, centred, zoomed to fit.

:meth:`~._objects.ObjectTable.show_object` uses :func:`plane_of` to find the
plane of a stack to show an object in and :func:`bring_into_view` to move the
viewer there, centre the camera on the object's centroid (through the layer's
scale, translate and any affine) and zoom so that :data:`VIEW_MARGIN` times its
bounding box fills the canvas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels

from ._layers import current_index, layer_array, unwrapped

#: a row click shows this many times the object's bounding box across the canvas...
VIEW_MARGIN = 3.0
#: ...and at least this many pixels of the layer (a speck is not blown up to a few pixels)
MIN_VIEW_PIXELS = 48.0


def _camera(viewer) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(unwrapped(viewer), "scene", None)
    camera = getattr(scene, "camera", None)
    return camera if camera is not None else viewer.camera


def _canvas_size(viewer) -> tuple[float, float]:
    """(height, width) in screen pixels of the canvas (of one view box in grid mode)."""
    model = unwrapped(viewer)
    canvas = getattr(model, "canvas", None)
    if canvas is not None and hasattr(canvas, "viewbox_size"):
        return tuple(canvas.viewbox_size(model.layers))
    if canvas is not None and hasattr(canvas, "size"):
        return tuple(canvas.size)
    return tuple(getattr(model, "_canvas_size", (600, 800)))


def _world_extent(layer: Labels, box: list[tuple[float, float]]) -> np.ndarray:
    """Size along each of the layer's world axes of a box given in its data coordinates."""
    corners = np.array(np.meshgrid(*box, indexing="ij")).reshape(len(box), -1).T
    world = np.array([layer.data_to_world(corner) for corner in corners], dtype=float)
    return world.max(axis=0) - world.min(axis=0)


def bring_into_view(viewer, layer: Labels, table: dict[str, np.ndarray], row: int,
                    lead: tuple[int, ...]) -> None:
    """Show the object of ``table``'s ``row`` in plane ``lead``, centred and zoomed to fit.

    The canvas is zoomed so that :data:`VIEW_MARGIN` times the object's
    bounding box (at least :data:`MIN_VIEW_PIXELS` pixels of the layer) fits
    it; a zoom already closer than that is kept while the whole object still
    fits the canvas.
    """
    cy, cx = float(table["centroid_y"][row]), float(table["centroid_x"][row])
    y0, x0 = float(table["bbox_min_y"][row]) - 0.5, float(table["bbox_min_x"][row]) - 0.5
    y1, x1 = float(table["bbox_max_y"][row]) - 0.5, float(table["bbox_max_x"][row]) - 0.5
    centre = np.array([*lead, cy, cx], dtype=float)
    # the object's box, and the box to show around its centroid, in the layer's data
    box = [*((p - 0.5, p + 0.5) for p in lead), (y0, y1), (x0, x1)]
    half = [max(VIEW_MARGIN * (hi - lo) / 2, MIN_VIEW_PIXELS / 2) for lo, hi in box]
    around = [*box[: len(lead)], (cy - half[-2], cy + half[-2]), (cx - half[-1], cx + half[-1])]
    dims = viewer.dims
    offset = dims.ndim - layer.ndim  # the layer's axes are the viewer's last ones
    world = np.asarray(layer.data_to_world(centre), dtype=float)
    displayed = list(dims.displayed)
    for axis in range(layer.ndim):
        if axis + offset not in displayed:
            dims.set_point(axis + offset, float(world[axis]))
    camera = _camera(viewer)
    shown = [axis - offset for axis in displayed]  # the layer's axes on the canvas
    centre_now = list(camera.center)[-len(displayed):]
    new = [float(world[a]) if 0 <= a < layer.ndim else c
           for a, c in zip(shown, centre_now, strict=True)]
    camera.center = tuple(new)
    object_size = _world_extent(layer, box)
    view_size = _world_extent(layer, around)
    plane = shown[-2:]
    if all(0 <= a < layer.ndim for a in plane):
        canvas = np.asarray(_canvas_size(viewer), dtype=float)[-2:]
        need = np.maximum(view_size[plane], 1e-12)
        fit = float(np.min(canvas / need))
        whole = float(np.min(canvas / np.maximum(object_size[plane], 1e-12)))
        zoom = float(camera.zoom)
        if not (fit <= zoom <= 0.9 * whole):  # too far out, or the object would not fit
            camera.zoom = fit


def plane_of(viewer, layer: Labels | None, table: dict[str, np.ndarray], label: int,
             row: int) -> tuple[int, ...] | None:
    """Index of the plane to show ``label`` in, on the layer's leading axes (``()``: 2-D)."""
    lead_shape = tuple(layer.data.shape[:-2]) if layer is not None else ()
    if not lead_shape:
        return ()
    if "z" in table:  # the plane of the object's largest section (planes in order)
        plane = int(table["z"][row])
        if 0 <= plane < int(np.prod(lead_shape)):
            return tuple(int(i) for i in np.unravel_index(plane, lead_shape))
    # a table of one slice of the stack: the planes the object is in now; the one shown
    # if it is there
    data = np.asarray(layer_array(layer))
    present = (data == label).reshape(int(np.prod(lead_shape)), -1).any(axis=1)
    planes = np.flatnonzero(present)
    if not planes.size:
        return None
    now = current_index(viewer, layer)
    if now and np.ravel_multi_index(now, lead_shape) in planes:
        return now
    return tuple(int(i) for i in np.unravel_index(int(planes[0]), lead_shape))
