"""Segment widget, objects: instances or mask, object diameter, the per-object table, CSV."""

import csv

import numpy as np
import pytest

from napari_attnseg.inference import Predictor
from napari_attnseg.objects import DEFAULT_STITCH
from napari_attnseg.widgets import _models
from napari_attnseg.widgets._layers import max_label_outside
from napari_attnseg.widgets._segment_job import offset_objects

from .conftest import blobs, disc_model, dock, errors, tiny_model, wait_done

NUCLEI = {"instances": {"method": "watershed"}, "object_diameter": 8.0}


def run(qtbot, widget):
    assert widget.segment()
    wait_done(qtbot, widget)


@pytest.fixture
def nuclei(user_model_dir):
    """A model whose card says: countable objects, 8 px across at training scale."""
    return disc_model("nuclei", **NUCLEI)


@pytest.mark.slow
def test_instances_are_the_default_for_an_object_model_and_fill_a_table(
        viewer, qtbot, nuclei, bright_is_foreground, notifications):
    image, truth = blobs((64, 64))
    viewer.add_image(image, name="cells", scale=(0.5, 0.5))
    widget = dock(viewer, "Segment")
    assert widget.output.currentText() == "instances" and widget.diameter.isEnabled()
    widget.diameter.setCurrentText("as trained")
    run(qtbot, widget)
    assert errors(notifications) == []
    labels = viewer.layers["cells [nuclei]"]
    # three discs, three objects numbered 1..3 in raster order
    assert sorted(np.unique(labels.data)) == [0, 1, 2, 3]
    first = [labels.data[np.nonzero(labels.data == k)][0] for k in (1, 2, 3)]
    rows = [np.argwhere(labels.data == k)[0][0] for k in (1, 2, 3)]
    assert first == [1, 2, 3] and rows == sorted(rows)
    assert abs(int((labels.data > 0).sum()) - int(truth.sum())) < 0.1 * truth.sum()
    # the layer carries the measurements napari shows under the cursor
    features = labels.features
    assert list(features["index"]) == [1, 2, 3] == list(features["label"])
    areas = [int((labels.data == k).sum()) for k in (1, 2, 3)]
    assert list(features["area"]) == areas
    assert "mean_intensity" in features and "eccentricity" in features
    assert ("info", "found 3 objects in cells with nuclei") in notifications
    # the status line says what the run did
    assert widget.jobs.status.text().startswith("done: 3 objects; object diameter 8.0 px "
                                                "(as trained), zoom ×1.00")
    # the table lists them; a row selects the object, the layer's label selects the row
    table = widget.objects
    assert not table.isHidden() and table._model.rowCount() == 3
    table.view.selectRow(1)
    assert labels.selected_label == table.label_at(1)
    labels.selected_label = 3
    assert table.selected_label() == 3
    table.only_selected.setChecked(True)
    assert labels.show_selected_label


@pytest.mark.slow
def test_auto_diameter_measures_the_objects_and_the_status_says_so(
        viewer, qtbot, nuclei, bright_is_foreground, notifications):
    image = np.tile(blobs()[0], (3, 3))  # 27 discs, enough to measure their size
    viewer.add_image(image, name="cells")
    widget = dock(viewer, "Segment")
    assert widget.diameter.currentText() == "auto"
    run(qtbot, widget)
    status = widget.jobs.status.text()
    # discs 12–20 px across against 8 px trained: measured and resampled
    assert "(auto), zoom ×0." in status and "resampled" in status, status
    measured = float(status.split("object diameter ")[1].split(" px")[0])
    assert 12 <= measured <= 24
    assert any("resampled" in m for _, m in notifications)  # the predictor's own message
    assert viewer.layers["cells [nuclei]"].data.max() == 27

    widget.diameter.setCurrentText("16")
    run(qtbot, widget)
    assert "object diameter 16.0 px (given), zoom ×0.50" in widget.jobs.status.text()
    widget.diameter.setCurrentText("huge")
    assert not widget.segment()
    assert "object diameter must be 'auto', 'as trained' or a number" in errors(notifications)[-1]
    assert widget.jobs.status.text().startswith("not started: object diameter")


@pytest.mark.slow
def test_mask_for_a_semantic_model_and_switching_keeps_the_layer_undoable(
        viewer, qtbot, nuclei, bright_is_foreground, user_model_dir, notifications):
    disc_model("vessels")  # no object rules on its card
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    assert widget.model_picker.select("vessels")
    assert widget.output.currentText() == "mask" and not widget.diameter.isEnabled()
    assert "records no object size" in widget.diameter.toolTip()
    run(qtbot, widget)
    mask = viewer.layers["cells [vessels]"]
    assert set(np.unique(mask.data)) == {0, 1} and widget.objects.isHidden()
    before = mask.data.copy()
    widget.output.setCurrentText("instances")  # any binary model can be split into objects
    _models.session().add_unsaved(tiny_model(), "another")  # the model list changes...
    assert widget.output.currentText() == "instances"  # ...but the user's choice stays
    run(qtbot, widget)
    assert viewer.layers["cells [vessels]"] is mask and mask.data.max() == 3
    assert len(mask.features) == 3 and not widget.objects.isHidden()
    mask.undo()
    assert np.array_equal(mask.data, before)
    widget.output.setCurrentText("mask")
    run(qtbot, widget)
    assert errors(notifications) == []
    assert len(mask.features) == 0 and widget.objects.isHidden()


def test_stack_instances_are_linked_across_planes_with_one_row_per_object(
        viewer, qtbot, nuclei, bright_is_foreground, notifications):
    stack = np.stack([blobs(seed=i)[0] for i in range(2)])  # the same three discs twice
    viewer.add_image(stack, name="stack")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    assert widget.link_planes.isChecked() and widget.link_planes.isEnabled()
    assert widget._settings()["stitch"] == DEFAULT_STITCH
    run(qtbot, widget)
    labels = viewer.layers["stack [nuclei]"]
    assert labels.data.max() == 3  # each disc is one object through both planes
    assert all(set(np.unique(labels.data[z])) == {0, 1, 2, 3} for z in range(2))
    features = labels.features
    assert list(features["index"]) == [1, 2, 3] and widget.objects._model.rowCount() == 3
    assert list(features["z_min"]) == [0, 0, 0] and list(features["z_max"]) == [1, 1, 1]
    volumes = [int((labels.data == k).sum()) for k in (1, 2, 3)]
    assert list(features["volume"]) == volumes
    assert ("info", "found 3 objects in stack with nuclei") in notifications


@pytest.mark.slow
def test_unlinked_stack_instances_have_one_row_per_object_with_its_slice(
        viewer, qtbot, nuclei, bright_is_foreground):
    stack = np.stack([blobs(seed=i)[0] for i in range(2)])
    viewer.add_image(stack, name="stack")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    widget.link_planes.setChecked(False)
    assert widget._settings()["stitch"] is None
    run(qtbot, widget)
    labels = viewer.layers["stack [nuclei]"]
    assert labels.data.max() == 6  # ids go on across slices: never reused
    assert list(labels.features["z"]) == [0, 0, 0, 1, 1, 1]
    widget.objects.select_label(5)
    assert viewer.dims.current_step[0] == 1  # the viewer shows the slice of the object


@pytest.mark.slow
def test_link_planes_is_offered_for_instances_of_a_whole_stack(viewer, nuclei):
    stack = viewer.add_image(np.stack([blobs()[0]] * 2), name="stack")
    flat = viewer.add_image(blobs()[0], name="flat")
    widget = dock(viewer, "Segment")
    widget.image_picker.set_layer(stack)
    assert widget.link_planes.isEnabled()
    widget.scope.setCurrentText("current slice")  # one plane: nothing to link
    assert not widget.link_planes.isEnabled()
    widget.scope.setCurrentText("whole stack")
    widget.output.setCurrentText("mask")
    assert not widget.link_planes.isEnabled()
    widget.output.setCurrentText("instances")
    assert widget.link_planes.isEnabled()
    widget.image_picker.set_layer(flat)
    assert not widget.link_planes.isEnabled()


@pytest.mark.slow
def test_a_slice_segmented_into_the_stack_s_layer_takes_new_ids(
        viewer, qtbot, nuclei, bright_is_foreground):
    """Re-segmenting one slice must not reuse the ids of objects in the other slices."""
    viewer.add_image(np.stack([blobs(seed=i)[0] for i in range(3)]), name="stack")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    widget.link_planes.setChecked(False)
    run(qtbot, widget)  # whole stack, plane by plane: 1-3, 4-6, 7-9
    labels = viewer.layers["stack [nuclei]"]
    assert [sorted(np.unique(labels.data[z]))[1:] for z in range(3)] == [
        [1, 2, 3], [4, 5, 6], [7, 8, 9]]
    widget.scope.setCurrentText("current slice")
    viewer.dims.set_current_step(0, 1)
    run(qtbot, widget)
    assert viewer.layers["stack [nuclei]"] is labels
    planes = [set(np.unique(labels.data[z])) - {0} for z in range(3)]
    assert planes[0] == {1, 2, 3} and planes[2] == {7, 8, 9}  # the other slices unchanged
    assert planes[1] == {10, 11, 12}  # above every id of the other slices
    assert list(labels.features["label"]) == [10, 11, 12] == list(labels.features["index"])
    assert [widget.objects.label_at(r) for r in range(3)] == [10, 11, 12]
    run(qtbot, widget)  # again: still above the other slices, not above itself
    assert set(np.unique(labels.data[1])) - {0} == {10, 11, 12}
    labels.undo()  # the slice's run was one undoable step (the same rerun changed nothing)
    assert set(np.unique(labels.data[1])) - {0} == {4, 5, 6}


def test_max_label_outside_and_offset_objects():
    data = np.zeros((3, 4, 4), np.uint16)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = 5, 9, 2
    assert max_label_outside(data, (1,)) == 5 and max_label_outside(data, (0,)) == 9
    assert max_label_outside(np.zeros((2, 3, 4, 4), np.uint8), (1, 2)) == 0
    plane = np.array([[0, 1], [2, 0]], np.uint32)
    shifted, table = offset_objects(plane, {"label": np.array([1, 2]), "area": np.ones(2)}, 9)
    assert shifted.tolist() == [[0, 10], [11, 0]] and table["label"].tolist() == [10, 11]
    assert offset_objects(plane, None, 0)[0] is plane
    big, _ = offset_objects(plane, None, 2**32 - 2)
    assert big.dtype == np.uint64 and int(big.max()) == 2**32


@pytest.mark.slow
def test_export_csv_asks_where_and_before_replacing(
        viewer, qtbot, nuclei, bright_is_foreground, dialogs, tmp_path, notifications):
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    run(qtbot, widget)
    dialogs.save = tmp_path / "objects"  # the suffix is added
    path = widget.objects.export_csv()
    assert path == tmp_path / "objects.csv" and dialogs.asked[0][0] == "save"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == [1, 2, 3]
    assert [int(r["area"]) for r in rows] == list(viewer.layers["cells [nuclei]"].features["area"])

    path.write_text("keep me")
    dialogs.confirm = False  # the user declines to replace it
    assert widget.objects.export_csv() is None
    assert path.read_text() == "keep me" and dialogs.asked[-1][0] == "confirm"
    dialogs.confirm = True
    assert widget.objects.export_csv() == path and path.read_text().startswith("label,area")
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_measure_again_follows_a_correction(viewer, qtbot, nuclei, bright_is_foreground):
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    run(qtbot, widget)
    labels = viewer.layers["cells [nuclei]"]
    labels.data[labels.data == 2] = 0  # the user erases an object
    assert widget.objects.measure_again()
    assert list(labels.features["label"]) == [1, 3] and widget.objects._model.rowCount() == 2


def test_the_engine_gets_the_chosen_output_diameter_and_precision(
        viewer, qtbot, nuclei, monkeypatch):
    seen = {}
    original = Predictor.predict

    def spy(self, *args, **kwargs):
        seen.update(vars(self.settings), roi_array=kwargs.get("roi"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", spy)
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    assert not widget.advanced.isExpanded()  # expert settings start folded away
    widget.precision.setCurrentText("fp32")
    widget.diameter.setCurrentText("12.5")
    widget.output.setCurrentText("mask")
    run(qtbot, widget)
    assert seen["precision"] == "fp32" and seen["diameter"] == 12.5
    assert seen["instances"] is False and seen["roi"] == "auto" and seen["roi_array"] is None


def test_tta_follows_the_selected_models_card(viewer, user_model_dir):
    disc_model("polyps", metadata={"recommended_tta": True})
    disc_model("plain")
    viewer.add_image(blobs()[0], name="cells")
    widget = dock(viewer, "Segment")
    assert widget.model_picker.select("polyps") and widget.tta.isChecked()
    assert widget._settings()["tta"] is True
    assert widget.model_picker.select("plain") and not widget.tta.isChecked()
    widget.tta.setChecked(True)  # the user's choice holds until another model is selected
    _models.session().add_unsaved(tiny_model(), "another")
    assert widget.tta.isChecked()


@pytest.mark.slow
def test_the_status_line_gives_the_confidence_and_a_doubtful_image_warns(
        viewer, qtbot, nuclei, bright_is_foreground, notifications):
    image, _ = blobs((64, 64))
    viewer.add_image(image, name="cells")
    viewer.add_image(np.zeros((64, 64), np.float32), name="empty")
    widget = dock(viewer, "Segment")
    widget.image_picker.set_layer("cells")
    widget.diameter.setCurrentText("as trained")
    run(qtbot, widget)
    assert "confidence" in widget.jobs.status.text()
    assert not [n for n in notifications if n[0] == "warning"]
    widget.image_picker.set_layer("empty")
    run(qtbot, widget)
    assert ("warning", "empty: the image is blank (one value everywhere): no objects to find"
            ) in notifications


# -- the table at work: ten rows at least, a row shows its object, a window of its own -------
def discs(shape, centres, radius=3):
    """Labels 1..N: discs of ``radius`` at ``centres`` (row, column) of the last two axes."""
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    labels = np.zeros(shape[-2:], np.uint16)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius] = k
    return labels


def object_table_of(viewer, qtbot, data, **kwargs):
    """The Segment dock's object table listing ``data`` (added as a Labels layer)."""
    from napari_attnseg.widgets._objects import attach, measure

    layer = viewer.add_labels(data, name="objects", **kwargs)
    table = measure(data)
    attach(layer, table)
    objects = dock(viewer, "Segment").objects
    objects.show_table(layer, table, "cells")
    return layer, objects


def click_row(qtbot, view, row):
    from qtpy.QtCore import Qt

    view.scrollTo(view.model().index(row, 0))
    rect = view.visualRect(view.model().index(row, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def camera(viewer):
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def test_the_table_shows_at_least_ten_rows_at_its_smallest(viewer, qtbot):
    from napari_attnseg.widgets._objects import VISIBLE_ROWS, ObjectTable

    assert VISIBLE_ROWS >= 10
    centres = [(10 + 12 * (k // 6), 10 + 12 * (k % 6)) for k in range(30)]
    data = discs((80, 80), centres)
    _, docked = object_table_of(viewer, qtbot, data)
    assert docked._model.rowCount() == 30
    # on its own, at its smallest for a dock's width (the title wraps to more lines)
    table = ObjectTable(viewer)
    qtbot.addWidget(table)
    table.show_table(docked.layer, docked.table, "cells")
    width = 300
    table.resize(width, max(table.minimumSizeHint().height(), table.heightForWidth(width)))
    table.show()
    qtbot.waitExposed(table)
    view = table.view
    assert view.height() == view.minimumSizeHint().height()
    assert view.viewport().height() // view.rowHeight(0) >= 10
    assert view.rowAt(0) == 0 and view.rowAt(9 * view.rowHeight(0) + 1) == 9  # row 10 is shown
    # the height follows the rows, not a fixed number: a taller font, a taller table
    small = view.minimumSizeHint().height()
    font = view.font()
    font.setPointSizeF(font.pointSizeF() * 2)
    view.setFont(font)
    view.verticalHeader().setFont(font)
    view.verticalHeader().setDefaultSectionSize(2 * view.rowHeight(0))
    assert view.minimumSizeHint().height() > small + 9 * view.rowHeight(0) // 2


@pytest.mark.slow
def test_the_table_in_the_segment_dock_shows_ten_rows(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    centres = [(10 + 12 * (k // 6), 10 + 12 * (k % 6)) for k in range(30)]
    _, table = object_table_of(viewer, qtbot, discs((80, 80), centres))
    view = table.view
    qtbot.waitUntil(view.isVisible)
    qtbot.waitUntil(lambda: view.viewport().height() // view.rowHeight(0) >= 10)


def test_a_row_click_centres_and_zooms_the_viewer_on_the_object(viewer, qtbot):
    data = discs((400, 300), [(40, 50), (350, 250), (200, 30)], radius=4)
    scale, translate = (0.5, 0.25), (10.0, -5.0)
    layer, table = object_table_of(viewer, qtbot, data, scale=scale, translate=translate)
    table.show()
    viewer.reset_view()
    cam = camera(viewer)
    overview = cam.zoom
    click_row(qtbot, table.view, 1)
    assert layer.selected_label == table.label_at(1) == 2
    world = np.add(translate, np.multiply(scale, [350.0, 250.0]))  # the disc's centre
    assert np.allclose(cam.center[-2:], world, atol=1e-6)
    assert cam.zoom > 1.5 * overview  # zoomed in on the object...
    box = np.multiply(scale, [9, 9])  # ...the disc, 9 px across, shown about 3 times over
    canvas = np.asarray(viewer.canvas.size if hasattr(viewer, "canvas") else viewer._canvas_size)
    shown = canvas / cam.zoom  # world units across the canvas
    assert np.all(shown >= 3 * box * 0.99) and np.min(shown / (3 * box)) < 2
    # the user pans away; a click on the selected row brings the object back, zoom kept
    cam.center = (0.0, 0.0)
    zoom = cam.zoom
    click_row(qtbot, table.view, 1)
    assert np.allclose(cam.center[-2:], world) and cam.zoom == zoom
    # another row: another centre; the zoom suits both discs (same size), so it stays
    click_row(qtbot, table.view, 0)
    assert layer.selected_label == 1
    assert np.allclose(cam.center[-2:], np.add(translate, np.multiply(scale, [40, 50])))
    assert cam.zoom == zoom
    # zoomed in too close to see the whole object: zoomed out to show it
    cam.zoom = zoom * 20
    click_row(qtbot, table.view, 2)
    assert cam.zoom == pytest.approx(zoom)
    assert np.allclose(cam.center[-2:], np.add(translate, np.multiply(scale, [200, 30])))


@pytest.mark.slow
def test_a_row_of_a_stack_shows_the_object_s_plane(viewer, qtbot):
    stack = np.zeros((6, 60, 60), np.uint16)
    stack[0:2] = discs((60, 60), [(10, 10)])  # object 1: planes 0-1
    big, small = discs((60, 60), [(40, 40)], radius=6), discs((60, 60), [(40, 40)], radius=3)
    stack[3], stack[4], stack[5] = small * 2, big * 2, small * 2  # object 2: 3-5, largest at 4
    stack[5][discs((60, 60), [(15, 45)]) > 0] = 3  # object 3: plane 5 only
    layer, table = object_table_of(viewer, qtbot, stack, scale=(2.0, 1.0, 1.0))
    assert list(table.table["z"]) == [0, 4, 5] and list(table.table["z_max"]) == [1, 5, 5]
    viewer.dims.set_current_step(0, 0)
    cam = camera(viewer)
    for label, plane, centre in ((2, 4, (40, 40)), (3, 5, (15, 45)), (1, 0, (10, 10))):
        assert table.select_label(label)
        assert viewer.dims.current_step[0] == plane
        assert label in layer.data[viewer.dims.current_step[0]]  # the object is on the canvas
        assert np.allclose(cam.center[-2:], centre)
    viewer.dims.ndisplay = 3  # in 3-D the camera goes to the object's largest section
    assert table.select_label(2)
    assert np.allclose(cam.center, (8.0, 40, 40))


@pytest.mark.slow
def test_a_row_shows_its_object_in_a_time_series_of_stacks_and_in_a_slice_s_table(
        viewer, qtbot):
    from napari_attnseg.widgets._objects import measure

    data = np.zeros((2, 3, 40, 40), np.uint16)  # (T, Z, H, W): planes numbered in order
    data[0, 0] = discs((40, 40), [(10, 10)])
    data[1, 2] = discs((40, 40), [(30, 20)]) * 2
    layer, table = object_table_of(viewer, qtbot, data)
    assert table.select_label(2)
    assert viewer.dims.current_step[:2] == (1, 2)
    assert np.allclose(camera(viewer).center[-2:], (30, 20))
    # one slice segmented into the stack's layer: its table says nothing of the plane
    slice_table = measure(data[1, 2])
    table.show_table(layer, slice_table, "cells")
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(1, 0)
    assert table.select_label(2)
    assert viewer.dims.current_step[:2] == (1, 2)


@pytest.mark.slow
def test_open_in_window_shows_the_same_rows_sorting_and_selection(viewer, qtbot):
    from qtpy.QtCore import Qt

    centres = [(10 + 12 * (k // 6), 10 + 12 * (k % 6)) for k in range(24)]
    data = discs((80, 80), centres)
    data[data == 5] = 0
    data[np.isin(discs((80, 80), [(10, 58)], radius=5), [1])] = 5  # object 5 is bigger
    layer, table = object_table_of(viewer, qtbot, data)
    table.window_button.click()
    window = table.table_window
    assert window is not None and window.isWindow() and window.isVisible()
    qtbot.waitExposed(window)
    view = window.view
    shown = [view.model().index(r, 0).data() for r in range(view.model().rowCount())]
    assert shown == [str(k) for k in range(1, 25)] == [
        table.view.model().index(r, 0).data() for r in range(table._model.rowCount())]
    assert view.visible_rows() >= 10
    window.resize(window.width() + 200, window.height() + 300)  # resizable
    qtbot.waitUntil(lambda: view.visible_rows() >= 20)
    # a click in the window selects the object and shows it, in the dock's table too
    click_row(qtbot, view, 6)
    assert layer.selected_label == 7 and table.selected_label() == 7
    assert np.allclose(camera(viewer).center[-2:], (22, 10), atol=0.5)
    # the layer's selection shows in the window
    layer.selected_label = 3
    assert [i.row() for i in view.selectionModel().selectedRows()] == [2]
    # sorting in the window sorts the dock's table, and both headers say so
    area = table._model.columns.index("area")
    view.sortByColumn(area, Qt.SortOrder.DescendingOrder)
    assert table.label_at(0) == 5
    assert table.view.horizontalHeader().sortIndicatorSection() == area
    # opening it again raises the same window; when the objects go, so does the window
    assert table.open_window() is window
    viewer.layers.remove(layer)
    assert table.isHidden() and not window.isVisible()
