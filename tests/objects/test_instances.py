"""Instance labels from foreground maps, 3-class outputs and membranes."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_attnseg.objects import (
    LABEL_DTYPE,
    cells_from_membranes,
    instance_metrics,
    instances_from_classes,
    instances_from_foreground,
    relabel_raster,
    smallest_unsigned,
)
from napari_attnseg.progress import Cancelled, CancelToken


def discs(centres, radius, shape=(64, 64)):
    """Instance labels of discs (later discs cover earlier ones where they overlap)."""
    labels = np.zeros(shape, dtype=np.int32)
    for i, centre in enumerate(centres, start=1):
        labels[disk(centre, radius, shape=shape)] = i
    return labels


#: two touching discs (centres 16 px apart, radius 9: a neck of ~8 px) and one alone
TOUCHING = discs([(20, 16), (20, 32), (48, 44)], 9)


def test_components_merge_touching_objects_watershed_splits_them():
    mask = TOUCHING > 0
    components = instances_from_foreground(mask, method="components")
    assert components.max() == 2
    split = instances_from_foreground(mask)  # watershed is the default
    assert split.dtype == LABEL_DTYPE and split.max() == 3
    m = instance_metrics(TOUCHING, split)
    assert m["ap75"] == 1.0  # each disc recovered with IoU > 0.75


def test_watershed_does_not_cut_a_convex_or_elongated_object():
    ellipse = np.zeros((64, 64), dtype=bool)
    yy, xx = np.mgrid[:64, :64]
    ellipse[((yy - 32) / 8.0) ** 2 + ((xx - 32) / 25.0) ** 2 <= 1] = True
    assert instances_from_foreground(ellipse).max() == 1
    assert instances_from_foreground(TOUCHING == 3, diameter=18).max() == 1


def test_the_split_parameter_controls_the_cut():
    mask = TOUCHING > 0
    assert instances_from_foreground(mask, split=0.9).max() == 2  # demand a deep neck
    assert instances_from_foreground(mask, split=0.05).max() == 3


def test_probabilities_are_thresholded():
    probability = np.where(TOUCHING > 0, 0.8, 0.1).astype(np.float32)
    assert instances_from_foreground(probability).max() == 3
    assert instances_from_foreground(probability, threshold=0.9).max() == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        instances_from_foreground(probability * 5)


def test_ids_follow_raster_order_and_are_consecutive():
    labels = discs([(50, 50), (10, 40), (10, 10)], 5)
    out = instances_from_foreground(labels > 0, method="components")
    # the object whose first pixel comes first (top row, then leftmost) is 1
    assert out[10, 10] == 1 and out[10, 40] == 2 and out[50, 50] == 3
    np.testing.assert_array_equal(np.unique(out), [0, 1, 2, 3])
    # ids whose order differs from the raster order
    shuffled = relabel_raster(np.choose(labels, [0, 20, 7, 50]))
    np.testing.assert_array_equal(shuffled, out)
    np.testing.assert_array_equal(instances_from_foreground(labels > 0), out)  # stable


def test_small_fragments_merge_into_their_neighbour_or_go():
    mask = TOUCHING > 0
    mask[2, 60] = True  # a lone speck: dropped
    out = instances_from_foreground(mask, min_size=10)
    assert out[2, 60] == 0 and out.max() == 3
    # discs have ~250 px: with min_size 300 the watershed halves of the
    # touching pair merge back into one object and the lone disc goes
    merged = instances_from_foreground(TOUCHING > 0, min_size=300)
    assert merged.max() == 1 and merged[20, 16] == merged[20, 32] == 1 and merged[48, 44] == 0


def test_a_stack_is_labelled_slice_by_slice_with_ids_unique_over_it():
    stack = np.stack([TOUCHING > 0, np.zeros((64, 64), bool), TOUCHING == 3])
    out = instances_from_foreground(stack)
    assert out.shape == stack.shape and out.dtype == LABEL_DTYPE
    assert sorted(np.unique(out[0]))[1:] == [1, 2, 3]
    assert out[1].max() == 0 and np.unique(out[2]).tolist() == [0, 4]


def test_cancel_is_checked_per_slice():
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        instances_from_foreground(np.zeros((2, 8, 8), bool), cancel=token)
    with pytest.raises(Cancelled):
        cells_from_membranes(np.zeros((2, 8, 8), bool), cancel=token)


def test_bad_arguments_are_named():
    mask = TOUCHING > 0
    with pytest.raises(ValueError, match="method"):
        instances_from_foreground(mask, method="magic")
    with pytest.raises(ValueError, match="diameter"):
        instances_from_foreground(mask, diameter=0)
    with pytest.raises(ValueError, match="shape"):
        instances_from_foreground(np.zeros((2, 2, 8, 8), bool))
    with pytest.raises(ValueError, match="dtype"):
        instances_from_foreground(np.zeros((8, 8), dtype="U1"))


def test_empty_input_gives_no_objects():
    out = instances_from_foreground(np.zeros((16, 16), np.float32))
    assert out.dtype == LABEL_DTYPE and out.max() == 0


def test_instances_from_classes_grows_interior_seeds_over_boundaries():
    # background, interior, boundary probabilities of the touching pair
    inner = discs([(20, 16), (20, 32), (48, 44)], 6)
    probs = np.zeros((3, 64, 64), np.float32)
    probs[0] = TOUCHING == 0
    probs[1] = inner > 0
    probs[2] = (TOUCHING > 0) & (inner == 0)
    out = instances_from_classes(probs)
    assert out.max() == 3
    assert instance_metrics(TOUCHING, out)["ap50"] == 1.0
    assert instances_from_classes(np.stack([probs, probs])).max() == 6
    with pytest.raises(ValueError, match="3, H, W"):
        instances_from_classes(probs[:2])


def test_cells_from_membranes_follow_the_isbi_convention():
    # a 3 × 3 grid of cells separated by one-pixel membranes (0), interior 255
    mask = np.full((31, 31), 255, np.uint8)
    mask[::10, :] = 0
    mask[:, ::10] = 0
    mask[5, 5] = 0  # a speck of membrane inside a cell changes nothing
    cells = cells_from_membranes(mask)
    assert cells.max() == 9 and cells[0, 0] == 0
    # the same from a membrane map
    np.testing.assert_array_equal(cells_from_membranes(mask == 0, foreground="membrane"), cells)
    # one diagonal gap in a membrane does not join cells (4-connectivity)
    gap = mask.copy()
    gap[10, 10] = 255
    assert cells_from_membranes(gap).max() == 9
    filled = cells_from_membranes(mask, fill_membranes=True)
    assert filled.max() == 9 and (filled > 0).all()
    with pytest.raises(ValueError, match="interior"):
        cells_from_membranes(mask, foreground="cells")


def test_smallest_unsigned():
    assert smallest_unsigned(np.array([0, 255], np.uint32)).dtype == np.uint8
    assert smallest_unsigned(np.array([0, 256], np.uint32)).dtype == np.uint16
    assert smallest_unsigned(np.array([0, 70000], np.uint32)).dtype == np.uint32


def test_a_fragment_joins_the_neighbour_it_shares_most_border_with():
    from napari_attnseg.objects.instances import _merge_small

    labels = np.zeros((12, 20), np.int64)
    labels[1:11, 1:9] = 1
    labels[1:11, 12:19] = 3
    labels[4:7, 9:12] = 2  # 9 px: 3 px of border with object 1, 3 with 3 ...
    labels[7, 9] = 2  # ... and one more with object 1
    labels[0, 19] = 4  # a lone speck
    out = _merge_small(labels, 12)
    assert (out[4:7, 9:12] == 1).all() and out[7, 9] == 1
    assert out[0, 19] == 0 and set(np.unique(out)) == {0, 1, 3}


# -- separation heads ------------------------------------------------------------
def one_hot_bands(labels):
    from napari_attnseg.data.targets import band_targets

    return np.eye(4, dtype=np.float32)[band_targets(labels)].transpose(2, 0, 1)


@pytest.mark.parametrize("decode", ["centre", "boundary"])
def test_a_bands_head_keeps_touching_objects_apart(decode):
    from napari_attnseg.objects import instances_from_head

    # three discs in a row, each touching the next over a wide neck that the distance
    # transform cannot cut
    labels = discs([(32, 19), (32, 32), (32, 45)], 10)
    probs = one_hot_bands(labels)
    split = instances_from_head(probs, decode=decode)
    assert split.dtype == LABEL_DTYPE and split.max() == 3
    assert instance_metrics(labels, split)["ap75"] == 1.0
    merged = instances_from_head(probs, decode="foreground")
    assert instance_metrics(labels, merged)["ap75"] < 1.0


def test_head_decoding_labels_a_stack_with_unique_ids_and_checks_its_input():
    from napari_attnseg.objects import instances_from_head

    probs = one_hot_bands(TOUCHING)
    stack = instances_from_head(np.stack([probs, probs]))
    assert stack.shape == (2, 64, 64) and stack[0].max() == 3 and stack.max() == 6
    with pytest.raises(ValueError, match=r"'bands' head must be \(4, H, W\)"):
        instances_from_head(probs[:3])
    with pytest.raises(ValueError, match="decode must be one of"):
        instances_from_head(probs, decode="rays")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        instances_from_head(probs, cancel=token)
