"""Segment widget, "restrict to": Labels and Shapes regions (through layer transforms), the
model's own region, and the whole image."""

import numpy as np
import pytest

from napari_attnseg.inference import Predictor

from .conftest import blobs, disc_model, dock, errors, wait_done


def run(qtbot, widget):
    assert widget.segment()
    wait_done(qtbot, widget)


@pytest.fixture
def discs(user_model_dir):
    return disc_model("discs", instances={"method": "watershed"})


@pytest.mark.slow
def test_a_shapes_region_in_world_coordinates_keeps_one_disc(
        viewer, qtbot, discs, bright_is_foreground, notifications):
    image, _ = blobs()
    # the image is placed at scale 2, shifted; the rectangle is drawn in world coordinates
    viewer.add_image(image, name="cells", scale=(2.0, 2.0), translate=(100.0, 50.0))
    # disc 1 is centred at pixel (16, 20) = world (132, 90); a 40×40 world box around it
    box = np.array([[112.0, 70.0], [112.0, 110.0], [152.0, 110.0], [152.0, 70.0]])
    viewer.add_shapes([box], shape_type="rectangle", name="region")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    widget.roi.select("region")
    run(qtbot, widget)
    assert errors(notifications) == []
    labels = viewer.layers["cells [discs]"]
    assert labels.data.max() == 1  # only the disc inside the box
    inside = np.argwhere(labels.data > 0)
    # the box covers pixels 6..26 × 10..30 of the image: nothing outside it
    assert inside.min(axis=0).tolist() >= [6, 10] and inside.max(axis=0).tolist() <= [26, 30]
    assert "inside region" in widget.jobs.status.text()


@pytest.mark.slow
def test_a_labels_region_on_another_grid_is_resampled(
        viewer, qtbot, discs, bright_is_foreground):
    image, _ = blobs()
    viewer.add_image(image, name="cells")
    # a coarse region (one label pixel = 4 image pixels) over the lower right quarter
    coarse = np.zeros((16, 16), np.uint8)
    coarse[8:, 8:] = 1
    viewer.add_labels(coarse, name="quarter", scale=(4.0, 4.0), translate=(1.5, 1.5))
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    widget.roi.select("quarter")
    run(qtbot, widget)
    labels = viewer.layers["cells [discs]"]
    assert labels.data.max() == 1  # the disc centred at (44, 40)
    assert np.argwhere(labels.data > 0).min(axis=0).tolist() >= [32, 32]


@pytest.mark.slow
def test_a_labels_region_on_the_image_grid_restricts_each_slice_by_its_own(
        viewer, qtbot, discs, bright_is_foreground):
    stack = np.stack([blobs()[0]] * 2)
    viewer.add_image(stack, name="stack")
    region = np.zeros(stack.shape, np.uint8)
    region[0, :32] = 1  # top half on slice 0, nothing on slice 1
    region[1, 32:] = 2  # bottom half on slice 1
    viewer.add_labels(region, name="halves")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    widget.roi.select("halves")
    run(qtbot, widget)
    labels = viewer.layers["stack [discs]"].data
    assert not labels[0, 32:].any() and not labels[1, :32].any()
    assert labels[0].any() and labels[1].any()


def test_auto_and_whole_image_map_to_the_models_region_or_none(
        viewer, qtbot, user_model_dir, monkeypatch, notifications):
    disc_model("fundus", roi={"method": "fundus"})
    seen = []
    original = Predictor.predict

    def spy(self, model, image, **kwargs):
        seen.append((self.settings.roi, kwargs.get("roi")))
        return original(self, model, image, **kwargs)

    monkeypatch.setattr(Predictor, "predict", spy)
    viewer.add_image(blobs()[0], name="eye")
    widget = dock(viewer, "Segment")
    assert widget.roi.itemText(0) == "auto: fundus field of view"
    run(qtbot, widget)
    widget.roi.select("none")
    run(qtbot, widget)
    assert seen == [("auto", None), ("none", None)]


@pytest.mark.slow
def test_an_empty_or_vanished_region_is_refused_by_name(
        viewer, qtbot, discs, notifications):
    viewer.add_image(blobs()[0], name="cells")
    viewer.add_shapes(name="nothing drawn")
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="unpainted")
    widget = dock(viewer, "Segment")
    widget.roi.select("nothing drawn")
    assert not widget.segment()
    assert "'nothing drawn' holds no shapes" in errors(notifications)[-1]
    widget.roi.select("unpainted")
    assert not widget.segment()
    assert "'unpainted' does not cover any pixel" in errors(notifications)[-1]
    assert widget.jobs.status.text().startswith("not started: the region 'unpainted'")
    viewer.layers.remove("unpainted")
    assert widget.roi.value() == "auto"  # the picker follows the layer list
    assert [layer.name for layer in viewer.layers] == ["cells", "nothing drawn"]
