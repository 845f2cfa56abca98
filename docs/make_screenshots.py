"""Screenshots of the dock widgets in a real napari window, for the README.

    xvfb-run -a python docs/make_screenshots.py            # headless (Linux)
    python docs/make_screenshots.py --model nuclei --epochs 10

It does what a new user does: opens the nuclei sample (File ▸ Open Sample),
segments it into instances (Segment: object diameter auto, the object table
with a row selected), shows where the network looked (Attention), uses the
sample's ground truth as "corrected labels" to fine-tune the model
(Fine-tune), looks at the attention again, and opens the model manager
(Models) — saving a PNG of the whole window after each step to
``docs/images/``. The model is ``--model`` (default: the zoo's ``nuclei``
model); when that cannot be resolved (no zoo weights yet) a small fresh Focal
Attention U-Net is used, so the script always runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "images"
PLUGIN = "napari-attnseg"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei", help="zoo name, task, user model or file")
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNGs")
    parser.add_argument("--size", type=int, nargs=2, default=(1500, 1000), metavar=("W", "H"))
    parser.add_argument("--dock-width", type=int, default=470, help="dock width in pixels")
    parser.add_argument(
        "--desk", action="store_true",
        help="instead: Segment and Fine-tune docked together at 1920x1080 and 1366x768, "
             "before and after a round (desk_<W>x<H>_<before|after>.png)",
    )
    return parser.parse_args(argv)


def wait(widget, timeout: float = 600.0) -> None:
    """Keep the Qt event loop running until the widget's job is done."""
    from qtpy.QtWidgets import QApplication

    start = time.monotonic()
    while widget.jobs.busy:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            widget.jobs.cancel()
            raise TimeoutError(f"{type(widget).__name__} did not finish in {timeout:.0f} s")
    settle()


def settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def open_image(viewer):
    """The nuclei sample through the Open Sample menu's path, else skimage's coins."""
    try:
        viewer.open_sample(PLUGIN, "nuclei")
        image = next(layer for layer in viewer.layers if layer.__class__.__name__ == "Image")
        truth = next((layer for layer in viewer.layers if "truth" in layer.name), None)
        return image, None if truth is None else np.asarray(truth.data)
    except Exception as exc:  # noqa: BLE001 - the sample is optional for this script
        print(f"nuclei sample unavailable ({exc}); using skimage.data.coins()")
        from skimage.data import coins
        from skimage.filters import threshold_otsu

        picture = coins()
        return viewer.add_image(picture, name="coins"), (picture > threshold_otsu(picture))


def pick_model(widget, spec: str) -> str:
    """Select ``spec`` in the widget's picker, or hand it a fresh small model."""
    from napari_attnseg.models import ModelCard, create_model
    from napari_attnseg.zoo import resolve

    try:
        path = resolve(spec)
        choice = widget.model_picker.add_model_path(path)
        if choice is not None:
            return choice.name
    except (ValueError, FileNotFoundError) as exc:
        print(f"model {spec!r} not available ({exc}); using a fresh Focal Attention U-Net")
    import torch

    torch.manual_seed(0)
    model = create_model("focal_attention_unet", in_channels=1, n_classes=1, width=8, depth=3)
    model.card = ModelCard(name="fresh-unet", normalization={"mode": "percentile"})
    return widget.model_picker.add_model(model.eval(), "fresh-unet").name


def open_dock(viewer, name: str, width: int):
    """Open a plugin dock the way the Plugins menu does, at a readable width."""
    from qtpy.QtCore import Qt

    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    settle()
    return dock, widget


def shoot(viewer, name: str, out: Path) -> Path:
    settle()
    path = out / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
    return path


def desk(args, size: tuple[int, int]) -> None:
    """Segment and Fine-tune docked at once in a window of ``size``, before and after a
    round (a segmentation, then a short fine-tuning round on the sample's truth)."""
    import napari

    viewer = napari.Viewer(title="napari-attnseg")
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(*size)
    image, truth = open_image(viewer)
    for layer in list(viewer.layers):
        if layer is not image:
            viewer.layers.remove(layer)
    corrected = viewer.add_labels(np.asarray(truth, dtype=np.uint8), name=f"{image.name} corrected",
                                  visible=False)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    _, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    model = pick_model(segment, args.model)
    finetune.model_picker.select(model)
    finetune.rows[0].image_picker.set_layer(image)
    finetune.rows[0].labels_picker.set_layer(corrected)
    settle(1.0)
    tag = f"desk_{size[0]}x{size[1]}"
    shoot(viewer, f"{tag}_before", args.out)
    segment.segment()
    wait(segment)
    finetune.epochs.setValue(1)
    finetune.patches.setValue(8)
    finetune.finetune()
    wait(finetune, timeout=1800)
    shoot(viewer, f"{tag}_after", args.out)
    viewer.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.desk:
        import torch

        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        for size in ((1920, 1080), (1366, 768)):
            desk(args, size)
        return 0
    import napari
    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    viewer = napari.Viewer(title="napari-attnseg")
    viewer.window.resize(*args.size)
    image, truth = open_image(viewer)
    for layer in list(viewer.layers):
        if layer is not image:
            viewer.layers.remove(layer)  # the hidden ground truth would confuse the pickers

    width = args.dock_width

    # 1. Segment: instances, object diameter auto, the object table
    dock, segment = open_dock(viewer, "Segment", width)
    model = pick_model(segment, args.model)
    segment.image_picker.set_layer(image)
    segment.add_probability.setChecked(False)
    segment.segment()
    wait(segment)
    if segment.objects.table:
        segment.objects.view.selectRow(min(5, segment.objects._model.rowCount() - 1))
        settle()
        viewer.reset_view()  # a row click zooms onto its object: show the whole sample
    segment.batch.expand(animate=False)
    shoot(viewer, "segment", args.out)
    viewer.window.remove_dock_widget(dock)

    # 2. Attention
    dock, attention = open_dock(viewer, "Attention", width)
    attention.image_picker.set_layer(image)
    attention.model_picker.select(model)
    attention.show_attention()
    wait(attention)
    shoot(viewer, "attention", args.out)
    viewer.window.remove_dock_widget(dock)

    # 3. Fine-tune on "corrected" labels (the sample's ground truth stands in for the user's fixes)
    corrected = viewer.add_labels(
        np.asarray(truth, dtype=np.uint8),
        name=f"{image.name} corrected",
        scale=image.scale,
        translate=image.translate,
        opacity=0.4,
    )
    for layer in viewer.layers:
        layer.visible = layer is image or layer is corrected
    dock, finetune = open_dock(viewer, "Fine-tune", width)
    finetune.rows[0].image_picker.set_layer(image)
    finetune.rows[0].labels_picker.set_layer(corrected)
    finetune.model_picker.select(model)
    finetune.epochs.setValue(args.epochs)
    finetune.lr.setText("1e-3")
    finetune.finetune()
    wait(finetune, timeout=1800)
    tuned = finetune.model_picker.current().name
    corrected.visible = False
    result = f"{image.name} [{tuned}]"
    if result in viewer.layers:
        viewer.layers[result].visible = True
    shoot(viewer, "finetune", args.out)
    viewer.window.remove_dock_widget(dock)

    # 4. Attention of the fine-tuned model, with the Focal w history of its training
    dock, attention = open_dock(viewer, "Attention", width)
    attention.image_picker.set_layer(image)
    attention.model_picker.select(tuned)
    attention.show_attention()
    wait(attention)
    history = attention.plot_choice.findText("Focal w per epoch")
    if history >= 0:
        attention.plot_choice.setCurrentIndex(history)
    shoot(viewer, "attention_after_finetune", args.out)
    viewer.window.remove_dock_widget(dock)

    # 5. The model manager, on the model that was used
    for layer in viewer.layers:
        layer.visible = layer is image or layer.name == result
    dock, models = open_dock(viewer, "Models", width)
    models.select(model)
    shoot(viewer, "models", args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
