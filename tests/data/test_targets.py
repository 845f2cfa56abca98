"""Separation-head targets from instance labels, and painted objects becoming them."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_attnseg.data import labels_from_annotation
from napari_attnseg.data.targets import (
    BACKGROUND,
    BOUNDARY,
    CENTRE,
    INTERIOR,
    band_targets,
    instances_of_mask,
)


def two_touching(shape=(48, 64)):
    labels = np.zeros(shape, np.int32)
    labels[disk((24, 20), 12, shape=shape)] = 1
    labels[disk((24, 42), 12, shape=shape)] = 7  # ids need not be consecutive
    return labels


def test_bands_mark_the_rim_between_touching_objects_and_one_centre_each():
    labels = two_touching()
    classes = band_targets(labels)
    assert classes.dtype == np.int64 and classes.shape == labels.shape
    assert np.array_equal(classes == BACKGROUND, labels == 0)
    # where the two discs meet, both sides are boundary: the objects are kept apart
    meet = np.flatnonzero(np.diff(labels[24]) != 0)
    meet = meet[(labels[24, meet] > 0) & (labels[24, meet + 1] > 0)]
    assert meet.size == 1
    assert classes[24, meet[0]] == BOUNDARY and classes[24, meet[0] + 1] == BOUNDARY
    # a 2-px rim for objects this deep, interior between rim and centre
    assert classes[24, 9] == BOUNDARY and classes[24, 10] == BOUNDARY
    assert (classes == INTERIOR).any()
    from scipy import ndimage as ndi

    _, n = ndi.label(classes == CENTRE)
    assert n == 2 and classes[24, 20] == CENTRE and classes[24, 42] == CENTRE


def test_small_objects_keep_a_one_pixel_rim_and_a_centre():
    labels = np.zeros((20, 20), np.int32)
    labels[disk((10, 10), 3, shape=labels.shape)] = 1
    classes = band_targets(labels)
    assert classes[10, 7] == BACKGROUND and classes[10, 8] == BOUNDARY
    assert classes[10, 9] != BOUNDARY and classes[10, 10] == CENTRE


@pytest.mark.parametrize("bad", [np.zeros((2, 4, 4), int), np.zeros((4, 4), float)])
def test_band_targets_refuse_what_is_not_2d_integer_labels(bad):
    with pytest.raises(ValueError, match="instance labels must be"):
        band_targets(bad)


def test_a_mask_painted_with_one_value_is_one_object_per_blob():
    labels = two_touching()
    mask = (labels > 0).astype(np.uint8) * 255
    mask[:, 60:] = 0
    mask[2:6, 58:60] = 255  # a second blob
    assert instances_of_mask(mask).max() == 2
    assert np.array_equal(instances_of_mask(labels), labels)


def test_painted_objects_become_the_head_s_classes():
    labels = two_touching()
    dense = labels_from_annotation(labels, "dense", 4, head="bands")
    assert np.array_equal(dense, band_targets(labels))
    # scribbles: 1 background, 2.. objects, 0 ignored
    scribbles = np.zeros_like(labels)
    scribbles[:, :4] = 1
    scribbles[labels == 1] = 2
    sparse = labels_from_annotation(scribbles, "sparse", 4, head="bands")
    assert (sparse[:, :4] == BACKGROUND).all() and (sparse[:, 40:] == -1).all()
    assert sparse[24, 20] == CENTRE
    with pytest.raises(ValueError, match="no labelled pixels"):
        labels_from_annotation(np.zeros_like(labels), "sparse", 4, head="bands")
    with pytest.raises(ValueError, match="unknown separation head 'rays'"):
        labels_from_annotation(labels, "dense", 4, head="rays")
