"""Channel layout and intensity normalisation of model inputs."""

import numpy as np
import pytest

from napari_attnseg.data import (
    dataset_statistics,
    normalize,
    prepare_image,
    to_channels_first,
)

rng = np.random.default_rng(0)


# -- channels ----------------------------------------------------------------
def test_grey_image_for_grey_and_rgb_models():
    grey = rng.integers(0, 256, (8, 10), dtype=np.uint8)
    one = to_channels_first(grey, 1)
    assert one.shape == (1, 8, 10) and one.dtype == np.float32
    three = to_channels_first(grey, 3)
    assert three.shape == (3, 8, 10)
    np.testing.assert_array_equal(three[0], three[2])


def test_rgba_drops_alpha_and_rgb_to_grey_uses_luminance():
    rgba = rng.integers(0, 256, (8, 10, 4), dtype=np.uint8)
    chw = to_channels_first(rgba, 3)
    np.testing.assert_array_equal(chw, np.moveaxis(rgba[..., :3], -1, 0))
    grey = to_channels_first(rgba, 1)
    expected = 0.2125 * rgba[..., 0] + 0.7154 * rgba[..., 1] + 0.0721 * rgba[..., 2]
    np.testing.assert_allclose(grey[0], expected, rtol=1e-5)


def test_channels_first_input_with_rgb_false():
    chw = rng.random((2, 8, 10)).astype(np.float32)
    np.testing.assert_array_equal(to_channels_first(chw, 2, rgb=False), chw)
    three = rng.random((3, 8, 10)).astype(np.float32)
    np.testing.assert_array_equal(to_channels_first(three, 3, rgb=False), three)


def test_channel_mismatch_and_bad_layouts_raise():
    with pytest.raises(ValueError, match="2 channel.*expects 3"):
        to_channels_first(np.zeros((2, 8, 10)), 3, rgb=False)
    with pytest.raises(ValueError, match="stack of 12"):
        to_channels_first(np.zeros((12, 8, 10)), 1, rgb=False)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        to_channels_first(np.zeros((8, 10, 5)), 3, rgb=True)
    with pytest.raises(ValueError, match="shape"):
        to_channels_first(np.zeros((2, 3, 8, 10)), 3)


# -- intensities ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_zscore_per_channel(dtype):
    image = np.stack([rng.normal(100, 20, (16, 16)), rng.normal(30, 5, (16, 16))]).clip(0, 255)
    out = normalize(image.astype(dtype), {"mode": "zscore"})
    assert out.dtype == np.float32 and out.shape == (2, 16, 16)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-3)


@pytest.mark.parametrize("mode", ["zscore", "percentile", "minmax"])
def test_constant_image_gives_zeros_not_nan(mode):
    out = normalize(np.full((3, 8, 8), 7, np.uint16), {"mode": mode})
    assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_percentile_maps_to_unit_range_and_clips_outliers():
    image = rng.random((1, 32, 32)).astype(np.float32)
    image[0, 0, 0] = 1000.0
    out = normalize(image, {"mode": "percentile", "low": 1, "high": 99})
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.mean((out > 0) & (out < 1)) > 0.9  # the outlier did not squash the rest


def test_minmax_dataset_and_none():
    image = np.stack([np.arange(16.0).reshape(4, 4), 2 * np.arange(16.0).reshape(4, 4)])
    out = normalize(image, {"mode": "minmax"})
    np.testing.assert_allclose(out.min(axis=(1, 2)), 0)
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1)
    out = normalize(image, {"mode": "dataset", "mean": [1.0, 2.0], "std": [2.0, 4.0]})
    np.testing.assert_allclose(out[1], (image[1] - 2) / 4, rtol=1e-6)
    np.testing.assert_array_equal(normalize(image, {"mode": "none"}), image.astype(np.float32))


def test_bad_specs_raise():
    image = np.zeros((3, 4, 4))
    with pytest.raises(ValueError, match="unknown normalization mode 'robust'"):
        normalize(image, {"mode": "robust"})
    with pytest.raises(ValueError, match="2 value.*3 channel"):
        normalize(image, {"mode": "dataset", "mean": [0, 0], "std": [1, 1]})
    with pytest.raises(ValueError, match=r'spec\["std"\]'):
        normalize(image, {"mode": "dataset", "mean": [0]})
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        normalize(np.zeros((4, 4)), {"mode": "zscore"})


def test_clahe_raises_local_contrast():
    yy, xx = np.mgrid[0:64, 0:64]
    low_contrast = (100 + 10 * (xx > 32) + 2 * np.sin(yy / 3.0)).astype(np.uint8)[None]
    plain = normalize(low_contrast, {"mode": "minmax"})
    equalised = normalize(low_contrast, {"mode": "minmax", "clahe": True})
    assert equalised.shape == plain.shape and np.all(np.isfinite(equalised))
    assert not np.allclose(equalised, plain)
    assert np.abs(np.diff(equalised[0, :, 8])).mean() > np.abs(np.diff(plain[0, :, 8])).mean()


def test_dataset_statistics_pool_all_pixels():
    images = [np.full((2, 4, 4), 1.0), np.full((2, 4, 4), 3.0)]
    stats = dataset_statistics(images)
    assert stats == {"mean": [2.0, 2.0], "std": [1.0, 1.0]}
    out = normalize(images[0], {"mode": "dataset", **stats})
    np.testing.assert_allclose(out, -1.0)
    with pytest.raises(ValueError, match="channels"):
        dataset_statistics([np.zeros((2, 4, 4)), np.zeros((3, 4, 4))])
    with pytest.raises(ValueError, match="at least one"):
        dataset_statistics([])


def test_prepare_image_is_conversion_then_normalisation():
    rgb = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    out = prepare_image(rgb, 3, {"mode": "zscore"}, rgb=True)
    assert out.shape == (3, 12, 14) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
    assert prepare_image(rgb, 1, None).shape == (1, 12, 14)  # None: the default z-score
