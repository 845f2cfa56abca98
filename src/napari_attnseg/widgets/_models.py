"""The models this napari session knows, shared by every dock widget.

One in-process :class:`ModelSession` lists zoo models, the user's saved
models, files loaded this session and fine-tuned models not saved yet. Its
``changed`` signal makes every model picker refresh, so a model fine-tuned in
one widget can be picked in all of them.

Handles that cannot race: the session keeps one *template* per model (loaded
once, cached by path and modification time, or an unsaved model as handed
over) and never lets a job use it. :meth:`ModelSession.load` gives every job
its own deep copy. A Segment, an Attention and a Fine-tune job on the same
model can run at once, each moving, casting or hooking its copy as it likes,
and none waits for another; whatever a job does to its handle (an
out-of-memory fallback, a forgotten hook) dies with the job. Copies were
chosen over a per-model lock because our models are small (about 2–40 MB of
weights, copied in milliseconds) while a lock would make an Attention job wait
for a long Segment job on the same model. Templates are only read (copied or
saved) once made.

Model files are checked when they are chosen: :meth:`ModelSession.add_file`
fully loads the model (card and weights against the card's architecture),
so a broken file never enters a picker; :meth:`ModelSession.remove_file`
takes a file off the list again.

The model manager's operations live here too, so every picker follows them:
:meth:`ModelSession.details` (the card, read without loading weights),
:meth:`~ModelSession.install` (import or save into the user model folder),
:meth:`~ModelSession.rename` and :meth:`~ModelSession.delete` (user models
only: zoo models are read-only, files elsewhere are only taken off the list).
"""

from __future__ import annotations

import copy
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..models.card import ModelCard
from ..models.persistence import (
    ModelFileError,
    card_of,
    card_path,
    load_model,
    read_card,
    save_model,
    weights_path,
)
from ..zoo import resolve, user_model_dir, user_models, zoo_models
from ..zoo.bioimageio import is_package

_FINETUNED = re.compile(r"^(?P<base>.+?)(-ft\d+)+$")


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


@dataclass(frozen=True)
class ModelDetails:
    """What the model manager shows about a model: its card and its network's shape."""

    card: ModelCard
    config: dict
    in_channels: int
    n_classes: int

    @property
    def arch(self) -> str:
        return str(self.config.get("name", ""))

    @property
    def binary(self) -> bool:
        """One foreground class: instance labels can be made from it."""
        return self.card.predicted_classes(self.n_classes) == 2


def safe_name(name: str) -> str:
    """``name`` as a file name stem (the rule ``zoo.unique_user_path`` applies)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._") or "model"


def user_model_path(name: str) -> Path:
    """Where the user model ``name`` is saved: ``<user model folder>/<safe name>.safetensors``.

    Unlike ``zoo.unique_user_path`` no ``-2`` is appended: a widget that finds
    the file there asks before replacing it.
    """
    return user_model_dir() / f"{safe_name(name)}.safetensors"


class ModelSession(QObject):
    """The models this napari session knows, shared by every widget (see the module doc)."""

    #: emitted (on the GUI thread) when the list of models changed
    changed = Signal()
    CACHE_SIZE = 4

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._unsaved: dict[str, Any] = {}
        self._files: list[Path] = []
        self._cache: OrderedDict[tuple[str, float], Any] = OrderedDict()
        #: every name :meth:`unsaved_name` handed out: never handed out again
        self._issued: set[str] = set()

    # -- listing ---------------------------------------------------------------
    def choices(self) -> list[ModelChoice]:
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

    def refresh(self) -> None:
        self.changed.emit()

    # -- files -------------------------------------------------------------------
    def add_file(self, path: str | Path) -> ModelChoice:
        """Load a model file fully and list it; ``ModelFileError`` if it is not a usable model.

        The card is read and the weights are checked against the card's
        architecture (every tensor present, of the right shape) before the
        file enters any picker.
        """
        path = Path(path).expanduser()
        path = resolve(path) if is_package(path) else weights_path(path)  # bioimage.io .zip
        model = load_model(path)  # raises ModelFileError naming what is wrong
        path = path.resolve()
        with self._lock:
            self._remember(path, model)
            if path not in self._files:
                self._files.append(path)
        self.changed.emit()
        return next(c for c in self.choices() if c.kind != "session" and Path(c.key) == path)

    def remove_file(self, choice: ModelChoice) -> bool:
        """Take a file loaded this session off the lists (the file itself is not touched)."""
        path = Path(choice.key)
        with self._lock:
            if choice.kind != "file" or path not in self._files:
                return False
            self._files.remove(path)
            for key in [k for k in self._cache if k[0] == str(path)]:
                del self._cache[key]
        self.changed.emit()
        return True

    # -- unsaved models ------------------------------------------------------------
    def add_unsaved(self, model: Any, name: str) -> ModelChoice:
        """List ``model`` as the unsaved model ``name``; it becomes a template (never run)."""
        with self._lock:
            self._unsaved[name] = model
            self._issued.add(name)
        self.changed.emit()
        return ModelChoice("session", name, name)

    def remove_unsaved(self, name: str) -> bool:
        with self._lock:
            removed = self._unsaved.pop(name, None)
        if removed is not None:
            self.changed.emit()
        return removed is not None

    def is_unsaved(self, name: str) -> bool:
        with self._lock:
            return name in self._unsaved

    def unsaved_name(self, base: str, taken: Callable[[str], bool] | None = None) -> str:
        """A new name ``<root>-ftN`` for a model fine-tuned from ``base``.

        ``root`` is ``base`` without its own ``-ftN`` suffixes (rounds on
        ``nuclei-ft1`` give ``nuclei-ft2``, not ``nuclei-ft1-ft1``). The name is
        not used by any listed model, was never handed out before in this
        session (a reverted round's name is not reused), and ``taken(name)`` is
        false (e.g. no layer is named after it yet).
        """
        match = _FINETUNED.match(base)
        root = match.group("base") if match else base
        with self._lock:
            used = {c.name for c in self.choices()} | self._issued
            n = 1
            while f"{root}-ft{n}" in used or (taken is not None and taken(f"{root}-ft{n}")):
                n += 1
            name = f"{root}-ft{n}"
            self._issued.add(name)
        return name

    def saved(self, name: str, path: Path, model: Any) -> ModelChoice:
        """An unsaved model was written to ``path``: list it from there from now on."""
        path = Path(path).resolve()
        with self._lock:
            self._unsaved.pop(name, None)
            self._remember(path, model)
        self.changed.emit()
        return next(c for c in self.choices() if c.kind != "session" and Path(c.key) == path)

    # -- the model manager ------------------------------------------------------------
    def details(self, choice: ModelChoice) -> ModelDetails:
        """The card and network shape of ``choice`` (files: read from the card, no weights)."""
        if choice.kind == "session":
            model = self.template(choice)
            return ModelDetails(card_of(model), dict(model.config or {}), model.in_channels,
                                model.n_classes)
        document = read_card(choice.key)
        config = dict(document.get("config") or {})
        return ModelDetails(
            ModelCard.from_dict(document), config,
            int(document.get("in_channels", config.get("in_channels", 1))),
            int(document.get("n_classes", config.get("n_classes", 1))),
        )

    def install(self, model: Any, path: Path, name: str | None = None) -> ModelChoice:
        """Save ``model`` (its card named after ``path``) to ``path``; list it from there.

        ``name``: the unsaved model this was (it leaves the unsaved list).
        The caller has asked before replacing an existing file.
        """
        path = Path(path)
        card = copy.deepcopy(card_of(model))
        card.name = path.stem
        model = copy.deepcopy(model)  # save_model sets model.card; templates stay as they are
        save_model(model, path, card=card)
        path = path.resolve()
        with self._lock:
            if name is not None:
                self._unsaved.pop(name, None)
            self._forget(path)
            self._remember(path, model)
        self.changed.emit()
        return next(c for c in self.choices() if c.kind != "session" and Path(c.key) == path)

    def rename(self, choice: ModelChoice, name: str) -> ModelChoice:
        """Rename a user model (its files and the name in its card); ``ValueError`` if not."""
        if choice.kind != "user":
            raise ValueError(f"{choice.name} is not one of your saved models: only those can be "
                             "renamed (zoo models are read-only)")
        target = user_model_path(name)
        old = Path(choice.key)
        if target.exists():
            raise ValueError(f"a model called {target.stem!r} already exists in {target.parent}")
        renamed = self.install(self.template(choice), target)
        self._delete_files(old)
        return renamed

    def delete(self, choice: ModelChoice) -> None:
        """Delete a user model's files, or drop an unsaved model; ``ValueError`` otherwise."""
        if choice.kind == "session":
            self.remove_unsaved(choice.key)
            return
        if choice.kind != "user":
            raise ValueError(
                f"{choice.name} is a zoo model (read-only)" if choice.kind == "zoo" else
                f"{choice.name} is a file outside your model folder: take it off the list "
                "with ✕ beside a model picker (the file is kept)"
            )
        self._delete_files(Path(choice.key))

    def _delete_files(self, path: Path) -> None:
        for file in (path, card_path(path)):
            file.unlink(missing_ok=True)
        with self._lock:
            self._forget(path.resolve())
        self.changed.emit()

    def _forget(self, path: Path) -> None:
        for key in [k for k in self._cache if k[0] == str(path)]:
            del self._cache[key]

    # -- handles -------------------------------------------------------------------
    def load(self, choice: ModelChoice) -> Any:
        """A private copy of the model behind ``choice`` for one job (thread-safe).

        The job may move, cast, train or hook it: the session's template and
        every other job's copy are unaffected.
        """
        return copy.deepcopy(self.template(choice))

    def template(self, choice: ModelChoice) -> Any:
        """The session's own instance of a model: read it (copy, save), never run it."""
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
            self._trim()
        return model

    def _remember(self, path: Path, model: Any) -> None:
        self._cache[(str(path), path.stat().st_mtime)] = model
        self._trim()

    def _trim(self) -> None:
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)


_SESSION: ModelSession | None = None


def session() -> ModelSession:
    """The one :class:`ModelSession` of this process."""
    global _SESSION
    if _SESSION is None:
        _SESSION = ModelSession()
    return _SESSION
