"""The one input path: layout, channels, NaN clean-up, normalisation, working size and back."""

import numpy as np
import pytest
import torch

from napari_attnseg.data import InputSpec, canonical, is_colour, layout_of, normalize
from napari_attnseg.models import ModelCard, create_model

rng = np.random.default_rng(0)


def plane(image, **layout):
    """The (H, W, C) plane of a 2D image and whether it is colour."""
    canon, lay = canonical(image, **layout)
    assert lay.stack_shape == ()
    return canon, lay.rgb


# -- layout ------------------------------------------------------------------
def test_the_one_rgb_rule_is_napari_s():
    assert is_colour((8, 10, 3)) and is_colour((5, 8, 10, 4))
    assert not is_colour((8, 10)) and not is_colour((3, 8, 10)) and not is_colour((8, 10, 5))
    assert not is_colour((8, 10, 3), rgb=False) and is_colour((8, 10), rgb=True)


@pytest.mark.parametrize(
    ("shape", "kwargs", "spatial", "channels"),
    [
        ((8, 10), {}, (8, 10), 1),
        ((8, 10, 3), {}, (8, 10), 3),
        ((5, 8, 10), {}, (5, 8, 10), 1),  # a (Z, H, W) stack, napari's reading
        ((2, 8, 10), {"channel_axis": 0}, (8, 10), 2),  # the user says: two channels
        ((6, 2, 8, 10), {"channel_axis": 1}, (6, 8, 10), 2),
        ((4, 8, 10, 3), {}, (4, 8, 10), 3),
        ((8, 10, 3), {"rgb": False}, (8, 10, 3), 1),  # not colour: 8 planes of 10×3
    ],
)
def test_layouts(shape, kwargs, spatial, channels):
    layout = layout_of(shape, **kwargs)
    assert layout.spatial_shape == spatial and layout.channels == channels
    canon, _ = canonical(np.zeros(shape), **kwargs)
    assert canon.shape == (*spatial, channels)


def test_bad_layouts_name_the_problem():
    with pytest.raises(ValueError, match="channel axis 3 does not exist.*-3..2"):
        layout_of((2, 8, 10), channel_axis=3)
    with pytest.raises(ValueError, match="two spatial axes"):
        layout_of((10,))
    with pytest.raises(ValueError, match="no room for a channel axis"):
        layout_of((2, 10), channel_axis=0)
    with pytest.raises(ValueError, match="last axis of 3 or 4"):
        layout_of((8, 10, 5), rgb=True)
    with pytest.raises(ValueError, match="empty"):
        layout_of((0, 10))


# -- channels ----------------------------------------------------------------
def test_grey_image_for_grey_and_rgb_models():
    grey = rng.integers(0, 256, (8, 10), dtype=np.uint8)
    one = InputSpec(1).channels(*plane(grey)[:1])
    assert one.shape == (1, 8, 10) and one.dtype == np.float32
    three = InputSpec(3).channels(plane(grey)[0])
    assert three.shape == (3, 8, 10)
    np.testing.assert_array_equal(three[0], three[2])


def test_rgba_drops_alpha_and_rgb_to_grey_uses_luminance():
    rgba = rng.integers(0, 256, (8, 10, 4), dtype=np.uint8)
    chw = InputSpec(3).channels(*plane(rgba)[:1], rgb=True)
    np.testing.assert_array_equal(chw, np.moveaxis(rgba[..., :3], -1, 0))
    grey = InputSpec(1).channels(plane(rgba)[0], rgb=True)
    expected = 0.2125 * rgba[..., 0] + 0.7154 * rgba[..., 1] + 0.0721 * rgba[..., 2]
    np.testing.assert_allclose(grey[0], expected, rtol=1e-5)


def test_a_channel_axis_is_kept_as_channels():
    chw = rng.random((2, 8, 10)).astype(np.float32)
    np.testing.assert_array_equal(InputSpec(2).channels(plane(chw, channel_axis=0)[0]), chw)


def test_channel_mismatch_raises():
    two = plane(np.zeros((2, 8, 10)), channel_axis=0)[0]
    with pytest.raises(ValueError, match="2 channel.*expects 3"):
        InputSpec(3).channels(two)


# -- clean-up and normalisation ---------------------------------------------------
def test_nan_and_inf_are_replaced_by_the_channel_median_and_counted():
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    image[0, 0], image[1, 1], image[2, 2] = np.nan, np.inf, -np.inf
    chw, replaced = InputSpec(1, {"mode": "none"}).network_input(plane(image)[0])
    assert replaced == 3 and np.isfinite(chw).all()
    finite = image[np.isfinite(image)]
    assert chw[0, 0, 0] == chw[0, 1, 1] == np.median(finite)
    all_nan = np.full((4, 4), np.nan, np.float32)
    chw, replaced = InputSpec(1).network_input(plane(all_nan)[0])
    assert replaced == 16 and np.all(chw == 0)


def test_prepare_is_conversion_then_normalisation():
    rgb = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    prepared = InputSpec(3, {"mode": "zscore"}).prepare(plane(rgb)[0], rgb=True)
    out = prepared.tensor[0].numpy()
    assert prepared.tensor.shape == (1, 3, 12, 14) and prepared.tensor.dtype == torch.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(out, normalize(np.moveaxis(rgb, -1, 0), {"mode": "zscore"}))
    assert InputSpec(1, None).prepare(plane(rgb)[0], rgb=True).tensor.shape == (1, 1, 12, 14)


# -- working size and back ---------------------------------------------------------
def test_working_size_from_scale_size_and_zoom():
    assert InputSpec(1, scale=0.5).working_size(40, 60) == (20, 30)
    assert InputSpec(1, scale=0.5).working_size(40, 60, zoom=2.0) == (40, 60)
    assert InputSpec(1, size=(32, 32)).working_size(40, 60, zoom=3.0) == (32, 32)
    x = InputSpec(1, scale=0.5).prepare(plane(rng.random((40, 60)))[0])
    assert x.tensor.shape[-2:] == (20, 30) and x.size == (40, 60)
    back = InputSpec(1, scale=0.5).restore(torch.rand(1, 2, 20, 30), x.size)
    assert back.shape == (1, 2, 40, 60)


def test_training_arrays_resample_labels_with_nearest():
    image, mask = rng.random((40, 60)), np.zeros((40, 60), np.int64)
    mask[10:30, 20:40], mask[0, 0] = 1, -1
    chw, small, roi, _ = InputSpec(1, scale=0.5).training_arrays(
        plane(image)[0], mask, mask >= 0
    )
    assert chw.shape == (1, 20, 30) and small.shape == roi.shape == (20, 30)
    assert set(np.unique(small)) <= {-1, 0, 1} and small.dtype == mask.dtype


def test_from_card_and_of_model():
    card = ModelCard(normalization={"mode": "minmax"}, input_scale=2.0, input_size=None)
    spec = InputSpec.from_card(card, 3)
    assert spec == InputSpec(3, {"mode": "minmax"}, 2.0, None)
    model = create_model("unet", in_channels=1, width=4, depth=2)
    assert InputSpec.of(model) == InputSpec(1)  # no card yet: z-score at native scale
    model.card = ModelCard(input_size=[32, 48])
    assert InputSpec.of(model).size == (32, 48)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="in_channels"):
        InputSpec(0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        InputSpec(1, scale=-1)
    with pytest.raises(ValueError, match="normalization mode"):
        InputSpec(1, {"mode": "magic"})
