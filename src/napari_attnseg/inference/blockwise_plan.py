"""Planning a block-wise prediction: which blocks, which region each is read from, which settings.

A plane is cut into blocks of ``chunk``×``chunk`` pixels (:func:`plan_blocks`).
Why the blocks show no seams, and how close they are to one whole-image call:

* MONAI's sliding window lays windows on a grid that starts at 0 with step
  ``tile·(1−overlap)``, the last window flush with the edge. A block is
  predicted from the region covered by every window of the *whole plane's*
  grid that touches the block (:func:`covering_span`). That region starts and
  ends on window edges, so MONAI lays exactly those windows in it and blends
  them with the same Gaussian weights in the same order: the block's pixels
  get the values the whole-plane prediction gives them. Test-time flips are
  passes of their own (:class:`Pass`), each on the grid the flipped plane has
  (laid from the far edge), averaged in ``Predictor``'s order. The result is
  bit for bit the whole-plane prediction with ``batch_size=1``; with larger
  batches the backend's convolution kernels round differently for different
  batch compositions (~1e-5, as they do within one process). The halo is thus
  between ``tile·overlap`` and one tile on each side.
* Where that grid cannot be followed — a card whose working scale is not 1
  (the plane is resized before tiling) — the region is the block plus one tile
  (at the working scale) on each side and is predicted as is; results then
  match the whole-image prediction up to tiles meeting at other places.

Regions are read from any array-like in the image's own axes
(:func:`read_region`), only that region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..data.input_spec import Layout
from ..models.card import ModelCard
from .fov_scale import uses_fov
from .objects import uses_diameter
from .predictor import InferenceSettings
from .tiles import window_starts


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


def blockwise_settings(
    settings: InferenceSettings, card: ModelCard
) -> tuple[InferenceSettings, list[str]]:
    """The settings a block-wise run can honour, and a note for each one it drops.

    Instances, matching the object diameter or the field of view and the card's
    automatic region need the whole image (each block would otherwise measure,
    resample or find its own), so a block-wise run predicts at the trained scale,
    everywhere, class labels.
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


__all__ = [
    "Block",
    "Pass",
    "as_hwc",
    "blockwise_settings",
    "covering_span",
    "plan_blocks",
    "read_region",
    "region_key",
    "window_starts",
]
