"""Training and inference resample images to the model's working size identically."""

import numpy as np
import pytest
import tifffile

from napari_attnseg.data import InputSpec, load_samples
from napari_attnseg.data.resize import resize_labels, working_size
from napari_attnseg.inference import Predictor
from napari_attnseg.models import ModelCard, create_model


def test_working_size_rules():
    assert working_size(100, 60, scale=0.5) == (50, 30)
    assert working_size(100, 60, scale=0.5, size=[32, 48]) == (32, 48)
    assert working_size(3, 3, scale=0.01) == (1, 1)
    with pytest.raises(ValueError, match="scale"):
        working_size(10, 10, scale=-1)


def test_resize_labels_keeps_classes_and_dtype():
    labels = np.zeros((40, 40), np.int64)
    labels[10:30, 10:30] = 2
    small = resize_labels(labels, (20, 20))
    assert small.dtype == np.int64 and set(np.unique(small)) == {0, 2}


def test_training_samples_match_what_the_predictor_feeds_the_model(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_mask.tif", (image > 128).astype(np.uint8))
    spec = InputSpec(1, {"mode": "zscore"}, scale=0.5)
    [sample] = load_samples([(tmp_path / "a.tif", tmp_path / "a_mask.tif")], spec)
    model = create_model("unet", in_channels=1, width=4, depth=2).eval()
    model.card = ModelCard(normalization={"mode": "zscore"}, input_scale=0.5)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    Predictor(device="cpu").predict(model, image)
    assert sample.image.shape == tuple(seen[0].shape[1:]) == (1, 32, 40)
    assert np.allclose(sample.image, seen[0][0].numpy(), atol=1e-5)
