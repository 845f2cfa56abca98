"""Field of view of a fundus photograph."""

import numpy as np
import pytest
from skimage import data

from napari_attnseg.objects import field_of_view


@pytest.fixture(scope="module")
def retina():
    # skimage's fundus photograph (1411²), every 4th pixel for speed
    return data.retina()[::4, ::4]


def test_the_fov_of_skimage_retina_is_the_central_disc(retina):
    fov = field_of_view(retina)
    h, w = fov.shape
    assert fov.dtype == bool and fov.shape == retina.shape[:2]
    assert fov[h // 2, w // 2] and fov[h // 2, w // 8] and fov[h // 8, w // 2]
    for y, x in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 10, w // 10)]:
        assert not fov[y, x]
    # the aperture is a disc as wide as the photograph (cut by its edges):
    # all of it, holes (vessels, the dark fovea, the optic disc) filled, and no corner
    distance = np.hypot(*(np.mgrid[:h, :w] - np.array([h / 2, w / 2])[:, None, None]))
    assert fov[distance < 0.47 * w].all()
    assert not fov[distance > 0.54 * w].any()  # corners reach 0.71 w
    assert 0.72 < fov.mean() < 0.80


def test_a_synthetic_disc_with_dark_vessels_and_noise():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:200, :240]
    disc = np.hypot(yy - 100, xx - 120) < 90
    image = np.zeros((200, 240, 3), np.uint8)
    image[disc] = (160, 60, 20)
    image[90:93, 40:200, 0] = 30  # a dark vessel across the disc
    image[~disc, 0] = rng.integers(0, 8, size=(~disc).sum())  # sensor noise outside
    image[5, 5, 0] = 255  # a speck of glare in a corner
    fov = field_of_view(image)
    iou = (fov & disc).sum() / (fov | disc).sum()
    assert iou > 0.99 and fov[91, 120] and not fov[5, 5]


def test_grey_flat_and_bad_images():
    assert not field_of_view(np.full((20, 20), 7, np.uint8)).any()
    assert field_of_view(np.pad(np.full((10, 10), 200, np.uint8), 5)).sum() == 100
    with pytest.raises(ValueError, match="fundus"):
        field_of_view(np.zeros((4, 4, 4, 3)))
    with pytest.raises(ValueError, match="fraction"):
        field_of_view(np.zeros((4, 4)), fraction=1.5)
