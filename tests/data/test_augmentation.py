"""Joint augmentation keeps images, labels, valid masks and DPT maps aligned."""

import json

import numpy as np
import pytest
import torch

from napari_attnseg.data import Augmenter

GEOMETRIC = {"brightness": 0.0, "contrast": 0.0, "prob": 1.0}


def _blobs(size=48):
    yy, xx = np.mgrid[:size, :size]
    target = ((yy - 18) ** 2 + (xx - 14) ** 2 < 60).astype(np.int64)
    target[30:40, 25:44] = 2
    return target


def _batch(target):
    return {
        "image": np.repeat(target[None].astype(np.float32), 3, axis=0),
        "target": target,
        "valid": np.ones(target.shape, bool),
        "dpt": (target[None] == np.arange(3)[:, None, None]).astype(np.float32),
    }


@pytest.mark.parametrize("options", [{}, {"elastic": True}, {"rot90": False, "zoom": (1.2, 1.3)}])
def test_geometry_moves_image_target_and_dpt_together(options):
    target = _blobs()
    augment = Augmenter(**GEOMETRIC, **options, seed=3)
    moved = 0
    for _ in range(5):
        out = augment(_batch(target))
        moved += not np.array_equal(out["target"], target)
        valid = out["valid"]
        assert out["target"].dtype == np.int64 and valid.dtype == bool
        assert set(np.unique(out["target"])) <= {0, 1, 2}
        # the image was its own label map; after the transform it still is, up to interpolation
        agree = np.abs(out["image"][0] - out["target"])[valid] < 0.5
        assert agree.mean() > 0.97
        assert (out["dpt"].argmax(0) == out["target"])[valid].mean() > 0.97
    assert moved == 5


def test_pixels_brought_in_from_outside_are_invalid():
    out = Augmenter(flips=False, rot90=False, rotation_deg=0, zoom=(0.5, 0.5), **GEOMETRIC)(
        _batch(_blobs())
    )
    assert not out["valid"][0].any() and not out["valid"][-1].any()
    assert out["valid"][24, 24]


def test_same_seed_same_result_other_seed_differs():
    batch = _batch(_blobs())
    first = Augmenter(seed=7)(batch)
    again = Augmenter(seed=7)(batch)
    other = Augmenter(seed=8)(batch)
    for key in batch:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["image"], other["image"])
    augment = Augmenter(seed=7)
    augment(batch)
    augment.set_random_state(7)
    np.testing.assert_array_equal(augment(batch)["image"], first["image"])


def test_intensity_changes_only_the_image():
    batch = _batch(_blobs())
    out = Augmenter(
        flips=False,
        rot90=False,
        rotation_deg=0,
        zoom=None,
        brightness=0.5,
        contrast=0.5,
        channel_shift=0.2,
        prob=1.0,
    )(batch)
    assert not np.allclose(out["image"], batch["image"])
    assert not np.allclose(out["image"][0] - out["image"][1], 0)  # per-channel shift
    for key in ("target", "valid", "dpt"):
        np.testing.assert_array_equal(out[key], batch[key])


def test_torch_inputs_and_non_square_images_keep_their_shape_and_type():
    target = torch.zeros(20, 32, dtype=torch.int64)
    target[5:10, 5:20] = 1
    batch = {"image": target[None].float(), "target": target, "valid": target >= 0, "name": "x"}
    out = Augmenter(**GEOMETRIC)(batch)
    assert out["image"].shape == (1, 20, 32) and out["target"].dtype == torch.int64
    assert out["valid"].dtype == torch.bool and out["name"] == "x"


def test_config_round_trip_through_json():
    augment = Augmenter(elastic={"spacing": 24}, channel_shift=0.05, zoom=(0.8, 1.2), seed=5)
    config = json.loads(json.dumps(augment.to_config()))
    again = Augmenter.from_config(config)
    assert again.to_config() == augment.to_config()
    batch = _batch(_blobs())
    np.testing.assert_array_equal(
        again(batch)["image"], Augmenter.from_config(config)(batch)["image"]
    )
    assert Augmenter.from_config({}).to_config() == Augmenter().to_config()


def test_off_is_the_identity_and_bad_options_raise():
    batch = _batch(_blobs())
    out = Augmenter.off()(batch)
    assert Augmenter.off().is_identity and Augmenter.from_config(None).is_identity
    for key in batch:
        np.testing.assert_array_equal(out[key], batch[key])
    with pytest.raises(ValueError, match="unknown augmentation option.*'flip'"):
        Augmenter.from_config({"flip": True})
    with pytest.raises(ValueError, match="prob"):
        Augmenter(prob=1.5)
    with pytest.raises(ValueError, match="zoom"):
        Augmenter(zoom=(1.2, 0.8))
    with pytest.raises(ValueError, match="elastic"):
        Augmenter(elastic={"sigma": 3})
    with pytest.raises(ValueError, match="'target' has shape"):
        Augmenter()({"image": np.zeros((1, 8, 8)), "target": np.zeros((8, 9))})
