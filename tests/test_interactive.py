"""Training samples from arrays in memory (the Fine-tune widget's data path)."""

import numpy as np
import pytest

from napari_attnseg.data import IGNORE, InputSpec
from napari_attnseg.models import ModelCard, create_model
from napari_attnseg.training import (
    AnnotatedImage,
    Trainer,
    build_samples,
    class_warnings,
    finetune_config,
    samples_for_model,
    validation_kind,
)


def disc(size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = (((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < (size / 5) ** 2).astype(np.uint8)
    image = (labels * 100 + rng.normal(50, 10, (size, size))).astype(np.float32)
    return image, labels


def kwargs(**kw):
    return {"spec": InputSpec(1, {"mode": "zscore"}), "n_classes": 1, **kw}


def test_dense_pair_is_normalised_like_inference():
    image, labels = disc()
    train, val = build_samples(
        [AnnotatedImage("a", image, labels * 7)], val_fraction=0.0, **kwargs()
    )
    assert val == []
    expected = InputSpec(1, {"mode": "zscore"}).prepare(image[..., None]).tensor[0].numpy()
    assert np.allclose(train[0].image, expected)
    assert set(np.unique(train[0].mask)) == {0, 1}  # any nonzero is foreground for binary


def test_sparse_scribbles_map_to_ignore_background_and_classes():
    image, _ = disc()
    scribbles = np.zeros((64, 64), np.uint8)
    scribbles[2:4, 2:40] = 1
    scribbles[30:33, 15:25] = 2
    train, _ = build_samples(
        [AnnotatedImage("a", image, scribbles)], mode="sparse", val_fraction=0.0, **kwargs()
    )
    mask = train[0].mask
    assert (mask == IGNORE).sum() == (scribbles == 0).sum()
    assert (mask == 0).sum() == (scribbles == 1).sum()
    assert (mask == 1).sum() == (scribbles == 2).sum()


def test_two_or_more_pairs_hold_out_whole_pairs():
    pairs = [AnnotatedImage(f"p{i}", *disc(seed=i)) for i in range(5)]
    train, val = build_samples(pairs, val_fraction=0.2, **kwargs())
    assert len(train) == 4 and len(val) == 1
    assert {s.name for s in train} | {s.name for s in val} == {f"p{i}" for i in range(5)}
    assert all(s.image.shape == (1, 64, 64) for s in val)


def test_one_pair_holds_out_grid_tiles_marked_ignored_in_training():
    image, labels = disc(256)
    train, val = build_samples(
        [AnnotatedImage("a", image, labels)], val_fraction=0.25, seed=3, **kwargs()
    )
    assert len(train) == 1 and len(val) == 1  # 2x2 grid of 128 px tiles, 1 held out
    crop = val[0]
    assert crop.image.shape == (1, 128, 128)
    ignored = train[0].mask == IGNORE
    assert ignored.sum() == 128 * 128
    # the crop is exactly the ignored tile, with its original labels
    ys, xs = np.nonzero(ignored)
    window = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    assert np.array_equal(crop.mask, (labels[window] > 0).astype(np.int64))
    assert np.allclose(crop.image, train[0].image[(slice(None), *window)])


def test_tile_hold_out_is_seeded_and_skips_unlabelled_tiles():
    image, _ = disc(128)
    scribbles = np.zeros((128, 128), np.uint8)
    scribbles[10:20, 10:20] = 1
    scribbles[100:110, 100:110] = 2  # only two of the 2x2 tiles are labelled
    pair = AnnotatedImage("a", image, scribbles)
    a = build_samples([pair], mode="sparse", val_fraction=0.5, seed=1, val_tile=64, **kwargs())
    b = build_samples([pair], mode="sparse", val_fraction=0.5, seed=1, val_tile=64, **kwargs())
    assert np.array_equal(a[0][0].mask, b[0][0].mask) and a[1][0].name == b[1][0].name
    assert len(a[1]) == 1 and (a[1][0].mask >= 0).any()
    lonely = scribbles.copy()
    lonely[100:110, 100:110] = 0
    _, val = build_samples(
        [AnnotatedImage("a", image, lonely)],
        mode="sparse",
        val_fraction=0.5,
        val_tile=64,
        **kwargs(),
    )
    assert val == []  # one labelled tile cannot be split


def test_card_scale_and_size_resize_like_the_predictor():
    model = create_model("unet", in_channels=1, n_classes=1, width=4, depth=2)
    model.card = ModelCard(input_scale=0.5)
    train, _ = samples_for_model(model, [AnnotatedImage("a", *disc(64))], val_fraction=0.0)
    assert train[0].image.shape == (1, 32, 32) and train[0].mask.shape == (32, 32)
    model.card = ModelCard(input_size=[48, 40])
    train, _ = samples_for_model(model, [AnnotatedImage("a", *disc(64))], val_fraction=0.0)
    assert train[0].mask.shape == (48, 40)


def test_rgb_image_is_converted_for_a_grey_model():
    rgb = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    labels = np.ones((40, 30), np.uint8)
    train, _ = build_samples([AnnotatedImage("rgb", rgb, labels)], val_fraction=0.0, **kwargs())
    assert train[0].image.shape == (1, 40, 30)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros((10, 10), np.uint8), "do not match|are 10×10"),
        (np.zeros((64, 64), np.uint8), "no labelled pixels"),
    ],
)
def test_bad_labels_name_the_pair(labels, message):
    image, _ = disc()
    with pytest.raises(ValueError, match="'bad'"):
        build_samples([AnnotatedImage("bad", image, labels)], mode="sparse", **kwargs())


@pytest.mark.slow
def test_config_suits_small_images_and_trains():
    train, val = build_samples(
        [AnnotatedImage("a", *disc(64))], val_fraction=0.25, val_tile=32, **kwargs()
    )
    config = finetune_config(train, epochs=1, device="cpu", patches_per_epoch=4)
    assert config.patch_size == 64 and config.loss_params == {"epsilon": 0.1}
    model = create_model("focal_attention_unet", in_channels=1, n_classes=1, width=4, depth=2)
    history = Trainer(model, config, train, val).fit()
    assert "val_dice" in history.epochs[0]
    assert finetune_config(train).samples_per_epoch == 8
    assert finetune_config(train, augment=False, epsilon=0).augment is None


def test_one_class_labels_are_warned_about_before_training():
    image, labels = disc()
    spec = kwargs()
    dense, _ = build_samples([AnnotatedImage("a", image, labels)], val_fraction=0.0, **spec)
    assert class_warnings(dense, 1) == []
    full, _ = build_samples(
        [AnnotatedImage("a", image, np.ones_like(labels))], val_fraction=0.0, **spec
    )
    assert class_warnings(full, 1) == [
        "the labels hold no background: the model would only learn to predict objects everywhere"
    ]
    scribbles = np.zeros_like(labels)
    scribbles[30:33, 15:25] = 2  # objects only, no background scribble
    sparse, _ = build_samples(
        [AnnotatedImage("a", image, scribbles)], mode="sparse", val_fraction=0.0, **spec
    )
    assert "no background" in class_warnings(sparse, 1)[0]


def test_validation_says_what_it_measures():
    image, labels = disc()
    one = [AnnotatedImage("a", image, labels)]
    train, val = build_samples(one, val_fraction=0.25, val_tile=32, **kwargs())
    assert validation_kind(1, val, "dense").startswith(f"held-out labels in {len(val)} tile(s)")
    assert "scribbled pixels" in validation_kind(1, val, "sparse")
    pairs = [AnnotatedImage(f"p{i}", *disc(seed=i)) for i in range(5)]
    _, val = build_samples(pairs, val_fraction=0.2, **kwargs())
    assert validation_kind(5, val, "dense") == "held-out labels of 1 image(s) (not trained on)"
    assert validation_kind(1, [], "sparse").startswith("no validation")
