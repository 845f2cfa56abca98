"""Close a dock widget, then the whole viewer, while a job runs — in a real napari window.

Run as a script; ``test_close_during_job.py`` starts it in a subprocess,
because the failure it guards against is a segmentation fault (or a process
that never exits) which would take pytest down with it:

    python close_during_job.py {segment,finetune,attention}

1. It opens a viewer, docks the widget as the Plugins menu does, starts a job
   that takes many steps (a large image tiled finely with test-time
   augmentation, or a thousand epochs), and as soon as the job has reported
   progress clicks the ✕ of the dock's title bar. The event loop keeps running
   for a while, so any late signal from the worker would be delivered then.
2. It opens the widget again, starts the same job, and closes the viewer
   window while the job runs; ``napari.run()`` returns and the script ends,
   which is how a user's napari session ends.

It prints what happened (``dock closed while running``, ``viewer closed while
running``, ...). Exit code 0 means both closes happened during a job and the
process ended normally; anything else (139: segmentation fault) is a failure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import torch

PLUGIN = "napari-attnseg"
NAMES = {"segment": "Segment", "finetune": "Fine-tune", "attention": "Attention"}


def tiny_model():
    from napari_attnseg.models import ModelCard, create_model

    torch.manual_seed(0)
    model = create_model("focal_attention_unet", in_channels=1, n_classes=1, width=4, depth=2)
    model.card = ModelCard(name="tiny", normalization={"mode": "zscore"})
    return model.eval()


def blobs(shape):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = ((yy % 64 - 32) ** 2 + (xx % 64 - 32) ** 2 < 200).astype(np.uint8)
    image = (labels * 120 + rng.normal(60, 15, shape)).clip(0, 255).astype(np.uint8)
    return image, labels


def start_job(viewer, kind: str):
    """Dock the widget and start a long job; returns (dock, widget, job)."""
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, NAMES[kind])
    widget.model_picker.select("tiny")
    widget.device_picker.setCurrentIndex(widget.device_picker.findData("cpu"))
    if kind == "segment":
        widget.image_picker.set_layer("cells")
        widget.tile_size.setValue(64)
        widget.tta.setChecked(True)
        started = widget.segment()
    elif kind == "attention":
        widget.image_picker.set_layer("cells")
        started = widget.show_attention()
    else:
        widget.rows[0].image_picker.set_layer("small")
        widget.rows[0].labels_picker.set_layer("truth")
        widget.epochs.setValue(1000)
        widget.patches.setValue(8)
        started = widget.finetune()
    assert started, "the job did not start"
    return dock, widget, widget.jobs._job


def when_running(widget, job, then) -> None:
    """Call ``then()`` once the job has reported progress (it is then surely running)."""
    from qtpy.QtCore import QTimer

    deadline = time.monotonic() + 120

    def poll() -> None:
        if job.returned.is_set():
            print("the job ended before it could be closed", flush=True)
            os._exit(4)
        if time.monotonic() > deadline:
            print("the job never reported progress", flush=True)
            os._exit(3)
        if widget.jobs.bar.maximum() <= 1 or widget.jobs.bar.value() < 1:
            QTimer.singleShot(20, poll)
            return
        then()

    QTimer.singleShot(0, poll)


def main(kind: str) -> int:
    import napari
    from qtpy.QtCore import QTimer

    from napari_attnseg.widgets._models import session

    torch.set_num_threads(1)
    session().add_unsaved(tiny_model(), "tiny")
    viewer = napari.Viewer(show=True)
    image, labels = blobs((1024, 1024))
    viewer.add_image(image, name="cells")
    viewer.add_image(image[:256, :256], name="small")
    viewer.add_labels(labels[:256, :256], name="truth")
    before = {layer.name: np.array(layer.data) for layer in viewer.layers}
    jobs = []

    def close_dock() -> None:
        dock, widget, job = start_job(viewer, kind)
        jobs.append(job)

        def click() -> None:
            print("dock closed while running", flush=True)
            dock.title.close_button.click()  # the ✕ of the dock's title bar
            # keep the event loop running: late signals of the worker would arrive now
            QTimer.singleShot(2000, check_then_close_viewer)

        when_running(widget, job, click)

    def check_then_close_viewer() -> None:
        print("job returned" if jobs[0].returned.is_set() else "job still running", flush=True)
        after = {layer.name: np.array(layer.data) for layer in viewer.layers}
        same = after.keys() == before.keys() and all(
            np.array_equal(after[k], before[k]) for k in before
        )
        print("layers unchanged" if same else f"layers changed: {list(after)}", flush=True)
        viewer.add_image(image[:8, :8], name="added after the dock closed")  # pickers are gone
        _, widget, job = start_job(viewer, kind)
        jobs.append(job)

        def close() -> None:
            print("viewer closed while running", flush=True)
            viewer.window._qt_window.close()  # what the window's close button does

        when_running(widget, job, close)

    QTimer.singleShot(0, close_dock)
    napari.run()
    print("event loop ended", flush=True)
    print("all jobs returned" if all(j.returned.is_set() for j in jobs) else "a job is running")
    return 0 if len(jobs) == 2 else 2


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        os.environ["NAPARI_ATTNSEG_MODEL_DIR"] = folder
        code = main(sys.argv[1])
    print("exit", code, flush=True)
    sys.exit(code)
