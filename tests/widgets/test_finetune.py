"""Fine-tune widget: train on painted labels, live curve, re-segment, revert, save, errors."""

import numpy as np
import torch

from napari_attnseg.cli import main as attnseg
from napari_attnseg.models import load_model, read_card
from napari_attnseg.widgets import _models

from .conftest import blobs, dock, errors, wait_done


def weights(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def setup_pair(viewer, shape=(64, 64)):
    image, labels = blobs(shape)
    viewer.add_image(image, name="cells", scale=(0.5, 0.5), translate=(4, 8))
    viewer.add_labels(labels, name="corrected", scale=(0.5, 0.5), translate=(4, 8))
    return labels


def quick(widget, epochs=2):
    widget.epochs.setValue(epochs)
    widget.patches.setValue(4)
    widget.lr.setText("1e-3")
    widget.val_fraction.setValue(0.25)
    widget.device_picker.setCurrentIndex(widget.device_picker.findData("cpu"))


def test_finetune_curve_resegment_save_and_revert(viewer, qtbot, saved_model, notifications,
                                                  capsys):
    painted = setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    row = widget.rows[0]
    assert row.image_picker.currentText() == "cells"
    assert row.labels_picker.currentText() == "corrected"
    assert widget.model_picker.current().name == "tiny"
    original = weights(load_model(saved_model))
    quick(widget)

    assert widget.finetune()
    wait_done(qtbot, widget, timeout=60_000)
    assert errors(notifications) == []
    # live curve: one point per epoch
    assert len(widget.curve["train loss"]) == 2 and len(widget.curve["val Dice"]) == 2
    assert widget.plot.data["kind"] == "lines"
    assert len(widget.plot.data["series"]["train loss"]) == 2
    # a new, unsaved model that every picker offers; the weights changed
    assert widget.model_picker.current().label == "tiny-ft1  (unsaved)"
    tuned = _models.session().load(widget.model_picker.current())
    assert not same(weights(tuned), original)
    # the image was re-segmented into a new aligned layer; the painted labels are untouched
    output = viewer.layers["cells [tiny-ft1]"]
    assert output.data.shape == (64, 64)
    assert np.allclose(output.scale, (0.5, 0.5)) and np.allclose(output.translate, (4, 8))
    assert np.array_equal(viewer.layers["corrected"].data, painted)
    segment = dock(viewer, "Segment")
    assert segment.model_picker.select("tiny-ft1")

    # Save as…: safetensors + card in the user folder, listed everywhere
    widget.save_name.setText("my nuclei")
    path = widget.save()
    assert path.name == "my_nuclei.safetensors" and path.with_suffix(".json").exists()
    card = read_card(path)
    assert card["base_model"] == "tiny"
    finetune = card["metadata"]["finetune"]
    assert finetune["epochs_run"] == 2 and finetune["data_shapes"] and len(finetune["history"]) == 2
    assert "val_dice" in card["metrics"]["finetune_validation"]
    assert same(weights(load_model(path)), weights(tuned))
    assert segment.model_picker.select("my_nuclei")
    assert segment.model_picker.current().kind == "user"
    assert attnseg(["models"]) == 0 and "my_nuclei" in capsys.readouterr().out

    # Revert: the weights from before fine-tuning, exactly
    assert widget.revert()
    assert widget.model_picker.current().name == "tiny"
    assert same(weights(_models.session().load(widget.model_picker.current())), original)
    assert not widget.revert_button.isEnabled()


def test_cancel_keeps_model_and_layers(viewer, qtbot, saved_model, notifications):
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1000)
    base = _models.session().load(widget.model_picker.current())
    before = weights(base)
    assert widget.finetune()
    qtbot.waitUntil(lambda: len(widget.curve["train loss"]) >= 1, timeout=30_000)
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["cells", "corrected"]
    assert widget.rounds == [] and widget.model_picker.current().name == "tiny"
    assert same(weights(base), before)
    assert [c.name for c in _models.session().choices()] == ["tiny"]
    assert errors(notifications) == []


def test_bad_inputs_notify_and_change_nothing(viewer, qtbot, saved_model, notifications):
    widget = dock(viewer, "Fine-tune")
    assert not widget.finetune()
    assert "no image selected" in errors(notifications)[-1]

    viewer.add_image(blobs()[0], name="cells")
    widget.rows[0].image_picker.set_layer("cells")
    assert not widget.finetune()
    assert "no labels layer" in errors(notifications)[-1]

    viewer.add_labels(np.zeros((32, 32), np.uint8), name="small")
    widget.rows[0].labels_picker.set_layer("small")
    assert not widget.finetune()
    assert "'small' are 32×32 but image 'cells' is 64×64" in errors(notifications)[-1]

    viewer.add_labels(np.zeros((64, 64), np.uint8), name="blank")
    widget.rows[0].labels_picker.set_layer("blank")
    assert not widget.finetune()
    assert "'blank' are empty" in errors(notifications)[-1]

    viewer.layers["blank"].data[5:9, 5:9] = 3  # too high a class for sparse binary labels
    widget.mode.setCurrentText("sparse")
    assert widget.epsilon.value() == 0.0  # no distance penalty for scribbles
    widget.lr.setText("fast")
    assert not widget.finetune()
    assert "learning rate 'fast'" in errors(notifications)[-1]
    quick(widget)
    assert widget.finetune()
    wait_done(qtbot, widget)
    assert "blank" in errors(notifications)[-1] and "sparse labels" in errors(notifications)[-1]

    assert not widget.revert() and "nothing to revert" in errors(notifications)[-1]
    assert widget.save() is None and "nothing to save" in errors(notifications)[-1]
    assert [layer.name for layer in viewer.layers] == ["cells", "small", "blank"]
