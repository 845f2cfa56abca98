"""Intensity normalisation of model inputs (channel layout: test_input_spec.py)."""

import numpy as np
import pytest

from napari_attnseg.data import dataset_statistics, normalize

rng = np.random.default_rng(0)


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
