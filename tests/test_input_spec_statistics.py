"""InputSpec's statistics: measured on a whole image (NumPy exactly, Dask/zarr by reduction)
and applied to any part of it give what ``network_input`` gives the whole image."""

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_attnseg.data.input_spec import InputSpec, canonical, replace_nonfinite
from napari_attnseg.data.normalization import normalize

MODES = [
    {"mode": "zscore"},
    {"mode": "percentile", "low": 2, "high": 98},
    {"mode": "minmax"},
    {"mode": "dataset", "mean": [90.0, 3.0], "std": [20.0, 1.0]},
    {"mode": "none"},
]


def stack(seed=0):
    """Two planes of two channels, ``(2, H, W, 2)``, with NaN and ±Inf pixels."""
    rng = np.random.default_rng(seed)
    image = rng.gamma(2.0, 30.0, (2, 50, 60, 2)).astype(np.float32)
    image[0, 3, 4, 0] = np.nan
    image[1, 10, 11, 1] = np.inf
    image[1, 20, 30, 0] = -np.inf
    return image


@pytest.mark.parametrize("normalization", MODES, ids=lambda n: n["mode"])
def test_network_input_is_unchanged_and_parts_normalise_as_the_whole(normalization):
    image = stack()
    spec = InputSpec(2, normalization)
    stats = spec.statistics(image)
    assert len(stats) == 2
    for plane, plane_stats in zip(image, stats, strict=True):
        whole, replaced = spec.network_input(plane)
        # what network_input gave before statistics moved into InputSpec
        filled, count = replace_nonfinite(spec.channels(plane))
        assert np.array_equal(whole, normalize(filled, normalization)) and replaced == count
        part = (slice(None), slice(5, 31), slice(7, 44))
        chw = spec.channels(plane)
        assert np.array_equal(spec.apply(chw[part], plane_stats), whole[part])


@pytest.mark.parametrize("lazy", ["dask", "zarr"])
@pytest.mark.parametrize("normalization", MODES[:3], ids=lambda n: n["mode"])
def test_lazy_statistics_match_the_exact_ones(normalization, lazy):
    image = stack(1)
    spec = InputSpec(2, normalization)
    exact = spec.statistics(image)
    if lazy == "dask":
        array = da.from_array(image, chunks=(1, 16, 32, 2))
    else:
        array = zarr.create_array(
            store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(1, 16, 32, 2),
            dtype="float32",
        )
        array[...] = image
    found = spec.statistics(array)
    assert len(found) == len(exact)
    for got, want in zip(found, exact, strict=True):
        assert set(got) == set(want)
        for key in ("mean", "std", "low", "high"):
            if key not in want:
                continue
            # mean, std, min and max up to rounding and the few filled pixels (Dask
            # leaves them out, the exact path counts them at the fill value);
            # percentiles approximate
            tolerance = 0.1 * float(np.ptp(image[np.isfinite(image)])) if (
                normalization["mode"] == "percentile"
            ) else 1e-4
            np.testing.assert_allclose(got[key], want[key], rtol=1e-3, atol=tolerance)
        np.testing.assert_allclose(got["fill"], want["fill"], rtol=0.1)
        assert (got["fill"] != 0).tolist() == (want["fill"] != 0).tolist()


def test_statistics_follow_the_layout_and_channel_rule():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (40, 30, 3)).astype(np.uint8)
    view, layout = canonical(rgb)
    spec = InputSpec(1, {"mode": "zscore"})  # RGB to grey by luminance first
    [stats] = spec.statistics(view, rgb=layout.rgb)
    grey = spec.channels(rgb, rgb=True)
    assert np.allclose(stats["mean"].ravel(), grey.mean(dtype=np.float64))
    [lazy] = spec.statistics(da.from_array(view, chunks=(16, 16, 3)), rgb=layout.rgb)
    np.testing.assert_allclose(lazy["std"], stats["std"], rtol=1e-6)
