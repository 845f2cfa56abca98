"""A feature of a missing optional extra names the pip command, not "No module named 'zarr'"."""

import sys

import numpy as np
import tifffile

from napari_attnseg._extras import missing_extra
from napari_attnseg.cli import main as attnseg
from napari_attnseg.models import ModelCard, create_model, save_model


def test_predict_with_workers_without_the_distributed_extra_names_the_install(
        tmp_path, monkeypatch, capsys):
    model = create_model("unet", in_channels=1, n_classes=1, width=4, depth=2)
    model.card = ModelCard(name="tiny", normalization={"mode": "zscore"})
    path = save_model(model, tmp_path / "tiny.safetensors")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint8))
    for name in [m for m in sys.modules if m.startswith("napari_attnseg.inference.blockwise")
                 or m.startswith("napari_attnseg.inference.distributed")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if zarr were not installed

    code = attnseg(["predict", str(tmp_path / "a.tif"), "--model", str(path),
                    "--out", str(tmp_path / "out"), "--workers", "2"])
    error = capsys.readouterr().err
    assert code == 1
    assert 'pip install "napari-attnseg[distributed]"' in error and "'zarr'" in error
    assert "No module named" not in error


def test_missing_extra_follows_the_cause_and_ignores_other_modules():
    try:
        try:
            import napari_attnseg_no_such_module  # noqa: F401
        except ModuleNotFoundError:
            raise ModuleNotFoundError("x", name="bioimageio.spec") from None
    except ModuleNotFoundError as exc:
        assert "napari-attnseg[bioimageio]" in missing_extra(exc)
    try:
        raise ImportError("wrapped") from ModuleNotFoundError("y", name="dask.distributed")
    except ImportError as exc:
        assert "napari-attnseg[distributed]" in missing_extra(exc)
    assert missing_extra(ModuleNotFoundError("z", name="scipy")) is None
    assert missing_extra(ValueError("no")) is None
