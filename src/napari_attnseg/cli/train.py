"""``attnseg train`` and ``attnseg finetune``.

``train`` builds an architecture and trains it on an image folder and a mask
folder paired by file stem; ``--config`` takes a JSON recipe
(``{"arch", "options", "data", "train", "card"}``; the zoo's recipes are
examples) and command-line flags override it. ``--prune-workflow`` runs
Yeung et al.'s Focal pruning in one go: train with every Focal w initialised
to 0, prune the modules with w < ``--prune-threshold``, retrain.

``finetune`` continues training a saved or zoo model on new data, keeping its
normalisation; both write a model every other subcommand accepts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..models import PRUNE_THRESHOLD
from ._common import ProgressBar, add_device, add_quiet


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, metavar="DIR", help="training images")
    p.add_argument("--masks", required=True, metavar="DIR", help="masks, paired by file stem")
    p.add_argument(
        "--fov", metavar="DIR", help="region-of-interest masks (loss and metrics inside)"
    )
    p.add_argument(
        "--val-images", metavar="DIR", help="validation images (default: hold out a fraction)"
    )
    p.add_argument("--val-masks", metavar="DIR", help="validation masks")
    p.add_argument("--val-fov", metavar="DIR", help="validation ROI masks")
    p.add_argument(
        "--val-fraction", type=float, default=None, help="held-out fraction (default 0.2)"
    )
    p.add_argument("--out", required=True, metavar="PATH", help="where to save the trained model")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--patch-size", type=int, default=None, help="random patch edge (0: whole images)"
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument(
        "--loss", default=None, help="dice, dice_ce, ce, tversky, focal_tversky, unified_focal"
    )
    p.add_argument(
        "--loss-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loss parameter, e.g. --loss-param epsilon=0.1 (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any training option (see TrainConfig), e.g. --set optimizer=sgd",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=None, help="seconds")
    add_device(p)
    add_quiet(p)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train an architecture on image/mask folders", description=__doc__
    )
    p.add_argument("--arch", default=None, help="architecture name (see `attnseg info`)")
    p.add_argument("--config", metavar="FILE", help="JSON recipe")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option, e.g. --option width=16 (repeatable)",
    )
    p.add_argument(
        "--in-channels", type=int, default=None, help="1 grey, 3 RGB (default: recipe or 3)"
    )
    p.add_argument("--n-classes", type=int, default=None, help="1 binary (default), >= 2 classes")
    p.add_argument(
        "--normalization",
        default=None,
        help="zscore, dataset, percentile, minmax or none (or a JSON object)",
    )
    p.add_argument("--scale", type=float, default=None, help="resize factor applied to every image")
    p.add_argument(
        "--prune-workflow",
        action="store_true",
        help="train with Focal w = 0, prune w < threshold, retrain",
    )
    p.add_argument(
        "--prune-threshold",
        type=float,
        default=PRUNE_THRESHOLD,
        help=f"prune Focal modules with w below this (default {PRUNE_THRESHOLD:g})",
    )
    p.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        default=None,
        help="keep best.safetensors and a resumable last.ckpt here",
    )
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.ckpt")
    _add_common(p)
    p.set_defaults(run=run_train)

    f = sub.add_parser(
        "finetune", help="continue training a model on new data", description=__doc__
    )
    f.add_argument("--model", required=True, metavar="MODEL")
    _add_common(f)
    f.set_defaults(run=run_finetune)


def _pairs(items: list[str], what: str) -> dict:
    from .info import parse_options

    try:
        return parse_options(items)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _train_config(base: dict, args: argparse.Namespace):
    from ..training import TrainConfig

    values = dict(base)
    for key, attr in (
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("loss", "loss"),
        ("seed", "seed"),
        ("time_budget", "time_budget"),
        ("device", "device"),
    ):
        value = getattr(args, attr)
        if value is not None and not (attr == "device" and value == "auto" and "device" in values):
            values[key] = value
    if args.patch_size is not None:
        values["patch_size"] = args.patch_size or None
    if args.loss_param:
        values["loss_params"] = {
            **values.get("loss_params", {}),
            **_pairs(args.loss_param, "--loss-param"),
        }
    values.update(_pairs(args.set, "--set"))
    return TrainConfig.from_dict(values)


def _data_spec(recipe: dict, args: argparse.Namespace, defaults: dict | None = None):
    from ..training import DataSpec

    data = {**(defaults or {}), **recipe.get("data", {})}
    if getattr(args, "in_channels", None):
        data["in_channels"] = args.in_channels
    if getattr(args, "n_classes", None):
        data["n_classes"] = args.n_classes
    norm = getattr(args, "normalization", None)
    if norm:
        data["normalization"] = json.loads(norm) if norm.startswith("{") else {"mode": norm}
    if getattr(args, "scale", None):
        data["scale"] = args.scale
    if args.val_fraction is not None:
        data["val_fraction"] = args.val_fraction
    if args.seed is not None:
        data["seed"] = args.seed
    known = {
        "in_channels",
        "n_classes",
        "normalization",
        "scale",
        "input_size",
        "val_fraction",
        "seed",
    }
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown data option(s) {sorted(unknown)}; valid: {sorted(known)}")
    return DataSpec(**data)


def _load(args, spec):
    from ..training import load_folder_data

    with ProgressBar("loading", disable=args.quiet, unit="image") as bar:
        return load_folder_data(
            args.images,
            args.masks,
            spec,
            fov=args.fov,
            val_images=args.val_images,
            val_masks=args.val_masks,
            val_fov=args.val_fov,
            progress=bar,
        )


def _summary(model, history, out) -> None:
    best = history.epochs[history.best_epoch] if history.best_epoch is not None else {}
    dice = best.get("val_dice")
    print(
        f"{history.stopped}: {len(history.epochs)} epoch(s) in {history.seconds:.1f} s; "
        f"best epoch {best.get('epoch')}"
        + (f", validation dice {dice:.4f}" if dice is not None else "")
    )
    print(f"saved {out}")


def run_train(args: argparse.Namespace) -> int:
    from ..training import prune_workflow, train_new
    from ..training.config import read_json

    recipe = read_json(args.config) if args.config else {}
    arch = args.arch or recipe.get("arch")
    if not arch:
        raise ValueError("give --arch or a --config recipe with an 'arch'")
    options = {**recipe.get("options", {}), **_pairs(args.option, "--option")}
    config = _train_config(recipe.get("train", {}), args)
    spec = _data_spec(recipe, args)
    train, val, normalization = _load(args, spec)
    card = dict(recipe.get("card", {}))
    card.setdefault("training", {})
    card["training"] = {**card["training"], "images": str(args.images), "masks": str(args.masks)}
    out = Path(args.out)
    with ProgressBar("training", disable=args.quiet) as bar:
        if args.prune_workflow:
            result = prune_workflow(
                arch,
                options,
                train,
                val,
                config,
                data=spec,
                normalization=normalization,
                threshold=args.prune_threshold,
                out=out,
                card=card,
                progress=bar,
            )
            model, history = result.model, result.history
            print(
                "focal w after the w = 0 probe: "
                + ", ".join(f"{n} {w:.3f}" for n, w in result.focal_weights.items())
            )
            print(f"pruned: {', '.join(result.pruned_modules) or 'nothing'}")
        else:
            model, history = train_new(
                arch,
                options,
                train,
                val,
                config,
                data=spec,
                normalization=normalization,
                out=out,
                card=card,
                checkpoint_dir=args.checkpoint_dir,
                resume=args.resume,
                progress=bar,
            )
    _summary(model, history, out)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from ..training import finetune
    from ..zoo import load

    model = load(args.model)
    card = model.card
    spec = _data_spec(
        {},
        args,
        defaults={
            "in_channels": model.in_channels,
            "n_classes": model.n_classes,
            "normalization": card.normalization,
            "scale": card.input_scale,
            "input_size": card.input_size,
        },
    )
    base = {"lr": 1e-4, "epochs": 20, "early_stopping": 10, "plateau_patience": 5}
    config = _train_config(base, args)
    train, val, _ = _load(args, spec)
    with ProgressBar("fine-tuning", disable=args.quiet) as bar:
        tuned, history = finetune(
            model, train, val, config, out=args.out, base_name=args.model, progress=bar
        )
    _summary(tuned, history, args.out)
    return 0
