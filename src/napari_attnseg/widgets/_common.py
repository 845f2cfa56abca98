"""What the three dock widgets share.

* **notifications** — every failure ends in a napari notification that names
  the problem (:func:`notify_error`, :func:`describe_error`), never in a
  traceback dialog;
* **jobs** — :class:`JobPanel` runs engine code in a napari thread worker with a
  progress bar and a Cancel button; results, progress, messages and
  intermediate updates come back to the GUI thread through Qt signals, so the
  viewer stays responsive and layers are only touched on the GUI thread;
* **models** — one in-process :class:`ModelSession` (zoo models, the user's
  saved models, files loaded this session and unsaved fine-tuned models) whose
  ``changed`` signal makes every :class:`ModelPicker` refresh, so a model
  fine-tuned in one widget can be picked in all of them;
* **layers ↔ arrays** — pickers, the current slice of a stack, and the
  placement (scale, translate, rotate, shear, affine) that makes an output
  layer overlay its image exactly; :func:`replace_labels` rewrites a Labels
  layer through napari's undo history.
"""

from __future__ import annotations

import logging
import threading
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..progress import Cancelled, CancelToken

log = logging.getLogger("napari_attnseg.widgets")


# -- notifications -------------------------------------------------------------
def notify_error(message: str) -> None:
    show_error(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def notify_info(message: str) -> None:
    show_info(message)


def describe_error(exc: BaseException) -> str:
    """A one-line message for a failed job that names the problem."""
    from ..models.persistence import ModelFileError

    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return "out of GPU memory: choose a smaller tile size or the CPU device"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(exc, ModelFileError):
        return f"model file unreadable: {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}"
    if isinstance(exc, MemoryError):
        return f"out of memory: {exc}" if str(exc) else "out of memory"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# -- jobs ------------------------------------------------------------------------
@dataclass
class JobContext:
    """What a job function gets: cancellation, progress and two channels to the GUI thread."""

    cancel: CancelToken
    progress: Callable[..., None]
    #: a message for the user (e.g. the predictor's out-of-memory fallbacks)
    message: Callable[[str], None]
    #: any payload for the job's ``on_update`` handler (e.g. an epoch record)
    update: Callable[[Any], None]


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False


class JobPanel(QWidget):
    """A progress bar, a status line and a Cancel button that run one job at a time."""

    #: emitted on the GUI thread after a job's handlers ran (ok, cancelled or failed)
    finished = Signal()
    _progressed = Signal(int, int, str)
    _messaged = Signal(str)
    _updated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._token: CancelToken | None = None
        self._handlers: dict[str, Callable | None] = {}
        self.worker = None
        self._progressed.connect(self._show_progress)
        self._messaged.connect(notify_warning)
        self._updated.connect(self._on_update)
        self._set_idle("")

    @property
    def busy(self) -> bool:
        return self._token is not None

    def start(
        self,
        job: Callable[[JobContext], Any],
        *,
        on_success: Callable[[Any], None],
        on_update: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
        label: str = "working",
    ) -> bool:
        """Run ``job(context)`` in a thread worker; handlers run on the GUI thread."""
        if self.busy:
            notify_warning("a job is already running in this widget: wait or cancel it")
            return False
        from napari.qt.threading import create_worker

        token = CancelToken()
        context = JobContext(token, self._progressed.emit, self._messaged.emit, self._updated.emit)

        def run() -> _Outcome:
            # every exception is caught here, so none reaches napari's error dialog;
            # library warnings go to the log instead of popping up as notifications
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("default")
                    value = job(context)
                for w in caught:
                    log.info("warning in %s: %s", label, w.message)
                return _Outcome(value=value)
            except Cancelled:
                return _Outcome(cancelled=True)
            except BaseException as exc:  # noqa: BLE001 - reported as a notification
                log.debug("job failed:\n%s", "".join(traceback.format_exception(exc)))
                return _Outcome(error=exc)

        self._token = token
        self._handlers = {
            "success": on_success, "update": on_update,
            "cancelled": on_cancelled, "failed": on_failed,
        }
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.bar.setVisible(True)
        self.status.setText(f"{label}…")
        self.cancel_button.setEnabled(True)
        self.destroyed.connect(token.cancel)  # a closed widget stops its job
        self.worker = create_worker(run, _start_thread=False)
        self.worker.returned.connect(self._finish)
        self.worker.start()
        return True

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()
            self.status.setText("cancelling…")
            self.cancel_button.setEnabled(False)

    # -- GUI-thread slots -----------------------------------------------------
    def _show_progress(self, done: int, total: int, message: str) -> None:
        if not self.busy:
            return
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        if message:
            self.status.setText(message)

    def _on_update(self, payload: Any) -> None:
        handler = self._handlers.get("update")
        if handler is not None and self.busy:
            self._call(handler, payload)

    def _finish(self, outcome: _Outcome) -> None:
        handlers, self._handlers = self._handlers, {}
        if self._token is not None:
            try:
                self.destroyed.disconnect(self._token.cancel)
            except (TypeError, RuntimeError):  # already disconnected
                pass
        self._token = None
        if outcome.cancelled:
            self._set_idle("cancelled")
            if handlers.get("cancelled"):
                self._call(handlers["cancelled"])
            else:
                notify_info("cancelled: nothing was changed")
        elif outcome.error is not None:
            message = describe_error(outcome.error)
            self._set_idle(f"failed: {message}")
            notify_error(message)
            if handlers.get("failed"):
                self._call(handlers["failed"], outcome.error)
        else:
            self._set_idle("done")
            self._call(handlers["success"], outcome.value)
        self.worker = None
        self.finished.emit()

    def _call(self, handler: Callable, *args: Any) -> None:
        try:
            handler(*args)
        except Exception as exc:  # noqa: BLE001 - reported, never raised into napari
            log.debug("handler failed:\n%s", traceback.format_exc())
            self.status.setText(f"failed: {describe_error(exc)}")
            notify_error(describe_error(exc))

    def _set_idle(self, text: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if text == "done" else 0)
        self.bar.setVisible(bool(text))
        self.cancel_button.setEnabled(False)
        self.status.setText(text)


# -- models ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    """One entry of a model picker: where the model comes from and how to get it."""

    kind: str  # "zoo" | "user" | "file" | "session"
    key: str  # weights path, or the session name of an unsaved model
    name: str
    task: str = ""
    is_default: bool = False

    @property
    def label(self) -> str:
        if self.kind == "zoo":
            return f"{self.name}  ★ {self.task} default" if self.is_default else self.name
        suffix = {"user": "my model", "file": "file", "session": "unsaved"}[self.kind]
        return f"{self.name}  ({suffix})"


class ModelSession(QObject):
    """The models this napari session knows, shared by every widget.

    Loaded models are cached (by path and modification time) so switching
    widgets does not reload weights; loading may happen in worker threads.
    """

    #: emitted (on the GUI thread) when the list of models changed
    changed = Signal()
    CACHE_SIZE = 4

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._unsaved: dict[str, Any] = {}
        self._files: list[Path] = []
        self._cache: OrderedDict[tuple[str, float], Any] = OrderedDict()

    def choices(self) -> list[ModelChoice]:
        from ..zoo import user_models, zoo_models

        out = [ModelChoice("zoo", str(m.path.resolve()), m.name, m.task, m.is_default)
               for m in zoo_models()]
        out += [ModelChoice("user", str(m.path.resolve()), m.name, m.task) for m in user_models()]
        with self._lock:
            out += [ModelChoice("session", name, name) for name in self._unsaved]
            files = list(self._files)
        known = {c.key for c in out}
        out += [ModelChoice("file", str(p), p.stem) for p in files if str(p) not in known]
        return out

    def find(self, name: str) -> ModelChoice | None:
        """The choice called ``name`` (unsaved models first, then files, user, zoo)."""
        order = {"session": 0, "file": 1, "user": 2, "zoo": 3}
        for choice in sorted(self.choices(), key=lambda c: order[c.kind]):
            if choice.name == name or choice.key == name:
                return choice
        return None

    def add_file(self, path: str | Path) -> ModelChoice:
        """Remember a model file; raises ``ModelFileError`` if it is not a readable model."""
        from ..models.persistence import read_card

        path = Path(path).expanduser()
        if path.suffix == ".json":
            path = path.with_suffix(".safetensors")
        read_card(path)  # validates: exists, has a napari-attnseg card
        path = path.resolve()
        with self._lock:
            if path not in self._files:
                self._files.append(path)
        self.changed.emit()
        return next(c for c in self.choices() if c.kind != "session" and Path(c.key) == path)

    def add_unsaved(self, model: Any, name: str) -> ModelChoice:
        with self._lock:
            self._unsaved[name] = model
        self.changed.emit()
        return ModelChoice("session", name, name)

    def remove_unsaved(self, name: str) -> None:
        with self._lock:
            removed = self._unsaved.pop(name, None)
        if removed is not None:
            self.changed.emit()

    def unsaved_name(self, base: str) -> str:
        """A session name ``<base>-ftN`` that no other model uses."""
        taken = {c.name for c in self.choices()}
        n = 1
        while f"{base}-ft{n}" in taken:
            n += 1
        return f"{base}-ft{n}"

    def saved(self, name: str, path: Path, model: Any) -> ModelChoice:
        """An unsaved model was written to ``path``: list it from there from now on."""
        path = Path(path).resolve()
        with self._lock:
            self._unsaved.pop(name, None)
            self._cache[(str(path), path.stat().st_mtime)] = model
        self.changed.emit()
        return next(c for c in self.choices() if c.kind != "session" and Path(c.key) == path)

    def load(self, choice: ModelChoice) -> Any:
        """The model behind a choice (cached; thread-safe)."""
        from ..models.persistence import ModelFileError, load_model

        with self._lock:
            if choice.kind == "session":
                if choice.key not in self._unsaved:
                    raise ValueError(f"the unsaved model {choice.name!r} is no longer available")
                return self._unsaved[choice.key]
            path = Path(choice.key)
            if not path.exists():
                raise ModelFileError(f"model file not found: {path}")
            key = (str(path.resolve()), path.stat().st_mtime)
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        model = load_model(path)
        model.source_name = choice.name
        with self._lock:
            self._cache[key] = model
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return model

    def refresh(self) -> None:
        self.changed.emit()


_SESSION: ModelSession | None = None


def session() -> ModelSession:
    """The one :class:`ModelSession` of this process."""
    global _SESSION
    if _SESSION is None:
        _SESSION = ModelSession()
    return _SESSION


def compact(combo: QComboBox, characters: int = 10) -> QComboBox:
    """Let a combo box shrink below its longest entry, so docks stay narrow."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


class _RefreshingCombo(QComboBox):
    """A combo box that asks its owner to refresh the list just before it opens."""

    def __init__(self, refresh: Callable[[], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._refresh = refresh
        compact(self)

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self._refresh()
        super().showPopup()


class ModelPicker(QWidget):
    """Zoo, user, file and unsaved models, plus "Load from file…"."""

    LOAD_FILE = "Load from file…"
    #: emitted when the selected model changes
    selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = _RefreshingCombo(self.refresh)
        self.combo.setToolTip(
            "zoo models (★ = the default for a task), your saved models, models loaded "
            "from files and fine-tuned models not saved yet"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        self._choices: list[ModelChoice] = []
        self._previous: ModelChoice | None = None
        self.combo.activated.connect(self._on_activated)
        self.combo.currentIndexChanged.connect(self._emit_selection)
        session().changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        current = self.current()
        choices = session().choices()
        if choices == self._choices and self.combo.count():
            return
        self._choices = choices
        self.combo.blockSignals(True)
        self.combo.clear()
        if not choices:
            self.combo.addItem("no models yet: load one from a file")
            self.combo.model().item(0).setEnabled(False)
        for choice in choices:
            self.combo.addItem(choice.label)
        self.combo.addItem(self.LOAD_FILE)
        if current in choices:
            index = choices.index(current)
        else:
            defaults = [i for i, c in enumerate(choices) if c.is_default]
            index = defaults[0] if defaults else 0
        self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)
        self._previous = self.current()
        self.selection_changed.emit()

    def current(self) -> ModelChoice | None:
        index = self.combo.currentIndex()
        return self._choices[index] if 0 <= index < len(self._choices) else None

    def select(self, choice: ModelChoice | str) -> bool:
        """Select a choice, or the model called ``choice``; False if there is none."""
        self.refresh()
        if isinstance(choice, str):
            found = session().find(choice)
            if found is None:
                return False
            choice = found
        if choice not in self._choices:
            return False
        self.combo.setCurrentIndex(self._choices.index(choice))
        self._previous = choice
        return True

    def add_model_path(self, path: str | Path) -> ModelChoice | None:
        """Offer (and select) a model file; an unreadable file gives an error notification."""
        try:
            choice = session().add_file(path)
        except (OSError, ValueError) as exc:
            notify_error(f"cannot use model file {path}: {describe_error(exc)}")
            if self._previous is not None:
                self.select(self._previous)
            return None
        self.select(choice)
        return choice

    def add_model(self, model: Any, name: str) -> ModelChoice:
        """Offer (and select) a model object, e.g. one built in a script."""
        choice = session().add_unsaved(model, name)
        self.select(choice)
        return choice

    def _emit_selection(self, *_: Any) -> None:
        self.selection_changed.emit()

    def _on_activated(self, index: int) -> None:
        if self.combo.itemText(index) != self.LOAD_FILE:
            self._previous = self.current()
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a napari-attnseg model", "", "napari-attnseg models (*.safetensors *.json)"
        )
        if path:
            self.add_model_path(path)
        elif self._previous is not None:
            self.select(self._previous)
        else:
            self.combo.setCurrentIndex(0)


class DevicePicker(QComboBox):
    """auto / each CUDA GPU by name / MPS / CPU — what PyTorch sees."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ..inference import available_devices

        compact(self)
        for label, value in available_devices():
            self.addItem(label, value)
        self.setToolTip("auto uses a CUDA GPU, then Apple MPS, then the CPU")

    def device(self) -> str:
        return str(self.currentData())


# -- layers --------------------------------------------------------------------
class LayerPicker(QComboBox):
    """The viewer's layers of one type, kept up to date as layers come, go and are renamed."""

    #: emitted when the selected layer changes
    layer_changed = Signal()

    def __init__(self, viewer, layer_type: type[Layer], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        self._names: list[str] = []
        compact(self)
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved, events.reordered):
            emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.currentIndexChanged.connect(self._emit_layer_changed)
        self.refresh(prefer_active=True)

    def _emit_layer_changed(self, *_: Any) -> None:
        self.layer_changed.emit()

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if event is not None and getattr(event, "type", "") == "inserted" and layer is not None:
            layer.events.name.connect(self.refresh)
            if isinstance(layer, self.layer_type) and not self._names:
                self.refresh(prefer=layer.name)
                return
        self.refresh()

    def refresh(
        self, event=None, *, prefer: str | None = None, prefer_active: bool = False
    ) -> None:
        current = prefer or self.currentText()
        if prefer_active:
            active = self.viewer.layers.selection.active
            if isinstance(active, self.layer_type):
                current = active.name
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, self.layer_type)]
        if names == self._names and current == self.currentText():
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        self._names = names
        if current in names:
            self.setCurrentIndex(names.index(current))
        self.blockSignals(False)
        self.layer_changed.emit()

    def layer(self) -> Layer | None:
        name = self.currentText()
        if name and name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if isinstance(layer, self.layer_type):
                return layer
        return None

    def set_layer(self, layer: Layer | str) -> None:
        name = layer if isinstance(layer, str) else layer.name
        self.refresh(prefer=name)
        index = self.findText(name)
        if index < 0:
            raise ValueError(f"no {self.layer_type.__name__} layer called {name!r}")
        self.setCurrentIndex(index)


def layer_array(layer: Layer) -> Any:
    """The layer's data at full resolution (level 0 of a multiscale layer), not copied."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_rgb_layer(layer: Layer) -> bool:
    return bool(getattr(layer, "rgb", False))


def spatial_shape(layer: Layer) -> tuple[int, ...]:
    """The layer's shape without a colour axis: ``(*stack, H, W)``."""
    shape = tuple(int(s) for s in layer_array(layer).shape)
    return shape[:-1] if is_rgb_layer(layer) else shape


def check_image_layer(layer: Image | None) -> None:
    """Raise ``ValueError`` (with a user-facing message) for an unusable image layer."""
    if layer is None:
        raise ValueError("no image selected: open an image (File ▸ Open, or a sample) first")
    shape = spatial_shape(layer)
    if len(shape) < 2:
        raise ValueError(f"image {layer.name!r} is 1D ({shape}); a 2D image is needed")
    if min(shape[-2:]) < 4:
        raise ValueError(f"image {layer.name!r} is too small ({shape[-2]}×{shape[-1]} pixels)")


def current_index(viewer, layer: Layer) -> tuple[int, ...]:
    """The stack index (all but the last two spatial axes) shown now for ``layer``."""
    n_lead = len(spatial_shape(layer)) - 2
    if n_lead <= 0:
        return ()
    point = np.asarray(viewer.dims.point)[-layer.ndim :]
    data = np.asarray(layer.world_to_data(point))
    shape = spatial_shape(layer)
    return tuple(int(np.clip(np.round(data[i]), 0, shape[i] - 1)) for i in range(n_lead))


def placement(layer: Layer) -> dict[str, Any]:
    """Keyword arguments that give a new layer the same data-to-world transform as ``layer``."""
    return {
        "scale": np.asarray(layer.scale),
        "translate": np.asarray(layer.translate),
        "rotate": np.asarray(layer.rotate),
        "shear": np.asarray(layer.shear),
        "affine": layer.affine.affine_matrix,
        "units": layer.units,
        "axis_labels": layer.axis_labels,
    }


def slice_placement(layer: Layer, index: tuple[int, ...]) -> dict[str, Any]:
    """:func:`placement` for a layer holding only the slice ``index`` of ``layer``'s stack.

    Its data is shaped ``(1, …, 1, H, W)``; the translation moves it to the
    slice's position, so napari shows it exactly on that slice.
    """
    from napari.utils.transforms import Affine

    kwargs = placement(layer)
    offset = np.zeros(layer.ndim)
    offset[: len(index)] = index
    linear = Affine(scale=layer.scale, rotate=layer.rotate, shear=layer.shear)
    kwargs["translate"] = np.asarray(layer.translate) + linear(offset)
    return kwargs


def find_layer(viewer, name: str, layer_type: type[Layer], shape: tuple[int, ...]) -> Layer | None:
    """The layer called ``name`` if it has the given type and shape (else None)."""
    if name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    if not isinstance(layer, layer_type) or getattr(layer, "multiscale", False):
        return None
    return layer if tuple(layer.data.shape) == tuple(shape) else None


def replace_labels(layer: Labels, new: np.ndarray, index: tuple[int, ...] = ()) -> None:
    """Write ``new`` into ``layer.data[index]`` as one undoable step (Ctrl+Z restores it).

    Only changed pixels are written, through ``Labels.data_setitem`` inside
    ``block_history``. When the values do not fit the layer's dtype, or the
    data is not a NumPy array, the data is replaced wholesale (not undoable).
    """
    data = layer.data
    new = np.asarray(new)
    fits = (
        isinstance(data, np.ndarray)
        and np.issubdtype(data.dtype, np.integer)
        and (new.size == 0 or int(new.max()) <= np.iinfo(data.dtype).max)
    )
    if not fits:
        replaced = np.array(data, dtype=np.promote_types(np.asarray(data).dtype, new.dtype))
        replaced[index] = new
        layer.data = replaced
        return
    changed = data[index] != new
    if not changed.any():
        return
    coords = np.nonzero(changed)
    count = coords[0].size
    full = tuple(np.full(count, i, dtype=np.intp) for i in index) + coords
    with layer.block_history():
        layer.data_setitem(full, new[changed].astype(data.dtype))


def output_name(image_name: str, model_name: str, suffix: str = "") -> str:
    """``"<image> [<model>]"`` (plus a suffix): output layers say what made them."""
    return f"{image_name} [{model_name}]{suffix}"
