"""One input specification: how a model card turns a user's array into network input, and back.

Every path that feeds a network — prediction, attention maps, fine-tuning
samples painted in napari, folder datasets for training — goes through an
:class:`InputSpec` built from the model card, so a model always sees its
inputs exactly as it was trained on them (nnU-Net's single preprocessor is
the model for this). Nothing else in the package converts channels,
normalises or resizes an image for a network.

The rules, in the order they run:

1. **Layout** (:func:`canonical`): where the channels are. napari's
   convention decides by default — a trailing axis of 3 or 4 on an array of
   three or more dimensions is RGB(A) (:func:`is_colour`, the one RGB test of
   the package); ``channel_axis`` names another channel axis (a ``(2, H, W)``
   two-channel image); every other leading axis is a stack (Z, T, …).
   The array is viewed as ``(*stack, H, W, C)`` without copying.
2. **Channels** (:meth:`InputSpec.channels`): alpha is dropped, grey becomes
   RGB by repetition and RGB becomes grey by luminance when the model wants
   it; other mismatches are an error that names both counts.
3. **Clean-up**: NaN and ±Inf pixels are replaced by the median of the
   finite pixels of their channel, and counted so the caller can say so.
4. **Normalisation** per the card (:func:`.normalization.normalize`'s modes).
   Rules 3–4 are split into :meth:`InputSpec.statistics` (what they measure
   on a whole image: the fill medians, mean/std or low/high per channel;
   exact on NumPy, by Dask reductions on Dask/zarr arrays too large to read)
   and :meth:`InputSpec.apply` (those statistics applied to any part of the
   image), so a block of a large image is normalised as the whole image
   would be (block-wise prediction) and a whole image as the Predictor does.
5. **Working size**: the card's fixed ``input_size``, else the image scaled by
   the card's ``input_scale`` times an extra ``zoom`` (object-size
   matching); bilinear with anti-aliasing when shrinking, nearest for labels.

:meth:`InputSpec.restore` maps network outputs back onto the user's grid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..models.base import SegmentationModel
from ..models.card import DEFAULT_NORMALIZATION, ModelCard, check_spec
from .normalization import _affine, normalize
from .resize import resize_image, resize_labels, working_size

#: sizes of a trailing axis that napari (and this package) take for colour
COLOUR_SIZES = (3, 4)
#: what :meth:`InputSpec.statistics` measures on one plane (see there)
Statistics = dict[str, np.ndarray]
#: luminance weights used by ``skimage.color.rgb2gray`` (ITU-R BT.709)
RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)


def is_colour(shape: Sequence[int], rgb: bool | None = None) -> bool:
    """Whether the last axis of an array of ``shape`` holds RGB(A) colour.

    ``rgb`` decides when given; otherwise napari's convention: an array of
    three or more dimensions whose last axis has 3 or 4 entries.
    """
    if rgb is not None:
        return bool(rgb)
    return len(shape) >= 3 and int(shape[-1]) in COLOUR_SIZES


def colour_over(shape: Sequence[int], grid: Sequence[int]) -> bool | None:
    """Whether an image of ``shape`` laid over pixels ``grid`` (e.g. labels) is colour.

    False when the image is the grid itself (grey, checked first); True when it is
    the grid plus a trailing RGB(A) axis (:func:`is_colour`); None when it fits
    neither.
    """
    shape, grid = tuple(int(s) for s in shape), tuple(int(s) for s in grid)
    if shape == grid:
        return False
    if shape[:-1] == grid and is_colour(shape):
        return True
    return None


@dataclass(frozen=True)
class Layout:
    """Where an array's channels are, and what is left: ``(*stack, H, W)``."""

    #: the array's shape
    shape: tuple[int, ...]
    #: the channel axis (non-negative), or None for a grey image/stack
    channel_axis: int | None
    #: whether the channel axis is trailing RGB(A) colour (alpha is then dropped)
    rgb: bool

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis: ``(*stack, H, W)``."""
        return tuple(s for i, s in enumerate(self.shape) if i != self.channel_axis)

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return self.spatial_shape[:-2]

    @property
    def channels(self) -> int:
        return 1 if self.channel_axis is None else int(self.shape[self.channel_axis])


def layout_of(
    shape: Sequence[int], *, rgb: bool | None = None, channel_axis: int | None = None
) -> Layout:
    """The :class:`Layout` of an array of ``shape`` (see the module docstring, rule 1)."""
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise ValueError(f"channel axis must be an integer, got {channel_axis!r}")
        if not -ndim <= channel_axis < ndim:
            raise ValueError(
                f"channel axis {channel_axis} does not exist in an array of shape {shape} "
                f"(allowed: {-ndim}..{ndim - 1})"
            )
        axis = int(channel_axis) % ndim
        if ndim < 3:
            raise ValueError(f"an array of shape {shape} has no room for a channel axis")
        colour = rgb is True
        if colour and (axis != ndim - 1 or shape[axis] not in COLOUR_SIZES):
            raise ValueError(f"an RGB image needs a last axis of 3 or 4, got shape {shape}")
    elif is_colour(shape, rgb):
        if ndim < 3 or shape[-1] not in COLOUR_SIZES:
            raise ValueError(f"an RGB image needs a last axis of 3 or 4, got shape {shape}")
        axis, colour = ndim - 1, True
    else:
        axis, colour = None, False
    spatial = ndim - (axis is not None)
    if spatial < 2:
        raise ValueError(
            f"an image needs two spatial axes (H, W), got shape {shape}"
            + (f" with channel axis {axis}" if axis is not None else "")
        )
    layout = Layout(shape, axis, colour)
    height, width = layout.spatial_shape[-2:]
    if height < 1 or width < 1:
        raise ValueError(f"the image is empty: shape {shape}")
    return layout


def canonical(
    array: Any, *, rgb: bool | None = None, channel_axis: int | None = None
) -> tuple[Any, Layout]:
    """View ``array`` as ``(*stack, H, W, C)`` (no copy) and return it with its layout."""
    layout = layout_of(np.shape(array), rgb=rgb, channel_axis=channel_axis)
    if layout.channel_axis is None:
        return array[..., None], layout
    return np.moveaxis(array, layout.channel_axis, -1), layout


@dataclass
class Prepared:
    """One image ready for the network, and what is needed to map outputs back."""

    #: (1, C, h, w) float32 at the working size
    tensor: torch.Tensor
    #: the image's own (H, W)
    size: tuple[int, int]
    #: NaN/±Inf pixels that were replaced (over all channels)
    nonfinite: int = 0


@dataclass(frozen=True)
class InputSpec:
    """The card's input handling for one model: channels, normalisation, working size."""

    in_channels: int
    normalization: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALIZATION))
    #: images are resized by this factor before the network (the training scale)
    scale: float = 1.0
    #: a fixed (H, W) every image is resized to instead (models trained on whole frames)
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int):
            raise ValueError(f"in_channels must be a positive integer, got {self.in_channels!r}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {self.in_channels!r}")
        object.__setattr__(self, "normalization", check_spec(self.normalization))
        if not float(self.scale or 1.0) > 0:
            raise ValueError(f"input scale must be > 0, got {self.scale}")
        if self.size is not None:
            size = tuple(int(s) for s in self.size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"input size must be (H, W) with positive sides, got {self.size}")
            object.__setattr__(self, "size", size)

    # -- construction -----------------------------------------------------------
    @classmethod
    def from_card(cls, card: ModelCard, in_channels: int) -> InputSpec:
        return cls(
            in_channels,
            dict(card.normalization or DEFAULT_NORMALIZATION),
            float(card.input_scale or 1.0),
            tuple(card.input_size) if card.input_size else None,
        )

    @classmethod
    def of(cls, model: SegmentationModel) -> InputSpec:
        """The spec of a model's card (a default card: z-score, native scale)."""
        card = model.card if model.card is not None else ModelCard(name=model.name)
        return cls.from_card(card, model.in_channels)

    # -- rules --------------------------------------------------------------------
    def channels(self, plane: np.ndarray, *, rgb: bool = False) -> np.ndarray:
        """An ``(H, W, C)`` plane as ``(in_channels, H, W)`` float32 (rule 2)."""
        plane = np.asarray(plane)
        if plane.ndim != 3:
            raise ValueError(f"expected an (H, W, C) plane, got shape {plane.shape}")
        if not (np.issubdtype(plane.dtype, np.number) or plane.dtype == bool):
            raise ValueError(f"the image must be numeric, got dtype {plane.dtype}")
        if rgb:
            plane = plane[..., :3]
        chw = np.moveaxis(plane, -1, 0).astype(np.float32)
        channels = chw.shape[0]
        if channels == self.in_channels:
            return np.ascontiguousarray(chw)
        if channels == 1 and self.in_channels == 3:
            return np.repeat(chw, 3, axis=0)
        if channels == 3 and self.in_channels == 1:
            return np.tensordot(RGB_TO_GREY, chw, axes=1)[None].astype(np.float32)
        raise ValueError(
            f"the image has {channels} channel(s) but the model expects {self.in_channels}"
        )

    def network_input(self, plane: np.ndarray, *, rgb: bool = False) -> tuple[np.ndarray, int]:
        """Rules 2–4 on an ``(H, W, C)`` plane: ``((C, H, W) float32, replaced pixels)``."""
        chw = self.channels(plane, rgb=rgb)
        filled, stats, replaced = self._measure(chw)
        return self._normalise(filled, stats), replaced

    # -- statistics (rules 3–4 measured on a whole image, applied to any part) --------
    def statistics(
        self,
        image: Any,
        *,
        rgb: bool = False,
        compute: Callable[[Any], Any] | None = None,
    ) -> list[Statistics]:
        """Per-plane statistics of an image viewed as ``(*stack, H, W, C)`` (:func:`canonical`).

        One dict per plane (``np.ndindex(*stack)`` order): ``fill``, the
        median of each channel's finite pixels that replaces its NaN/±Inf
        pixels (``(C,)``, 0 where there are none), and the card mode's
        ``mean``/``std`` or ``low``/``high`` (``(C, 1, 1)``). :meth:`apply`
        with them normalises any part of a plane as :meth:`network_input`
        normalises the whole plane. A NumPy array is measured exactly as
        :meth:`network_input` measures; a Dask array, a zarr array or any
        other array-like by Dask reductions, read chunk by chunk (mean, std,
        min and max exact up to float64 rounding; percentiles and fill
        medians Dask's approximate ones). ``compute`` evaluates Dask
        collections (default: threads in this process; pass a cluster's).
        """
        if isinstance(image, np.ndarray):
            return [
                self.plane_statistics(self.channels(image[p], rgb=rgb))
                for p in np.ndindex(*image.shape[:-3])
            ]
        return _lazy_statistics(self, image, rgb, compute)

    def plane_statistics(self, chw: np.ndarray) -> Statistics:
        """:meth:`statistics` of one ``(C, H, W)`` plane already in the model's channels."""
        return self._measure(chw)[1]

    def apply(self, chw: np.ndarray, stats: Statistics) -> np.ndarray:
        """Rules 3–4 on a ``(C, h, w)`` part of a plane, with the plane's :meth:`statistics`."""
        filled, _, _ = _fill_nonfinite(np.asarray(chw, dtype=np.float32), stats["fill"])
        return self._normalise(filled, stats)

    def _measure(self, chw: np.ndarray) -> tuple[np.ndarray, Statistics, int]:
        """``(filled image, statistics, replaced pixels)`` of a whole ``(C, H, W)`` plane."""
        filled, fill, replaced = _fill_nonfinite(np.asarray(chw, dtype=np.float32))
        stats: Statistics = {"fill": fill}
        mode = self.normalization["mode"]
        if self.normalization.get("clahe"):
            pass  # CLAHE adapts to each image; only the fill carries over
        elif mode == "zscore":
            stats["mean"] = filled.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
            stats["std"] = filled.std(axis=(1, 2), keepdims=True, dtype=np.float64)
        elif mode == "percentile":
            q = _percentiles(self.normalization)
            stats["low"], stats["high"] = np.percentile(filled, q, axis=(1, 2), keepdims=True)
        elif mode == "minmax":
            stats["low"] = filled.min(axis=(1, 2), keepdims=True)
            stats["high"] = filled.max(axis=(1, 2), keepdims=True)
        return filled, stats, replaced

    def _normalise(self, chw: np.ndarray, stats: Statistics) -> np.ndarray:
        """Rule 4 on a finite ``(C, h, w)`` float32 image with given statistics."""
        mode = self.normalization["mode"]
        if self.normalization.get("clahe") or mode not in ("zscore", "percentile", "minmax"):
            return normalize(chw, self.normalization)  # "dataset", "none", CLAHE: per image
        if mode == "zscore":
            return _affine(chw, stats["mean"], stats["std"])
        scaled = _affine(chw, stats["low"], stats["high"] - stats["low"])
        return np.clip(scaled, 0.0, 1.0) if mode == "percentile" else scaled

    def working_size(self, height: int, width: int, zoom: float = 1.0) -> tuple[int, int]:
        """(H, W) an image of ``height``×``width`` is resized to for the network (rule 5)."""
        if self.size is not None:
            return self.size
        return working_size(height, width, scale=self.scale * float(zoom))

    def prepare(self, plane: np.ndarray, *, rgb: bool = False, zoom: float = 1.0) -> Prepared:
        """One ``(H, W, C)`` plane as a ``(1, C, h, w)`` network input (rules 2–5)."""
        chw, replaced = self.network_input(plane, rgb=rgb)
        size = (int(chw.shape[1]), int(chw.shape[2]))
        x = resize_image(torch.from_numpy(chw)[None], self.working_size(*size, zoom))
        return Prepared(x, size, replaced)

    def restore(self, output: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Network output ``(N, K, h, w)`` resampled (bilinear) onto the image's (H, W)."""
        size = (int(size[0]), int(size[1]))
        if tuple(output.shape[-2:]) == size:
            return output
        return torch.nn.functional.interpolate(
            output, size=size, mode="bilinear", align_corners=False
        )

    def training_arrays(
        self,
        plane: np.ndarray,
        mask: np.ndarray,
        roi: np.ndarray | None = None,
        *,
        rgb: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """An annotated plane at the working size: ``(image (C, h, w), mask, roi, replaced)``.

        The image goes through rules 2–5 exactly as at prediction time; the
        mask (class indices, −1 = ignored) and the region of interest are
        resampled with nearest neighbour.
        """
        chw, replaced = self.network_input(plane, rgb=rgb)
        size = self.working_size(*chw.shape[1:])
        if tuple(chw.shape[1:]) != size:
            chw = resize_image(torch.from_numpy(chw)[None], size)[0].numpy()
            mask = resize_labels(mask, size)
            roi = None if roi is None else resize_labels(roi, size)
        return chw, mask, roi, replaced


def replace_nonfinite(chw: np.ndarray) -> tuple[np.ndarray, int]:
    """NaN/±Inf pixels replaced by their channel's finite median: ``(image, count)``."""
    out, _, count = _fill_nonfinite(chw)
    return out, count


def _fill_nonfinite(
    chw: np.ndarray, fill: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(image, fill, count)``: NaN/±Inf pixels of each channel replaced by ``fill[c]``.

    Without ``fill``, each channel's median of its finite pixels (0 if none).
    """
    finite = np.isfinite(chw)
    measure = fill is None
    fill = np.zeros(chw.shape[0]) if measure else np.asarray(fill, dtype=np.float64)
    if finite.all():
        return chw, fill, 0
    out = chw.copy()
    for c in range(out.shape[0]):
        bad = ~finite[c]
        if bad.any():
            if measure:
                values = out[c][finite[c]]
                fill[c] = float(np.median(values)) if values.size else 0.0
            out[c][bad] = fill[c]
    return out, fill, int((~finite).sum())


def _percentiles(normalization: Mapping[str, Any]) -> list[float]:
    return [float(normalization.get("low", 1.0)), float(normalization.get("high", 99.8))]


#: chunk edge (pixels) for reading a lazy array that is not a Dask array yet
LAZY_CHUNK = 2048


def _channels_of_block(block: np.ndarray, spec: InputSpec, rgb: bool) -> np.ndarray:
    """Rule 2 on every plane of a ``(*stack, h, w, C)`` block; non-finite pixels become NaN."""
    out = np.empty((*block.shape[:-1], spec.in_channels), np.float32)
    for index in np.ndindex(*block.shape[:-3]):
        out[index] = np.moveaxis(spec.channels(block[index], rgb=rgb), 0, -1)
    return np.where(np.isfinite(out), out, np.nan)


def _lazy_statistics(
    spec: InputSpec, image: Any, rgb: bool, compute: Callable[[Any], Any] | None
) -> list[Statistics]:
    """:meth:`InputSpec.statistics` of a lazy ``(*stack, H, W, C)`` array, by Dask reductions."""
    import dask
    import dask.array as da

    if compute is None:

        def compute(collections):
            return dask.compute(collections, scheduler="threads")[0]

    if not isinstance(image, da.Array):
        shape = tuple(int(s) for s in image.shape)
        chunks = (*([1] * (len(shape) - 3)), *(min(s, LAZY_CHUNK) for s in shape[-3:-1]), shape[-1])
        image = da.from_array(image, chunks=chunks, asarray=True)
    image = image.rechunk({-1: -1})
    view = da.map_blocks(
        _channels_of_block,
        image,
        spec=spec,
        rgb=rgb,
        dtype=np.float32,
        chunks=(*image.chunks[:-1], (spec.in_channels,)),
    )
    planes = [tuple(p) for p in np.ndindex(*view.shape[:-3])]
    channels = range(spec.in_channels)

    def finite(plane, c):
        values = view[(*plane, Ellipsis, c)].ravel()
        return values[~da.isnan(values)]

    axes = (-3, -2)
    lazy: dict[str, Any] = {"bad": da.isnan(view).sum(axis=axes)}
    mode = spec.normalization["mode"]
    if spec.normalization.get("clahe"):
        pass
    elif mode == "zscore":
        lazy["mean"] = da.nanmean(view, axis=axes, dtype=np.float64)
        lazy["std"] = da.nanstd(view, axis=axes, dtype=np.float64)
    elif mode == "minmax":
        lazy["low"], lazy["high"] = da.nanmin(view, axis=axes), da.nanmax(view, axis=axes)
    elif mode == "percentile":
        q = _percentiles(spec.normalization)
        lazy["quantiles"] = [da.percentile(finite(p, c), q) for p in planes for c in channels]
    done = compute(lazy)
    bad = np.asarray(done["bad"])
    where = [(p, c) for p in planes for c in channels if bad[p][c]]
    medians = {}
    if where:
        found = compute([da.percentile(finite(*pc), [50.0]) for pc in where])
        medians = dict(zip(where, found, strict=True))
    out = []
    shape = (spec.in_channels, 1, 1)
    for n, plane in enumerate(planes):
        fill = [float(medians[plane, c][0]) if (plane, c) in medians else 0.0 for c in channels]
        stats: Statistics = {"fill": np.array(fill)}
        for name in ("mean", "std", "low", "high"):
            if name in done:
                stats[name] = np.asarray(done[name])[plane].reshape(shape)
        if "quantiles" in done:
            pairs = done["quantiles"][n * len(channels) : (n + 1) * len(channels)]
            stats["low"] = np.array([q[0] for q in pairs], np.float64).reshape(shape)
            stats["high"] = np.array([q[1] for q in pairs], np.float64).reshape(shape)
        out.append(stats)
    return out


__all__ = [
    "COLOUR_SIZES",
    "InputSpec",
    "Layout",
    "Prepared",
    "Statistics",
    "canonical",
    "colour_over",
    "is_colour",
    "layout_of",
    "replace_nonfinite",
]
