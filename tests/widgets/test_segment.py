"""Segment widget: aligned Labels layers for grey, RGB and stacks; replace, undo, cancel, errors."""

import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_attnseg.inference import Predictor
from napari_attnseg.progress import check

from .conftest import blobs, dock, errors, wait_done


def same_placement(a, b, point):
    return np.allclose(a.data_to_world(point), b.data_to_world(point))


def run(qtbot, widget):
    assert widget.segment()
    wait_done(qtbot, widget)


@pytest.mark.slow
def test_grey_2d_gives_an_aligned_labels_layer_that_reruns_in_place(
        viewer, qtbot, saved_model, notifications):
    image, _ = blobs((64, 80))
    layer = viewer.add_image(image, name="cells", scale=(0.5, 2.0), translate=(10.0, -5.0))
    widget = dock(viewer, "Segment")
    assert widget.model_picker.current().name == "tiny"
    widget.threshold.setValue(0.5)
    run(qtbot, widget)
    labels = viewer.layers["cells [tiny]"]
    assert labels.data.shape == (64, 80) and np.issubdtype(labels.data.dtype, np.integer)
    assert np.allclose(labels.scale, layer.scale) and np.allclose(labels.translate, layer.translate)
    assert same_placement(labels, layer, [7, 11])
    first = labels.data.copy()

    widget.threshold.setValue(0.01)  # nearly everything is foreground now
    widget.add_probability.setChecked(True)
    run(qtbot, widget)
    names = ["cells", "cells [tiny]", "cells [tiny] probability"]
    assert [lay.name for lay in viewer.layers] == names
    assert viewer.layers["cells [tiny]"] is labels and labels.data.mean() > 0.9
    probability = viewer.layers["cells [tiny] probability"]
    assert probability.data.shape == (64, 80) and same_placement(probability, layer, [3, 4])
    labels.undo()  # the re-run is one step in napari's undo history
    assert np.array_equal(labels.data, first)
    run(qtbot, widget)
    assert len(viewer.layers) == 3  # probability replaced too
    assert errors(notifications) == []


@pytest.mark.slow
def test_rgb_image_uses_its_spatial_axes(viewer, qtbot, saved_model):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    layer = viewer.add_image(rgb, name="photo", rgb=True, scale=(2.0, 3.0))
    widget = dock(viewer, "Segment")
    run(qtbot, widget)
    labels = viewer.layers["photo [tiny]"]
    assert labels.data.shape == (40, 50)
    assert np.allclose(labels.scale, layer.scale) and same_placement(labels, layer, [5, 5])


@pytest.mark.slow
def test_stack_whole_and_current_slice(viewer, qtbot, saved_model):
    stack = np.stack([blobs((32, 48), seed=i)[0] for i in range(3)])
    layer = viewer.add_image(stack, name="stack", scale=(4.0, 1.0, 1.0), translate=(2, 0, 0))
    widget = dock(viewer, "Segment")
    assert widget.scope.isEnabled()
    widget.threshold.setValue(0.01)
    widget.scope.setCurrentText("current slice")
    viewer.dims.set_current_step(0, 1)
    run(qtbot, widget)
    labels = viewer.layers["stack [tiny]"]
    assert labels.data.shape == (3, 32, 48)
    assert np.allclose(labels.scale, layer.scale) and same_placement(labels, layer, [2, 3, 4])
    assert labels.data[1].mean() > 0.9 and not labels.data[0].any() and not labels.data[2].any()
    widget.scope.setCurrentText("whole stack")
    run(qtbot, widget)
    assert viewer.layers["stack [tiny]"] is labels
    assert all(labels.data[z].mean() > 0.9 for z in range(3))


def slow_predict(self, model, image, *, rgb=None, progress=None, cancel=None, **kwargs):
    for step in range(500):
        check(cancel)
        time.sleep(0.01)
        progress(step, 500, "slowly")
    raise AssertionError("should have been cancelled")


@pytest.mark.slow
def test_cancel_leaves_layers_untouched_and_the_gui_stays_live(
        viewer, qtbot, saved_model, monkeypatch, notifications):
    image, _ = blobs()
    viewer.add_image(image, name="cells")
    widget = dock(viewer, "Segment")
    run(qtbot, widget)
    before = viewer.layers["cells [tiny]"].data.copy()

    monkeypatch.setattr(Predictor, "predict", slow_predict)
    widget.threshold.setValue(0.01)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.jobs.busy))
    timer.start(10)
    assert widget.segment()
    qtbot.waitUntil(lambda: widget.jobs.bar.value() > 5, timeout=10_000)
    assert widget.jobs.busy and not widget.run_button.isEnabled()
    assert sum(ticks) >= 3  # the event loop kept running while the worker worked
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    timer.stop()
    assert [lay.name for lay in viewer.layers] == ["cells", "cells [tiny]"]
    assert np.array_equal(viewer.layers["cells [tiny]"].data, before)
    assert widget.run_button.isEnabled() and errors(notifications) == []


@pytest.mark.slow
def test_predictor_messages_become_notifications(viewer, qtbot, saved_model, monkeypatch,
                                                 notifications):
    original = Predictor.predict

    def predict_with_fallback(self, *args, **kwargs):
        self.on_message("out of GPU memory: retrying with 256px tiles")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", predict_with_fallback)
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    run(qtbot, widget)
    assert ("warning", "out of GPU memory: retrying with 256px tiles") in notifications
    assert "cells [tiny]" in viewer.layers


def test_bad_inputs_notify_and_change_nothing(viewer, qtbot, saved_model, tmp_path, notifications):
    widget = dock(viewer, "Segment")
    assert not widget.segment()
    assert any("no image selected" in m for m in errors(notifications))

    viewer.add_image(blobs()[0], name="cells")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    assert widget.model_picker.add_model_path(bad) is None
    assert any("cannot use model file" in m and "broken" in m for m in errors(notifications))
    assert widget.model_picker.current().name == "tiny"  # the selection is kept

    saved_model.unlink()  # the file disappears after it was listed
    run(qtbot, widget)
    assert any("model file" in m for m in errors(notifications))
    assert [lay.name for lay in viewer.layers] == ["cells"]


@pytest.mark.slow
def test_a_model_object_can_be_handed_to_the_picker(viewer, qtbot):
    from .conftest import tiny_model

    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    widget.model_picker.add_model(tiny_model(), "scripted")
    assert widget.model_picker.current().label == "scripted  (unsaved)"
    run(qtbot, widget)
    assert viewer.layers["cells [scripted]"].data.shape == (64, 64)


@pytest.mark.slow
def test_nan_pixels_are_reported_as_a_notification(viewer, qtbot, saved_model, notifications):
    image = blobs()[0].astype(np.float32)
    image[3, 4] = np.nan
    image[10, 11:13] = np.inf
    viewer.add_image(image, name="cells")
    widget = dock(viewer, "Segment")
    run(qtbot, widget)
    assert ("warning", "3 NaN/Inf pixel value(s) were replaced by their channel's median") \
        in notifications
    assert viewer.layers["cells [tiny]"].data.any()  # not an empty mask


@pytest.mark.slow
def test_a_channel_axis_can_be_chosen_for_a_grey_image(viewer, qtbot, notifications):
    from napari_attnseg.models import save_model
    from napari_attnseg.zoo import user_model_dir

    from .conftest import tiny_model

    save_model(tiny_model(in_channels=2), user_model_dir(create=True) / "two.safetensors")
    image, _ = blobs((48, 56))
    layer = viewer.add_image(np.stack([image, 255 - image]), name="two",
                             scale=(7.0, 0.5, 2.0), translate=(100, 3, 4))
    widget = dock(viewer, "Segment")
    assert widget.channels.isEnabled()
    options = [widget.channels.itemText(i) for i in range(widget.channels.count())]
    assert options == ["none (planes of a stack)", "first axis (2)"]
    widget.channels.set_axis(0)
    assert not widget.scope.isEnabled()  # (2, H, W) with channels first is one 2D image
    run(qtbot, widget)
    assert errors(notifications) == []
    labels = viewer.layers["two [two]"]
    assert labels.data.shape == (48, 56)
    assert np.allclose(labels.scale, (0.5, 2.0)) and np.allclose(labels.translate, (3, 4))
    assert np.allclose(labels.data_to_world([5, 6]), layer.data_to_world([0, 5, 6])[1:])

    viewer.add_image(image, name="grey")  # a plain 2D image offers no channel axis
    widget.image_picker.set_layer("grey")
    assert not widget.channels.isEnabled() and widget.channels.axis() is None

