"""Linking the objects of a stack across planes (``stitch_planes``)."""

import numpy as np
import pytest

from napari_attnseg.inference import InferenceSettings
from napari_attnseg.objects import (
    DEFAULT_STITCH,
    instances_from_foreground,
    relabel_raster,
    stitch_planes,
)
from napari_attnseg.progress import Cancelled, CancelToken

SIZE = 40
YY, XX = np.mgrid[:SIZE, :SIZE]


def disc(cy, cx, r):
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r * r


def three_columns_and_a_dot() -> np.ndarray:
    """Per-plane labels (ids unique over the stack, as the instance functions give them) of
    three discs in planes 0-3 and one small disc in plane 4 only: 4 objects, 13 plane-objects."""
    mask = np.zeros((5, SIZE, SIZE), bool)
    for z in range(4):
        mask[z] |= disc(10, 10, 5) | disc(30, 10, 5) | disc(10, 30, 5 + z % 2)
    mask[4] |= disc(30, 30, 4)
    return instances_from_foreground(mask, method="components")


def test_discs_spanning_planes_are_one_object_each():
    labels = three_columns_and_a_dot()
    assert labels.max() == 13  # plane by plane: each section counts
    stitched = stitch_planes(labels)
    assert stitched.dtype == np.uint32 and stitched.shape == labels.shape
    assert sorted(np.unique(stitched).tolist()) == [0, 1, 2, 3, 4]  # 1..N, no gaps
    assert np.array_equal(stitched > 0, labels > 0)  # no pixel changes side
    for cy, cx in ((10, 10), (30, 10), (10, 30)):
        column = stitched[:4, cy, cx]
        assert column[0] > 0 and (column == column[0]).all()  # one id down the column
    assert len({int(stitched[0, 10, 10]), int(stitched[0, 30, 10]), int(stitched[0, 10, 30]),
                int(stitched[4, 30, 30])}) == 4
    assert np.array_equal(stitched, relabel_raster(stitched))  # raster order over the array


def test_per_plane_numbering_is_stitched_the_same():
    """Ids that repeat from plane to plane (each plane numbered 1..n) are still per-plane
    objects: what links them is overlap, not the id."""
    labels = three_columns_and_a_dot()
    per_plane = np.stack([relabel_raster(plane) for plane in labels])
    assert per_plane[0].max() == 3 and per_plane[1].max() == 3
    assert np.array_equal(stitch_planes(per_plane), stitch_planes(labels))
    # and a non-overlapping object that happens to share an id is not linked
    moved = np.zeros((2, SIZE, SIZE), np.uint32)
    moved[0][disc(10, 10, 5)] = 1
    moved[1][disc(30, 30, 5)] = 1
    assert sorted(np.unique(stitch_planes(moved)).tolist()) == [0, 1, 2]


def test_a_shifted_disc_is_linked_only_above_the_threshold():
    labels = np.zeros((2, SIZE, SIZE), np.uint32)
    labels[0][disc(20, 12, 6)] = 1
    labels[1][disc(20, 20, 6)] = 2  # shifted by 8 px: IoU about 0.1
    a, b = labels[0] > 0, labels[1] > 0
    iou = (a & b).sum() / (a | b).sum()
    assert 0.05 < iou < DEFAULT_STITCH
    assert np.unique(stitch_planes(labels)).tolist() == [0, 1, 2]  # not linked
    assert np.unique(stitch_planes(labels, iou - 1e-6)).tolist() == [0, 1]  # linked
    assert np.unique(stitch_planes(labels, 0)).tolist() == [0, 1]  # 0: any overlap


def test_each_object_below_lends_its_id_once_to_the_best_overlap():
    """A disc splitting into two halves: the larger half keeps its id, the other is new."""
    labels = np.zeros((2, SIZE, SIZE), np.uint32)
    labels[0][disc(20, 20, 10)] = 1
    labels[1][disc(20, 20, 10) & (XX < 24)] = 2  # the larger part
    labels[1][disc(20, 20, 10) & (XX >= 24)] = 3
    stitched = stitch_planes(labels, 0.1)
    assert stitched[1, 20, 15] == stitched[0, 20, 20]
    assert stitched[1, 20, 28] not in (0, stitched[0, 20, 20])
    assert stitched.max() == 2


def test_leading_axes_are_separate_stacks():
    labels = three_columns_and_a_dot()
    series = np.stack([labels, labels])  # (T, Z, H, W): the same stack twice
    stitched = stitch_planes(series)
    assert stitched.shape == series.shape and stitched.dtype == np.uint32
    assert stitched.max() == 8  # 4 objects per time point, never linked across time
    assert set(np.unique(stitched[0])) & set(np.unique(stitched[1])) == {0}
    assert np.array_equal(stitched[0], stitch_planes(labels))
    assert np.array_equal(stitched[1][stitched[1] > 0] - 4, stitched[0][stitched[0] > 0])


def test_empty_planes_and_stacks():
    assert stitch_planes(np.zeros((3, 8, 8), np.uint16)).max() == 0
    assert stitch_planes(np.zeros((0, 8, 8), np.uint16)).shape == (0, 8, 8)
    labels = np.zeros((3, 8, 8), np.int32)
    labels[0, 2:5, 2:5] = 7
    labels[2, 2:5, 2:5] = 9  # a gap of one empty plane: two objects
    assert np.unique(stitch_planes(labels)).tolist() == [0, 1, 2]


def test_cancel_is_checked_per_plane():
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        stitch_planes(three_columns_and_a_dot(), cancel=token)


@pytest.mark.parametrize(
    "labels, threshold, message",
    [
        (np.zeros((8, 8), np.uint32), 0.25, "stack of instance labels"),
        (np.zeros((2, 8, 8), np.float32), 0.25, "integer instance labels"),
        (np.zeros((2, 8, 8), bool), 0.25, "integer instance labels"),
        (np.full((2, 8, 8), -1, np.int32), 0.25, "negative"),
        (np.zeros((2, 8, 8), np.uint32), 1.0, r"IoU\) in \[0, 1\)"),
        (np.zeros((2, 8, 8), np.uint32), -0.1, r"IoU\) in \[0, 1\)"),
        (np.zeros((2, 8, 8), np.uint32), float("nan"), r"IoU\) in \[0, 1\)"),
        (np.zeros((2, 8, 8), np.uint32), True, r"IoU\) in \[0, 1\)"),
        (np.zeros((2, 8, 8), np.uint32), "0.5", r"IoU\) in \[0, 1\)"),
    ],
)
def test_bad_inputs_are_named(labels, threshold, message):
    with pytest.raises(ValueError, match=message):
        stitch_planes(labels, threshold)


def test_the_default_is_the_inference_settings_default():
    assert InferenceSettings().stitch == DEFAULT_STITCH


def test_make_instances_links_planes_when_asked():
    from napari_attnseg.inference.objects import make_instances
    from napari_attnseg.models import ModelCard

    mask = three_columns_and_a_dot() > 0
    card = ModelCard(name="x", instances={"method": "components"})
    per_plane = make_instances(card, mask.astype(np.float32), threshold=0.5, diameter=None)
    linked = make_instances(card, mask.astype(np.float32), threshold=0.5, diameter=None,
                            stitch=DEFAULT_STITCH)
    assert per_plane.max() == 13 and linked.max() == 4
