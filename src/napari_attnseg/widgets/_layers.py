"""Layers ↔ arrays: what a widget reads from image layers and how it writes results back.

* reading — the full-resolution array, its spatial shape without a colour
  or channel axis, the stack index of the slice shown now, and which axes
  could hold channels (:func:`channel_axis_options`);
* placing — the data-to-world transform (scale, translate, rotate, shear,
  affine) copied from an image, so an output layer overlays it exactly, also
  for a layer that holds only one slice of the image's stack;
* writing — output layers are named and tagged after what made them, and a
  rerun rewrites the same Labels layer through napari's undo history instead
  of adding a new one (:func:`max_label_outside` says where a slice's new ids
  may start); semantic masks get colours that stay visible on any image
  (:func:`semantic_colormap`);
* telling apart — :func:`output_info` says whether a layer was made by this
  plugin (and what it is), :func:`note_edit` records that the user painted on
  such a layer, so pickers can mark predictions apart from ground truth.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer

#: the key of a layer's ``metadata`` under which output layers say what made them
METADATA_KEY = "napari_attnseg"


def unwrapped(obj: Any) -> Any:
    """The object itself: napari hands plugin widgets proxies (``PublicOnlyProxy``) of its
    viewer and of the layers reached through it, so ``is`` must compare what they wrap."""
    return getattr(obj, "__wrapped__", obj)


def same_object(a: Any, b: Any) -> bool:
    return a is not None and unwrapped(a) is unwrapped(b)


def layer_array(layer: Layer) -> Any:
    """The layer's data at full resolution (level 0 of a multiscale layer), not copied."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_rgb_layer(layer: Layer) -> bool:
    return bool(getattr(layer, "rgb", False))


#: the most entries an axis may have to be offered as a channel axis
MAX_CHANNELS = 4


def channel_axis_options(layer: Layer | None) -> list[int]:
    """Axes of ``layer`` that may hold channels: 0 (first) and/or -1 (last).

    Offered for a grey (not RGB) layer of three or more dimensions whose
    first or last axis has at most :data:`MAX_CHANNELS` entries — a
    ``(2, H, W)`` two-channel image would otherwise be taken as a stack.
    """
    if not isinstance(layer, Image) or is_rgb_layer(layer):
        return []
    shape = layer_array(layer).shape
    if len(shape) < 3:
        return []
    return [axis for axis in (0, -1) if int(shape[axis]) <= MAX_CHANNELS]


def _kept_axes(ndim: int, channel_axis: int | None) -> list[int]:
    """The axes of an ``ndim`` array that are spatial (all but the channel axis)."""
    if channel_axis is None:
        return list(range(ndim))
    return [i for i in range(ndim) if i != channel_axis % ndim]


def spatial_shape(layer: Layer, channel_axis: int | None = None) -> tuple[int, ...]:
    """The layer's shape without a colour or channel axis: ``(*stack, H, W)``."""
    shape = tuple(int(s) for s in layer_array(layer).shape)
    if is_rgb_layer(layer):
        return shape[:-1]
    return tuple(shape[i] for i in _kept_axes(len(shape), channel_axis))


def plane_key(index: tuple[int, ...], channel_axis: int | None) -> tuple:
    """The key that takes stack slice ``index`` out of a layer's data, keeping its channels.

    Channel axes are the first or the last (see :func:`channel_axis_options`),
    so ``channel_axis`` still names the channel axis of the result.
    """
    return (slice(None), *index) if channel_axis == 0 else tuple(index)


def check_image_layer(layer: Image | None, channel_axis: int | None = None) -> None:
    """Raise ``ValueError`` (with a user-facing message) for an unusable image layer."""
    if layer is None:
        raise ValueError("no image selected: open an image (File ▸ Open, or a sample) first")
    shape = spatial_shape(layer, channel_axis)
    if len(shape) < 2:
        raise ValueError(f"image {layer.name!r} is 1D ({shape}); a 2D image is needed")
    if min(shape[-2:]) < 4:
        raise ValueError(f"image {layer.name!r} is too small ({shape[-2]}×{shape[-1]} pixels)")


def current_index(viewer, layer: Layer, channel_axis: int | None = None) -> tuple[int, ...]:
    """The stack index (all spatial axes but the last two) shown now for ``layer``."""
    shape = spatial_shape(layer, channel_axis)
    n_lead = len(shape) - 2
    if n_lead <= 0:
        return ()
    point = np.asarray(viewer.dims.point)[-layer.ndim :]
    data = np.asarray(layer.world_to_data(point))
    axes = _kept_axes(layer.ndim, None if is_rgb_layer(layer) else channel_axis)
    return tuple(int(np.clip(np.round(data[axes[i]]), 0, shape[i] - 1)) for i in range(n_lead))


def placement(layer: Layer, channel_axis: int | None = None) -> dict[str, Any]:
    """Keyword arguments that give a new layer the same data-to-world transform as ``layer``.

    With ``channel_axis``, the transform of the remaining axes: the new layer
    holds the image without its channel axis.
    """
    kwargs = {
        "scale": np.asarray(layer.scale),
        "translate": np.asarray(layer.translate),
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": layer.affine.affine_matrix,
        "units": layer.units,
        "axis_labels": layer.axis_labels,
    }
    if channel_axis is None:
        return kwargs
    keep = _kept_axes(layer.ndim, channel_axis)
    shear = np.eye(layer.ndim)
    shear[np.triu_indices(layer.ndim, 1)] = np.asarray(layer.shear)
    kwargs.update(
        scale=kwargs["scale"][keep],
        translate=kwargs["translate"][keep],
        rotate=kwargs["rotate"][np.ix_(keep, keep)],
        shear=shear[np.ix_(keep, keep)][np.triu_indices(len(keep), 1)],
        affine=kwargs["affine"][np.ix_([*keep, layer.ndim], [*keep, layer.ndim])],
        units=[kwargs["units"][i] for i in keep],
        axis_labels=[kwargs["axis_labels"][i] for i in keep],
    )
    return kwargs


def slice_placement(
    layer: Layer, index: tuple[int, ...], channel_axis: int | None = None
) -> dict[str, Any]:
    """:func:`placement` for a layer holding only the slice ``index`` of ``layer``'s stack.

    Its data is shaped ``(1, …, 1, H, W)``; the translation moves it to the
    slice's position, so napari shows it exactly on that slice.
    """
    from napari.utils.transforms import Affine

    kwargs = placement(layer, channel_axis)
    ndim = len(kwargs["scale"])
    offset = np.zeros(ndim)
    offset[: len(index)] = index
    linear = Affine(scale=kwargs["scale"], rotate=kwargs["rotate"], shear=kwargs["shear"])
    kwargs["translate"] = np.asarray(kwargs["translate"]) + linear(offset)
    return kwargs


def find_layer(viewer, name: str, layer_type: type[Layer], shape: tuple[int, ...]) -> Layer | None:
    """The layer called ``name`` if it has the given type and shape (else None)."""
    if name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    if not isinstance(layer, layer_type) or getattr(layer, "multiscale", False):
        return None
    return layer if tuple(layer.data.shape) == tuple(shape) else None


def replace_labels(layer: Labels, new: np.ndarray, index: tuple[int, ...] = ()) -> None:
    """Write ``new`` into ``layer.data[index]`` as one undoable step (Ctrl+Z restores it).

    Only changed pixels are written, through ``Labels.data_setitem`` inside
    ``block_history``. When the values do not fit the layer's dtype, or the
    data is not a NumPy array, the data is replaced wholesale (not undoable).
    """
    data = layer.data
    new = np.asarray(new)
    _WRITING.add(id(unwrapped(layer)))
    try:
        _replace(layer, data, new, index)
    finally:
        _WRITING.discard(id(unwrapped(layer)))


def _replace(layer: Labels, data: Any, new: np.ndarray, index: tuple[int, ...]) -> None:
    fits = (
        isinstance(data, np.ndarray)
        and np.issubdtype(data.dtype, np.integer)
        and (new.size == 0 or int(new.max()) <= np.iinfo(data.dtype).max)
    )
    if not fits:
        replaced = np.array(data, dtype=np.promote_types(np.asarray(data).dtype, new.dtype))
        replaced[index] = new
        layer.data = replaced
        return
    changed = data[index] != new
    if not changed.any():
        return
    coords = np.nonzero(changed)
    count = coords[0].size
    full = tuple(np.full(count, i, dtype=np.intp) for i in index) + coords
    with layer.block_history():
        layer.data_setitem(full, new[changed].astype(data.dtype))


def max_label_outside(data: Any, index: tuple[int, ...]) -> int:
    """The largest label of a ``(*stack, H, W)`` array outside its slice ``index`` (0: none).

    A slice segmented again into a stack's Labels layer numbers its objects
    above this, so that none takes an id that names an object of another slice.
    """
    data = np.asarray(data)
    if data.size == 0:
        return 0
    maxima = np.array(data.max(axis=(-2, -1)), dtype=np.int64)  # one per slice
    maxima[tuple(index)] = 0
    return max(int(maxima.max()), 0)


def output_info(layer: Layer | None) -> dict[str, Any] | None:
    """What made ``layer`` when this plugin did (its :data:`METADATA_KEY` metadata), else None.

    Layers the user opened or painted from scratch have none: they are the
    images and the ground truth; layers with it are predictions, probability
    and attention maps.
    """
    metadata = getattr(layer, "metadata", None)
    info = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return info if isinstance(info, dict) else None


#: ids of the layers :func:`replace_labels` is writing now (their paint events are not edits)
_WRITING: set[int] = set()


def note_edit(layer: Layer | None) -> None:
    """Record that the user changed a plugin-made Labels layer (``"edited": True``).

    Connected to ``layer.events.paint`` (painting, filling, erasing); the
    plugin's own rewrites (:func:`replace_labels`) do not count. A rerun that
    replaces the layer's metadata makes it an unedited prediction again.
    """
    layer = unwrapped(layer)
    if id(layer) in _WRITING:
        return
    info = output_info(layer)
    if info is not None and not info.get("edited"):
        info["edited"] = True


def track_edits(layer: Layer) -> None:
    """Have :func:`note_edit` follow the user's painting on ``layer`` (once per layer)."""
    target = unwrapped(layer)
    paint = getattr(getattr(target, "events", None), "paint", None)
    if paint is None or target in _TRACKED:
        return
    paint.connect(lambda event=None: note_edit(target))
    _TRACKED.add(target)


#: the layers whose painting :func:`note_edit` follows
_TRACKED: weakref.WeakSet = weakref.WeakSet()


#: class colours of semantic masks: 1 cyan, 2 yellow, 3 lime, 4 light blue, 5 magenta,
#: 6 orange — bright, saturated and far from the reds and browns of fundus, endoscopy
#: and stained images (napari's own label 1 is a dark red-brown)
SEMANTIC_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.0, 1.0, 1.0),
    (1.0, 1.0, 0.0),
    (0.4, 1.0, 0.2),
    (0.35, 0.6, 1.0),
    (1.0, 0.2, 1.0),
    (1.0, 0.6, 0.0),
)
#: the colour of a class beyond :data:`SEMANTIC_COLORS` (white)
OTHER_CLASS_COLOR = (1.0, 1.0, 1.0)


def semantic_colormap():
    """The fixed, high-contrast label colours of a semantic mask (background transparent).

    Why always, not only over red images: napari colours labels at random for
    telling *objects* apart, and its label 1 is a dark red-brown that vanishes
    on fundus photographs, endoscopy frames and H&E-stained tissue. A semantic
    mask has one or a few classes that need no telling apart by chance, so each
    class gets the same bright colour on every image — class 1 is always cyan
    (red's complement, and bright on grey or fluorescence images too), class 2
    yellow, … (:data:`SEMANTIC_COLORS`). Filled colours, not contours: the
    mask is what the user corrects with the brush before fine-tuning, so its
    area must be seen. The user can still change the colours in napari's
    layer controls, and a rerun into the same layer keeps their choice.
    """
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[int | None, Any] = {None: (*OTHER_CLASS_COLOR, 1.0), 0: (0.0, 0.0, 0.0, 0.0)}
    for value, rgb in enumerate(SEMANTIC_COLORS, start=1):
        colors[value] = (*rgb, 1.0)
    return DirectLabelColormap(color_dict=colors, name="napari-attnseg classes")


def is_semantic(metadata: dict[str, Any], data: np.ndarray) -> bool:
    """True for a class mask: not written as instances, with at most one label per colour."""
    info = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if isinstance(info, dict) and info.get("role") == "instances":
        return False
    return data.size == 0 or int(np.max(data)) <= len(SEMANTIC_COLORS)


def output_name(image_name: str, model_name: str, suffix: str = "") -> str:
    """``"<image> [<model>]"`` (plus a suffix): output layers say what made them."""
    return f"{image_name} [{model_name}]{suffix}"


def output_metadata(image_name: str, model_name: str, role: str, **extra: Any) -> dict[str, Any]:
    """Layer ``metadata`` that records the image, model and role (labels, probability, …)."""
    return {METADATA_KEY: {"image": image_name, "model": model_name, "role": role, **extra}}


def write_labels(
    viewer,
    name: str,
    shape: tuple[int, ...],
    slices: list[tuple[tuple[int, ...], np.ndarray]],
    *,
    placement: dict[str, Any],
    metadata: dict[str, Any],
    reuse: bool = True,
) -> Labels:
    """Put labels for some slices of a stack into the Labels layer called ``name``.

    ``slices`` pairs a stack index (``()`` for the whole array) with its
    labels. With ``reuse``, an existing layer of that name and ``shape`` is
    rewritten through :func:`replace_labels`, so a rerun is one Ctrl+Z away
    from the previous result; otherwise a new layer (zero outside the given
    slices, placed by ``placement``, tagged with ``metadata``) is added. A new
    class mask (not instances; :func:`is_semantic`) is coloured by
    :func:`semantic_colormap`; instance labels keep napari's random colours,
    which tell neighbouring objects apart. Painting on the layer marks it
    edited (:func:`track_edits`).
    """
    layer = find_layer(viewer, name, Labels, shape) if reuse else None
    if layer is not None:
        for index, labels in slices:
            replace_labels(layer, labels, index)
        track_edits(layer)
        return layer
    data = np.zeros(shape, dtype=np.result_type(*[labels.dtype for _, labels in slices]))
    for index, labels in slices:
        data[index] = labels
    colors = {"colormap": semantic_colormap()} if is_semantic(metadata, data) else {}
    layer = viewer.add_labels(data, name=name, metadata=metadata, **colors, **placement)
    track_edits(layer)
    return layer
