"""Packaging: a run's model into ``src/napari_attnseg/zoo/weights/`` as fp16 with a
complete card, scored again as shipped; and the card chores (``complete``, ``check``,
``annotate``).

Packaging adds or replaces only the named models — never deletes a shipped model,
whether its run is on this machine or not — and rebuilds ``index.json`` and
``docs/zoo.md`` from the committed cards alone. Each shipped file is scored again, as
fp16, by the code of ``attnseg evaluate`` (``metrics.validation``, ``measured_by``),
and its card is completed from the run (:data:`~.cards.CARD_REQUIRED`); a card that
stays incomplete is not shipped.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_attnseg.models import load_model, read_card, save_model
from napari_attnseg.models.persistence import file_sha256
from napari_attnseg.training import trained_before

from . import cv_report, paths
from .cards import (
    CARD_REQUIRED,
    _dice,
    card_value,
    legacy_precision,
    missing_card_keys,
    shipped_cards,
    write_index,
)
from .docs import write_zoo_doc
from .recipes import TASKS
from .runs import _bare_run, _evaluation, _run_spec, run_state


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
    commands_ = paths.read_json(run_dir / "commands.json") if run_dir else {}
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
        training["command"] = _reconstructed_command(spec, paths.rel(recipe_path))
        training["command_source"] = "reconstructed from the run's run.json"
    init = training.get("init")
    start = paths.ROOT / init["model"] if init else None
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
        "recipe": paths.rel(recipe_path),
    }
    return card


def evaluate_shipped(path: Path, name: str, recipe: dict, device: str = "cpu") -> tuple[dict, str]:
    """Score a packaged (fp16) file as ``attnseg evaluate`` does; return the result and
    that command."""
    # the inference engine more than doubles the start-up of the subcommands that don't score
    from napari_attnseg.inference import Predictor, evaluate_folder

    split = paths.split(recipe["task"]) / "val"
    fov = split / "fov" if recipe["evaluate"]["fov"] else None
    tta = bool(recipe["evaluate"]["tta"])
    predictor = Predictor(tta=tta, device=device)
    result = evaluate_folder(
        load_model(path), split / "images", split / "masks", fov, predictor=predictor, name=name
    )
    cmd = ["attnseg", "evaluate", "--model", name]
    cmd += ["--images", paths.rel(split / "images"), "--masks", paths.rel(split / "masks")]
    cmd += ["--fov", paths.rel(fov)] if fov else []
    cmd += ["--tta"] if tta else []
    cmd += ["--device", device]
    return result, shlex.join(cmd)


def _evaluation_precision(device: str) -> str:
    import torch

    from napari_attnseg.inference.device import resolve_device, resolve_precision

    return resolve_precision(resolve_device(device) if device != "cpu" else torch.device("cpu"))


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
    run = _bare_run(name, (runs or paths.runs_dir(variant)) / name)
    state, detail = run_state(run)
    out = {"name": name, "run_dir": paths.rel(run.run_dir), "state": state}
    if not run.model.exists() or state in ("busy", "unfinished"):
        return {**out, "shipped": False, "why": f"no finished model ({state}: {detail})"}
    if state == "paused" and not explicit:
        return {**out, "shipped": False, "why": f"paused ({detail}); name it to ship it"}
    recipe_path = paths.recipes_dir(variant) / f"{name}.json"
    recipe_ = json.loads(recipe_path.read_text())
    model = load_model(run.model)
    target = paths.WEIGHTS / f"{name}.safetensors"
    old = paths.read_json(target.with_suffix(".json"))
    paths.WEIGHTS.mkdir(parents=True, exist_ok=True)
    others = [p for p in paths.WEIGHTS.iterdir() if p.is_file() and p.stem != name]
    # cheap checks first: scoring a model takes a while
    run_dice = _evaluation(run).get("mean", {}).get("dice")
    if only_if_better and old and run_dice is not None and run_dice < _dice(old):
        why = f"its run's validation Dice {run_dice:.4f} is below the shipped {_dice(old):.4f}"
        return {**out, "shipped": False, "why": why}
    fp16_mb = sum(t.numel() * 2 for t in model.state_dict().values()) / 2**20
    if paths.size_mb(others) + fp16_mb > max_mb:
        why = f"{paths.size_mb(others) + fp16_mb:.1f} MB would exceed {max_mb:g} MB"
        return {**out, "shipped": False, "why": why}
    card = complete_card(model.card, recipe_, recipe_path, run.run_dir)
    if (paths.DATA / recipe_["task"] / "train" / "masks").is_dir():  # as `annotate` writes them
        for key, value in object_rules(recipe_["task"], card.input_scale).items():
            if getattr(card, key) is None:
                setattr(card, key, value)
    with tempfile.TemporaryDirectory(prefix=".package-", dir=paths.WEIGHTS.parent) as tmp:
        path = save_model(model, Path(tmp) / f"{name}.safetensors", card=card, half=True)
        result, command = evaluate_shipped(path, name, recipe_, device)
        card.metrics = {
            "validation": {k: result[k] for k in ("n_images", "mean", "pooled")},
            "measured_by": command,
            "weights": "fp16 as shipped",
            "precision": _evaluation_precision(device),
        }
        found = cv_report.figures_for(recipe_)  # the recipe's grouped k-fold figures, if any
        if found is not None:
            card.metrics["cross_validation"] = cv_report.card_figures(*found)
        save_model(model, path, card=card, half=True)
        document = paths.read_json(path.with_suffix(".json"))
        dice = _dice(document)
        out.update(dice=dice, status=detail)
        missing = missing_card_keys(document)
        if missing:
            return {**out, "shipped": False, "why": f"its card lacks {missing}"}
        if only_if_better and old and _dice(old) >= dice:
            why = f"the shipped one is as good ({_dice(old):.4f})"
            return {**out, "shipped": False, "why": why}
        size = paths.size_mb([path, path.with_suffix(".json")])
        total = paths.size_mb(others) + size
        if total > max_mb:
            return {**out, "shipped": False, "why": f"{total:.1f} MB would exceed {max_mb:g} MB"}
        os.replace(path, target)  # the weights first: the card beside them is read first
        os.replace(path.with_suffix(".json"), target.with_suffix(".json"))
    return {**out, "shipped": True, "size_mb": round(size, 2), "replaced": bool(old),
            "previous_dice": _dice(old) if old else None}  # fmt: skip


def finished_runs(variant: str = "compact", runs: Path | None = None) -> list[str]:
    found = []
    for folder in sorted((runs or paths.runs_dir(variant)).glob("*.*")):
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
    total = paths.size_mb(p for p in paths.WEIGHTS.iterdir() if p.is_file())
    log(f"weights folder {total:.1f} MB; task defaults {defaults}")
    return results


def complete_shipped(names: list[str], *, dry_run: bool = False) -> dict[str, list[str]]:
    """``complete``: fill the card fields that can be derived without a run (precision of
    legacy cards, threads, dataset, licence, recipe) into shipped cards; weights unchanged."""
    filled = {}
    for name in names:
        path = paths.WEIGHTS / f"{name}.safetensors"
        before = paths.read_json(path.with_suffix(".json"))
        model = load_model(path)
        recipe_rel = before.get("metadata", {}).get("recipe") or f"recipes/{name}.json"
        recipe_path = paths.ROOT / recipe_rel
        recipe_ = json.loads(recipe_path.read_text())
        card = complete_card(model.card, recipe_, recipe_path)
        found = cv_report.figures_for(recipe_)
        if found is not None and trained_by(before, recipe_):
            card.metrics = {**card.metrics, "cross_validation": cv_report.card_figures(*found)}
        after = {**before, **card.to_dict()}
        changed = [k for k in (*CARD_REQUIRED, "metrics.cross_validation")
                   if card_value(before, k) != card_value(after, k)]  # fmt: skip
        filled[name] = changed
        print(f"{name}: " + (", ".join(f"{k} = {card_value(after, k)!r}" for k in changed) or
                             "complete"))  # fmt: skip
        if changed and not dry_run:
            save_model(model, path, card=card, half=True)
    if not dry_run:
        write_index()
        write_zoo_doc()
    return filled


#: training settings that do not change what a recipe trains
NOT_TRAINING = ("time_budget", "device", "precision", "num_workers")


def trained_by(card: dict, recipe: dict) -> bool:
    """Whether a shipped card's recorded training is what ``recipe`` trains: the same
    architecture options and training settings (:data:`NOT_TRAINING` aside)."""
    from napari_attnseg.training import TrainConfig

    recorded = card.get("training", {}).get("config")
    if not recorded or card.get("config", {}).get("name") != recipe.get("arch"):
        return False
    if any(card["config"].get(k) != v for k, v in recipe.get("options", {}).items()):
        return False
    mine = TrainConfig.from_dict(recipe.get("train", {})).to_dict()
    theirs = TrainConfig.from_dict(recorded).to_dict()
    return all(mine[k] == theirs[k] for k in mine if k not in NOT_TRAINING)


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
        masks = sorted((paths.DATA / task / "train" / "masks").iterdir())
        rules.update(diameter_summary(masks, scale=scale))
    return rules


def annotate(names: list[str]) -> None:
    """Write the object rules into shipped cards (weights unchanged; re-saved as fp16)."""
    for name in names:
        path = paths.WEIGHTS / f"{name}.safetensors"
        model = load_model(path)
        card = model.card
        rules = object_rules(name.split(".")[1], card.input_scale)
        for key, value in rules.items():
            setattr(card, key, value)
        save_model(model, path, card=card, half=True)
        print(f"{name}: {rules}")
