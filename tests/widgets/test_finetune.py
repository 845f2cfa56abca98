"""Fine-tune widget: rounds, live curve, re-segmentation, honest cards, revert, save, stop."""

import numpy as np
import pytest
import torch

from napari_attnseg.cli import main as attnseg
from napari_attnseg.models import load_model, read_card, save_model
from napari_attnseg.progress import CancelToken
from napari_attnseg.widgets import _jobs, _models
from napari_attnseg.zoo import user_model_dir

from .conftest import blobs, disc_model, dock, errors, tiny_model, wait_done


def weights(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def selected_weights(widget):
    return weights(_models.session().template(widget.model_picker.current()))


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


def round_(qtbot, widget):
    assert widget.finetune()
    wait_done(qtbot, widget, timeout=60_000)


def session_names():
    return [c.name for c in _models.session().choices()]


@pytest.fixture
def base_with_numbers(user_model_dir):
    """The user model ``tiny`` with a description and validation Dice of its own."""
    model = tiny_model(description="BASE DESCRIPTION",
                       metrics={"validation": {"mean": {"dice": 0.1234}}})
    return save_model(model, user_model_dir / "tiny.safetensors")


@pytest.mark.slow
def test_a_round_resegments_and_saves_a_model_with_its_own_card(
        viewer, qtbot, base_with_numbers, notifications, capsys):
    painted = setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    row = widget.rows[0]
    assert row.image_picker.currentText() == "cells"
    assert row.labels_picker.currentText() == "corrected"
    assert widget.model_picker.current().name == "tiny"
    assert widget.run_button.text() == "Fine-tune tiny"
    original = weights(load_model(base_with_numbers))
    quick(widget)
    round_(qtbot, widget)
    assert errors(notifications) == []
    # live curve: one point per epoch
    assert len(widget.curve["train loss"]) == 2 and len(widget.curve["val Dice"]) == 2
    # losses and Dice on separate axes (two stacked charts), never on one
    assert widget.plot.data["kind"] == "panels"
    loss, dice = widget.plot.data["panels"]
    assert loss["ylabel"] == "loss" and set(loss["series"]) == {"train loss", "val loss"}
    assert dice["ylabel"] == "Dice" and set(dice["series"]) == {"val Dice"}
    assert len(loss["series"]["train loss"]) == 2 and len(widget.plot.all_axes) == 2
    # a new, unsaved model that every picker offers, selected and named on the button
    assert widget.model_picker.current().label == "tiny-ft1  (unsaved)"
    assert widget.run_button.text() == "Fine-tune tiny-ft1"
    assert "continues from tiny-ft1" in widget.summary.text()
    tuned = _models.session().template(widget.model_picker.current())
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
    assert card["name"] == "my_nuclei" and card["base_model"] == "tiny"
    # the card describes this round, not the base model
    assert "BASE DESCRIPTION" not in card["description"]
    assert card["description"].startswith("tiny fine-tuned in napari on 1 image(s) with 4,096 "
                                          "labelled pixels (dense labels); 2 epoch(s)")
    history = widget.rounds.current.history
    best = history.epochs[history.best_epoch]
    validation = card["metrics"]["validation"]
    assert validation["mean"]["dice"] == pytest.approx(best["val_dice"]) != 0.1234
    assert "held-out labels" in validation["measured_on"]
    finetune = card["metadata"]["finetune"]
    assert finetune["epochs_run"] == 2 and len(finetune["history"]) == 2
    assert finetune["labelled_pixels"] == 64 * 64 and finetune["mode"] == "dense"
    assert finetune["settings"]["lr"] == 1e-3 and finetune["images"] == ["cells"]
    assert same(weights(load_model(path)), weights(tuned))
    assert segment.model_picker.select("my_nuclei")
    assert segment.model_picker.current().kind == "user"
    capsys.readouterr()
    assert attnseg(["models"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith("my_nuclei ")]
    assert listed and listed[0].split()[-1] == f"{best['val_dice']:.4f}"


@pytest.mark.slow
def test_revert_selects_the_model_from_before_the_round_and_names_are_never_reused(
        viewer, qtbot, saved_model, notifications):
    setup_pair(viewer)
    save_model(tiny_model("unet"), user_model_dir() / "another.safetensors")
    widget = dock(viewer, "Fine-tune")
    assert widget.model_picker.current().name == "another"  # listed first: the fallback
    assert widget.model_picker.select("tiny")
    quick(widget, epochs=1)
    original = weights(load_model(saved_model))
    round_(qtbot, widget)
    tuned = selected_weights(widget)
    kept = viewer.layers["cells [tiny-ft1]"].data.copy()

    assert widget.revert()
    assert widget.model_picker.current().name == "tiny"
    assert same(selected_weights(widget), original) and not same(original, tuned)
    assert "tiny-ft1" not in session_names()  # the reverted model is gone
    assert not widget.revert_button.isEnabled()
    assert "the layers made by tiny-ft1 were kept" in notifications[-1][1]
    assert not widget.revert() and "nothing to revert" in errors(notifications)[-1]

    # the next round gets a new name and leaves the kept layer alone
    round_(qtbot, widget)
    assert widget.model_picker.current().name == "tiny-ft2"
    assert np.array_equal(viewer.layers["cells [tiny-ft1]"].data, kept)
    assert "cells [tiny-ft2]" in viewer.layers


@pytest.mark.slow
def test_rounds_chain_visibly_and_keep_only_the_base_and_the_current_round(
        viewer, qtbot, saved_model, notifications):
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1)
    round_(qtbot, widget)
    assert widget.run_button.text() == "Fine-tune tiny-ft1"  # the next base, in plain sight
    round_(qtbot, widget)
    assert widget.model_picker.current().name == "tiny-ft2"  # not tiny-ft1-ft1
    assert read_card_of("tiny-ft2")["base_model"] == "tiny-ft1"
    second = selected_weights(widget)
    assert session_names() == ["tiny", "tiny-ft1", "tiny-ft2"]  # base and current round

    round_(qtbot, widget)
    assert widget.model_picker.current().name == "tiny-ft3"
    assert session_names() == ["tiny", "tiny-ft2", "tiny-ft3"]  # tiny-ft1 dropped
    assert any("dropped the older unsaved round(s) tiny-ft1" in m for _, m in notifications)
    assert widget.revert()
    assert widget.model_picker.current().name == "tiny-ft2"
    assert same(selected_weights(widget), second)
    assert session_names() == ["tiny", "tiny-ft2"]


def read_card_of(name):
    return _models.session().template(_models.session().find(name)).card.to_dict()


@pytest.mark.slow
def test_sparse_validation_is_described_as_scribbles_and_not_listed_as_dice(
        viewer, qtbot, saved_model, notifications, capsys):
    image, labels = blobs((64, 64))
    scribbles = np.zeros_like(labels)
    scribbles[2:6, :] = 1  # background strokes
    scribbles[44:62, :] = 1
    scribbles[14:18, 16:24] = 2  # object strokes
    scribbles[42:46, 36:44] = 2
    viewer.add_image(image, name="cells")
    viewer.add_labels(scribbles, name="scribbles")
    widget = dock(viewer, "Fine-tune")
    widget.mode.setCurrentText("sparse")
    quick(widget, epochs=1)
    round_(qtbot, widget)
    assert errors(notifications) == []
    assert "scribbled pixels" in widget.summary.text()
    assert any("scribbled pixels" in m for _, m in notifications)
    card = read_card_of("tiny-ft1")
    assert "validation" not in card["metrics"]
    assert "scribbled pixels" in card["metrics"]["scribble_validation"]["measured_on"]
    assert f"{np.count_nonzero(scribbles):,} labelled pixels (sparse labels)" in card["description"]
    path = widget.save()
    capsys.readouterr()
    assert attnseg(["models"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines()
              if line.startswith(path.stem + " ")]
    assert listed[0].split()[-1] == "focal_attention_unet"  # no value in the Dice column


@pytest.mark.slow
def test_without_validation_the_card_says_so(viewer, qtbot, saved_model):
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1)
    widget.val_fraction.setValue(0.0)
    round_(qtbot, widget)
    card = read_card_of("tiny-ft1")
    assert card["metrics"] == {}
    assert "not evaluated (no validation" in card["description"]
    assert card["metadata"]["finetune"]["validation"].startswith("none: no validation")
    assert "no validation" in widget.summary.text()


@pytest.mark.slow
def test_labels_of_one_class_get_a_warning_before_training(viewer, qtbot, saved_model):
    from napari.utils.notifications import notification_manager

    image, _ = blobs()
    viewer.add_image(image, name="cells")
    viewer.add_labels(np.ones((64, 64), np.uint8), name="everything")
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1)
    seen = []  # (severity, message, epochs shown on the chart at that moment)

    def record(event):
        seen.append((str(event.severity), str(event.message), len(widget.curve["train loss"])))

    notification_manager.notification_ready.connect(record)
    try:
        round_(qtbot, widget)
    finally:
        notification_manager.notification_ready.disconnect(record)
    warnings = [(message, epochs) for severity, message, epochs in seen if severity == "warning"]
    assert warnings and "hold no background" in warnings[0][0]
    assert warnings[0][1] == 0  # it came before the first epoch ended


class StoppableToken(CancelToken):
    """The engine's "stop and keep" request, for a trainer that predates it."""

    def __init__(self):
        super().__init__()
        self.stop_requested = False

    def request_stop(self):
        self.stop_requested = True


@pytest.fixture
def stop_and_keep(monkeypatch):
    """Use the engine's stop request if it has one; else a stand-in token and trainer hook."""
    if _jobs.can_stop_and_keep(CancelToken()):
        return
    from napari_attnseg.training import trainer

    monkeypatch.setattr(_jobs, "CancelToken", StoppableToken)
    fit = trainer.Trainer.fit

    def fit_honouring_stop(self, progress=None, cancel=None):
        on_epoch = self.on_epoch

        def after_epoch(record):
            if on_epoch is not None:
                on_epoch(record)
            if getattr(cancel, "stop_requested", False):
                self.config.time_budget = 0.0  # ends the run after this epoch, best kept

        self.on_epoch = after_epoch
        return fit(self, progress, cancel)

    monkeypatch.setattr(trainer.Trainer, "fit", fit_honouring_stop)


@pytest.mark.slow
def test_stop_and_keep_ends_the_round_after_the_epoch_and_keeps_it(
        viewer, qtbot, saved_model, notifications, stop_and_keep):
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1000)
    original = weights(load_model(saved_model))
    assert widget.finetune()
    assert not widget.jobs.stop_button.isHidden() and widget.jobs.stop_button.isEnabled()
    qtbot.waitUntil(lambda: len(widget.curve["train loss"]) >= 1, timeout=30_000)
    widget.jobs.stop_button.click()
    wait_done(qtbot, widget, timeout=60_000)
    assert errors(notifications) == []
    epochs = len(widget.rounds.current.history.epochs)
    assert 1 <= epochs < 1000
    assert widget.model_picker.current().name == "tiny-ft1"
    assert not same(selected_weights(widget), original)
    assert "cells [tiny-ft1]" in viewer.layers
    assert read_card_of("tiny-ft1")["metadata"]["finetune"]["epochs_run"] == epochs


@pytest.mark.slow
def test_cancel_keeps_model_and_layers(viewer, qtbot, saved_model, notifications):
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1000)
    base = _models.session().template(widget.model_picker.current())
    before = weights(base)
    assert widget.finetune()
    qtbot.waitUntil(lambda: len(widget.curve["train loss"]) >= 1, timeout=30_000)
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["cells", "corrected"]
    assert widget.rounds.current is None and widget.model_picker.current().name == "tiny"
    assert same(weights(base), before)
    assert session_names() == ["tiny"]
    assert errors(notifications) == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_two_channel_pairs_train_on_the_chosen_channel_axis(viewer, qtbot, notifications):
    model = tiny_model(in_channels=2)
    save_model(model, user_model_dir(create=True) / "two.safetensors")
    image, labels = blobs()
    viewer.add_image(np.stack([image, 255 - image]), name="two channels")
    viewer.add_labels(labels, name="truth")
    widget = dock(viewer, "Fine-tune")
    row = widget.rows[0]
    row.image_picker.set_layer("two channels")
    row.labels_picker.set_layer("truth")
    assert row.channels.offered
    row.channels.set_axis(0)
    quick(widget, epochs=1)
    round_(qtbot, widget)
    assert errors(notifications) == []
    assert viewer.layers["two channels [two-ft1]"].data.shape == (64, 64)


@pytest.mark.slow
def test_save_after_revert_writes_the_selected_round_under_its_own_name(
        viewer, qtbot, saved_model, notifications):
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    quick(widget, epochs=1)
    round_(qtbot, widget)
    first = selected_weights(widget)
    round_(qtbot, widget)
    assert widget.save_name.text() == "tiny-ft2"
    assert widget.revert()
    assert widget.model_picker.current().name == "tiny-ft1"
    assert widget.save_name.text() == "tiny-ft1"  # the field follows the selection
    assert widget.save_button.isEnabled()

    path = widget.save()
    assert path is not None and path.stem == "tiny-ft1"
    assert same(weights(load_model(path)), first)
    card = read_card(path)
    assert card["name"] == "tiny-ft1" and card["base_model"] == "tiny"
    assert card["metadata"]["finetune"]["tuned_as"] == "tiny-ft1"
    assert not (path.parent / "tiny-ft2.safetensors").exists()

    # a model this widget did not make is not savable: the field empties, Save is off
    assert widget.model_picker.select("tiny")
    assert widget.save_name.text() == "" and not widget.save_button.isEnabled()


@pytest.mark.slow
def test_a_round_of_an_instance_model_resegments_into_counted_objects(
        viewer, qtbot, user_model_dir, bright_is_foreground, notifications):
    disc_model("discs", instances={"method": "watershed"})
    setup_pair(viewer)
    widget = dock(viewer, "Fine-tune")
    assert widget.model_picker.select("discs")
    quick(widget, epochs=1)
    round_(qtbot, widget)

    layer = viewer.layers["cells [discs-ft1]"]
    assert sorted(np.unique(layer.data)) == [0, 1, 2, 3]  # three objects, not a one-label mask
    assert len(layer.features) == 3 and list(layer.features["index"]) == [1, 2, 3]
    assert layer.metadata["napari_attnseg"]["role"] == "instances"
    assert "3 objects in cells" in widget.summary.text()
