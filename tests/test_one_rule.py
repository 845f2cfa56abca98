"""One rule in one place (issue 24): the trainer's validation scores with evaluation's
``score_sample``, and the Fine-tune widget's samples are built by the data layer's builder."""

import numpy as np
import pytest
import torch

from napari_attnseg.data import InputSpec, Sample, load_samples
from napari_attnseg.data.io import write_image, write_mask
from napari_attnseg.inference.evaluate import score_sample
from napari_attnseg.metrics import MetricAccumulator
from napari_attnseg.models import create_model
from napari_attnseg.models.base import class_probabilities
from napari_attnseg.training import Trainer
from napari_attnseg.training.interactive import AnnotatedImage, build_samples

from .test_training import config


def disc_samples(n, size=32, seed=0, n_classes=2):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    samples = []
    for i in range(n):
        mask = np.zeros((size, size), np.int64)
        for c in range(1, n_classes):
            cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(3, 7)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = c
        mask[:2] = -1  # ignored pixels must stay out of both scorings
        image = (mask * 1.5 + rng.normal(0, 0.5, (size, size))).astype(np.float32)[None]
        roi = np.ones((size, size), bool)
        roi[:, :3] = False
        samples.append(Sample(f"s{i}", image, mask, roi if i % 2 else None))
    return samples


@torch.no_grad()
def shared_scores(model, samples, n_classes):
    """What evaluation's scoring gives for ``model`` on ``samples`` (the same valid pixels)."""
    model.eval()
    acc = MetricAccumulator(n_classes)
    for sample in samples:
        logits = model(torch.as_tensor(sample.image)[None])
        probs = class_probabilities(logits)[0].numpy()
        valid = sample.valid
        score_sample(acc, sample.name, probs, np.where(valid, sample.mask, 0), roi=valid)
    return acc.summary()["mean"]


@pytest.mark.parametrize("n_classes", [1, 3])
def test_trainer_records_the_validation_dice_of_the_shared_scoring(n_classes):
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, n_classes=n_classes, width=4, depth=2)
    classes = max(2, n_classes)
    train = disc_samples(4, n_classes=classes)
    val = disc_samples(3, seed=1, n_classes=classes)
    history = Trainer(model, config(epochs=1, batch_size=2), train, val).fit()
    record = history.epochs[-1]
    # one epoch: the model ends with the weights it was validated with
    expected = shared_scores(model, val, classes)
    for key in ("dice", "jaccard", "precision", "sensitivity"):
        assert record[f"val_{key}"] == expected[key]
    if n_classes > 2:
        assert record["val_dice_per_class"] == expected["dice_per_class"]


def test_score_sample_binary_scores_the_foreground():
    probs = np.zeros((3, 4, 4), np.float32)
    probs[0] = 1.0
    probs[0, :2] = 0.2
    probs[2, :2] = 0.8
    truth = np.zeros((4, 4), np.int64)
    truth[:2] = 2  # any nonzero class (or instance id) is foreground for a binary scorer
    metrics = score_sample(MetricAccumulator(), "a", probs, truth)
    assert metrics["dice"] == 1.0
    per_class = score_sample(MetricAccumulator(3), "a", probs, truth)
    assert per_class["dice_per_class"] == [1.0, 1.0, 1.0]  # class 1: absent, no error


# -- one sample builder -------------------------------------------------------
def painted(name, size=(40, 48), seed=0, rgb=False):
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if rgb else size
    image = rng.normal(100, 20, shape).astype(np.float32)
    labels = np.zeros(size, np.uint8)
    labels[5:15, 6:20] = 1
    labels[20:30, 25:40] = 2
    return image, labels


@pytest.mark.parametrize(
    ("mode", "n_classes", "spec", "rgb"),
    [
        ("dense", 1, InputSpec(1), False),
        ("sparse", 1, InputSpec(1, scale=0.5), False),
        ("dense", 3, InputSpec(1, size=(24, 24)), False),
        ("dense", 1, InputSpec(3), True),
    ],
)
def test_files_and_painted_layers_give_equal_samples(tmp_path, mode, n_classes, spec, rgb):
    pairs, annotated = [], []
    for i in range(2):
        image, labels = painted(f"im{i}", seed=i, rgb=rgb)
        write_image(tmp_path / f"im{i}.tif", image)
        write_mask(tmp_path / f"im{i}_mask.tif", labels)
        pairs.append((tmp_path / f"im{i}.tif", tmp_path / f"im{i}_mask.tif"))
        annotated.append(AnnotatedImage(f"im{i}", image, labels))
    from_files = load_samples(pairs, spec, n_classes=n_classes, annotation=mode)
    from_layers, val = build_samples(
        annotated, spec, n_classes=n_classes, mode=mode, val_fraction=0.0
    )
    assert val == []
    assert len(from_files) == len(from_layers) == 2
    for a, b in zip(from_files, from_layers, strict=True):
        assert a.name == b.name
        assert a.roi is None and b.roi is None
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_both_builders_keep_their_messages(tmp_path):
    image, labels = painted("a")
    with pytest.raises(ValueError, match=r"labels for 'a' are 40×40 but the image is 40×48"):
        build_samples([AnnotatedImage("a", image, labels[:, :40])], InputSpec(1), n_classes=1)
    with pytest.raises(ValueError, match="'a' is a stack .*give one 2D slice at a time"):
        stack = AnnotatedImage("a", np.stack([image] * 4), labels)
        build_samples([stack], InputSpec(1), n_classes=1)
    write_image(tmp_path / "a.tif", image)
    write_mask(tmp_path / "m.tif", labels[:, :40])
    with pytest.raises(ValueError, match="mask .*m.tif is 40x40 but image .*a.tif is 40x48"):
        load_samples([(tmp_path / "a.tif", tmp_path / "m.tif")], InputSpec(1))
