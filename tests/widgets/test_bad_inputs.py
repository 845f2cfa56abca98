"""The widgets' share of the bad-input suite: each case ends in a notification that names the
problem, and no layer changes (the names and the data of every layer are compared before and
after). The model-file cases live in ``test_models.py``; closing the viewer during a job in
``test_close_during_job.py``.
"""

import time

import numpy as np
import pytest

import napari_attnseg.inference as inference
from napari_attnseg.inference import Predictor
from napari_attnseg.progress import check

from .conftest import blobs, dock, errors, wait_done


def snapshot(viewer):
    return [(layer.name, np.array(layer.data)) for layer in viewer.layers]


def assert_unchanged(viewer, before):
    after = snapshot(viewer)
    assert [name for name, _ in after] == [name for name, _ in before]
    for (name, old), (_, new) in zip(before, after, strict=True):
        assert np.array_equal(old, new), f"layer {name!r} changed"


def messages(notifications, severity):
    return [m for s, m in notifications if s == severity]


@pytest.fixture
def cells(viewer):
    image, labels = blobs()
    viewer.add_image(image, name="cells")
    return labels


def fast(widget, epochs=1000):
    widget.epochs.setValue(epochs)
    widget.patches.setValue(4)
    widget.device_picker.setCurrentIndex(widget.device_picker.findData("cpu"))


def slow(*_, cancel=None, progress=None, **__):
    for step in range(2000):
        check(cancel)
        time.sleep(0.01)
        if progress is not None:
            progress(step + 1, 2000, "slowly")
    raise AssertionError("should have been cancelled")


def test_segment_without_an_image(viewer, saved_model, notifications):
    widget = dock(viewer, "Segment")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="not an image")
    before = snapshot(viewer)
    assert not widget.segment()
    assert "no image selected: open an image" in errors(notifications)[-1]
    assert_unchanged(viewer, before)


def test_attention_without_an_image(viewer, saved_model, notifications):
    widget = dock(viewer, "Attention")
    before = snapshot(viewer)
    assert not widget.show_attention()
    assert "no image selected" in errors(notifications)[-1]
    assert_unchanged(viewer, before)


def test_finetune_labels_of_the_wrong_shape(viewer, cells, saved_model, notifications):
    viewer.add_labels(np.ones((32, 48), np.uint8), name="small")
    widget = dock(viewer, "Fine-tune")
    widget.add_pair("cells", "small")
    widget._remove_row(widget.rows[0])
    before = snapshot(viewer)
    assert not widget.finetune()
    assert errors(notifications)[-1] == (
        "labels 'small' are 32×48 but image 'cells' is 64×64: they must have the same shape")
    assert_unchanged(viewer, before)


def test_finetune_empty_labels(viewer, cells, saved_model, notifications):
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="blank")
    widget = dock(viewer, "Fine-tune")
    before = snapshot(viewer)
    assert not widget.finetune()
    assert "labels 'blank' are empty: paint the objects first" in errors(notifications)[-1]
    assert_unchanged(viewer, before)


@pytest.mark.slow
def test_finetune_all_foreground_labels_warn_before_training(
        viewer, qtbot, cells, saved_model, notifications):
    viewer.add_labels(np.ones((64, 64), np.uint8), name="everything")
    widget = dock(viewer, "Fine-tune")
    fast(widget)
    before = snapshot(viewer)
    assert widget.finetune()
    qtbot.waitUntil(lambda: bool(messages(notifications, "warning")), timeout=30_000)
    assert "the labels hold no background" in messages(notifications, "warning")[0]
    widget.jobs.cancel_button.click()  # warned in time: the user stops it
    wait_done(qtbot, widget)
    assert widget.rounds.current is None
    assert_unchanged(viewer, before)


def test_segment_with_a_broken_model_file(viewer, qtbot, cells, saved_model, tmp_path,
                                          notifications):
    widget = dock(viewer, "Segment")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    before = snapshot(viewer)
    assert widget.model_picker.add_model_path(bad) is None
    assert errors(notifications)[-1].startswith(f"cannot use model file {bad}")
    assert widget.model_picker.current().name == "tiny"  # the selection is kept
    assert_unchanged(viewer, before)


def test_segment_with_a_model_file_that_vanished(viewer, qtbot, cells, saved_model,
                                                 notifications):
    widget = dock(viewer, "Segment")
    assert widget.model_picker.current().name == "tiny"
    saved_model.unlink()  # the file disappears after it was listed
    before = snapshot(viewer)
    assert widget.segment()
    wait_done(qtbot, widget)
    assert f"model file not found: {saved_model}" in errors(notifications)[-1]
    assert_unchanged(viewer, before)


def test_cancel_during_segment(viewer, qtbot, cells, saved_model, monkeypatch, notifications):
    widget = dock(viewer, "Segment")
    monkeypatch.setattr(Predictor, "predict", lambda self, *a, **k: slow(*a, **k))
    before = snapshot(viewer)
    assert widget.segment()
    qtbot.waitUntil(lambda: widget.jobs.bar.value() > 2, timeout=10_000)
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert messages(notifications, "info")[-1] == "cancelled: nothing was changed"
    assert errors(notifications) == []
    assert_unchanged(viewer, before)


def test_cancel_during_attention(viewer, qtbot, cells, saved_model, monkeypatch, notifications):
    widget = dock(viewer, "Attention")
    monkeypatch.setattr(inference, "attention_maps", slow)
    before = snapshot(viewer)
    assert widget.show_attention()
    qtbot.waitUntil(lambda: widget.jobs.bar.value() > 2, timeout=10_000)
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert messages(notifications, "info")[-1] == "cancelled: nothing was changed"
    assert_unchanged(viewer, before)


@pytest.mark.slow
def test_cancel_during_finetune(viewer, qtbot, cells, saved_model, notifications):
    viewer.add_labels(cells, name="truth")
    widget = dock(viewer, "Fine-tune")
    fast(widget)
    before = snapshot(viewer)
    assert widget.finetune()
    qtbot.waitUntil(lambda: len(widget.curve["train loss"]) >= 1, timeout=30_000)
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert messages(notifications, "info")[-1] == (
        "fine-tuning cancelled: the model and all layers are unchanged")
    assert_unchanged(viewer, before)


@pytest.mark.parametrize("name", ["Segment", "Attention"])
@pytest.mark.slow
def test_closing_the_dock_during_a_job(viewer, qtbot, cells, saved_model, monkeypatch,
                                       notifications, name):
    monkeypatch.setattr(Predictor, "predict", lambda self, *a, **k: slow(*a, **k))
    monkeypatch.setattr(inference, "attention_maps", slow)
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-attnseg", name)
    before = snapshot(viewer)
    assert (widget.segment if name == "Segment" else widget.show_attention)()
    job = widget.jobs._job
    qtbot.waitUntil(lambda: widget.jobs.bar.value() > 2, timeout=10_000)
    viewer.window.remove_dock_widget(dock_widget)  # what the dock's ✕ does
    assert not widget.jobs.busy and job.token.cancelled
    qtbot.waitUntil(job.returned.is_set, timeout=10_000)
    qtbot.wait(50)  # the worker's last signals are delivered now
    assert any("was cancelled: its dock was closed; nothing was changed" in m
               for m in messages(notifications, "info"))
    assert errors(notifications) == []
    assert_unchanged(viewer, before)
