"""The zoo's folders, and the JSON helpers every step uses.

Read them as ``paths.RECIPES`` when used (never ``from .paths import RECIPES``): the
tests move them by patching this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from napari_attnseg._files import atomic_write
from napari_attnseg.zoo import WEIGHTS_DIR

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
RUNS = ROOT / "runs" / "zoo"
DATA = ROOT / "runs" / "data"
DOC = ROOT / "docs" / "zoo.md"
GPU_OUT = ROOT / "runs" / "gpu"
WEIGHTS = WEIGHTS_DIR
VARIANTS = ("compact", "full")
#: the names above that ``scripts/zoo.py`` hands on as its own (read when asked for)
FOLDERS = ("ROOT", "RECIPES", "RUNS", "DATA", "DOC", "GPU_OUT", "WEIGHTS")


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown recipe variant {variant!r}; choose {' or '.join(VARIANTS)}")


def recipes_dir(variant: str = "compact") -> Path:
    check_variant(variant)
    return RECIPES if variant == "compact" else RECIPES / "full"


def runs_dir(variant: str = "compact") -> Path:
    check_variant(variant)
    return RUNS if variant == "compact" else RUNS.parent / "zoo_full"


def split(task: str) -> Path:
    """A task's data split folder (``train/`` and ``val/``; scripts/make_splits.py)."""
    return DATA / task


def rel(path: Path | str) -> str:
    """``path`` relative to the repository root where it is inside it."""
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def read_json(path: Path) -> dict:
    """A JSON file's content, or ``{}`` where there is none or it does not parse."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def size_mb(files: Iterable[Path]) -> float:
    """The files' total size in MiB (missing ones count 0)."""
    return sum(p.stat().st_size for p in files if p.exists()) / 2**20
