"""Segment widget, batch: image layers or a folder → masks and tables; inputs never replaced."""

import csv
import time

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_attnseg.inference import Predictor
from napari_attnseg.progress import check

from .conftest import blobs, disc_model, dock, errors, wait_done


@pytest.fixture
def discs(user_model_dir):
    return disc_model("discs", instances={"method": "watershed"})


def table_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_all_image_layers_to_a_folder_of_masks_and_tables(
        viewer, qtbot, discs, bright_is_foreground, dialogs, tmp_path, notifications):
    viewer.add_image(blobs(seed=0)[0], name="first")
    viewer.add_image(np.stack([blobs(seed=1)[0]] * 2), name="a stack")
    widget = dock(viewer, "Segment")
    widget.diameter.setCurrentText("as trained")
    out = tmp_path / "out"
    out.mkdir()
    dialogs.folders = [out]
    widget.batch_button.click()  # the output folder comes from a real folder dialog
    wait_done(qtbot, widget)
    assert dialogs.asked == [("folder", "Folder for the masks")]
    assert errors(notifications) == []
    assert sorted(p.name for p in out.iterdir()) == ["a_stack.csv", "a_stack.tif",
                                                       "first.csv", "first.tif"]
    first = tifffile.imread(out / "first.tif")
    assert first.shape == (64, 64) and first.max() == 3
    assert [int(r["label"]) for r in table_rows(out / "first.csv")] == [1, 2, 3]
    stack = tifffile.imread(out / "a_stack.tif")
    # the two planes hold the same three discs: linked across planes, three 3-D objects
    assert stack.shape == (2, 64, 64) and stack.max() == 3
    rows = table_rows(out / "a_stack.csv")
    assert [(int(r["z_min"]), int(r["z_max"])) for r in rows] == [(0, 1)] * 3
    assert all(int(r["volume"]) == 2 * int(r["area"]) for r in rows)
    assert "2 of 2 mask(s) and 2 table(s) written to" in widget.jobs.status.text()
    assert [layer.name for layer in viewer.layers] == ["first", "a stack"]  # no layers added


def test_a_folder_of_files_skips_what_it_cannot_read_and_says_so(
        viewer, qtbot, discs, bright_is_foreground, dialogs, tmp_path, notifications):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        imsave(inputs / f"img{i + 1}.png", blobs(seed=i)[0], check_contrast=False)
    (inputs / "broken.tif").write_bytes(b"not an image")
    (inputs / "notes.txt").write_text("not an image either")
    widget = dock(viewer, "Segment")  # no image layer is needed for a folder
    widget.output.setCurrentText("mask")
    widget.batch_source.setCurrentIndex(1)
    out = tmp_path / "out"
    out.mkdir()
    dialogs.folders = [inputs, out]
    widget.batch_button.click()
    wait_done(qtbot, widget)
    assert sorted(p.name for p in out.iterdir()) == ["img1.tif", "img2.tif"]  # masks only
    assert set(np.unique(tifffile.imread(out / "img1.tif"))) == {0, 1}
    status = widget.jobs.status.text()
    assert "2 of 3 mask(s) written" in status and "skipped 1: broken.tif" in status
    assert any("broken.tif" in m for s, m in notifications if s == "warning")


def test_inputs_are_never_replaced_and_existing_outputs_only_after_a_yes(
        viewer, qtbot, discs, bright_is_foreground, dialogs, tmp_path, notifications):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "cells.tif", blobs()[0])
    original = (folder / "cells.tif").read_bytes()
    widget = dock(viewer, "Segment")
    assert not widget.segment_batch(folder, folder=folder)  # cells.tif → cells.tif: refused
    assert "refusing to overwrite input files" in errors(notifications)[-1]
    assert (folder / "cells.tif").read_bytes() == original
    assert sorted(p.name for p in folder.iterdir()) == ["cells.tif"]

    # a layer opened from a file: its mask must not land on that file either
    viewer.open(folder / "cells.tif")
    assert not widget.segment_batch(folder)
    assert "is the input" in errors(notifications)[-1]

    out = tmp_path / "out"
    out.mkdir()
    (out / "cells.tif").write_bytes(b"an older result")
    dialogs.confirm = False
    assert not widget.segment_batch(out)
    assert (out / "cells.tif").read_bytes() == b"an older result"
    assert dialogs.asked[-1][0] == "confirm" and "cells.tif" in dialogs.asked[-1][1]
    dialogs.confirm = True
    assert widget.segment_batch(out)
    wait_done(qtbot, widget)
    assert tifffile.imread(out / "cells.tif").max() >= 1 and (out / "cells.csv").exists()


def slow_predict(self, model, image, *, progress=None, cancel=None, **kwargs):
    for step in range(500):
        check(cancel)
        time.sleep(0.01)
        progress(step, 500, "slowly")
    raise AssertionError("should have been cancelled")


def test_cancel_says_what_was_written(viewer, qtbot, discs, monkeypatch, tmp_path,
                                      notifications):
    viewer.add_image(blobs()[0], name="one")
    viewer.add_image(blobs()[0], name="two")
    widget = dock(viewer, "Segment")
    monkeypatch.setattr(Predictor, "predict", slow_predict)
    assert widget.segment_batch(tmp_path)
    qtbot.waitUntil(lambda: widget.jobs.bar.value() > 5, timeout=10_000)
    assert "1 of 2: one" in widget.jobs.status.text()
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert list(tmp_path.iterdir()) == []
    assert ("info", f"cancelled: 0 of 2 mask(s) written to {tmp_path} (each complete); the "
            "rest were not segmented") in notifications
