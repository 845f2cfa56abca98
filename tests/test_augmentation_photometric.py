"""Photometric (camera / exposure) augmentation and wide scale augmentation (issue 25)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_attnseg.data import Augmenter
from napari_attnseg.training.config import TrainConfig

#: only the transform under test: no geometry, no brightness/contrast
ALONE = {
    "flips": False,
    "rot90": False,
    "rotation_deg": 0.0,
    "zoom": None,
    "brightness": 0.0,
    "contrast": 0.0,
    "prob": 1.0,
}
PHOTOMETRIC = {"gamma": 0.3, "hue": 0.1, "blur": 1.5, "noise": 0.1, "jpeg": 30}
OFF = {"gamma": 0.0, "hue": 0.0, "blur": 0.0, "noise": 0.0, "jpeg": None}


def _batch(size=40, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    target = ((yy - 15) ** 2 + (xx - 20) ** 2 < 80).astype(np.int64)
    # a colourful, textured, normalised (z-score-like) image
    image = rng.normal(size=(channels, size, size)).astype(np.float32)
    image += np.linspace(-1, 1, channels, dtype=np.float32)[:, None, None] * target
    return {
        "image": image,
        "target": target,
        "valid": np.ones((size, size), bool),
        "dpt": (target[None] == np.arange(2)[:, None, None]).astype(np.float32),
    }


def _unchanged_except_image(out, batch):
    for key in ("target", "valid", "dpt"):
        assert out[key].dtype == batch[key].dtype
        np.testing.assert_array_equal(out[key], batch[key])


@pytest.mark.parametrize("option", sorted(PHOTOMETRIC))
def test_each_option_changes_the_image_only(option):
    batch = _batch()
    augment = Augmenter(**ALONE, **{option: PHOTOMETRIC[option]}, seed=1)
    assert [name for name, _ in augment._transforms] == [option]
    changed = 0
    for _ in range(4):
        out = augment(batch)
        assert out["image"].dtype == np.float32 and out["image"].shape == batch["image"].shape
        assert np.isfinite(out["image"]).all()
        # (a draw near the weak end, e.g. a blur sigma of 0.1 px, may change next to nothing)
        changed += not np.allclose(out["image"], batch["image"], atol=1e-3)
        _unchanged_except_image(out, batch)
    assert changed >= 2


def test_all_together_on_torch_and_two_channel_inputs():
    batch = _batch(channels=2)
    torch_batch = {key: torch.as_tensor(value) for key, value in batch.items()}
    out = Augmenter(**ALONE, **PHOTOMETRIC, seed=2)(torch_batch)
    assert isinstance(out["image"], torch.Tensor) and out["image"].dtype == torch.float32
    assert torch.isfinite(out["image"]).all()
    assert not torch.allclose(out["image"], torch_batch["image"])
    for key in ("target", "valid", "dpt"):
        assert out[key].dtype == torch_batch[key].dtype
        assert torch.equal(out[key], torch_batch[key])


def test_prob_zero_and_off_change_nothing():
    batch = _batch()
    for augment in (Augmenter(**{**ALONE, "prob": 0.0}, **PHOTOMETRIC), Augmenter(**ALONE)):
        out = augment(batch)
        for key in batch:
            np.testing.assert_array_equal(out[key], batch[key])


def test_off_by_default_and_defaults_unchanged():
    default = Augmenter()
    # the transforms (and so their random streams) are those of the augmenter before issue 25
    legacy = ["flip_y", "flip_x", "rot90", "affine", "brightness", "contrast"]
    assert [name for name, _ in default._transforms] == legacy
    assert {key: default.to_config()[key] for key in OFF} == OFF
    explicit = Augmenter(**OFF)
    batch = _batch()
    for _ in range(3):
        a, b = default(batch), explicit(batch)
        for key in batch:
            np.testing.assert_array_equal(a[key], b[key])
    # switching a photometric option on leaves the draws of the others as they were
    legacy_with_jpeg = Augmenter(jpeg=90, seed=4)
    assert [name for name, _ in legacy_with_jpeg._transforms] == legacy + ["jpeg"]
    plain = Augmenter(seed=4)
    for _ in range(3):
        a, b = legacy_with_jpeg(batch), plain(batch)
        for key in ("target", "valid", "dpt"):
            np.testing.assert_array_equal(a[key], b[key])


def test_seeds_make_it_reproducible():
    batch = _batch()
    first = Augmenter(**ALONE, **PHOTOMETRIC, seed=7)(batch)
    again = Augmenter(**ALONE, **PHOTOMETRIC, seed=7)(batch)
    other = Augmenter(**ALONE, **PHOTOMETRIC, seed=8)(batch)
    np.testing.assert_array_equal(first["image"], again["image"])
    assert not np.array_equal(first["image"], other["image"])
    augment = Augmenter(**ALONE, **PHOTOMETRIC, seed=7)
    augment(batch)
    augment.set_random_state(7)
    np.testing.assert_array_equal(augment(batch)["image"], first["image"])


def test_config_round_trip_through_json():
    augment = Augmenter(**PHOTOMETRIC, zoom=(0.6, 1.6), seed=3)
    config = json.loads(json.dumps(augment.to_config()))
    assert {key: config[key] for key in PHOTOMETRIC} == PHOTOMETRIC
    assert config["zoom"] == [0.6, 1.6]
    again = Augmenter.from_config(config)
    assert again.to_config() == augment.to_config()
    batch = _batch()
    np.testing.assert_array_equal(augment(batch)["image"], again(batch)["image"])
    ranged = Augmenter.from_config({"gamma": [0.7, 1.5], "jpeg": 0})
    assert ranged.to_config()["gamma"] == [0.7, 1.5] and ranged.to_config()["jpeg"] is None
    assert Augmenter.from_config(ranged.to_config()).to_config() == ranged.to_config()
    # recipes carry the options in TrainConfig.augment
    recipe = TrainConfig(augment={"zoom": [0.6, 1.6], **PHOTOMETRIC})
    assert TrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


@pytest.mark.parametrize(
    "option, value",
    [
        ("gamma", -0.1),
        ("gamma", [0.0, 2.0]),
        ("gamma", [1.5, 0.8]),
        ("gamma", [1.0, 2.0, 3.0]),
        ("gamma", "strong"),
        ("hue", -0.1),
        ("hue", 0.75),
        ("blur", -1.0),
        ("blur", float("inf")),
        ("noise", -0.01),
        ("noise", float("nan")),
        ("jpeg", 96),
        ("jpeg", -5),
        ("jpeg", 50.5),
        ("jpeg", True),
        ("jpeg", "low"),
    ],
)
def test_bad_values_are_refused_by_name(option, value):
    with pytest.raises(ValueError, match=option):
        Augmenter(**{option: value})
    with pytest.raises(ValueError, match=option):
        Augmenter.from_config({option: value})
    with pytest.raises(ValueError, match=f"augment.*{option}"):
        TrainConfig(augment={option: value})


def test_check_config_builds_nothing_and_leaves_monai_unimported():
    code = (
        "import sys\n"
        "from napari_attnseg.data.augmentation import Augmenter\n"
        "from napari_attnseg.training.config import TrainConfig\n"
        "Augmenter.check_config({'gamma': 0.3, 'hue': 0.1, 'jpeg': 30, 'zoom': [0.6, 1.6]})\n"
        "TrainConfig(augment={'blur': 1.0, 'noise': 0.1})\n"
        "print('monai' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hue_is_a_no_op_on_grey():
    batch = _batch(channels=1)
    augment = Augmenter(**ALONE, hue=0.5, seed=0)
    for _ in range(3):
        np.testing.assert_array_equal(augment(batch)["image"], batch["image"])
    grey_rgb = dict(batch, image=np.repeat(batch["image"], 3, axis=0))
    out = augment(grey_rgb)["image"]
    np.testing.assert_allclose(out, grey_rgb["image"], atol=1e-5)
    # colour: the luma (Y) is kept, the chroma turns
    colour = _batch(channels=3)
    turned = augment(colour)["image"]
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(
        np.tensordot(luma, turned, 1), np.tensordot(luma, colour["image"], 1), atol=1e-4
    )
    assert not np.allclose(turned, colour["image"], atol=1e-3)


def test_jpeg_stays_float_finite_and_close():
    for channels in (1, 3, 4):
        batch = _batch(channels=channels)
        for quality in (1, 50, 95):
            out = Augmenter(**ALONE, jpeg=quality, seed=quality)(batch)["image"]
            assert out.dtype == np.float32 and out.shape == batch["image"].shape
            assert np.isfinite(out).all()
            # back in the image's own units: within its range, roughly the same picture
            low, high = batch["image"].min(), batch["image"].max()
            assert low - 1e-4 <= out.min() and out.max() <= high + 1e-4
            assert np.corrcoef(out.ravel(), batch["image"].ravel())[0, 1] > 0.3
    constant = dict(batch, image=np.full((3, 40, 40), 0.25, np.float32))
    np.testing.assert_array_equal(Augmenter(**ALONE, jpeg=10)(constant)["image"], 0.25)


def test_blur_smooths_and_noise_adds_variance():
    batch = _batch(channels=1)
    blurred = Augmenter(**ALONE, blur=3.0, seed=0)(batch)["image"]
    def roughness(image):
        return np.abs(np.diff(image, axis=-1)).mean()

    assert roughness(blurred) < roughness(batch["image"])
    flat = dict(batch, image=np.zeros((1, 40, 40), np.float32))
    noisy = Augmenter(**ALONE, noise=0.5, seed=0)(flat)["image"]
    assert 0 < noisy.std() <= 0.5 * 1.2


def test_gamma_keeps_the_images_own_range():
    batch = _batch()
    image = batch["image"]
    for seed in range(3):
        out = Augmenter(**ALONE, gamma=(2.0, 2.0), seed=seed)(batch)["image"]
        np.testing.assert_allclose([out.min(), out.max()], [image.min(), image.max()], atol=1e-4)
        # gamma > 1 darkens the mid-tones (in the image's own [min, max])
        assert out.mean() < image.mean()


def test_zoom_from_0_6_to_1_6_keeps_shapes_and_marks_brought_in_pixels_invalid():
    batch = _batch(size=48)
    augment = Augmenter(**{**ALONE, "zoom": (0.6, 1.6)}, seed=5)
    assert [name for name, _ in augment._transforms] == ["affine"]
    shrunk = enlarged = 0
    for _ in range(12):
        out = augment(batch)
        for key in batch:
            assert out[key].shape == batch[key].shape and out[key].dtype == batch[key].dtype
        valid = out["valid"]
        assert valid[24, 24]  # the centre always stays inside
        assert not out["target"][~valid].any()
        shrunk += not valid.all()
        enlarged += valid.all() and not np.array_equal(out["target"], batch["target"])
    assert shrunk and enlarged
    # the widest zoom-out: a 0.6× patch leaves a 20 % border on each side brought in
    out = Augmenter(**{**ALONE, "zoom": (0.6, 0.6)})(batch)
    valid = out["valid"]
    assert not valid[:8].any() and not valid[-8:].any()
    assert not valid[:, :8].any() and not valid[:, -8:].any()
    assert valid[12:36, 12:36].all()
