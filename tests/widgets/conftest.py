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


def disc_model(name: str = "discs", **card):
    """A tiny model saved as a user model; with :func:`bright_is_foreground` it finds discs."""
    path = model_folder(create=True) / f"{name}.safetensors"
    return save_model(tiny_model(**card), path)


@pytest.fixture
def bright_is_foreground(monkeypatch):
    """Every network answers "foreground" where the normalised image is bright.

    The engine runs as it does (input preparation, zoom, tiling, region of
    interest, instance labels) around a network whose output is known: the
    discs of :func:`blobs` come out as three separate objects.
    """
    from napari_attnseg.inference.predictor import Run

    def forward(self, batch):
        foreground = torch.sigmoid((batch[:, :1].float() - 1.0) * 8)
        return torch.cat([1 - foreground, foreground], dim=1)

    monkeypatch.setattr(Run, "forward", forward)


class Dialogs:
    """Answers for the Qt dialogs, and what was asked (see the ``dialogs`` fixture)."""

    def __init__(self) -> None:
        self.save: object = None  # a path, or None = Cancel
        self.open: object = None
        self.folders: list = []  # answered in turn
        self.confirm = True
        self.text: str | None = None
        self.asked: list[tuple[str, str]] = []  # (kind, title or question)


@pytest.fixture
def dialogs(monkeypatch):
    """Replace the static QFileDialog / QMessageBox / QInputDialog calls with set answers."""
    from qtpy.QtWidgets import QFileDialog, QInputDialog, QMessageBox

    answers = Dialogs()

    def save(parent, title, start="", filters="", *args, **kwargs):
        answers.asked.append(("save", title))
        chosen = filters.split(";;")[0]
        if answers.save is not None and str(answers.save).endswith(".zip"):
            chosen = next((f for f in filters.split(";;") if ".zip" in f), chosen)
        return (str(answers.save) if answers.save is not None else "", chosen)

    def open_(parent, title, *args, **kwargs):
        answers.asked.append(("open", title))
        return (str(answers.open) if answers.open is not None else "", "")

    def folder(parent, title, *args, **kwargs):
        answers.asked.append(("folder", title))
        return str(answers.folders.pop(0)) if answers.folders else ""

    def question(parent, title, text, *args, **kwargs):
        answers.asked.append(("confirm", text))
        box = QMessageBox.StandardButton
        return box.Yes if answers.confirm else box.No

    def text(parent, title, label, *args, **kwargs):
        answers.asked.append(("text", label))
        return (answers.text or "", answers.text is not None)

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(open_))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(folder))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(text))
    return answers
