"""The models this napari session knows, shared by every dock widget.

One in-process :class:`ModelSession` lists zoo models, the user's saved
models, files loaded this session and fine-tuned models not saved yet. Its
``changed`` signal makes every model picker refresh, so a model fine-tuned in
one widget can be picked in all of them, and its cache means switching
widgets does not reload weights.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal


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
