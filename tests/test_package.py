"""Packaging: the npe2 manifest, sample data, and the engine's independence from napari/Qt."""

import subprocess
import sys

import numpy as np
import pytest

from napari_attnseg import _sample_data


def test_manifest_is_valid_and_points_at_real_objects():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-attnseg")
    assert manifest.name == "napari-attnseg"
    # the menus say what the README says: Plugins ▸ napari-attnseg ▸ Segment
    assert manifest.display_name == "napari-attnseg"
    titles = {w.display_name for w in manifest.contributions.widgets}
    assert titles == {"Segment", "Attention", "Fine-tune", "Models"}
    keys = {s.key for s in manifest.contributions.sample_data}
    assert {"nuclei", "fundus"} <= keys
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert hasattr(__import__(module, fromlist=[attr]), attr), command.python_name


def test_samples_are_named_after_what_they_open():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-attnseg")
    names = {s.key: s.display_name for s in manifest.contributions.sample_data}
    assert names == {
        "nuclei": "Nuclei, fluorescence (DSB2018)",
        "nuclei_brightfield": "Nuclei, brightfield (DSB2018)",
        "fundus": "Retinal fundus (skimage.data.retina)",
    }
    (fluorescence, _, _), _ = _sample_data.nuclei()
    (brightfield, meta, _), _ = _sample_data.nuclei_brightfield()
    assert fluorescence.ndim == 2 and brightfield.ndim == 3 and meta["rgb"]


@pytest.mark.parametrize("name", ["nuclei", "nuclei_brightfield"])
def test_nuclei_samples_have_ground_truth(name):
    layers = getattr(_sample_data, name)()
    (image, meta, kind), (truth, _, truth_kind) = layers
    assert kind == "image" and truth_kind == "labels"
    assert image.shape[:2] == truth.shape and image.dtype == np.uint8
    assert 0.05 < (truth > 0).mean() < 0.6


def test_fundus_sample_is_offline_rgb():
    [(image, meta, kind)] = _sample_data.fundus()
    assert image.shape == (560, 560, 3) and meta["rgb"]


ENGINE = [
    "napari_attnseg.models",
    "napari_attnseg.losses",
    "napari_attnseg.metrics",
    "napari_attnseg.data",
    "napari_attnseg.training",
    "napari_attnseg.inference",
    "napari_attnseg.zoo",
    "napari_attnseg.cli",
    "napari_attnseg.benchmark",
    "napari_attnseg.export",
]


@pytest.mark.slow
def test_engine_never_imports_napari_or_qt():
    code = (
        f"import sys, importlib; [importlib.import_module(m) for m in {ENGINE!r}]; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt')]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"imported {result.stdout.strip()} {result.stderr[-500:]}"


def test_saved_files_are_readable_by_others(tmp_path):
    import os
    import stat

    from napari_attnseg.data.io import write_mask
    from napari_attnseg.models import create_model, save_model

    old = os.umask(0o022)
    try:
        path = save_model(create_model("unet", width=2, depth=1), tmp_path / "m.safetensors")
        mask = write_mask(tmp_path / "m.tif", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    for f in (path, path.with_suffix(".json"), mask):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert not list(tmp_path.glob("*.tmp"))


def test_half_precision_files_keep_tensors_beyond_fp16_range_in_fp32(tmp_path):
    import torch

    from napari_attnseg.models import create_model, load_model, save_model

    model = create_model("focusnet", in_channels=3, n_classes=1, width_multiplier=0.25)
    name, var = next((k, v) for k, v in model.named_buffers() if k.endswith("running_var"))
    var.fill_(1e6)  # large activations: beyond fp16's 65504
    path = save_model(model.eval(), tmp_path / "m.safetensors", half=True)
    loaded = load_model(path)  # used to fail: "holds NaN or infinite weights"
    assert torch.equal(loaded.state_dict()[name], var)
    conv = next(k for k, v in model.state_dict().items() if v.ndim == 4)  # the rest is fp16
    assert torch.equal(loaded.state_dict()[conv], model.state_dict()[conv].half().float())
    x = torch.randn(1, 3, 32, 32)
    assert torch.isfinite(loaded(x)).all()
