"""Layer pickers: the plugin's outputs are marked apart from the user's layers (ground truth),
names are cut in the middle with the full name as every entry's tooltip."""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_attnseg.widgets._layers import output_metadata, same_object, write_labels
from napari_attnseg.widgets._pickers import MADE_BY_PLUGIN

from .conftest import blobs, dock

LONG = "nuclei (DSB2018) sample image"


def entries(picker) -> list[str]:
    """Every entry as listed ("" for the separator)."""
    return [picker.itemText(i) for i in range(picker.count())]


def predict(viewer, image_name: str, model: str, labels, role: str = "labels"):
    """A Labels layer written the way the Segment and Fine-tune docks write theirs."""
    return write_labels(viewer, f"{image_name} [{model}]", labels.shape, [((), labels)],
                        placement={}, metadata=output_metadata(image_name, model, role))


@pytest.mark.slow
def test_predictions_are_marked_and_listed_after_the_users_labels(viewer):
    image, labels = blobs()
    viewer.add_image(image, name="cells")
    predict(viewer, "cells", "tiny", labels)
    viewer.add_labels(labels, name="corrected")
    row = dock(viewer, "Fine-tune").rows[0]
    picker = row.labels_picker
    # the user's labels first, a separator, then the prediction, marked at both ends
    assert entries(picker) == ["corrected", "", f"{MADE_BY_PLUGIN} cells [tiny] (prediction)"]
    assert picker.currentText() == "corrected" and picker.layer().name == "corrected"
    tip = picker.item_tooltip(2)
    assert tip.startswith("cells [tiny]\n") and "not ground truth" in tip
    assert "your layer" in picker.item_tooltip(0)
    # selecting by name or by layer still works, whatever the entry shows
    picker.set_layer("cells [tiny]")
    assert same_object(picker.layer(), viewer.layers["cells [tiny]"])
    assert picker.current_name() == "cells [tiny]"
    picker.set_layer(viewer.layers["corrected"])
    assert same_object(picker.layer(), viewer.layers["corrected"])
    # a renamed prediction stays marked; the image picker marks nothing of the user's
    viewer.layers["cells [tiny]"].name = "first try"
    assert entries(picker)[-1] == f"{MADE_BY_PLUGIN} first try (prediction)"
    assert entries(row.image_picker) == ["cells"]


def test_painting_on_a_prediction_marks_it_edited_and_a_rewrite_does_not(viewer):
    image, labels = blobs()
    viewer.add_image(image, name="cells")
    layer = predict(viewer, "cells", "tiny", labels)
    picker = dock(viewer, "Fine-tune").rows[0].labels_picker
    assert picker.currentText() == f"{MADE_BY_PLUGIN} cells [tiny] (prediction)"
    predict(viewer, "cells", "tiny", 1 - labels)  # the plugin's rerun rewrites it in place
    assert viewer.layers["cells [tiny]"] is layer
    picker.refresh()
    assert picker.currentText() == f"{MADE_BY_PLUGIN} cells [tiny] (prediction)"
    layer.paint((5, 5), 2)  # the user corrects it with the brush
    assert picker.currentText() == f"{MADE_BY_PLUGIN} cells [tiny] (prediction, edited)"
    assert same_object(picker.layer(), layer)


def test_plugin_images_are_marked_in_image_pickers(viewer):
    image, _ = blobs()
    viewer.add_image(image, name="cells")
    viewer.add_image(image.astype(np.float32) / 255, name="cells [tiny] probability",
                     metadata=output_metadata("cells", "tiny", "probability"))
    widget = dock(viewer, "Segment")
    assert entries(widget.image_picker) == [
        "cells", "", f"{MADE_BY_PLUGIN} cells [tiny] probability (probability)"]


@pytest.mark.slow
def test_long_names_keep_both_ends_and_the_list_shows_them_in_full(viewer, qtbot):
    image, labels = blobs()
    viewer.add_image(image, name=LONG)
    predict(viewer, LONG, "focal_attention_unet.nuclei", labels)
    viewer.add_labels(labels, name=f"{LONG} corrected by hand")
    picker = dock(viewer, "Fine-tune").rows[0].labels_picker
    picker.set_layer(f"{LONG} [focal_attention_unet.nuclei]")
    picker.setFixedWidth(220)
    shown = picker.shown_text()
    assert "…" in shown
    assert shown.startswith(f"{MADE_BY_PLUGIN} nu") and shown.endswith("(prediction)")
    picker.set_layer(f"{LONG} corrected by hand")
    assert picker.shown_text().endswith("hand")
    # every entry's tooltip is its full name; the open list is as wide as its longest entry
    for index in (0, 2):
        assert picker.item_tooltip(index).startswith(LONG)
        assert picker.itemData(index, Qt.ItemDataRole.ToolTipRole)
    picker.showPopup()
    try:
        view = picker.view()
        longest = max(view.fontMetrics().horizontalAdvance(text) for text in entries(picker))
        assert view.minimumWidth() >= longest > picker.width()
    finally:
        picker.hidePopup()
