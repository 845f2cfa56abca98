"""Fixtures for the dock-widget tests (run under Xvfb by pytest-xvfb).

Models are tiny (width 4, depth 2) and saved into the per-test user model
folder, so the tests need no zoo weights and finish in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_attnseg.models import ModelCard, create_model, save_model
from napari_attnseg.zoo import user_model_dir as model_folder

PLUGIN = "napari-attnseg"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models on a shared 2-core machine run ~100x faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _fresh_session(monkeypatch):
    """Each test starts with an empty in-process model session."""
    from napari_attnseg.widgets import _models

    monkeypatch.setattr(_models, "_SESSION", None)


def tiny_model(arch: str = "focal_attention_unet", in_channels: int = 1, **card):
    torch.manual_seed(0)
    model = create_model(arch, in_channels=in_channels, n_classes=1, width=4, depth=2)
    model.card = ModelCard(name=arch, normalization={"mode": "zscore"}, **card)
    return model.eval()


@pytest.fixture(autouse=True)
def _no_zoo(monkeypatch, tmp_path_factory):
    """Hide the shipped zoo: pickers then default to the tests' own tiny models."""
    import napari_attnseg.zoo as zoo

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path_factory.mktemp("no_zoo"))


@pytest.fixture
def saved_model(user_model_dir):
    """A tiny gated U-Net saved as the user model ``tiny``."""
    return save_model(tiny_model(), model_folder(create=True) / "tiny.safetensors")


@pytest.fixture
def notifications(monkeypatch):
    """Every notification the widgets send, as ``(severity, message)``."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(event):
        seen.append((str(event.severity), str(event.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def errors(seen):
    return [message for severity, message in seen if severity == "error"]


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def dock(viewer, name: str):
    """Open a widget the way the Plugins menu does."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def wait_done(qtbot, widget, timeout: int = 30_000) -> None:
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=timeout)


def blobs(shape=(64, 64), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image with bright discs and its labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint8)
    for cy, cx, r in ((16, 20, 8), (44, 40, 10), (20, 50, 6)):
        labels[(yy - cy * shape[0] / 64) ** 2 + (xx - cx * shape[1] / 64) ** 2 <= r * r] = 1
    image = (labels * 120 + rng.normal(60, 15, shape)).clip(0, 255).astype(np.uint8)
    return image, labels
