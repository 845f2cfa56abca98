"""The tile grid of a sliding-window prediction: one rule, MONAI's.

:class:`~napari_attnseg.inference.Predictor` tiles with MONAI's
``sliding_window_inference``; block-wise prediction follows the same grid and the
benchmark counts its tiles. All of them ask :func:`window_starts`.

MONAI (``monai.inferers.utils``) pads an axis shorter than the tile up to the
tile, steps by ``int(tile * (1 - overlap))`` (at least 1; a full step when the
tile equals the axis), and lays windows from 0 until one reaches the end, the
last shifted back to end flush with the edge (``dense_patch_slices``). Along an
axis of ``length > tile`` that is ``ceil((length - tile) / step) + 1`` windows.

No napari, Qt or torch here.
"""

from __future__ import annotations

__all__ = ["window_starts"]


def window_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Where MONAI's ``sliding_window_inference`` starts its windows along an axis.

    ``len(window_starts(...))`` is the number of windows along the axis (the
    windows of an image are the product over its axes); each window covers
    ``[start, start + tile)``. An axis no longer than ``tile`` is one window at 0
    (MONAI pads it up to the tile). The windows cover ``[0, length)``.

    >>> window_starts(100, 64, 0.25)   # step 48
    [0, 36]
    >>> window_starts(40, 64, 0.5)
    [0]
    """
    length, tile = int(length), int(tile)
    if tile < 1:
        raise ValueError(f"the tile must be at least 1 pixel, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if length <= tile:
        return [0]
    step = int(tile * (1 - overlap)) or 1  # MONAI's _get_scan_interval, to the bit
    count = -(-(length - tile) // step) + 1  # ceil, in integers
    return [min(i * step, length - tile) for i in range(count)]
