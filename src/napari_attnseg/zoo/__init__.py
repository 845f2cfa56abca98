"""The model zoo: shipped pretrained models, the user's own models, and name resolution.

Everywhere a MODEL is accepted (command line, widgets, Python) it may be

* a path to a saved model (``.safetensors``, or its ``.json`` card), or the
  path ``save_model`` was given without the ``.safetensors`` suffix;
* a zoo name ``<arch>.<task>``, e.g. ``focal_use_net.nuclei``;
* a bare task name, e.g. ``nuclei``, meaning that task's default model
  (chosen by validation Dice; see ``weights/index.json``);
* the name of a model in the user model folder (saved by the Fine-tune
  widget or ``attnseg finetune``);
* ``https://…/name.safetensors#sha256=<hex>``: fetched once into the user
  cache and verified against the pinned hash (``remote.py``);
* a bioimage.io package (``.zip`` or unpacked folder) exported by
  ``attnseg export --format bioimageio``: its attached napari-attnseg model
  is extracted into the user cache (``zoo/bioimageio.py``).

Shipped weights live in this package (``weights/``) and load with no
network. The user model folder is the platform's user-data directory
(``platformdirs``) unless ``NAPARI_ATTNSEG_MODEL_DIR`` points elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from platformdirs import user_data_dir

from ..models.base import SegmentationModel
from ..models.persistence import load_model, read_card, weights_path
from .bioimageio import extract_model, is_package
from .remote import fetch, is_url, split_pinned_url

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODEL_DIR_ENV = "NAPARI_ATTNSEG_MODEL_DIR"


@dataclass(frozen=True)
class ModelInfo:
    """One model a picker can offer."""

    name: str
    path: Path
    source: str  # "zoo" or "user"
    task: str = ""
    arch: str = ""
    description: str = ""
    is_default: bool = False


def user_model_dir(create: bool = False) -> Path:
    """Where the user's own models are saved (``$NAPARI_ATTNSEG_MODEL_DIR`` overrides)."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        path = Path(user_data_dir("napari-attnseg", appauthor=False)) / "models"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _index() -> dict:
    """``weights/index.json``, read on each call (tiny; tests swap the weights folder)."""
    path = WEIGHTS_DIR / "index.json"
    if not path.exists():
        return {"defaults": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def task_defaults() -> dict[str, str]:
    """``{task: default zoo model name}``."""
    return dict(_index().get("defaults", {}))


def _describe(path: Path, source: str, defaults: dict[str, str]) -> ModelInfo | None:
    try:
        card = read_card(path)
    except ValueError:
        return None
    name = path.stem
    task = card.get("metadata", {}).get("task", name.partition(".")[2] if source == "zoo" else "")
    return ModelInfo(
        name=name,
        path=path,
        source=source,
        task=task,
        arch=card.get("config", {}).get("name", ""),
        description=card.get("description", ""),
        is_default=source == "zoo" and defaults.get(task) == name,
    )


def zoo_models() -> list[ModelInfo]:
    """Shipped pretrained models."""
    defaults = task_defaults()
    infos = (_describe(p, "zoo", defaults) for p in sorted(WEIGHTS_DIR.glob("*.safetensors")))
    return [i for i in infos if i is not None]


def user_models() -> list[ModelInfo]:
    """Models in the user model folder (unreadable files are skipped)."""
    folder = user_model_dir()
    if not folder.is_dir():
        return []
    infos = (_describe(p, "user", {}) for p in sorted(folder.glob("*.safetensors")))
    return [i for i in infos if i is not None]


def available_models() -> list[ModelInfo]:
    return zoo_models() + user_models()


def resolve(spec: str | os.PathLike) -> Path:
    """The weights file a MODEL argument names (see the module docstring)."""
    text = str(spec).strip()
    if not text:
        raise ValueError("no model given")
    if is_url(text):
        return fetch(*split_pinned_url(text))
    path = Path(text).expanduser()
    if is_package(path):
        return extract_model(path)
    if path.is_dir():
        found = ", ".join(p.name for p in sorted(path.glob("*.safetensors"))[:5])
        raise ValueError(
            f"{path} is a folder, not a model file; give a .safetensors file"
            + (f" (this folder holds {found})" if found else "")
        )
    weights = weights_path(path)  # also the name save_model gave a suffix-less path
    if weights.is_file():
        return weights
    if path.is_file():
        raise ValueError(f"{path} is not a napari-attnseg model: expected a .safetensors file")
    if path.suffix in (".safetensors", ".json"):
        raise FileNotFoundError(f"model file not found: {weights}")
    name = task_defaults().get(text, text)
    for folder in (WEIGHTS_DIR, user_model_dir()):
        candidate = folder / f"{name}.safetensors"
        if candidate.exists():
            return candidate
    known = sorted({m.name for m in available_models()} | set(task_defaults()))
    raise ValueError(
        f"unknown model {text!r}: not a file, zoo model, task or user model; "
        f"available: {', '.join(known) or '(none)'}"
    )


def load(spec: str | os.PathLike, device: str | torch.device = "cpu") -> SegmentationModel:
    """Load the model a MODEL argument names (float32, eval mode, ``model.card`` set)."""
    return load_model(resolve(spec), device=device)


def unique_user_path(name: str) -> Path:
    """A path in the user model folder for ``name`` that does not overwrite anything."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._") or "model"
    folder = user_model_dir(create=True)
    path = folder / f"{safe}.safetensors"
    n = 2
    while path.exists():
        path = folder / f"{safe}-{n}.safetensors"
        n += 1
    return path
