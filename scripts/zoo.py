#!/usr/bin/env python
"""Train, evaluate and package the model zoo — one command per step, all reproducible.

    python scripts/make_splits.py                  # split folders under runs/data (once)
    python scripts/zoo.py recipes [--full]         # recipes/<arch>.<task>.json (--full: in full/)
    python scripts/zoo.py train NAME... [--jobs 2] [--time-budget S] [--epochs E] [--package]
    python scripts/zoo.py status [NAME...]         # where every run is
    python scripts/zoo.py package [NAME...]        # fp16 weights + complete cards into the package
    python scripts/zoo.py docs                     # docs/zoo.md from the shipped cards
    python scripts/zoo.py check                    # every shipped card complete? (reads JSON only)
    python scripts/zoo.py complete NAME...|--all   # fill derivable card fields (weights unchanged)
    python scripts/zoo.py annotate NAME...         # the tasks' object rules into shipped cards
    python scripts/gpu_campaign.py [--budget 600] [--jobs 12] [--dry-run]   # the GPU campaign

**Runs.** Every model is trained by ``attnseg train --config recipes/<name>.json``
in its own run folder ``runs/zoo/<name>/`` (``runs/zoo_full/<name>/`` for the
full-width recipes): ``run.json`` (the run), ``last.ckpt`` (written after every
epoch), ``<name>.safetensors`` (the model), ``evaluation.json`` (``attnseg
evaluate`` on the validation split), ``commands.json`` (every command line, its
threads and wall time, one entry per sitting) and ``log.txt``. ``train`` looks
at each folder first: a finished and evaluated run is skipped, an interrupted
one or one stopped by its ``--time-budget`` is continued with ``attnseg train
--resume RUN``, a finished one is trained further when ``--epochs`` asks for
more, and a new one is started. So a model can be trained in as many sittings
as it takes; ``--package`` ships each model as soon as its run is finished, so
its weights can be committed at once.

**Packaging** adds or replaces only the named models in
``src/napari_attnseg/zoo/weights/`` — never deletes a shipped model, whether
its run is on this machine or not — and rebuilds ``index.json`` (each task's
default: the best validation Dice among the *shipped* models, as measured on
the shipped fp16 files) and ``docs/zoo.md`` from the committed cards alone.
Each shipped file is scored again, as fp16, by the code of ``attnseg
evaluate`` (``metrics.validation``, ``measured_by``), and its card is
completed from the run (:data:`CARD_REQUIRED`); a card that stays incomplete
is not shipped.

The recipes follow each architecture's paper (architectures.md), adapted
for CPU training of compact models where noted in ``notes``:

* U-Net / Focal USE-Net / Focal Attention U-Net — Yeung et al.: Adam 1e-3,
  asymmetric Unified Focal loss (δ 0.6, λ 0.5, γ per dataset) + FDPT ε 0.1,
  plateau ×0.1 and early stopping (patience scaled down from 25/50 to the
  shorter budget), per-image z-score, flips/rotation/zoom/intensity augmentation;
* FocusNet — Kaul et al.: 1 − Dice, Adam 1e-3, plateau ×0.5 patience 5,
  dataset z-score, zoom + flips (+ channel shifts for RGB), best-validation model;
* AF-Net — Hou et al.: BCE, weight decay 1e-4, poly decay, CLAHE, flips, flip
  TTA at test time; Adam 1e-3 instead of their SGD 4e-3 (see its ``notes``);
* DenseUNet-JA — Zhang et al. give normalisation + CLAHE; the optimiser and
  loss are not published: Adam 1e-3 with Dice + CE (our choice).

The **full** recipes (``recipes/full/``, ``recipes --full``) are the same
recipes at the papers' widths and epochs (:data:`FULL_TRAIN`,
:func:`full_options`): the registered default sizes (U-Net family width 32,
FocusNet width ×1, AF-Net width 64) and DenseUNet at the H-DenseUNet size
(``denseunet161``), for GPUs.

**The GPU campaign** (``gpu``) trains the whole zoo and every table row of
``scripts/paper_tables.py`` on one NVIDIA GPU within ``--budget`` seconds by
running ``--jobs`` runs at once, each with a ``--time-budget`` computed from
the budget, the number of runs and the jobs (:func:`gpu_plan`), then packages
the zoo models that beat what is shipped and fit the size budget, and rewrites
``docs/zoo.md`` and ``docs/results.md``. It writes ``runs/gpu/campaign.json``
(the plan and what every run achieved) and ``runs/gpu/campaign.log``. It has
only been tried on a CPU with ``--dry-run`` (no GPU was available to this
work); ``--device`` lets it run on whatever there is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_attnseg._files import atomic_write
from napari_attnseg.models import (
    compact_options,
    get_entry,
    load_model,
    model_cost,
    read_card,
    save_model,
)
from napari_attnseg.models.persistence import file_sha256
from napari_attnseg.training import trained_before
from napari_attnseg.zoo import WEIGHTS_DIR as WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
RUNS = ROOT / "runs" / "zoo"
DATA = ROOT / "runs" / "data"
DOC = ROOT / "docs" / "zoo.md"
GPU_OUT = ROOT / "runs" / "gpu"
VARIANTS = ("compact", "full")

ARCHS = ["unet", "focal_use_net", "focal_attention_unet", "focusnet", "afnet", "denseunet"]

AUGMENT = {
    "flips": True,
    "rot90": True,
    "rotation_deg": 15.0,
    "zoom": [0.9, 1.1],
    "brightness": 0.1,
    "contrast": 0.1,
}

TASKS = {
    "nuclei": {
        # 2× working scale: nuclei ~11 px instead of ~6 px across, so that native-size images
        # are shrunk less (auto diameter) and neighbours keep a gap between them; wide zoom
        # augmentation so that sizes off the training scale hurt less even without it
        "data": {"in_channels": 3, "scale": 2.0},
        "zoom": [0.5, 2.0],
        "train": {"patch_size": 128, "batch_size": 8, "epochs": 40},
        "gamma": 0.2,
        "card": {
            "class_names": ["background", "nucleus"],
            "license": "Weights: BSD-3-Clause. Training data: 2018 Data Science Bowl "
            "(stage1_train, resized to 96×96), CC0.",
            "description": "Nuclei in fluorescence and brightfield microscopy (2018 DSB).",
            "instances": {"method": "watershed"},
        },
        "object_size": True,
        "dataset": "DSB2018_96 (Caicedo et al., Nature Methods 2019), CC0; 415 train / 104 val",
    },
    "vessels": {
        "data": {"in_channels": 3},
        "train": {
            "patch_size": 128,
            "batch_size": 8,
            "epochs": 50,
            "samples_per_epoch": 256,
            "fg_fraction": 0.5,
        },
        "gamma": 0.1,
        "fov": True,
        "card": {
            "class_names": ["background", "vessel"],
            "license": "RESEARCH AND EDUCATION USE ONLY: trained on DRIVE, whose terms allow "
            "research use and forbid redistribution of the data.",
            "description": "Retinal vessels in colour fundus photographs (DRIVE), "
            "scored inside the field of view.",
            "roi": {"method": "fundus"},
        },
        "dataset": "DRIVE training half (Staal et al., IEEE TMI 2004), research use only; "
        "16 train / 4 val",
    },
    "polyp": {
        "data": {"in_channels": 3, "input_size": [160, 208]},
        "train": {"patch_size": None, "batch_size": 8, "epochs": 24, "samples_per_epoch": 480},
        "gamma": 0.3,
        "card": {
            "class_names": ["background", "polyp"],
            "license": "RESEARCH AND EDUCATION USE ONLY, NO COMMERCIAL USE: trained on "
            "Kvasir-SEG and CVC-ClinicDB, whose terms restrict use to research "
            "and education.",
            "description": "Colonoscopy polyps (Kvasir-SEG + CVC-ClinicDB); frames are "
            "resized to 160×208 for the network.",
        },
        "dataset": "Kvasir-SEG (Jha et al., MMM 2020) split lists 880/120 + CVC-ClinicDB "
        "(Bernal et al., CMIG 2015) frames 1-383 train / 384-478 val (whole videos); "
        "research and education only",
    },
    "membranes": {
        "data": {"in_channels": 1},
        "train": {"patch_size": 128, "batch_size": 8, "epochs": 40, "samples_per_epoch": 256},
        "gamma": 0.2,
        "card": {
            "class_names": ["membrane", "cell interior"],
            "license": "Weights: BSD-3-Clause. Training data: ISBI 2012 EM segmentation "
            "challenge (Cardona et al. 2010), research use; cite the challenge.",
            "description": "Neuronal membranes in serial-section EM (ISBI 2012). Label 1 is "
            "cell interior, label 0 membrane, as in the challenge masks.",
            "instances": {"source": "cells", "foreground": "interior", "method": "components"},
        },
        "dataset": "ISBI 2012 EM training stack (Arganda-Carreras et al. 2015), slices 0-23 "
        "train / 24-29 val; research use",
    },
}


def arch_recipe(arch: str, task: str) -> dict:
    """Training settings of ``arch``'s paper, adapted to ``task``."""
    t = TASKS[task]
    rgb = t["data"]["in_channels"] == 3
    if arch in ("unet", "focal_use_net", "focal_attention_unet"):
        return {
            "normalization": {"mode": "zscore"},
            "train": {
                "optimizer": "adam",
                "lr": 1e-3,
                "loss": "unified_focal",
                "loss_params": {"delta": 0.6, "gamma": t["gamma"], "lam": 0.5, "epsilon": 0.1},
                "schedule": "plateau",
                "plateau_factor": 0.1,
                "plateau_patience": 10,
                "early_stopping": 20,
                "augment": AUGMENT,
            },
            "notes": "Yeung et al. 2022 recipe; batch 8 instead of 1 and plateau/early-stopping "
            "patience 10/20 instead of 25/50 epochs for the CPU budget.",
        }
    if arch == "focusnet":
        aug = {
            "flips": True,
            "rot90": False,
            "rotation_deg": 0.0,
            "zoom": [0.9, 1.1],
            "brightness": 0.0,
            "contrast": 0.0,
        }
        if rgb:
            aug["channel_shift"] = 0.05
        # soft Dice alone collapsed on the thin vessels: all foreground from the first epoch
        # (validation Dice 0.2108, the all-foreground score inside the FOV, for 7 epochs)
        thin = task == "vessels"
        return {
            "normalization": {"mode": "dataset"},
            "train": {
                "optimizer": "adam",
                "lr": 1e-3,
                "loss": "dice_ce" if thin else "dice",
                "loss_params": {},
                "schedule": "plateau",
                "plateau_factor": 0.5,
                "plateau_patience": 5,
                "early_stopping": None,
                "augment": aug,
            },
            "notes": "Kaul et al. 2019 recipe (1 - Dice, Adam 1e-3, plateau x0.5/5, dataset "
            "z-score, zoom and flips); width multiplier 0.25 for the CPU budget."
            + (
                " Dice + cross-entropy instead of Dice: with Dice alone the network predicted "
                "every pixel as vessel from the first epoch on (validation Dice 0.2108, "
                "unchanged for 7 epochs)."
                if thin
                else ""
            ),
        }
    if arch == "afnet":
        return {
            "normalization": {"mode": "zscore", "clahe": True},
            # AF-Net's stem downsamples 4× before the first block: small structures (nuclei
            # ~5 px at 96², 1–3 px vessels and membranes) need the image enlarged first
            "scale": 1.0 if "input_size" in t["data"] else 2.0,
            "train": {
                "optimizer": "adam",
                "lr": 1e-3,
                "weight_decay": 1e-4,
                "loss": "ce",
                "loss_params": {},
                "schedule": "poly",
                "poly_power": 0.9,
                "early_stopping": None,
                "augment": {
                    "flips": True,
                    "rot90": True,
                    "rotation_deg": 0.0,
                    "zoom": None,
                    "brightness": 0.0,
                    "contrast": 0.0,
                },
            },
            "notes": "Hou et al. 2021 recipe (BCE, poly 0.9, weight decay 1e-4, CLAHE for their "
            "adaptive thresholding, flips, flip TTA at test), adapted: Adam 1e-3 instead of "
            "SGD 4e-3, which assumes an ImageNet-initialised encoder (none offline) and "
            "converged too slowly from scratch (nuclei val Dice 0.68 after 40 epochs); images "
            "enlarged 2x (except polyps, already large) because the stride-4 stem loses "
            "structures a few pixels wide; width 16.",
            "tta": True,
        }
    if arch == "denseunet":
        return {
            "normalization": {"mode": "zscore", "clahe": True},
            "train": {
                "optimizer": "adam",
                "lr": 1e-3,
                "loss": "dice_ce",
                "loss_params": {},
                "schedule": "plateau",
                "plateau_factor": 0.1,
                "plateau_patience": 10,
                "early_stopping": 20,
                "augment": AUGMENT,
            },
            "notes": "Zhang et al. 2022 give normalisation + CLAHE; their optimiser and loss are "
            "unpublished (supplement unavailable): Adam 1e-3 with Dice + CE is our choice.",
        }
    raise ValueError(arch)


#: the papers' epochs and patience for the full recipes (architectures.md); the compact
#: recipes' optimiser, loss and augmentation are kept
FULL_TRAIN: dict[str, dict[str, Any]] = {
    # Yeung et al. give no epoch limit: plateau ×0.1 after 25 and early stopping after 50
    # epochs without improvement end their runs; 300 is a ceiling those rarely reach
    "unet": {"epochs": 300, "plateau_patience": 25, "early_stopping": 50},
    "focal_use_net": {"epochs": 300, "plateau_patience": 25, "early_stopping": 50},
    "focal_attention_unet": {"epochs": 300, "plateau_patience": 25, "early_stopping": 50},
    "focusnet": {"epochs": 80},  # Kaul et al.: at most 80 epochs, best validation kept
    "afnet": {"epochs": 300},  # Hou et al.: "300 iterations", almost certainly epochs
    "denseunet": {"epochs": 100, "plateau_patience": 25, "early_stopping": 50},  # unpublished
}
#: architectures whose paper size is registered under another name
PAPER_SIZE = {"denseunet": "denseunet161"}


def full_options(arch: str) -> dict[str, Any]:
    """The paper's size: the registered defaults of the options the compact size changes
    (U-Net family width 32, FocusNet ×1, AF-Net 64), or the registered paper-size preset."""
    if arch in PAPER_SIZE:
        small, big = get_entry(arch).options(), get_entry(PAPER_SIZE[arch]).options()
        return {k: v for k, v in big.items() if small.get(k) != v}
    registered = get_entry(arch).options()
    return {k: registered[k] for k in compact_options(arch)}


def recipes_dir(variant: str = "compact") -> Path:
    _check_variant(variant)
    return RECIPES if variant == "compact" else RECIPES / "full"


def runs_dir(variant: str = "compact") -> Path:
    _check_variant(variant)
    return RUNS if variant == "compact" else RUNS.parent / "zoo_full"


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown recipe variant {variant!r}; choose {' or '.join(VARIANTS)}")


#: compact models trained further from an earlier shipped version of themselves (recipe
#: ``init``: that file, pinned by SHA-256; ``git show`` restores it), with these changes
TRAIN_FURTHER: dict[str, dict[str, Any]] = {
    "unet.polyp": {
        "init": {
            "model": "runs/init/unet.polyp.48ep.safetensors",
            "sha256": "cceb34d5d17e7f0102f39ad8820e98c8f4ef49b9eaa7bbcc1340e36052086c89",
            "source": "git show 99af89b:src/napari_attnseg/zoo/weights/unet.polyp.safetensors "
            "(and .json beside it): the second unet.polyp, 24 epochs at 160×208 (lr 5e-4, poly) "
            "after the first's 24 (git show 92cc0de:…, lr 1e-3)",
        },
        "data": {"input_size": [224, 288]},
        "card": {
            "description": "Colonoscopy polyps (Kvasir-SEG + CVC-ClinicDB); frames are "
            "resized to 224×288 for the network.",
        },
        "train": {
            "epochs": 30,
            "lr": 3e-4,
            "schedule": "poly",
            "poly_power": 0.9,
            "early_stopping": None,
            "augment": {
                "flips": True,
                "rot90": True,
                "rotation_deg": 20.0,
                "zoom": [0.75, 1.33],
                "brightness": 0.2,
                "contrast": 0.2,
                "channel_shift": 0.05,
            },
        },
        "tta": True,
        "notes": " Trained in three sittings, each from the last one's weights: 24 epochs at "
        "160×208 and a constant lr 1e-3; 24 at lr 5e-4 with poly decay and stronger colour and "
        "geometry augmentation; 30 at a larger input (224×288, CVC-ClinicDB frames are "
        "288×384), lr 3e-4 poly. Flip TTA recommended (polyp literature without ImageNet "
        "weights: larger input, longer schedule, strong augmentation, TTA).",
    },
}


def own_recipe(name: str, variant: str = "compact") -> dict | None:
    """The committed recipe of ``name`` when it is its own source rather than generated from
    its task (its card's ``metadata.own_recipe`` says why), else None."""
    path = recipes_dir(variant) / f"{name}.json"
    if variant != "compact" or not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("card", {}).get("metadata", {}).get("own_recipe") else None


def recipe(arch: str, task: str, variant: str = "compact", *, own: bool = True) -> dict:
    """The recipe of ``<arch>.<task>``: compact (CPU) or full (the papers' sizes and epochs).

    A model with a recipe of its own (:func:`own_recipe`; the native-resolution nuclei
    default) gets it, unless ``own=False`` asks for what its task alone gives (the paper
    tables train that)."""
    _check_variant(variant)
    mine = own_recipe(f"{arch}.{task}", variant) if own else None
    if mine is not None:
        return mine
    t = TASKS[task]
    a = arch_recipe(arch, task)
    name = f"{arch}.{task}"
    train = {**t["train"], **a["train"], "seed": 0}
    if train.get("augment") and t["data"]["in_channels"] == 1:
        train["augment"] = {k: v for k, v in train["augment"].items() if k != "channel_shift"}
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
    return result


def write_recipes(variant: str = "compact") -> list[Path]:
    folder = recipes_dir(variant)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in TASKS:
        for arch in ARCHS:
            r = recipe(arch, task, variant)
            text = json.dumps(r, indent=2) + "\n"
            path = folder / f"{r['name']}.json"
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
            paths.append(path)
    print(f"wrote {len(paths)} {variant} recipes to {_rel(folder)}")
    return paths


def recipe_names(variant: str = "compact") -> list[str]:
    return [p.stem for p in sorted(recipes_dir(variant).glob("*.*.json"))]


def _rel(path: Path | str) -> str:
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# -- runs --------------------------------------------------------------------------------------
RUN_FILE = "run.json"  # written by attnseg train (training/recipe.py)
LOCK_FILE = ".zoo.lock"
#: a run marked running that wrote a file this recently may be training now (by hand)
RUNNING_GRACE_S = 1800.0


@dataclass
class Run:
    """One training run: its folder, model file, and the commands that start and score it.

    ``units`` counts its trainings (2 for the Focal pruning workflow, which trains twice
    and cannot be resumed); ``prepare`` writes what the start command reads (a derived
    recipe) just before a new run starts.
    """

    label: str
    run_dir: Path
    model: Path
    train: list[str]
    evaluate: list[str]
    units: int = 1
    kind: str = "zoo"
    prepare: Callable[[], None] | None = None
    resumable: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


def _bare_run(name: str, run_dir: Path) -> Run:
    """A run folder to inspect (no commands): its model is ``<name>.safetensors``."""
    return Run(name, run_dir, run_dir / f"{name}.safetensors", [], [])


def _split(task: str) -> Path:
    return DATA / task


def commands(
    name: str, run_dir: Path, variant: str = "compact", device: str = "auto"
) -> tuple[list[str], list[str]]:
    """The ``attnseg train`` command that starts ``name``'s run and the ``attnseg evaluate``
    command that scores its model on the validation split."""
    r = json.loads((recipes_dir(variant) / f"{name}.json").read_text())
    split = _split(r["task"])
    model = run_dir / f"{name}.safetensors"
    train = ["attnseg", "train", "--config", _rel(recipes_dir(variant) / f"{name}.json")]
    train += ["--images", _rel(split / "train/images"), "--masks", _rel(split / "train/masks")]
    if r["evaluate"]["fov"]:
        train += ["--fov", _rel(split / "train/fov")]
    train += ["--val-images", _rel(split / "val/images"), "--val-masks", _rel(split / "val/masks")]
    if r["evaluate"]["fov"]:
        train += ["--val-fov", _rel(split / "val/fov")]
    train += ["--out", _rel(model), "--run-dir", _rel(run_dir), "--device", device, "--quiet"]
    evaluate = ["attnseg", "evaluate", "--model", _rel(model)]
    evaluate += ["--images", _rel(split / "val/images"), "--masks", _rel(split / "val/masks")]
    if r["evaluate"]["fov"]:
        evaluate += ["--fov", _rel(split / "val/fov")]
    if r["evaluate"]["tta"]:
        evaluate.append("--tta")
    evaluate += ["--json", _rel(run_dir / "evaluation.json"), "--device", device, "--quiet"]
    return train, evaluate


def zoo_run(
    name: str, variant: str = "compact", device: str = "auto", runs: Path | None = None
) -> Run:
    run_dir = (runs or runs_dir(variant)) / name
    train, evaluate = commands(name, run_dir, variant, device)
    return Run(name, run_dir, run_dir / f"{name}.safetensors", train, evaluate)


def _run_spec(run_dir: Path, name: str = "") -> tuple[dict, Path | None]:
    """``run.json`` of a run folder: in it, or in ``<name>.run/`` (attnseg train's default)."""
    for path in (run_dir / RUN_FILE, run_dir / f"{name}.run" / RUN_FILE):
        if path.is_file():
            return _read_json(path), path
    return {}, None


def _lock_holder(run_dir: Path) -> int | None:
    """The live process that holds a run folder's lock, if any."""
    try:
        pid = int((run_dir / LOCK_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


class RunLock:
    """A run folder's lock file (this process's id), so that two drivers never train
    the same run at once; a lock left by a dead process is taken over."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = _lock_holder(self.path.parent)
        if holder is not None and holder != os.getpid():
            raise RuntimeError(f"{_rel(self.path.parent)} is in use by process {holder}")
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _epochs(status: str) -> int | None:
    match = re.search(r"after epoch (\d+)", status)
    return int(match.group(1)) if match else None


def _fresh(result: Path, source: Path) -> bool:
    return result.exists() and source.exists() and result.stat().st_mtime >= source.stat().st_mtime


def run_state(run: Run, force: bool = False) -> tuple[str, str]:
    """``(state, detail)`` of a run folder. States:

    ``busy`` another driver holds it, or its ``run.json`` says running and the run
    wrote a file less than :data:`RUNNING_GRACE_S` ago (an ``attnseg train`` started
    by hand may be at work; ``force`` resumes it anyway); ``new`` nothing to continue;
    ``unfinished`` interrupted or still marked running, with a checkpoint (resume it);
    ``paused`` stopped by its time budget before its last epoch (resume it);
    ``trained`` finished, not yet evaluated; ``done`` finished and evaluated.
    A folder written before run folders existed (a model and ``evaluation.json``,
    no ``run.json``) counts as finished.
    """
    holder = _lock_holder(run.run_dir)
    if holder is not None and holder != os.getpid():
        return "busy", f"in use by process {holder}"
    spec, spec_path = _run_spec(run.run_dir, run.model.stem)
    status = spec.get("status", "")
    has_ckpt = bool(spec_path) and (spec_path.parent / "last.ckpt").exists()
    evaluated = _fresh(run.run_dir / "evaluation.json", run.model)
    if spec_path is None:
        if run.model.exists():
            return ("done" if evaluated else "trained"), "trained before run folders"
        return "new", "not started"
    if status.startswith("finished"):
        if not run.model.exists():
            return "new", f"{status}, but its model file is missing"
        epoch, total = _epochs(status), spec.get("recipe", {}).get("train", {}).get("epochs")
        if "time budget" in status and has_ckpt and run.resumable and (epoch or 0) < (total or 0):
            return "paused", f"{status} of {total}"
        return ("done" if evaluated else "trained"), status
    if status == "running" and not force:
        files = [spec_path, *(spec_path.parent / n for n in ("last.ckpt", "best.safetensors"))]
        age = time.time() - max(p.stat().st_mtime for p in files if p.exists())
        if age < RUNNING_GRACE_S:
            return "busy", (
                f"marked running, last written {age / 60:.0f} min ago: another attnseg train "
                "may be at work (--force resumes it anyway)"
            )
    if has_ckpt and run.resumable:
        return "unfinished", status or "no status"
    return "new", f"{status or 'no status'}; nothing to resume"


def _can_extend(run: Run, epochs: int | None) -> bool:
    """A completed run (not early-stopped) with a checkpoint trains on to ``epochs``."""
    spec, spec_path = _run_spec(run.run_dir, run.model.stem)
    if not epochs or spec_path is None or not (spec_path.parent / "last.ckpt").exists():
        return False
    done = spec.get("recipe", {}).get("train", {}).get("epochs", 0)
    return spec.get("status", "").startswith("finished: completed") and done < epochs


def run_command(cmd: list[str], log_path: Path, threads: int, timeout: float | None = None) -> int:
    """Run an ``attnseg`` command line from the repository root, appending to ``log_path``.

    ``timeout`` (seconds) interrupts it (SIGINT: the run is saved as interrupted and
    can be resumed), then kills it 30 s later.
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }
    full = [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(full, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.write(f"(stopped: over its {timeout:.0f} s)\n")
            return 124


def _record_sitting(run: Run, cmd: list[str], threads: int, seconds: float, rc: int) -> None:
    path = run.run_dir / "commands.json"
    data = _read_json(path)
    if "--config" in cmd and "--resume" not in cmd:
        data["train"] = shlex.join(cmd)  # the command a model card shows
        data["threads"] = threads
        data["sittings"] = []
    spec, _ = _run_spec(run.run_dir, run.model.stem)
    data.setdefault("threads", threads)
    data.setdefault("sittings", []).append(
        {
            "command": shlex.join(cmd),
            "threads": threads,
            "seconds": round(seconds, 1),
            "returncode": rc,
            "status": spec.get("status", ""),
        }
    )
    data["total_seconds"] = round(sum(s["seconds"] for s in data["sittings"]), 1)
    _write_json(path, data)


def _evaluation(run: Run) -> dict:
    return _read_json(run.run_dir / "evaluation.json")


def drive(
    run: Run,
    *,
    threads: int,
    time_budget: float | None = None,
    epochs: int | None = None,
    precision: str | None = None,
    timeout: float | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Bring one run as far as it goes in one sitting: start, resume or extend its
    training, then score its model. Returns what it did and reached (a JSON-able dict)."""
    state, detail = run_state(run, force)
    where = _rel(run.run_dir)
    record: dict[str, Any] = {"run": run.label, "kind": run.kind, "run_dir": where}
    record.update(before=state, units=run.units)
    if state == "busy":
        log(f"{run.label}: skipped, {detail} ({where})")
        return {**record, "state": "busy"}
    flags = []
    if time_budget is not None:
        flags += ["--time-budget", f"{max(time_budget, 0):g}"]
    if epochs is not None:
        flags += ["--epochs", str(epochs)]
    if precision is not None:
        flags += ["--precision", precision]
    resume = ["attnseg", "train", "--resume", where, "--quiet", *flags]
    cmd = None
    if state == "new":
        cmd, what = [*run.train, *flags], "starting"
    elif state in ("unfinished", "paused"):
        cmd, what = resume, f"resuming ({detail})"
    elif _can_extend(run, epochs):
        cmd, what = resume, f"training on to {epochs} epochs ({detail})"
    t0 = time.time()
    try:
        with RunLock(run.run_dir):
            if cmd is not None:
                if state == "new" and run.prepare is not None:
                    run.prepare()
                log(f"{run.label}: {what} in {where}")
                rc = run_command(cmd, run.run_dir / "log.txt", threads, timeout)
                _record_sitting(run, cmd, threads, time.time() - t0, rc)
                if rc != 0:
                    log(f"{run.label}: FAILED (exit {rc}), see {where}/log.txt")
                    return {**record, "state": "failed", "returncode": rc,
                            "seconds": round(time.time() - t0, 1)}  # fmt: skip
            state, detail = run_state(run)
            if state in ("trained", "paused") and run.model.exists():
                if not _fresh(run.run_dir / "evaluation.json", run.model):
                    rc = run_command(run.evaluate, run.run_dir / "log.txt", threads, timeout)
                    data = _read_json(run.run_dir / "commands.json")
                    data["evaluate"] = shlex.join(run.evaluate)
                    _write_json(run.run_dir / "commands.json", data)
                    if rc != 0:
                        log(f"{run.label}: evaluation FAILED (exit {rc}), see {where}/log.txt")
                        return {**record, "state": "failed", "returncode": rc}
                state = "done" if state == "trained" else state
    except RuntimeError as exc:  # the lock was taken in between
        log(f"{run.label}: skipped, {exc}")
        return {**record, "state": "busy"}
    spec, _ = _run_spec(run.run_dir, run.model.stem)
    evaluation = _evaluation(run)
    dice = evaluation.get("mean", {}).get("dice")
    record.update(
        state=state,
        status=spec.get("status", detail),
        dice=dice,
        seconds=round(time.time() - t0, 1),
        trained_seconds=_read_json(run.run_dir / "commands.json").get("total_seconds"),
    )
    score = f"validation dice {dice:.4f}" if dice is not None else "no evaluation"
    verb = "already done" if cmd is None and record["before"] == "done" else state
    log(f"{run.label}: {verb}, {score}; {record['status']} ({where})")
    return record


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 2) // max(1, jobs))


def train_all(
    names: list[str],
    *,
    variant: str = "compact",
    jobs: int = 1,
    time_budget: float | None = None,
    epochs: int | None = None,
    precision: str | None = None,
    device: str = "auto",
    package_done: bool = False,
    max_mb: float = 60.0,
    force: bool = False,
) -> list[dict]:
    """``train``: drive every named run (all recipes of ``variant`` by default), ``jobs`` at
    a time; with ``package_done``, package each model as soon as its run is done."""
    names = names or recipe_names(variant)
    unknown = sorted(set(names) - set(recipe_names(variant)))
    if unknown:
        raise SystemExit(f"no {variant} recipe for {unknown}; run `zoo.py recipes` first?")
    threads = _threads(jobs)
    print(
        f"{len(names)} run(s), {jobs} at a time with {threads} thread(s) each; run folders "
        f"in {_rel(runs_dir(variant))}/"
        + (f"; {time_budget:g} s per sitting" if time_budget else ""),
        flush=True,
    )
    lock = threading.Lock()

    def one(name: str) -> dict:
        record = drive(
            zoo_run(name, variant, device),
            threads=threads,
            time_budget=time_budget,
            epochs=epochs,
            precision=precision,
            force=force,
            log=lambda line: print(line, flush=True),
        )
        if package_done and record["state"] == "done":
            with lock:  # one packaging at a time: they all rewrite index.json and docs
                package([name], variant=variant, max_mb=max_mb)
        return record

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, names))


def status(names: list[str], variant: str = "compact", runs: Path | None = None) -> None:
    shipped = shipped_cards()
    names = names or sorted(
        set(recipe_names(variant)) | {p.name for p in (runs or runs_dir(variant)).glob("*.*")}
    )
    for name in names:
        run = _bare_run(name, (runs or runs_dir(variant)) / name)
        state, detail = run_state(run)
        dice = _evaluation(run).get("mean", {}).get("dice")
        ship = _dice(shipped[name]) if name in shipped else None
        print(
            f"{name:32} {state:10} "
            + (f"val {dice:.4f} " if dice is not None else "")
            + (f"(shipped {ship:.4f}) " if ship is not None else "")
            + f"{detail}  [{_rel(run.run_dir)}]"
        )


# -- cards ---------------------------------------------------------------------------------------
#: what every shipped card must say (dotted paths into the card document)
CARD_REQUIRED = (
    "license",  # the weights' and the training data's terms
    "training.dataset",  # the data
    "metadata.recipe",  # recipes/<name>.json
    "training.command",  # the exact attnseg train command
    "training.environment.device",
    "training.precision",  # autocast precision of the training forward pass
    "training.threads",
    "training.wall_time_s",
    "training.epochs_run",
    "metrics.validation.n_images",  # scored again on the shipped fp16 file:
    "metrics.validation.mean.dice",
    "metrics.measured_by",  # the attnseg evaluate command
    "metrics.weights",  # "fp16 as shipped"
)


def card_value(card: dict, key: str) -> Any:
    value: Any = card
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def legacy_precision(training: dict) -> str | None:
    """The precision a card written before ``training.precision`` existed was trained at:
    its trainer autocast only on CUDA (``config.amp``, fp16), so CPU runs were fp32."""
    config, device = training.get("config", {}), training.get("environment", {}).get("device")
    if "precision" in training or device is None or "amp" not in config:
        return training.get("precision")
    return "fp16" if config["amp"] and str(device).startswith("cuda") else "fp32"


def missing_card_keys(card: dict, *, legacy: bool = False) -> list[str]:
    """The :data:`CARD_REQUIRED` keys a card lacks; ``legacy`` accepts a precision that
    :func:`legacy_precision` derives (``zoo.py complete`` writes it into the card)."""
    missing = [k for k in CARD_REQUIRED if card_value(card, k) in (None, "", [], {})]
    if legacy and "training.precision" in missing and legacy_precision(card.get("training", {})):
        missing.remove("training.precision")
    return missing


def _reconstructed_command(spec: dict, recipe_rel: str) -> str:
    words = ["attnseg", "train", "--config", recipe_rel]
    for key in ("images", "masks", "fov", "val_images", "val_masks", "val_fov", "out"):
        if spec.get(key):
            words += ["--" + key.replace("_", "-"), spec[key]]
    return shlex.join(words)


def complete_card(card, recipe: dict, recipe_path: Path, run_dir: Path | None = None):
    """Fill what a card lacks from its run folder (``commands.json``, ``run.json``), its
    recipe and its own training record; returns the card (a ``ModelCard``, changed)."""
    training = dict(card.training)
    commands_ = _read_json(run_dir / "commands.json") if run_dir else {}
    spec, _ = _run_spec(run_dir, card.name) if run_dir else ({}, None)
    if commands_.get("train"):
        training["command"] = commands_["train"]
        training["threads"] = commands_.get("threads", training.get("threads"))
        resumed = [
            s["command"] for s in commands_.get("sittings", []) if "--resume" in s["command"]
        ]
        if resumed:
            training["resumed_with"] = resumed
    elif spec and not training.get("command"):
        training["command"] = _reconstructed_command(spec, _rel(recipe_path))
        training["command_source"] = "reconstructed from the run's run.json"
    init = training.get("init")
    start = ROOT / init["model"] if init else None
    if start is not None and start.exists() and file_sha256(start) == init.get("sha256"):
        # the starting file's whole schedule (runs started before the card recorded it)
        training["init"] = {**init, **trained_before(read_card(start).get("training", {}))}
    training.setdefault("dataset", recipe["card"]["training"]["dataset"])
    if not training.get("threads"):
        training["threads"] = training.get("environment", {}).get("threads")
    if not training.get("precision"):
        training["precision"] = legacy_precision(training)
    card.training = training
    card.license = card.license or recipe["card"].get("license", "")
    card.metadata = {
        **recipe["card"].get("metadata", {}),
        **card.metadata,
        "task": recipe["task"],
        "recipe": _rel(recipe_path),
    }
    return card


def _dice(card: dict) -> float:
    return float(card_value(card, "metrics.validation.mean.dice") or 0.0)


def shipped_cards() -> dict[str, dict]:
    """``{name: card document}`` of every model in the weights folder."""
    cards = {}
    for path in sorted(WEIGHTS.glob("*.safetensors")):
        card = _read_json(path.with_suffix(".json"))
        if card:
            cards[path.stem] = card
    return cards


def _task(name: str, card: dict) -> str:
    return card.get("metadata", {}).get("task") or name.partition(".")[2]


def _split_of(card: dict) -> str:
    """The validation images a card was scored on (its ``measured_by`` command's --images)."""
    words = str(card.get("metrics", {}).get("measured_by", "")).split()
    return words[words.index("--images") + 1] if "--images" in words[:-1] else ""


def task_defaults(cards: dict[str, dict]) -> dict[str, str]:
    """Each task's default: its shipped model with the highest validation Dice.

    Dice compares only on the same images: when a model with a recipe of its own
    (``metadata.own_recipe``) was scored on other validation images than its task's
    other models, the task's models scored on those images compete (the nuclei default
    is scored on native-resolution images, the other nuclei models on 96-px thumbnails)."""
    own = {_task(n, c): _split_of(c) for n, c in cards.items()
           if c.get("metadata", {}).get("own_recipe")}
    best: dict[str, tuple[float, str]] = {}
    for name, card in sorted(cards.items()):
        task = _task(name, card)
        if task in own and _split_of(card) != own[task]:
            continue
        if task and (task not in best or _dice(card) > best[task][0]):
            best[task] = (_dice(card), name)
    return {task: name for task, (_, name) in sorted(best.items())}


def write_index() -> dict[str, str]:
    defaults = task_defaults(shipped_cards())
    index = {
        "defaults": defaults,
        "note": "task defaults are the shipped models with the highest mean validation Dice, "
        "measured on the shipped fp16 files (attnseg evaluate on the splits in "
        "recipes/splits), among those scored on the same images as a model with a recipe of "
        "its own (nuclei: native resolution); written by scripts/zoo.py from the cards in "
        "this folder",
    }
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    _write_json(WEIGHTS / "index.json", index)
    return defaults


# -- packaging -----------------------------------------------------------------------------------
def evaluate_shipped(path: Path, name: str, recipe: dict, device: str = "cpu") -> tuple[dict, str]:
    """Score a packaged (fp16) file as ``attnseg evaluate`` does; return the result and
    that command."""
    # the inference engine more than doubles the start-up of the subcommands that don't score
    from napari_attnseg.inference import Predictor, evaluate_folder

    split = _split(recipe["task"]) / "val"
    fov = split / "fov" if recipe["evaluate"]["fov"] else None
    tta = bool(recipe["evaluate"]["tta"])
    predictor = Predictor(tta=tta, device=device)
    result = evaluate_folder(
        load_model(path), split / "images", split / "masks", fov, predictor=predictor, name=name
    )
    cmd = ["attnseg", "evaluate", "--model", name]
    cmd += ["--images", _rel(split / "images"), "--masks", _rel(split / "masks")]
    cmd += ["--fov", _rel(fov)] if fov else []
    cmd += ["--tta"] if tta else []
    cmd += ["--device", device]
    return result, shlex.join(cmd)


def _evaluation_precision(device: str) -> str:
    import torch

    from napari_attnseg.inference.device import resolve_device, resolve_precision

    return resolve_precision(resolve_device(device) if device != "cpu" else torch.device("cpu"))


def _size_mb(paths: Iterable[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 2**20


def package_one(
    name: str,
    *,
    variant: str = "compact",
    runs: Path | None = None,
    max_mb: float = 60.0,
    device: str = "cpu",
    only_if_better: bool = False,
    explicit: bool = True,
) -> dict[str, Any]:
    """Ship one run's model: fp16 file + completed card, scored as shipped; adds or
    replaces ``weights/<name>.*`` only (atomically, after every check passed)."""
    run = _bare_run(name, (runs or runs_dir(variant)) / name)
    state, detail = run_state(run)
    out = {"name": name, "run_dir": _rel(run.run_dir), "state": state}
    if not run.model.exists() or state in ("busy", "unfinished"):
        return {**out, "shipped": False, "why": f"no finished model ({state}: {detail})"}
    if state == "paused" and not explicit:
        return {**out, "shipped": False, "why": f"paused ({detail}); name it to ship it"}
    recipe_path = recipes_dir(variant) / f"{name}.json"
    recipe_ = json.loads(recipe_path.read_text())
    model = load_model(run.model)
    target = WEIGHTS / f"{name}.safetensors"
    old = _read_json(target.with_suffix(".json"))
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    others = [p for p in WEIGHTS.iterdir() if p.is_file() and p.stem != name]
    # cheap checks first: scoring a model takes a while
    run_dice = _evaluation(run).get("mean", {}).get("dice")
    if only_if_better and old and run_dice is not None and run_dice < _dice(old):
        why = f"its run's validation Dice {run_dice:.4f} is below the shipped {_dice(old):.4f}"
        return {**out, "shipped": False, "why": why}
    fp16_mb = sum(t.numel() * 2 for t in model.state_dict().values()) / 2**20
    if _size_mb(others) + fp16_mb > max_mb:
        why = f"{_size_mb(others) + fp16_mb:.1f} MB would exceed {max_mb:g} MB"
        return {**out, "shipped": False, "why": why}
    card = complete_card(model.card, recipe_, recipe_path, run.run_dir)
    if (DATA / recipe_["task"] / "train" / "masks").is_dir():  # as `annotate` writes them
        for key, value in object_rules(recipe_["task"], card.input_scale).items():
            if getattr(card, key) is None:
                setattr(card, key, value)
    with tempfile.TemporaryDirectory(prefix=".package-", dir=WEIGHTS.parent) as tmp:
        path = save_model(model, Path(tmp) / f"{name}.safetensors", card=card, half=True)
        result, command = evaluate_shipped(path, name, recipe_, device)
        card.metrics = {
            "validation": {k: result[k] for k in ("n_images", "mean", "pooled")},
            "measured_by": command,
            "weights": "fp16 as shipped",
            "precision": _evaluation_precision(device),
        }
        save_model(model, path, card=card, half=True)
        document = _read_json(path.with_suffix(".json"))
        dice = _dice(document)
        out.update(dice=dice, status=detail)
        missing = missing_card_keys(document)
        if missing:
            return {**out, "shipped": False, "why": f"its card lacks {missing}"}
        if only_if_better and old and _dice(old) >= dice:
            why = f"the shipped one is as good ({_dice(old):.4f})"
            return {**out, "shipped": False, "why": why}
        size = _size_mb([path, path.with_suffix(".json")])
        total = _size_mb(others) + size
        if total > max_mb:
            return {**out, "shipped": False, "why": f"{total:.1f} MB would exceed {max_mb:g} MB"}
        os.replace(path, target)  # the weights first: the card beside them is read first
        os.replace(path.with_suffix(".json"), target.with_suffix(".json"))
    return {**out, "shipped": True, "size_mb": round(size, 2), "replaced": bool(old),
            "previous_dice": _dice(old) if old else None}  # fmt: skip


def finished_runs(variant: str = "compact", runs: Path | None = None) -> list[str]:
    found = []
    for folder in sorted((runs or runs_dir(variant)).glob("*.*")):
        if run_state(_bare_run(folder.name, folder))[0] in ("trained", "done"):
            found.append(folder.name)
    return found


def package(
    names: list[str] | None = None,
    *,
    variant: str = "compact",
    runs: Path | None = None,
    max_mb: float = 60.0,
    device: str = "cpu",
    only_if_better: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """``package``: ship the named runs (default: every finished one) one by one, then
    rebuild ``index.json`` and ``docs/zoo.md`` from the shipped cards."""
    explicit = bool(names)
    names = names or finished_runs(variant, runs)
    results = []
    for name in names:
        result = package_one(
            name,
            variant=variant,
            runs=runs,
            max_mb=max_mb,
            device=device,
            only_if_better=only_if_better,
            explicit=explicit,
        )
        results.append(result)
        dice = f"val dice {result['dice']:.4f} as fp16" if "dice" in result else ""
        if result["shipped"]:
            was = result["previous_dice"]
            log(
                f"{name}: shipped, {dice}, {result['size_mb']:.2f} MB"
                + (f" (replaces {was:.4f})" if was is not None else " (new)")
            )
        else:
            log(f"{name}: not shipped, {result['why']}" + (f"; {dice}" if dice else ""))
    defaults = write_index()
    write_zoo_doc()
    total = _size_mb(p for p in WEIGHTS.iterdir() if p.is_file())
    log(f"weights folder {total:.1f} MB; task defaults {defaults}")
    return results


def complete_shipped(names: list[str], *, dry_run: bool = False) -> dict[str, list[str]]:
    """``complete``: fill the card fields that can be derived without a run (precision of
    legacy cards, threads, dataset, licence, recipe) into shipped cards; weights unchanged."""
    filled = {}
    for name in names:
        path = WEIGHTS / f"{name}.safetensors"
        before = _read_json(path.with_suffix(".json"))
        model = load_model(path)
        recipe_rel = before.get("metadata", {}).get("recipe") or f"recipes/{name}.json"
        recipe_path = ROOT / recipe_rel
        card = complete_card(model.card, json.loads(recipe_path.read_text()), recipe_path)
        after = {**before, **card.to_dict()}
        changed = [k for k in CARD_REQUIRED if card_value(before, k) != card_value(after, k)]
        filled[name] = changed
        print(f"{name}: " + (", ".join(f"{k} = {card_value(after, k)!r}" for k in changed) or
                             "complete"))  # fmt: skip
        if changed and not dry_run:
            save_model(model, path, card=card, half=True)
    if not dry_run:
        write_index()
        write_zoo_doc()
    return filled


def check_shipped() -> int:
    """``check``: 0 when every shipped card has every :data:`CARD_REQUIRED` key."""
    bad = 0
    for name, card in shipped_cards().items():
        missing = missing_card_keys(card)
        derived = missing == ["training.precision"] and not missing_card_keys(card, legacy=True)
        if derived:
            print(f"{name}: precision only derivable ({legacy_precision(card['training'])}); "
                  "`zoo.py complete` writes it")  # fmt: skip
        elif missing:
            bad += 1
            print(f"{name}: MISSING {', '.join(missing)}")
        else:
            print(f"{name}: complete")
    return 1 if bad else 0


def object_rules(task: str, scale: float = 1.0) -> dict:
    """The card fields that say how a task's objects are handled (ROI, size, instances).

    ``object_diameter`` (and its range) is the median nucleus diameter of the
    task's training masks at the model's working scale (``objects.diameter_summary``).
    """
    from napari_attnseg.objects import diameter_summary

    t = TASKS[task]
    rules = {key: t["card"].get(key) for key in ("instances", "roi")}
    if t.get("object_size"):
        masks = sorted((DATA / task / "train" / "masks").iterdir())
        rules.update(diameter_summary(masks, scale=scale))
    return rules


def annotate(names: list[str]) -> None:
    """Write the object rules into shipped cards (weights unchanged; re-saved as fp16)."""
    for name in names:
        path = WEIGHTS / f"{name}.safetensors"
        model = load_model(path)
        card = model.card
        rules = object_rules(name.split(".")[1], card.input_scale)
        for key, value in rules.items():
            setattr(card, key, value)
        save_model(model, path, card=card, half=True)
        print(f"{name}: {rules}")


def write_zoo_doc() -> Path:
    """``docs/zoo.md`` from the committed cards in the weights folder and the recipes."""
    cards = shipped_cards()
    defaults = task_defaults(cards)
    order = sorted(cards, key=lambda n: (_task(n, cards[n]), defaults.get(_task(n, cards[n])) != n,
                                         -_dice(cards[n]), n))  # fmt: skip
    lines = [
        "# The model zoo",
        "",
        "Written by `python scripts/zoo.py docs` (also run by `zoo.py package`) from the cards "
        "in `src/napari_attnseg/zoo/weights/`. Every model was trained by the `attnseg train` "
        "command in its card (`attnseg info MODEL --json`), and its validation metrics were "
        "measured on the shipped fp16 weights by the `attnseg evaluate` command in the card. "
        "Metrics are per-image means on our validation splits (`recipes/splits/`); DRIVE is "
        "scored inside the field of view. Each task's default is its shipped model with the "
        "best validation Dice among those scored on the same images (a model with a recipe of "
        "its own, below, competes only with models scored on its images). Params and GFLOPs: one 256×256 forward pass (3 channels; 1 for "
        'membranes), PyTorch\'s count. *Epochs*: those trained; "15 of 40" is a model trained '
        "for a CPU budget short of its recipe (`zoo.py train NAME --epochs 40` trains it on), "
        "\"after N (model)\" one that started from an earlier model's weights (the recipe's "
        "`init`; the training time counts both).",
        "",
        "| model | task default | Dice | Jaccard | precision | recall | params | GFLOPs "
        "| epochs | training | data licence |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        card = cards[name]
        m = card_value(card, "metrics.validation.mean") or {}
        t = card.get("training", {})
        cost = model_cost(load_model(WEIGHTS / f"{name}.safetensors"), (256, 256))
        terms = card.get("license", "")
        licence = (
            "research/education only"
            if "RESEARCH" in terms
            else "data: research use"
            if "research" in terms.lower()
            else "data: non-commercial"
            if "non-commercial" in terms.lower()
            else "open"
        )
        device = t.get("environment", {}).get("device", "?")
        precision = t.get("precision") or legacy_precision(t) or "?"
        minutes = (t.get("wall_time_s") or 0) / 60
        epochs = str(t.get("epochs_run", "?"))
        planned = _read_json(RECIPES / f"{name}.json").get("train", {}).get("epochs")
        if planned and t.get("epochs_run") and t["epochs_run"] < planned:
            epochs += f" of {planned}"
        init = t.get("init") or {}
        if init:
            epochs += f" after {init.get('epochs_run', '?')} ({init.get('name', '?')})"
            minutes += (init.get("wall_time_s") or 0) / 60
        lines.append(
            f"| `{name}` | {'yes' if defaults.get(_task(name, card)) == name else ''} "
            f"| {_num(m.get('dice'))} | {_num(m.get('jaccard'))} | {_num(m.get('precision'))} "
            f"| {_num(m.get('sensitivity'))} | {cost.params / 1e6:.2f} M | {cost.gflops:.2f} "
            f"| {epochs} | {minutes:.0f} min on {device}, {precision}, "
            f"{t.get('threads', '?')} thread(s) | {licence} |"
        )
    for name in order:
        card = cards[name]
        own = card.get("metadata", {}).get("own_recipe")
        if not own:
            continue
        whole = card_value(card, "metrics.validation_whole_images") or {}
        objects = whole.get("instances", {})
        lines += [
            "",
            f"**`{name}`** has a recipe of its own ({own}): its Dice above is measured on "
            f"`{_split_of(card)}`, not on the images of the task's other models, so the two "
            "do not compare.",
        ]
        if objects:
            lines += [
                f"On the whole validation images ({whole.get('n_images')}, native resolution, "
                "default settings): "
                f"pixel Dice {_num(whole.get('mean', {}).get('dice'))}, "
                f"AP@0.5 {_num(objects.get('ap50'))}, mean AP 0.5:0.95 "
                f"{_num(objects.get('mean_ap'))}, PQ {_num(objects.get('pq'))} "
                f"(`{whole.get('measured_by', '')}`; per modality: docs/objects.md).",
            ]
    fundus = sorted(n for n in order if cards[n].get("fov_diameter"))
    if fundus:
        diameters = sorted({float(cards[n]["fov_diameter"]) / float(cards[n].get("input_scale")
                                                                    or 1.0) for n in fundus})
        lines += [
            "",
            f"**Fundus photographs of any camera.** The vessels models ({len(fundus)}) record "
            "their training photographs' field of view (`fov_diameter`: "
            + ", ".join(f"{d:.0f}" for d in diameters) + " px across, `scripts/card_fov.py`); "
            "by default a photograph's field of view is measured and the photograph resampled "
            "to match it (`attnseg predict --fov-diameter auto|none|PX`, Segment's *field of "
            "view*; a note says the zoom). Measured on rescaled validation photographs: "
            "docs/fundus.md.",
        ]
    unshipped = [n for n in recipe_names("compact") if n not in cards]
    if unshipped:
        lines += [
            "",
            f"Recipes without shipped weights ({len(unshipped)}; `python scripts/zoo.py train "
            "NAME --package` trains and ships one): " + ", ".join(f"`{n}`" for n in unshipped),
        ]
    total = _size_mb(p for p in WEIGHTS.iterdir() if p.is_file()) if WEIGHTS.exists() else 0
    lines += ["", f"{len(cards)} models, {total:.1f} MB in the package.", ""]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    atomic_write(DOC, lambda tmp: Path(tmp).write_text(text))
    return DOC


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


# -- the GPU campaign -----------------------------------------------------------------------------
#: seconds a run spends outside its training budget: start-up, CUDA, loading the data, one
#: epoch past the budget (the budget is checked after each epoch) and scoring
GPU_OVERHEAD_S = 40.0
#: seconds kept at the end for packaging (scoring the candidates again as fp16), docs/zoo.md
#: and docs/results.md
GPU_RESERVE_S = 120.0
#: runs at once: each is a process with its own CPU thread(s) preparing batches (the 16 cores
#: of the GPU machine), the network on the one GPU
GPU_JOBS = 12
#: the least training time worth starting a run for
MIN_RUN_S = 10.0


@dataclass
class TableRows:
    """What the campaign needs of ``scripts/paper_tables.py`` (passed in by
    ``scripts/gpu_campaign.py``: paper_tables imports this module, not the reverse)."""

    #: ``runs(variant, tasks, device)``: one run per unique table row
    runs: Callable[[str, list[str] | None, str], list[Run]]
    #: writes docs/results.md from the runs
    write: Callable[[], object]


def campaign_runs(
    *,
    zoo_variant: str = "full",
    tables_variant: str = "full",
    tables: TableRows | None = None,
    device: str = "cuda",
    tasks: list[str] | None = None,
) -> list[Run]:
    """Every zoo recipe of ``zoo_variant`` and, with ``tables``, every table row of
    ``tables_variant``, one run each (rows that train exactly a zoo recipe share its run)."""
    runs = []
    for name in recipe_names(zoo_variant):
        if not tasks or name.split(".")[1] in tasks:
            runs.append(zoo_run(name, zoo_variant, device))
    if tables is not None:
        runs += tables.runs(tables_variant, tasks, device)
    unique: dict[Path, Run] = {}
    for run in runs:
        unique.setdefault(run.run_dir, run)
    return list(unique.values())


def deal(runs: list[Run], jobs: int) -> list[list[Run]]:
    """Runs dealt to ``jobs`` workers, longest first, each to the least loaded worker."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    loads = [0] * jobs
    queues: list[list[Run]] = [[] for _ in range(jobs)]
    for run in sorted(runs, key=lambda r: -r.units):  # stable: zoo first, then table order
        worker = min(range(jobs), key=lambda w: (loads[w], w))
        loads[worker] += run.units
        queues[worker].append(run)
    return queues


def gpu_plan(
    runs: list[Run],
    *,
    budget_s: float = 600.0,
    jobs: int = GPU_JOBS,
    overhead_s: float = GPU_OVERHEAD_S,
    reserve_s: float = GPU_RESERVE_S,
) -> dict[str, Any]:
    """Who runs what, and each run's ``--time-budget``.

    Runs are dealt to ``jobs`` workers longest first (pruning runs count twice); the
    busiest worker holds ``makespan`` units; one unit of wall time is ``slot =
    (budget − reserve) / makespan`` and a run's ``--time-budget`` is ``slot − overhead``
    per training, so every worker ends by ``budget − reserve`` if each run keeps
    within its overhead.
    """
    queues = deal(runs, jobs)
    loads = [sum(r.units for r in queue) for queue in queues]
    makespan = max(loads) if runs else 0
    slot = (budget_s - reserve_s) / makespan if makespan else 0.0
    time_budget = math.floor(slot - overhead_s) if makespan else 0
    if runs and time_budget < MIN_RUN_S:
        raise ValueError(
            f"{len(runs)} runs ({sum(loads)} trainings) on {jobs} workers leave "
            f"{time_budget} s of training per run within {budget_s:g} s; raise --budget or "
            "--jobs, or leave out the tables (--no-tables)"
        )
    plan_runs = []
    for worker, queue in enumerate(queues):
        for run in queue:
            plan_runs.append(
                {
                    "run": run.label,
                    "kind": run.kind,
                    "worker": worker,
                    "units": run.units,
                    "run_dir": _rel(run.run_dir),
                    "time_budget_s": time_budget,
                    "command": shlex.join([*run.train, "--time-budget", str(time_budget)]),
                }
            )
    return {
        "budget_s": budget_s,
        "jobs": jobs,
        "threads_per_job": _threads(jobs),
        "overhead_s": overhead_s,
        "reserve_s": reserve_s,
        "n_runs": len(runs),
        "units": sum(loads),
        "makespan_units": makespan,
        "slot_s": round(slot, 1),
        "time_budget_s": time_budget,
        "estimated_s": round(makespan * slot + reserve_s, 1),
        "runs": plan_runs,
    }


def gpu_campaign(
    *,
    budget_s: float = 600.0,
    jobs: int = GPU_JOBS,
    zoo_variant: str = "full",
    tables_variant: str = "full",
    tables: TableRows | None = None,
    tasks: list[str] | None = None,
    device: str = "cuda",
    overhead_s: float = GPU_OVERHEAD_S,
    reserve_s: float = GPU_RESERVE_S,
    max_mb: float = 60.0,
    only_if_better: bool = True,
    dry_run: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """Train and package the whole zoo (and, with ``tables``, all table rows) within
    ``budget_s``; ``python scripts/gpu_campaign.py`` runs it with the tables.

    Untested on a GPU (none was available to this work; the plan and commands are
    tested on a CPU with ``--dry-run``).
    """
    started = time.time()
    runs = campaign_runs(
        zoo_variant=zoo_variant, tables_variant=tables_variant, tables=tables, device=device,
        tasks=tasks,
    )  # fmt: skip
    plan = gpu_plan(runs, budget_s=budget_s, jobs=jobs, overhead_s=overhead_s, reserve_s=reserve_s)
    plan.update(device=device, zoo_variant=zoo_variant, tables_variant=tables_variant)
    header = (
        f"GPU campaign: {plan['n_runs']} runs ({plan['units']} trainings) on {jobs} workers "
        f"({plan['threads_per_job']} CPU thread(s) each), {plan['makespan_units']} slots of "
        f"{plan['slot_s']:g} s: --time-budget {plan['time_budget_s']} s per training, "
        f"{overhead_s:g} s overhead per run, {reserve_s:g} s for packaging and reports; "
        f"at most {plan['estimated_s']:g} s of {budget_s:g} s"
    )
    if dry_run:
        print(header)
        for item in plan["runs"]:
            print(f"[worker {item['worker']}] {item['command']}")
        return plan
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU here: give --device cpu (or run it where there is one)")
    missing = sorted({r.train[r.train.index("--images") + 1] for r in runs
                      if not (ROOT / r.train[r.train.index("--images") + 1]).is_dir()})  # fmt: skip
    if missing:
        raise SystemExit(f"no training data in {missing}: run scripts/make_splits.py first")
    out = out or GPU_OUT
    out.mkdir(parents=True, exist_ok=True)
    log_lock = threading.Lock()
    log_path = out / "campaign.log"

    def log(line: str) -> None:
        stamped = f"[{time.time() - started:6.0f} s] {line}"
        with log_lock, open(log_path, "a") as f:
            print(stamped, flush=True)
            f.write(stamped + "\n")

    log(header)
    queues = [queue for queue in deal(runs, jobs) if queue]  # the plan's queues
    deadline = started + budget_s - reserve_s
    threads = plan["threads_per_job"]

    def worker(queue: list[Run]) -> list[dict]:
        records = []
        for i, run in enumerate(queue):
            units_left = sum(r.units for r in queue[i:])
            per_unit = (deadline - time.time()) / units_left
            budget = math.floor(per_unit - overhead_s)  # runs that ended early leave more
            if budget < MIN_RUN_S:
                log(f"{run.label}: not started, out of time")
                records.append({"run": run.label, "kind": run.kind, "state": "skipped"})
                continue
            record = drive(run, threads=threads, time_budget=budget, log=log,
                           timeout=(budget + overhead_s) * run.units * 2 + 60)  # fmt: skip
            record["time_budget_s"] = budget
            records.append(record)
        return records

    with ThreadPoolExecutor(jobs) as pool:
        records = [r for rs in pool.map(worker, queues) for r in rs]
    zoo_done = [r for r in records if r.get("kind") == "zoo" and r.get("dice") is not None]
    zoo_done.sort(key=lambda r: -r["dice"])  # the best first, while the size budget lasts
    shipped = package(
        [r["run"] for r in zoo_done],
        variant=zoo_variant,
        max_mb=max_mb,
        device=device,
        only_if_better=only_if_better,
        log=log,
    )
    if tables is not None:
        tables.write()
    result = {
        **plan,
        "records": records,
        "packaged": shipped,
        "total_s": round(time.time() - started, 1),
    }
    _write_json(out / "campaign.json", result)
    log(f"done in {result['total_s']:.0f} s; {_rel(out / 'campaign.json')}")
    return result


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recipes", help="write the recipes")
    r.add_argument("--full", action="store_true", help="the full-width recipes (recipes/full/)")

    def variant_flag(p):
        p.add_argument(
            "--full", dest="variant", action="store_const", const="full", default="compact",
            help="the full-width recipes and their runs (runs/zoo_full/)",
        )  # fmt: skip

    t = sub.add_parser("train", help="start, resume or extend runs; evaluate them")
    t.add_argument("names", nargs="*", help="recipe names (default: all)")
    t.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU threads shared)")
    t.add_argument("--time-budget", type=float, default=None, help="seconds per sitting and run")
    t.add_argument("--epochs", type=int, default=None, help="train (on) to this many epochs")
    t.add_argument("--precision", default=None, help="auto, fp32, bf16 or fp16")
    t.add_argument("--device", default="auto")
    t.add_argument("--package", action="store_true", help="ship each model when its run is done")
    t.add_argument("--max-mb", type=float, default=60.0)
    t.add_argument(
        "--force", action="store_true", help="resume runs marked running (written < 30 min ago)"
    )
    variant_flag(t)
    s = sub.add_parser("status", help="where every run is")
    s.add_argument("names", nargs="*")
    s.add_argument("--runs", type=Path, default=None, help="a runs folder (default runs/zoo)")
    variant_flag(s)
    p = sub.add_parser("package", help="ship runs' models (adds or replaces only those)")
    p.add_argument("names", nargs="*", help="run names (default: every finished run)")
    p.add_argument("--max-mb", type=float, default=60.0, help="size budget of the weights folder")
    p.add_argument("--runs", type=Path, default=None, help="a runs folder (default runs/zoo)")
    p.add_argument("--device", default="cpu", help="device that scores the shipped files")
    p.add_argument("--only-if-better", action="store_true",
                   help="keep a shipped model whose validation Dice is as good")  # fmt: skip
    variant_flag(p)
    sub.add_parser("docs", help="docs/zoo.md from the shipped cards (checks index.json)")
    sub.add_parser("check", help="is every shipped card complete? (reads JSON only)")
    c = sub.add_parser("complete", help="fill derivable card fields of shipped models")
    c.add_argument("names", nargs="*")
    c.add_argument("--all", action="store_true")
    c.add_argument("--dry-run", action="store_true", help="say what would be filled")
    sub.add_parser("commands", help="the train and evaluate commands of a recipe").add_argument(
        "name"
    )
    sub.add_parser("annotate", help="write the object rules into shipped cards").add_argument(
        "names", nargs="+"
    )
    args = parser.parse_args(argv)
    if args.cmd == "recipes":
        write_recipes("full" if args.full else "compact")
    elif args.cmd == "train":
        train_all(
            args.names,
            variant=args.variant,
            jobs=args.jobs,
            time_budget=args.time_budget,
            epochs=args.epochs,
            precision=args.precision,
            device=args.device,
            package_done=args.package,
            max_mb=args.max_mb,
            force=args.force,
        )
    elif args.cmd == "status":
        status(args.names, args.variant, args.runs)
    elif args.cmd == "package":
        package(
            args.names,
            variant=args.variant,
            runs=args.runs,
            max_mb=args.max_mb,
            device=args.device,
            only_if_better=args.only_if_better,
        )
    elif args.cmd == "docs":
        print(f"wrote {_rel(write_zoo_doc())}")
        defaults = task_defaults(shipped_cards())
        index = _read_json(WEIGHTS / "index.json").get("defaults")
        if index != defaults:
            print(f"index.json says {index}, the cards {defaults}: `zoo.py package` rewrites it")
            return 1
    elif args.cmd == "check":
        return check_shipped()
    elif args.cmd == "complete":
        names = sorted(shipped_cards()) if args.all else args.names
        if not names:
            parser.error("complete: name models or give --all")
        complete_shipped(names, dry_run=args.dry_run)
    elif args.cmd == "annotate":
        annotate(args.names)
    elif args.cmd == "commands":
        for cmd in commands(args.name, RUNS / args.name):
            print(shlex.join(cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
