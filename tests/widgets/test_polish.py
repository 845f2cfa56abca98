"""Widget polish: Advanced sections, readable names, charts that do not collide, buttons that
wait for their inputs, fresh status lines, keyboard shortcuts."""

import itertools

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPoint, Qt
from qtpy.QtGui import QHelpEvent
from qtpy.QtWidgets import QApplication, QToolTip

from napari_attnseg.models import save_model

from .conftest import blobs, dock, errors, tiny_model, wait_done

CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


def tooltip(widget) -> str:
    """The tooltip Qt would show on hover."""
    QApplication.sendEvent(widget, QHelpEvent(QEvent.Type.ToolTip, QPoint(2, 2), QPoint(2, 2)))
    return widget.toolTip()


def widget_point(canvas, box) -> QPoint:
    """The centre of a matplotlib display box, in the canvas widget's coordinates."""
    ratio, height = canvas.device_pixel_ratio, canvas.get_width_height()[1]
    return QPoint(round((box.x0 + box.width / 2) / ratio),
                  round(height - (box.y0 + box.height / 2) / ratio))


def test_finetune_expert_settings_sit_in_a_collapsed_advanced_section(viewer):
    widget = dock(viewer, "Fine-tune")
    advanced = widget.advanced
    assert not advanced.isExpanded()
    content = advanced.content()
    for control in (widget.loss, widget.epsilon, widget.val_fraction, widget.patches,
                    widget.precision, widget.device_picker):
        assert content.isAncestorOf(control), control
        assert len(control.toolTip()) > 30  # says what it does
    for control in (widget.epochs, widget.lr, widget.mode):
        assert not content.isAncestorOf(control)  # everyday settings stay in front
    assert [widget.precision.itemText(i) for i in range(widget.precision.count())] == [
        "auto", "fp32", "bf16", "fp16"]
    widget.precision.setCurrentText("bf16")
    assert widget.form.settings().precision == "bf16"


@pytest.mark.slow
def test_pair_pickers_elide_in_the_middle_with_the_full_name_as_tooltip(viewer):
    image, labels = blobs()
    viewer.add_image(image, name="nuclei (DSB2018) sample image")
    viewer.add_labels(labels, name="nuclei (DSB2018) sample image corrected by hand")
    widget = dock(viewer, "Fine-tune")
    row = widget.rows[0]
    picker = row.labels_picker
    picker.setFixedWidth(200)
    shown = picker.shown_text()
    assert "…" in shown and shown.endswith("hand") and shown.startswith("nu")
    assert shown != row.image_picker.shown_text()  # image and labels no longer look alike
    assert tooltip(picker).startswith("nuclei (DSB2018) sample image corrected by hand")


@pytest.mark.slow
def test_attention_names_and_chart_labels_stay_readable(viewer, qtbot, user_model_dir):
    from napari_attnseg.models import ModelCard, create_model

    model = create_model("focal_attention_unet", in_channels=1, n_classes=1, width=4, depth=4)
    model.card = ModelCard(name="gated")
    save_model(model, user_model_dir / "gated.safetensors")
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Attention")
    assert widget.show_attention()
    wait_done(qtbot, widget)
    assert widget.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert widget.table.item(0, 0).toolTip() == "decoder.0.gate"
    assert widget.explanation.isVisibleTo(widget) and "bright" in widget.explanation.text()
    # bar labels: short plain names, vertical, none overlapping another; the chart's
    # tooltip explains the abbreviation, each bar's the plain and dotted names
    assert widget.plot.data["shown"] == [f"gate D{i}" for i in range(1, 5)]
    assert widget.plot.data["labels"] == [f"decoder.{i}.gate" for i in range(4)]
    assert "D = decoder level (1 = coarsest)" in widget.plot.toolTip()
    assert "sharpens" in widget.plot.toolTip()
    canvas = widget.plot
    canvas.figure.set_size_inches(2.2, 2.0)  # as narrow as a dock makes it
    canvas.draw()
    renderer = canvas.figure.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in canvas.axes.get_xticklabels()]
    assert all(not a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    figure = canvas.figure.bbox
    assert all(b.x0 >= figure.x0 - 1 and b.y0 >= figure.y0 - 1 for b in boxes)  # not cut
    centres = [widget_point(canvas, box) for box in boxes]
    assert [canvas.bar_at(point) for point in centres] == [0, 1, 2, 3]  # hovering a label
    assert canvas.data["tips"][0].startswith("attention gate, decoder level 1 (coarsest)\n")
    assert "decoder.0.gate" in canvas.data["tips"][0]
    assert canvas.bar_at(QPoint(0, 0)) is None  # outside every bar's column
    hover = QHelpEvent(QEvent.Type.ToolTip, centres[1], canvas.mapToGlobal(centres[1]))
    assert canvas.event(hover) and "decoder.1.gate" in QToolTip.text()  # the bar's own tooltip


def test_elided_chart_labels_keep_both_ends():
    from napari_attnseg.widgets._plot import elide_middle

    assert elide_middle("encoder.0.attention.se") != elide_middle("decoder.0.attention.se")
    assert elide_middle("encoder.0.attention.se").endswith("tion.se")
    assert len(elide_middle("x" * 40)) == 16


def test_a_model_without_spatial_maps_says_so_and_shows_channel_weights(
        viewer, qtbot, user_model_dir):
    save_model(tiny_model("focal_use_net"), user_model_dir / "vessels-like.safetensors")
    viewer.add_image(blobs()[0], name="fundus")
    widget = dock(viewer, "Attention")
    assert widget.show_attention()
    wait_done(qtbot, widget)
    text = widget.summary.text()
    assert "has no spatial attention maps" in text and "channel attention (SE)" in text
    assert widget.plot_choice.currentText().startswith("channel weights · ")
    assert widget.plot.data["kind"] == "bars" and len(widget.plot.data["values"]) > 1
    assert not widget.explanation.isVisibleTo(widget)


@pytest.mark.parametrize("name", ["Segment", "Attention", "Fine-tune"])
@pytest.mark.slow
def test_buttons_wait_for_their_inputs_and_say_why(viewer, saved_model, name):
    widget = dock(viewer, name)
    assert not widget.run_button.isEnabled()
    assert "open an image first" in widget.run_button.toolTip()
    viewer.add_image(blobs()[0], name="cells")
    if name == "Fine-tune":
        assert not widget.run_button.isEnabled()
        assert "Labels layer" in widget.run_button.toolTip()
        viewer.add_labels(blobs()[1], name="truth")
    assert widget.run_button.isEnabled()
    viewer.layers.clear()
    assert not widget.run_button.isEnabled()


@pytest.mark.slow
def test_a_rejected_click_replaces_the_last_jobs_status(viewer, qtbot, saved_model,
                                                        notifications):
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    assert widget.segment()
    wait_done(qtbot, widget)
    assert widget.jobs.status.text().startswith("done")
    widget.tile_size.setValue(8)  # below the smallest tile
    assert not widget.segment()
    assert widget.jobs.status.text().startswith("not started: tile size must be at least 16")
    assert not widget.jobs.bar.isVisibleTo(widget)


@pytest.mark.slow
def test_shortcuts_run_segment_and_finetune(viewer, qtbot, saved_model, notifications):
    image, labels = blobs()
    viewer.add_image(image, name="cells")
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key.Key_E, CTRL_SHIFT)  # no Segment dock yet: it opens
    segment = next(w for w in QApplication.allWidgets() if type(w).__name__ == "SegmentWidget")
    assert "press Ctrl+Shift+E again" in notifications[-1][1]
    assert "Ctrl+Shift+E" in segment.run_button.toolTip()
    qtbot.keyClick(canvas, Qt.Key.Key_E, CTRL_SHIFT)
    assert segment.jobs.busy
    wait_done(qtbot, segment)
    assert "cells [tiny]" in viewer.layers

    viewer.add_labels(labels, name="truth")
    finetune = dock(viewer, "Fine-tune")
    finetune.rows[0].labels_picker.set_layer("truth")
    finetune.epochs.setValue(1)
    finetune.patches.setValue(2)
    qtbot.keyClick(canvas, Qt.Key.Key_R, CTRL_SHIFT)
    assert finetune.jobs.busy
    finetune.jobs.cancel()
    wait_done(qtbot, finetune)
    assert errors(notifications) == []


def test_the_widgets_dock_under_the_plugin_menu(viewer):
    from napari_attnseg.widgets import ModelManagerWidget

    assert isinstance(dock(viewer, "Models"), ModelManagerWidget)
    assert np.all([dock(viewer, n) is not None for n in ("Segment", "Attention", "Fine-tune")])


def red_photo() -> tuple[np.ndarray, np.ndarray]:
    """A fundus-like RGB image: dark red, with brighter red-orange discs."""
    image, truth = blobs()
    rgb = np.stack([image, image * 0.35, image * 0.1], axis=-1)
    return rgb.clip(0, 255).astype(np.uint8), truth


def contrast(color, image) -> float:
    """Distance (0–√3) between a label colour and the image's mean colour."""
    mean = np.asarray(image, dtype=float).reshape(-1, 3).mean(axis=0) / 255
    return float(np.linalg.norm(np.asarray(color)[:3] - mean))


@pytest.mark.slow
def test_a_semantic_mask_over_a_red_photo_gets_bright_class_colours(
        viewer, qtbot, saved_model, bright_is_foreground, notifications):
    from napari.layers import Labels

    rgb, _ = red_photo()
    viewer.add_image(rgb, name="fundus", rgb=True)
    widget = dock(viewer, "Segment")
    assert widget.segment()
    wait_done(qtbot, widget)
    assert errors(notifications) == []
    mask = viewer.layers["fundus [tiny]"]
    assert mask.data.max() == 1
    # napari's own label 1 is a dark red-brown, hardly seen on this image
    assert contrast(Labels(np.zeros((2, 2), int)).get_color(1), rgb) < 0.5
    cyan = mask.get_color(1)
    assert np.allclose(cyan, (0, 1, 1, 1)) and contrast(cyan, rgb) > 1.0
    assert contrast(mask.get_color(2), rgb) > 0.9  # the next class is bright too
    assert mask.get_color(0) is None  # background stays transparent
    # a rerun into the layer keeps whatever colours the user chose since
    mask.colormap = {None: (1, 0, 1, 1), 1: (1, 1, 1, 1)}
    assert widget.segment()
    wait_done(qtbot, widget)
    assert viewer.layers["fundus [tiny]"] is mask and np.allclose(mask.get_color(1), 1)


def test_instance_labels_keep_napari_colours(viewer):
    from napari.utils.colormaps import CyclicLabelColormap

    from napari_attnseg.widgets._layers import output_metadata, write_labels

    _, truth = blobs()
    objects = np.zeros(truth.shape, np.int32)
    objects[truth > 0] = np.arange(1, int(truth.sum()) + 1) % 3 + 1
    layer = write_labels(viewer, "cells [nuclei]", truth.shape, [((), objects)], placement={},
                         metadata=output_metadata("cells", "nuclei", "instances"))
    assert isinstance(layer.colormap, CyclicLabelColormap)
    many = write_labels(viewer, "cells [semantic]", truth.shape, [((), truth * 40)],
                        placement={}, metadata=output_metadata("cells", "semantic", "labels"))
    assert isinstance(many.colormap, CyclicLabelColormap)  # too many labels for a class mask


def test_bar_labels_lie_flat_when_they_fit_and_stand_up_when_they_do_not(qtbot):
    from napari_attnseg.widgets._plot import PlotCanvas

    canvas = PlotCanvas()
    qtbot.addWidget(canvas)
    names = ["SE E1", "SE E2", "SE bottom", "SE D1", "SE D2"]
    canvas.bars(names, [1.0, 0.9, 1.1, 0.5, 0.1], title="w")
    renderer = canvas.figure.canvas.get_renderer()
    for width, rotation in ((6.4, 0), (1.6, 90)):
        canvas.figure.set_size_inches(width, 2.4)
        canvas.draw()
        ticks = canvas.axes.get_xticklabels()
        assert {t.get_rotation() for t in ticks} == {rotation}
        boxes = [t.get_window_extent(renderer) for t in ticks]
        assert all(not a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
