"""The shipped zoo: every model loads offline with a complete card, and the weights are trained."""

import numpy as np
import pytest
import torch

from napari_attnseg import zoo
from napari_attnseg._sample_data import load_sample
from napari_attnseg.inference import Predictor
from napari_attnseg.metrics import binary_metrics
from napari_attnseg.models import load_model

SHIPPED = zoo.zoo_models()
TASKS = {"nuclei", "vessels", "polyp", "membranes"}


def test_the_zoo_is_shipped_with_a_default_per_task():
    assert SHIPPED, "no zoo weights in the package"
    defaults = zoo.task_defaults()
    assert set(defaults) == TASKS
    shipped = {m.name for m in SHIPPED}
    for task, name in defaults.items():
        assert name in shipped and name.endswith(f".{task}")
        assert zoo.resolve(task) == zoo.resolve(name)


@pytest.mark.parametrize("info", SHIPPED, ids=[m.name for m in SHIPPED])
def test_zoo_model_loads_offline_with_complete_card(info):
    model = load_model(info.path)
    card = model.card
    assert card.class_names and card.license and card.description
    assert card.normalization.get("mode")
    assert card.metadata["task"] in TASKS
    assert "attnseg train" in card.training["command"]
    assert card.training["wall_time_s"] > 0 and card.training["epochs_run"] > 0
    assert card.training["environment"]["device"]
    validation = card.metrics["validation"]
    assert "attnseg evaluate" in card.metrics["measured_by"]
    assert 0 < validation["mean"]["dice"] <= 1
    if info.task in ("vessels", "polyp"):
        assert "RESEARCH AND EDUCATION USE ONLY" in card.license
    with torch.no_grad():
        y = model(torch.zeros(1, model.in_channels, 40, 52))
    assert y.shape == (1, model.n_classes, 40, 52)


def test_nuclei_default_segments_the_bundled_cc0_crop():
    image, truth = load_sample("nuclei")
    prediction = Predictor(device="cpu").predict(zoo.load("nuclei"), image)
    dice = binary_metrics(prediction.foreground, truth > 0)["dice"]
    assert dice >= 0.7, f"nuclei default reaches Dice {dice:.3f} on the bundled sample"
    assert not np.array_equal(prediction.labels, np.zeros_like(prediction.labels))
