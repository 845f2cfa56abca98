"""Segment's "restrict to": a region of interest from a Labels or a Shapes layer.

:class:`RoiPicker` offers *auto* (the model's own region, e.g. the field of
view of a fundus photograph, or the whole image when its card has none),
*whole image* (``roi="none"``: also switch the model's region off) and every
Labels and Shapes layer. :func:`roi_mask` turns the chosen layer into a mask
on the image's pixel grid (nonzero = inside):

* a **Labels** layer on the image's grid (the same transform; data shaped
  like the image, or like one plane of it) is used as it is — stack-shaped
  labels restrict each plane by their own plane;
* a Labels layer placed differently (another scale, translation, rotation or
  shear), or a 2D one over a stack, is resampled (nearest neighbour) onto the
  image's plane from the plane of it shown now; one mask for every plane;
* a **Shapes** layer's vertices are carried into the image's pixel
  coordinates through both layers' transforms and drawn there by napari
  itself (``Shapes.to_masks``); one mask for every plane. Rectangles,
  polygons and ellipses are areas; lines and paths enclose nothing.

Transforms are taken in the image plane (the last two axes): a rotation that
tilts a plane out of the image's planes is not supported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes
from scipy import ndimage as ndi

from ._layers import _kept_axes, is_rgb_layer, layer_array
from ._pickers import ElidingCombo

AUTO, WHOLE = "auto", "none"
ROI_TYPES = (Labels, Shapes)


class RoiPicker(ElidingCombo):
    """auto / whole image / each Labels and Shapes layer, following the layer list."""

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._auto_text = "auto: the model's region, if any"
        self.setToolTip(
            "segment only inside a region: a Labels layer (nonzero pixels) or a Shapes layer "
            "(its rectangles, polygons, ellipses). auto: the model's own region (fundus models "
            "find the field of view) or the whole image; whole image: no region at all"
        )
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved, events.reordered):
            emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if getattr(event, "type", "") == "inserted" and layer is not None:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _entries(self) -> list[tuple[str, str]]:
        entries = [(self._auto_text, AUTO), ("whole image", WHOLE)]
        for layer in self.viewer.layers:
            if isinstance(layer, ROI_TYPES):
                kind = "labels" if isinstance(layer, Labels) else "shapes"
                entries.append((f"{layer.name}  ({kind})", "layer:" + layer.name))
        return entries

    def refresh(self, *_: Any) -> None:
        entries = self._entries()
        current = self.currentData() or AUTO
        if [(self.itemText(i), self.itemData(i)) for i in range(self.count())] == entries:
            return
        self.blockSignals(True)
        self.clear()
        for text, data in entries:
            self.addItem(text, data)
        index = self.findData(current)
        self.setCurrentIndex(index if index >= 0 else 0)
        self.blockSignals(False)
        self._update_tooltip()

    def set_model_region(self, description: str | None) -> None:
        """Say what *auto* means for the selected model (None: it has no region of its own)."""
        self._auto_text = f"auto: {description}" if description else "auto: whole image"
        self.setItemText(0, self._auto_text)
        self._update_tooltip()

    def value(self) -> str:
        """``"auto"``, ``"none"`` or ``"layer:<name>"``."""
        return str(self.currentData() or AUTO)

    def layer(self) -> Layer | None:
        """The chosen Labels or Shapes layer (None for auto / whole image)."""
        value = self.value()
        if not value.startswith("layer:"):
            return None
        name = value[len("layer:"):]
        if name not in self.viewer.layers:
            raise ValueError(f"the region layer {name!r} is no longer in the viewer")
        return self.viewer.layers[name]

    def select(self, value: str | Layer) -> None:
        """Choose ``"auto"``, ``"none"``, or a layer (by layer or name)."""
        self.refresh()
        if isinstance(value, Layer):
            value = "layer:" + value.name
        elif value not in (AUTO, WHOLE):
            value = "layer:" + value
        index = self.findData(value)
        if index < 0:
            raise ValueError(f"no Labels or Shapes layer called {value[6:]!r}")
        self.setCurrentIndex(index)


# -- masks on the image's grid ----------------------------------------------------------------
def _yx_axes(image: Image, channel_axis: int | None) -> list[int]:
    """The image data axes that hold its rows and columns."""
    return _kept_axes(image.ndim, None if is_rgb_layer(image) else channel_axis)[-2:]


def _data_yx_to_world(layer: Layer, yx: np.ndarray, axes: list[int], base) -> np.ndarray:
    point = np.array(base, dtype=float)
    point[axes] = yx
    return np.asarray(layer.data_to_world(point), dtype=float)


def image_to_layer(image: Image, layer: Layer, viewer, channel_axis: int | None = None):
    """``(matrix, offset)``: image data (row, column) → ``layer`` data (row, column).

    Both layers' data-to-world transforms are followed through the world
    coordinates of the plane shown now (the viewer's other axes as they are).
    """
    axes = _yx_axes(image, channel_axis)
    world_point = np.asarray(viewer.dims.point, dtype=float)
    base = np.asarray(image.world_to_data(world_point[-image.ndim:]), dtype=float)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mapped = []
    for yx in corners:
        world = _data_yx_to_world(image, yx, axes, base)[-2:]
        full = np.array(world_point[-layer.ndim:], dtype=float)
        full[-2:] = world
        mapped.append(np.asarray(layer.world_to_data(full), dtype=float)[-2:])
    q0, q1, q2 = mapped
    return np.column_stack([q1 - q0, q2 - q0]), q0


def _is_identity(matrix: np.ndarray, offset: np.ndarray) -> bool:
    return np.allclose(matrix, np.eye(2), atol=1e-6) and np.allclose(offset, 0.0, atol=1e-6)


def roi_mask(
    layer: Layer,
    image: Image,
    viewer,
    shape: tuple[int, ...],
    *,
    channel_axis: int | None = None,
) -> np.ndarray:
    """A bool mask for ``image`` of spatial ``shape`` (``(*stack, H, W)``) from ``layer``.

    Returns ``shape`` (a stack-shaped Labels layer on the image's grid) or
    ``(H, W)`` (one mask for every plane). ``ValueError`` naming the layer when
    the region is empty or the layer is of another kind.
    """
    matrix, offset = image_to_layer(image, layer, viewer, channel_axis)
    plane = tuple(shape[-2:])
    if isinstance(layer, Labels):
        mask = _labels_mask(layer, viewer, shape, matrix, offset)
    elif isinstance(layer, Shapes):
        mask = _shapes_mask(layer, plane, matrix, offset)
    else:
        raise ValueError(f"{layer.name!r} is a {type(layer).__name__} layer: restrict to a "
                         "Labels or a Shapes layer")
    if not mask.any():
        raise ValueError(f"the region {layer.name!r} does not cover any pixel of "
                         f"{image.name!r}: paint or draw inside the image first")
    return mask


def _labels_mask(layer: Labels, viewer, shape, matrix, offset) -> np.ndarray:
    data = layer_array(layer)
    if _is_identity(matrix, offset) and tuple(data.shape) in (tuple(shape), tuple(shape[-2:])):
        return np.asarray(data) != 0
    plane = np.asarray(data)
    if plane.ndim > 2:  # the plane of the labels shown now
        point = np.asarray(viewer.dims.point)[-layer.ndim:]
        index = np.round(np.asarray(layer.world_to_data(point))[:-2]).astype(int)
        index = np.clip(index, 0, np.asarray(plane.shape[:-2]) - 1)
        plane = plane[tuple(index)]
    inside = (plane != 0).astype(np.uint8)
    out = ndi.affine_transform(inside, matrix, offset=offset, output_shape=tuple(shape[-2:]),
                               order=0, mode="constant", cval=0)
    return out != 0


def _shapes_mask(layer: Shapes, plane: tuple[int, int], matrix, offset) -> np.ndarray:
    if not len(layer.data):
        raise ValueError(f"the Shapes layer {layer.name!r} holds no shapes: draw a region first")
    inverse = np.linalg.inv(matrix)
    vertices = [(np.asarray(v, dtype=float)[:, -2:] - offset) @ inverse.T for v in layer.data]
    drawn = Shapes(vertices, shape_type=list(layer.shape_type))
    return np.asarray(drawn.to_masks(mask_shape=plane)).any(axis=0)
