"""Segment widget on lazily loaded (Dask / zarr) layers: large ones go block by block into a
zarr-backed Labels layer, never loaded whole; small ones take the ordinary path.

The threshold and block size are made small here, so ~200² images have several blocks.
"""

import threading
import time

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_attnseg.inference import InferenceSettings, Predictor, blockwise
from napari_attnseg.models import load_model
from napari_attnseg.progress import check
from napari_attnseg.widgets import _jobs, _segment_job

from .conftest import blobs, disc_model, dock, errors, wait_done

TILE = 64


class Unloadable(da.Array):
    """A Dask array that the segmentation job (a worker thread) cannot turn into NumPy whole;
    its parts are plain Dask arrays. (napari itself shows a 2D layer whole, on the GUI thread.)"""

    def __array__(self, *args, **kwargs):
        refuse()
        return super().__array__(*args, **kwargs)

    def compute(self, *args, **kwargs):
        refuse()
        return super().compute(*args, **kwargs)


def refuse():
    if threading.current_thread() is not threading.main_thread():
        raise AssertionError("the whole lazy image was loaded by the job")


def unloadable(image, chunks=64):
    array = da.from_array(image, chunks=chunks)
    return Unloadable(array.dask, array.name, array.chunks, meta=array._meta)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 96 px; lazy selections of more than 100² pixels go block by block."""
    monkeypatch.setattr(_segment_job, "BLOCKWISE_PIXELS", 100 * 100)
    monkeypatch.setattr(_segment_job, "BLOCK_SIZE", 96)
    # statistics by Dask reductions (the path of planes > 4096²), never the plane read whole
    monkeypatch.setattr(blockwise, "EXACT_STATISTICS_PIXELS", 0)
    stores = []
    original = _segment_job.new_store

    def new_store():
        stores.append(original())
        return stores[-1]

    monkeypatch.setattr(_segment_job, "new_store", new_store)
    return stores


@pytest.fixture
def progress(monkeypatch):
    seen = []
    original = _jobs.JobPanel._show_progress

    def record(self, done, total, message):
        seen.append((done, total, message))
        original(self, done, total, message)

    monkeypatch.setattr(_jobs.JobPanel, "_show_progress", record)
    return seen


def run(qtbot, widget):
    assert widget.segment()
    wait_done(qtbot, widget)


def exact(widget):
    widget.tile_size.setValue(TILE)
    widget.precision.setCurrentText("fp32")
    widget.threshold.setValue(0.5)


@pytest.mark.slow
def test_a_large_lazy_layer_is_segmented_block_by_block_into_zarr(
    viewer, qtbot, saved_model, small_blocks, progress, notifications
):
    image = blobs((192, 224))[0].astype(np.float32)
    layer = viewer.add_image(
        unloadable(image),
        name="big",
        scale=(0.5, 2.0),
        translate=(3.0, -1.0),
        contrast_limits=(0, 255),
    )
    widget = dock(viewer, "Segment")
    exact(widget)
    widget.add_probability.setChecked(True)
    run(qtbot, widget)
    assert errors(notifications) == []
    labels = viewer.layers["big [tiny]"]
    probability = viewer.layers["big [tiny] probability"]
    assert isinstance(labels.data, zarr.Array) and isinstance(probability.data, zarr.Array)
    assert labels.data.shape == image.shape and labels.data.chunks == (96, 96)
    assert np.allclose(labels.scale, layer.scale) and np.allclose(labels.translate, layer.translate)
    [store] = small_blocks
    assert store.name.startswith(_segment_job.STORE_PREFIX) and store.is_dir()
    assert str(store) in widget.jobs.status.text()
    # progress counted the 2×3 blocks
    assert (6, 6, "done") in progress and any(m == "block 1/6" for _, _, m in progress)

    reference = Predictor(InferenceSettings(precision="fp32", tile_size=TILE, threshold=0.5))
    expected = reference.predict(load_model(saved_model), image)
    probs = probability.data[...]
    assert np.abs(probs - expected.foreground).max() < 1e-4
    clear = np.abs(expected.foreground - 0.5) > 1e-4
    assert np.array_equal(labels.data[...][clear], expected.labels[clear])
    assert 0 < expected.labels.mean() < 1

    viewer.layers.remove(labels)
    assert store.is_dir()  # the probability layer still shows it
    viewer.layers.remove(probability)
    assert not store.exists()


def test_cancel_leaves_no_layer_and_no_store(
    viewer, qtbot, saved_model, small_blocks, progress, monkeypatch, notifications
):
    original = blockwise.predict_block

    def slow_block(*args, **kwargs):
        out = original(*args, **kwargs)
        cancel = args[5] if len(args) > 5 else kwargs.get("cancel")
        for _ in range(1000):
            check(cancel)
            time.sleep(0.01)
        return out

    monkeypatch.setattr(blockwise, "predict_block", slow_block)
    viewer.add_image(unloadable(blobs((192, 224))[0]), name="big", contrast_limits=(0, 255))
    widget = dock(viewer, "Segment")
    exact(widget)
    assert widget.segment()
    qtbot.waitUntil(lambda: any(m == "block 1/6" for _, _, m in progress), timeout=20_000)
    widget.jobs.cancel_button.click()
    wait_done(qtbot, widget)
    assert [lay.name for lay in viewer.layers] == ["big"]
    assert small_blocks and not small_blocks[0].exists()
    assert errors(notifications) == []


@pytest.mark.slow
def test_closing_the_dock_during_a_blockwise_run_adds_nothing(
    viewer, qtbot, saved_model, small_blocks, progress, monkeypatch
):
    original = blockwise.predict_block
    started = []

    def slow_block(*args, **kwargs):
        started.append(1)
        time.sleep(0.2)
        return original(*args, **kwargs)

    monkeypatch.setattr(blockwise, "predict_block", slow_block)
    viewer.add_image(unloadable(blobs((192, 224))[0]), name="big", contrast_limits=(0, 255))
    widget = dock(viewer, "Segment")
    exact(widget)
    assert widget.segment()
    qtbot.waitUntil(lambda: bool(started), timeout=20_000)
    job = widget.jobs._job
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: job.returned.is_set(), timeout=20_000)
    qtbot.wait(50)
    assert [lay.name for lay in viewer.layers] == ["big"]
    assert small_blocks and not small_blocks[0].exists()


def test_a_small_lazy_layer_takes_the_whole_image_path(viewer, qtbot, saved_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("block-wise for a small layer")

    monkeypatch.setattr(_segment_job, "run_blockwise", refuse)
    image = blobs((64, 64))[0]
    viewer.add_image(da.from_array(image, chunks=32), name="small")
    widget = dock(viewer, "Segment")
    exact(widget)
    run(qtbot, widget)
    labels = viewer.layers["small [tiny]"]
    assert isinstance(labels.data, np.ndarray) and labels.data.shape == (64, 64)


@pytest.mark.slow
def test_skipped_options_are_reported_and_a_user_region_is_applied(
    viewer, qtbot, user_model_dir, bright_is_foreground, small_blocks, notifications
):
    disc_model("discs", instances={"method": "watershed"}, object_diameter=17.0)
    image = blobs((192, 192))[0]
    stack = np.stack([image, image[::-1]])
    layer = viewer.add_image(
        unloadable(stack), name="stack", scale=(5.0, 1.0, 1.0), contrast_limits=(0, 255)
    )
    region = np.zeros((192, 192), np.uint8)
    region[:, :100] = 1
    viewer.add_labels(region, name="left")
    widget = dock(viewer, "Segment")
    exact(widget)
    assert widget.output.currentText() == "instances"
    widget.roi.select("left")
    widget.scope.setCurrentText("current slice")
    viewer.dims.set_current_step(0, 1)
    run(qtbot, widget)
    warnings = [m for s, m in notifications if s == "warning"]
    assert any("instances and their table skipped" in m for m in warnings), warnings
    assert any("object diameter not matched" in m for m in warnings), warnings
    labels = viewer.layers["stack [discs]"]
    assert isinstance(labels.data, zarr.Array) and labels.data.shape == (1, 192, 192)
    data = labels.data[...]
    assert data[0, :, :100].any() and not data[0, :, 100:].any()
    assert data.max() == 1  # a mask, not numbered objects
    # placed on slice 1 of the stack
    assert np.allclose(labels.data_to_world([0, 7, 9]), layer.data_to_world([1, 7, 9]))
    assert "inside left" in widget.jobs.status.text()

    run(qtbot, widget)  # a rerun swaps the data of the same layer; the old store goes
    assert viewer.layers["stack [discs]"] is labels and len(viewer.layers) == 3
    first, second = small_blocks
    assert not first.exists() and second.is_dir()
    assert labels.metadata["napari_attnseg"]["store"] == str(second)


def test_cards_that_need_the_whole_image_are_refused_with_the_reason(
    viewer, qtbot, user_model_dir, small_blocks, notifications
):
    disc_model("fixed", input_size=[64, 64])
    viewer.add_image(unloadable(blobs((192, 224))[0]), name="big", contrast_limits=(0, 255))
    widget = dock(viewer, "Segment")
    exact(widget)
    run(qtbot, widget)
    [message] = errors(notifications)
    assert "cannot be segmented block by block" in message and "resizes every image" in message
    assert [lay.name for lay in viewer.layers] == ["big"]
    assert small_blocks and not small_blocks[0].exists()
