"""The one tile grid (inference/tiles.py) is the one MONAI's sliding window runs."""

from __future__ import annotations

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval

from napari_attnseg.benchmark import tiles_per_axis
from napari_attnseg.inference.blockwise import window_starts as blockwise_starts
from napari_attnseg.inference.tiles import window_starts

#: (length, tile, overlap): shorter than, equal to, one over the tile, steps that
#: do and do not divide the rest, a step rounded down to 0 (MONAI then steps by 1)
CASES = [
    (20, 32, 0.25),
    (32, 32, 0.25),
    (32, 32, 0.0),
    (33, 32, 0.25),
    (64, 32, 0.0),
    (65, 32, 0.0),
    (100, 32, 0.25),
    (100, 32, 0.5),
    (97, 24, 0.9),
    (40, 7, 1 / 3),
    (12, 4, 0.8),
    (9, 1, 0.5),
]


def monai_calls(height: int, width: int, tile: int, overlap: float, batch: int) -> list:
    """The windows MONAI's ``sliding_window_inference`` calls the network with.

    The image holds each pixel's (row, column), so a window's first pixel says
    where it starts (in MONAI's padded image when an axis is shorter than the tile).
    """
    rows = torch.arange(height, dtype=torch.float64).view(-1, 1).expand(height, width)
    cols = torch.arange(width, dtype=torch.float64).view(1, -1).expand(height, width)
    image = torch.stack([rows, cols])[None] + 1  # 0 is MONAI's padding
    seen: list[tuple[int, int]] = []

    def network(batch_of: torch.Tensor) -> torch.Tensor:
        seen.extend((int(w[0, 0, 0]) - 1, int(w[1, 0, 0]) - 1) for w in batch_of)
        return batch_of[:, :1]

    sliding_window_inference(image, roi_size=(tile, tile), sw_batch_size=batch,
                             predictor=network, overlap=overlap)
    return seen


@pytest.mark.parametrize(("length", "tile", "overlap"), CASES)
def test_count_and_starts_are_the_windows_monai_runs(length, tile, overlap):
    starts = window_starts(length, tile, overlap)
    other = window_starts(tile + 5, tile, overlap)  # a second axis of a few windows
    seen = monai_calls(length, tile + 5, tile, overlap, batch=3)
    assert len(seen) == len(starts) * len(other)
    if length >= tile:  # not padded: the windows start where the grid says
        assert sorted(seen) == sorted((r, c) for r in starts for c in other)
    else:
        assert starts == [0]


@pytest.mark.parametrize(("length", "tile", "overlap"), CASES)
def test_starts_are_monai_s_dense_patch_slices(length, tile, overlap):
    size = max(length, tile)  # MONAI pads a short axis up to the tile
    interval = _get_scan_interval((size,), (tile,), 1, (overlap,))
    slices = dense_patch_slices((size,), (tile,), interval)
    assert window_starts(length, tile, overlap) == [s[0].start for s in slices]


@pytest.mark.parametrize(("length", "tile", "overlap"), CASES)
def test_starts_cover_the_whole_length(length, tile, overlap):
    starts = window_starts(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    covered = set()
    for s in starts:
        assert 0 <= s and (s + tile <= length or length <= tile)
        covered.update(range(s, min(s + tile, length)))
    assert covered == set(range(length))


def test_every_user_asks_the_one_grid():
    assert blockwise_starts is window_starts
    for length, tile, overlap in CASES:
        assert tiles_per_axis(length, tile, overlap) == len(window_starts(length, tile, overlap))


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0.25), (32, -0.1), (32, 1.0)])
def test_impossible_grids_are_refused(tile, overlap):
    with pytest.raises(ValueError):
        window_starts(100, tile, overlap)
