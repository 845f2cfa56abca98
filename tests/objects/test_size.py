"""Equivalent diameters and typical object sizes."""

import math

import numpy as np
import pytest
from skimage.draw import disk

from napari_attnseg.data.io import write_mask
from napari_attnseg.objects import (
    median_diameter,
    object_diameters,
    training_diameter,
)


def disc_image(radius, n, shape=(120, 120), touching=False):
    labels = np.zeros(shape, dtype=np.int32)
    step = int(2 * radius) if touching else int(3 * radius)
    centres = [
        (r, c)
        for r in range(step, shape[0] - radius, step)
        for c in range(step, shape[1] - radius, step)
    ][:n]
    for i, centre in enumerate(centres, start=1):
        labels[disk(centre, radius, shape=shape)] = i
    return labels


def test_object_diameters_are_those_of_discs_of_equal_area():
    labels = np.zeros((10, 10), np.uint16)
    labels[0:2, 0:2] = 3  # area 4
    labels[5:10, 5:10] = 9  # area 25
    expected = [4 / math.sqrt(math.pi), 10 / math.sqrt(math.pi)]
    np.testing.assert_allclose(object_diameters(labels), expected)
    assert object_diameters(np.zeros((4, 4), np.uint8)).size == 0
    with pytest.raises(ValueError, match="integer"):
        object_diameters(labels > 0)


def test_median_diameter_of_labels_and_of_masks_with_touching_objects():
    labels = disc_image(8, 9)
    assert median_diameter(labels) == pytest.approx(16, rel=0.05)
    # touching discs in a binary mask are split before they are measured
    touching = disc_image(8, 9, touching=True)
    assert median_diameter(touching > 0) == pytest.approx(16, rel=0.1)
    assert median_diameter((touching > 0).astype(np.uint8) * 255) == pytest.approx(
        median_diameter(touching > 0)
    )
    # too few objects: no estimate
    assert median_diameter(disc_image(8, 2)) is None
    assert median_diameter(disc_image(8, 2), min_objects=2) == pytest.approx(16, rel=0.05)


def test_training_diameter_is_the_median_of_per_image_medians(tmp_path):
    images = [disc_image(4, 9), disc_image(6, 9), disc_image(10, 4)]
    paths = []
    for i, labels in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        write_mask(paths[-1], (labels > 0).astype(np.uint8) * 255)
    expected = np.median([median_diameter(labels, min_objects=1) for labels in images])
    assert training_diameter(paths) == pytest.approx(expected)
    assert training_diameter(images) == pytest.approx(expected)
    assert training_diameter([np.zeros((8, 8), np.uint8)]) is None


def test_diameter_summary_records_the_median_and_the_range_at_the_working_scale():
    from napari_attnseg.objects import diameter_summary

    masks = []
    for radius in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11):
        mask = np.zeros((64, 64), np.uint8)
        mask[32 - radius : 32 + radius, 32 - radius : 32 + radius] = 1
        masks.append(mask)
    summary = diameter_summary(masks, scale=0.5)
    sides = np.array([2 * r for r in range(2, 12)]) * 2 / np.sqrt(np.pi) * 0.5
    assert summary["object_diameter"] == pytest.approx(np.median(sides), abs=1e-3)
    low, high = summary["object_diameter_range"]
    assert low == pytest.approx(np.percentile(sides, 10), abs=1e-3)
    assert high == pytest.approx(np.percentile(sides, 90), abs=1e-3)
    assert diameter_summary([np.zeros((8, 8), np.uint8)]) == {}
