#!/usr/bin/env python
"""Train, evaluate and package the model zoo — one command per step, all reproducible.

    python scripts/make_splits.py                       # split folders under runs/data
    python scripts/zoo.py recipes                       # write recipes/<arch>.<task>.json
    python scripts/zoo.py train [NAME ...] [--jobs 2]   # attnseg train + evaluate per recipe
    python scripts/zoo.py package [--max-mb 60]         # fp16 weights + cards into the package

Every model is trained by exactly one ``attnseg train --config recipes/<name>.json``
call and scored by one ``attnseg evaluate`` call on the validation split; both
command lines are written into the model card, with the device, wall time
and epochs. ``train`` skips models whose run folder already has an
evaluation (delete ``runs/zoo/<name>`` to retrain).

The recipes follow each architecture's paper (architectures.md), adapted
for CPU training of compact models where noted in ``notes``:

* U-Net / Focal USE-Net / Focal Attention U-Net — Yeung et al.: Adam 1e-3,
  asymmetric Unified Focal loss (δ 0.6, λ 0.5, γ per dataset) + FDPT ε 0.1,
  plateau ×0.1 and early stopping (patience scaled down from 25/50 to the
  shorter budget), per-image z-score, flips/rotation/zoom/intensity augmentation;
* FocusNet — Kaul et al.: 1 − Dice, Adam 1e-3, plateau ×0.5 patience 5,
  dataset z-score, zoom + flips (+ channel shifts for RGB), best-validation model;
* AF-Net — Hou et al.: BCE, SGD (momentum 0.9, weight decay 1e-4) lr 4e-3 with
  poly decay, CLAHE, flips; flip TTA at test time;
* DenseUNet-JA — Zhang et al. give normalisation + CLAHE; the optimiser and
  loss are not published: Adam 1e-3 with Dice + CE (our choice).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from napari_attnseg.models import compact_options
from napari_attnseg.zoo import WEIGHTS_DIR as WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
RUNS = ROOT / "runs" / "zoo"
DATA = ROOT / "runs" / "data"

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
        "data": {"in_channels": 3},
        "train": {"patch_size": 96, "batch_size": 8, "epochs": 40},
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
        return {
            "normalization": {"mode": "dataset"},
            "train": {
                "optimizer": "adam",
                "lr": 1e-3,
                "loss": "dice",
                "loss_params": {},
                "schedule": "plateau",
                "plateau_factor": 0.5,
                "plateau_patience": 5,
                "early_stopping": None,
                "augment": aug,
            },
            "notes": "Kaul et al. 2019 recipe (1 - Dice, Adam 1e-3, plateau x0.5/5, dataset "
            "z-score, zoom and flips); width multiplier 0.25 for the CPU budget.",
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


def recipe(arch: str, task: str) -> dict:
    t = TASKS[task]
    a = arch_recipe(arch, task)
    name = f"{arch}.{task}"
    train = {**t["train"], **a["train"], "seed": 0}
    if train.get("augment") and t["data"]["in_channels"] == 1:
        train["augment"] = {k: v for k, v in train["augment"].items() if k != "channel_shift"}
    data = {**t["data"], "normalization": a["normalization"]}
    if a.get("scale", 1.0) != 1.0:
        data["scale"] = a["scale"]
    return {
        "name": name,
        "task": task,
        "arch": arch,
        "options": compact_options(arch),
        "data": data,
        "train": train,
        "evaluate": {"tta": bool(a.get("tta")), "fov": bool(t.get("fov"))},
        "notes": a["notes"],
        "card": {
            **t["card"],
            "name": name,
            "metadata": {
                "task": task,
                "recipe": f"recipes/{name}.json",
                "notes": a["notes"],
                "recommended_tta": bool(a.get("tta")),
            },
            "training": {"dataset": t["dataset"]},
        },
    }


def write_recipes() -> list[Path]:
    RECIPES.mkdir(exist_ok=True)
    paths = []
    for task in TASKS:
        for arch in ARCHS:
            r = recipe(arch, task)
            path = RECIPES / f"{r['name']}.json"
            path.write_text(json.dumps(r, indent=2) + "\n")
            paths.append(path)
    print(f"wrote {len(paths)} recipes to {RECIPES}")
    return paths


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def commands(name: str, run_dir: Path) -> tuple[list[str], list[str]]:
    r = json.loads((RECIPES / f"{name}.json").read_text())
    split = DATA / r["task"]
    train = [
        "attnseg",
        "train",
        "--config",
        f"recipes/{name}.json",
        "--images",
        _rel(split / "train/images"),
        "--masks",
        _rel(split / "train/masks"),
        "--val-images",
        _rel(split / "val/images"),
        "--val-masks",
        _rel(split / "val/masks"),
        "--out",
        _rel(run_dir / f"{name}.safetensors"),
        "--device",
        "auto",
        "--quiet",
    ]
    evaluate = [
        "attnseg",
        "evaluate",
        "--model",
        _rel(run_dir / f"{name}.safetensors"),
        "--images",
        _rel(split / "val/images"),
        "--masks",
        _rel(split / "val/masks"),
        "--json",
        _rel(run_dir / "evaluation.json"),
        "--quiet",
    ]
    if r["evaluate"]["fov"]:
        train[train.index("--val-masks") + 2 : train.index("--val-masks") + 2] = [
            "--fov",
            _rel(split / "train/fov"),
            "--val-fov",
            _rel(split / "val/fov"),
        ]
        evaluate += ["--fov", _rel(split / "val/fov")]
    if r["evaluate"]["tta"]:
        evaluate.append("--tta")
    return train, evaluate


def execute(label: str, cmds: list[list[str]], run_dir: Path, threads: int) -> str:
    """Run ``attnseg`` command lines in order, logging to ``run_dir/log.txt``.

    On success writes ``commands.json`` (the exact command lines, threads, wall
    time) and returns a one-line summary with the evaluation's mean Dice.
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }
    bin_dir = Path(sys.executable).parent
    t0 = time.time()
    with open(run_dir / "log.txt", "w") as log:
        for cmd in cmds:
            log.write("$ " + shlex.join(cmd) + "\n")
            log.flush()
            full = [str(bin_dir / cmd[0]), *cmd[1:]]
            result = subprocess.run(full, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                return f"{label}: FAILED ({shlex.join(cmd)}), see {run_dir / 'log.txt'}"
    train, evaluate = cmds
    record = {
        "train": shlex.join(train),
        "evaluate": shlex.join(evaluate),
        "threads": threads,
        "total_seconds": round(time.time() - t0, 1),
    }
    (run_dir / "commands.json").write_text(json.dumps(record, indent=2))
    score = json.loads((run_dir / "evaluation.json").read_text())["mean"]["dice"]
    return f"{label}: dice {score:.4f} in {time.time() - t0:.0f} s"


def run_one(name: str, threads: int) -> str:
    run_dir = RUNS / name
    if (run_dir / "evaluation.json").exists():
        return f"{name}: already done"
    run_dir.mkdir(parents=True, exist_ok=True)
    return execute(name, list(commands(name, run_dir)), run_dir, threads)


def train_all(names: list[str], jobs: int) -> None:
    names = names or [p.stem for p in sorted(RECIPES.glob("*.*.json"))]
    threads = max(1, (os.cpu_count() or 2) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(lambda n: run_one(n, threads), names):
            print(line, flush=True)


def _evaluate_shipped(name: str, recipe: dict) -> tuple[dict, str]:
    """Score the packaged (fp16) file itself, as ``attnseg evaluate`` does; return the command."""
    from napari_attnseg.inference import Predictor, evaluate_folder
    from napari_attnseg.zoo import load

    split = DATA / recipe["task"] / "val"
    fov = split / "fov" if recipe["evaluate"]["fov"] else None
    tta = recipe["evaluate"]["tta"]
    predictor = Predictor(tta=tta, device="cpu")
    result = evaluate_folder(
        load(name), split / "images", split / "masks", fov, predictor=predictor, name=name
    )
    cmd = [
        "attnseg",
        "evaluate",
        "--model",
        name,
        "--images",
        _rel(split / "images"),
        "--masks",
        _rel(split / "masks"),
    ]
    cmd += ["--fov", _rel(fov)] if fov else []
    cmd += ["--tta"] if tta else []
    return result, shlex.join(cmd)


def package(max_mb: float, names: list[str] | None) -> None:
    """Ship evaluated models as fp16 + cards in the package and write docs/zoo.md.

    Per task, the default is the model with the highest validation Dice; shipped
    are the default, the plain U-Net reference, every model that beats the
    U-Net, and each architecture's best model (so every architecture can be
    explored in the viewer), defaults first, within ``max_mb``. The cards'
    metrics are measured again on the shipped fp16 files, by the same code as
    ``attnseg evaluate``.
    """
    from napari_attnseg.models import load_model, model_cost, save_model

    done = sorted(p.parent.name for p in RUNS.glob("*/evaluation.json"))
    if names:
        done = [n for n in done if n in names]
    dice = {n: json.loads((RUNS / n / "evaluation.json").read_text())["mean"]["dice"] for n in done}
    tasks = sorted({n.split(".")[1] for n in done})
    defaults = {t: max((n for n in done if n.endswith("." + t)), key=dice.get) for t in tasks}
    ship = []
    for t in tasks:
        members = sorted((n for n in done if n.endswith("." + t)), key=dice.get, reverse=True)
        reference = dice.get(f"unet.{t}", 0.0)
        ship += [n for n in members if n == defaults[t] or n == f"unet.{t}" or dice[n] > reference]
    for arch in ARCHS:  # every architecture ships at least once (its best task), to explore
        if not any(n.startswith(arch + ".") for n in ship):
            mine = [n for n in done if n.startswith(arch + ".")]
            ship += [max(mine, key=dice.get)] if mine else []
    ship.sort(key=lambda n: (n not in defaults.values(), -dice[n]))
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    for old in WEIGHTS.glob("*"):
        old.unlink()
    index = {
        "defaults": defaults,
        "note": "task defaults are the models with the highest mean validation Dice "
        "(attnseg evaluate on the splits in recipes/splits)",
    }
    (WEIGHTS / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    total, rows = 0.0, []
    for name in ship:
        recipe = json.loads((RECIPES / f"{name}.json").read_text())
        cmds = json.loads((RUNS / name / "commands.json").read_text())
        model = load_model(RUNS / name / f"{name}.safetensors")
        card = model.card
        card.training = {**card.training, "command": cmds["train"], "threads": cmds["threads"]}
        path = save_model(model, WEIGHTS / f"{name}.safetensors", card=card, half=True)
        size = (path.stat().st_size + path.with_suffix(".json").stat().st_size) / 2**20
        if total + size > max_mb:
            path.unlink()
            path.with_suffix(".json").unlink()
            print(f"{name}: not shipped (would exceed {max_mb} MB); recipe kept")
            continue
        total += size
        result, command = _evaluate_shipped(name, recipe)
        card.metrics = {
            "validation": {k: result[k] for k in ("n_images", "mean", "pooled")},
            "measured_by": command,
            "weights": "fp16 as shipped",
        }
        save_model(model, path, card=card, half=True)
        cost = model_cost(model, (256, 256))
        rows.append((name, card, cost, name == defaults[recipe["task"]]))
        print(
            f"{name}: {size:.2f} MB, val dice {result['mean']['dice']:.4f}"
            + ("  [default]" if name == defaults[recipe["task"]] else ""),
            flush=True,
        )
    write_zoo_doc(rows, [n for n in done if n not in {r[0] for r in rows}], dice)
    print(f"shipped {total:.1f} MB; defaults {defaults}")


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
    from napari_attnseg.models import load_model, save_model

    for name in names:
        path = WEIGHTS / f"{name}.safetensors"
        model = load_model(path)
        card = model.card
        for key, value in object_rules(name.split(".")[1], card.input_scale).items():
            setattr(card, key, value)
        save_model(model, path, card=card, half=True)
        print(f"{name}: {object_rules(name.split('.')[1], card.input_scale)}")


def write_zoo_doc(rows: list, kept_back: list[str], dice: dict) -> None:
    lines = [
        "# The model zoo",
        "",
        "Written by `python scripts/zoo.py package`. Every model was trained by the "
        "`attnseg train` command in its card (`attnseg info MODEL --json`), and its validation "
        "metrics were measured on the shipped fp16 weights by the `attnseg evaluate` command "
        "in the card. Metrics are per-image means on our validation splits "
        "(`recipes/splits/`); DRIVE is scored inside the field of view. GFLOPs: one "
        "3×256×256 (1×256×256 for membranes) forward pass, PyTorch's count.",
        "",
        "All models were trained on a 2-core CPU (no GPU was available): they are compact "
        "and briefly trained, and should be retrained on a GPU with `scripts/zoo.py` for "
        "best results.",
        "",
        "| model | default | Dice | Jaccard | precision | recall | params | GFLOPs | epochs "
        "| train time | licence of the training data |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, card, cost, is_default in rows:
        m = card.metrics["validation"]["mean"]
        t = card.training
        licence = "research/education only" if "RESEARCH" in card.license else "open (see card)"
        lines.append(
            f"| `{name}` | {'yes' if is_default else ''} | {m['dice']:.4f} | {m['jaccard']:.4f} "
            f"| {m['precision']:.4f} | {m['sensitivity']:.4f} | {cost.params / 1e6:.2f} M "
            f"| {cost.gflops:.2f} | {t.get('epochs_run')} | {t.get('wall_time_s', 0) / 60:.0f} min "
            f"({t.get('environment', {}).get('device', '?')}, {t.get('threads')} thread(s)) "
            f"| {licence} |"
        )
    if kept_back:
        lines += [
            "",
            "Trained but not shipped (they do not beat the U-Net reference of their "
            "task, or the size budget is spent); their recipes retrain them:",
            "",
        ]
        lines += [f"- `{n}`: validation Dice {dice[n]:.4f}" for n in kept_back]
    (ROOT / "docs" / "zoo.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("recipes")
    t = sub.add_parser("train")
    t.add_argument("names", nargs="*")
    t.add_argument("--jobs", type=int, default=1)
    p = sub.add_parser("package")
    p.add_argument("names", nargs="*")
    p.add_argument("--max-mb", type=float, default=60.0)
    sub.add_parser("commands").add_argument("name")
    sub.add_parser("annotate", help="write the object rules into shipped cards").add_argument(
        "names", nargs="+"
    )
    args = parser.parse_args()
    if args.cmd == "recipes":
        write_recipes()
    elif args.cmd == "train":
        train_all(args.names, args.jobs)
    elif args.cmd == "package":
        package(args.max_mb, args.names)
    elif args.cmd == "annotate":
        annotate(args.names)
    elif args.cmd == "commands":
        for cmd in commands(args.name, RUNS / args.name):
            print(shlex.join(cmd))


if __name__ == "__main__":
    main()
