"""The zoo's recipes, derived from one source: the data in ``recipes/tasks/``.

* ``recipes/tasks/<task>.json`` — a task: its data (channels, working scale, input
  size), its training defaults (patch, batch, epochs), the Unified Focal ``gamma`` of
  its dataset, the zoom range of its augmentation, its card (classes, licence,
  description, object rules), its data set, and whether it is scored inside a field of
  view (``fov``) or has its object size measured (``object_size``);
* ``recipes/tasks/architectures.json`` — each architecture's paper recipe
  (normalisation, optimiser, loss, schedule, augmentation, notes, test-time flips),
  adapted for CPU training; ``by_task`` changes it for one task (its ``notes`` are
  added to the architecture's), ``{"$task": KEY}`` stands for the task's ``KEY``,
  ``same_as`` borrows another architecture's recipe, and ``full`` holds the papers'
  epochs and patience (and, in ``paper_size``, the registered paper-size preset) for
  the full recipes;
* ``recipes/tasks/further.json`` — compact models trained further from an earlier
  shipped version of themselves (``init``: that file, pinned by SHA-256), with their
  changes.

:func:`recipe` combines them; ``recipes/<arch>.<task>.json`` and ``recipes/full/`` are
its output, committed so that ``attnseg train --config`` can read them, and
:func:`stale_recipes` (``zoo.py recipes --check``) says where they differ from it.
``why`` keys are comments. A committed recipe whose card says ``metadata.own_recipe``
is its own source (:func:`own_recipe`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from napari_attnseg._files import atomic_write
from napari_attnseg.models import compact_options, get_entry

from . import paths

TASK_DIR = paths.RECIPES / "tasks"
#: the files in ``recipes/tasks/`` that are not tasks
NOT_TASKS = ("architectures", "further")
TASK_KEYS = {"data", "train", "gamma", "card", "dataset", "zoom", "fov", "object_size", "why"}
ARCH_KEYS = {"paper", "same_as", "normalization", "scale", "train", "notes", "tta", "by_task",
             "full"}  # fmt: skip


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{paths.rel(path)}: {exc}") from exc


def _check_keys(where: str, data: dict, allowed: set[str], required: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - allowed)
    missing = [k for k in required if k not in data]
    if unknown or missing:
        raise SystemExit(f"{where}: unknown keys {unknown}, missing keys {missing}")


def load_tasks(folder: Path = TASK_DIR) -> dict[str, dict]:
    """``{task: its data}`` from ``folder/<task>.json``."""
    tasks = {}
    for path in sorted(folder.glob("*.json")):
        if path.stem not in NOT_TASKS:
            task = _load(path)
            _check_keys(paths.rel(path), task, TASK_KEYS, ("data", "train", "gamma", "card",
                                                          "dataset"))  # fmt: skip
            if task["data"].get("in_channels") not in (1, 3):
                raise SystemExit(f"{paths.rel(path)}: data.in_channels must be 1 or 3")
            tasks[path.stem] = task
    return tasks


def load_architectures(folder: Path = TASK_DIR) -> dict[str, dict]:
    """``{arch: its paper recipe}`` from ``folder/architectures.json`` (``same_as`` resolved)."""
    where = paths.rel(folder / "architectures.json")
    archs = _load(folder / "architectures.json")
    for arch, a in archs.items():
        _check_keys(f"{where}: {arch}", a, ARCH_KEYS, () if "same_as" in a else
                    ("normalization", "train", "notes", "full"))  # fmt: skip
        get_entry(arch)  # a registered architecture
    return {arch: archs[a["same_as"]] if "same_as" in a else a for arch, a in archs.items()}


TASKS = load_tasks()
ARCHITECTURES = load_architectures()
ARCHS = list(ARCHITECTURES)
#: the papers' epochs and patience for the full recipes (each architecture's ``full``: Yeung
#: et al. 2022 §II-D, Kaul et al. 2019 §3.2, Hou et al. 2021 §4.1; Zhang et al. 2022 publish
#: none); the compact recipes' optimiser, loss and augmentation are kept
FULL_TRAIN: dict[str, dict[str, Any]] = {a: r["full"]["train"] for a, r in ARCHITECTURES.items()}
#: architectures whose paper size is registered under another name
PAPER_SIZE = {a: r["full"]["paper_size"] for a, r in ARCHITECTURES.items()
              if "paper_size" in r["full"]}  # fmt: skip
#: compact models trained further from an earlier shipped version of themselves (recipe
#: ``init``: that file, pinned by SHA-256; ``git show`` restores it), with these changes
TRAIN_FURTHER: dict[str, dict[str, Any]] = _load(TASK_DIR / "further.json")


def _merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, dictionaries key by key (keys keep their place)."""
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _of_task(value: Any, task: dict) -> Any:
    """``value`` with every ``{"$task": KEY}`` in it replaced by the task's ``KEY``."""
    if isinstance(value, dict):
        if list(value) == ["$task"]:
            return task[value["$task"]]
        return {k: _of_task(v, task) for k, v in value.items()}
    if isinstance(value, list):
        return [_of_task(v, task) for v in value]
    return value


def arch_recipe(arch: str, task: str) -> dict:
    """Training settings of ``arch``'s paper, adapted to ``task``: normalisation, train,
    notes and, where the paper has them, ``scale`` and ``tta``."""
    if arch not in ARCHITECTURES:
        raise ValueError(arch)
    a = copy.deepcopy(ARCHITECTURES[arch])
    changes = a.pop("by_task", {}).get(task, {})
    notes = a["notes"] + changes.pop("notes", "")
    a = _of_task(_merge(a, changes), TASKS[task])
    augment = a["train"].get("augment")
    if augment and TASKS[task]["data"]["in_channels"] == 1:  # channel shifts need colours
        a["train"]["augment"] = {k: v for k, v in augment.items() if k != "channel_shift"}
    keep = ("normalization", "scale", "train", "notes", "tta")
    return {**{k: a[k] for k in keep if k in a}, "notes": notes}


def full_options(arch: str) -> dict[str, Any]:
    """The paper's size: the registered defaults of the options the compact size changes
    (U-Net family width 32, FocusNet ×1, AF-Net 64), or the registered paper-size preset."""
    if arch in PAPER_SIZE:
        small, big = get_entry(arch).options(), get_entry(PAPER_SIZE[arch]).options()
        return {k: v for k, v in big.items() if small.get(k) != v}
    registered = get_entry(arch).options()
    return {k: registered[k] for k in compact_options(arch)}


def own_recipe(name: str, variant: str = "compact") -> dict | None:
    """The committed recipe of ``name`` when it is its own source rather than generated from
    its task (its card's ``metadata.own_recipe`` says why), else None."""
    path = paths.recipes_dir(variant) / f"{name}.json"
    if variant != "compact" or not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("card", {}).get("metadata", {}).get("own_recipe") else None


def recipe(arch: str, task: str, variant: str = "compact", *, own: bool = True) -> dict:
    """The recipe of ``<arch>.<task>``: compact (CPU) or full (the papers' sizes and epochs).

    A model with a recipe of its own (:func:`own_recipe`; the native-resolution nuclei
    default) gets it, unless ``own=False`` asks for what its task alone gives (the paper
    tables train that)."""
    paths.check_variant(variant)
    mine = own_recipe(f"{arch}.{task}", variant) if own else None
    if mine is not None:
        return mine
    t = TASKS[task]
    a = arch_recipe(arch, task)
    name = f"{arch}.{task}"
    train = {**t["train"], **a["train"], "seed": 0}
    if t.get("zoom") and train.get("augment") is not None:
        train["augment"] = {**train["augment"], "zoom": list(t["zoom"])}
    data = {**t["data"], "normalization": a["normalization"]}
    if a.get("scale", 1.0) != 1.0 and data.get("scale", 1.0) == 1.0:
        data["scale"] = a["scale"]  # AF-Net's own enlargement, unless the task already has one
    options, notes = compact_options(arch), a["notes"]
    metadata = {"task": task, "recipe": f"recipes/{name}.json"}
    if variant == "full":
        options = full_options(arch)
        train.update(FULL_TRAIN[arch])
        notes += (
            f" Full recipe: the paper's size ({json.dumps(options)}) and "
            f"{FULL_TRAIN[arch]['epochs']} epochs, for a GPU."
        )
        metadata = {"task": task, "recipe": f"recipes/full/{name}.json", "variant": "full"}
    further = TRAIN_FURTHER.get(name, {}) if variant == "compact" else {}
    if further:
        train.update(further["train"])
        data.update(further.get("data", {}))
        notes += further["notes"]
        a = {**a, "tta": further.get("tta", a.get("tta"))}
    result = {
        "name": name,
        "task": task,
        "arch": arch,
        "options": options,
        "data": data,
        "train": train,
        "evaluate": {"tta": bool(a.get("tta")), "fov": bool(t.get("fov"))},
        "notes": notes,
        "card": {
            **t["card"],
            **further.get("card", {}),
            "name": name,
            "metadata": {**metadata, "notes": notes, "recommended_tta": bool(a.get("tta"))},
            "training": {"dataset": t["dataset"]},
        },
    }
    if further:
        result["init"] = further["init"]
    return copy.deepcopy(result)


def recipe_text(arch: str, task: str, variant: str = "compact") -> str:
    """A recipe file's text, as ``write_recipes`` writes it."""
    return json.dumps(recipe(arch, task, variant), indent=2) + "\n"


def write_recipes(variant: str = "compact") -> list[Path]:
    folder = paths.recipes_dir(variant)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task in TASKS:
        for arch in ARCHS:
            text = recipe_text(arch, task, variant)
            path = folder / f"{arch}.{task}.json"
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
            written.append(path)
    print(f"wrote {len(written)} {variant} recipes to {paths.rel(folder)}")
    return written


def stale_recipes(variant: str = "compact") -> list[str]:
    """The recipe files of ``variant`` that are not, to the byte, what :func:`recipe`
    derives from ``recipes/tasks/`` (missing ones, and ones no task and architecture give)."""
    folder = paths.recipes_dir(variant)
    derived = {f"{arch}.{task}": (arch, task) for task in TASKS for arch in ARCHS}
    stale = sorted(set(recipe_names(variant)) - set(derived))
    for name, (arch, task) in derived.items():
        path = folder / f"{name}.json"
        if not path.is_file() or path.read_text() != recipe_text(arch, task, variant):
            stale.append(name)
    return sorted(stale)


def recipe_names(variant: str = "compact") -> list[str]:
    return [p.stem for p in sorted(paths.recipes_dir(variant).glob("*.*.json"))]
